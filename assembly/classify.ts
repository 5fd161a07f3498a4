// STUB: to be implemented (batch classifier).
export function classify(table: usize, count: u32, descs: usize, flowTable: usize, now: u32, flags: u32): u32 { return 0; }
