// STUB: to be implemented (batch TX frame builder).
export function buildFrames(txs: usize, count: u32, out: usize, outCap: u32, table: usize): u32 { return 0; }
