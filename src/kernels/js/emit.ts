import type { JsMem } from './mem.js';
// STUB: to be implemented.
export function buildFrames(m: JsMem, txs: number, count: number, out: number, outCap: number, table: number): number { return 0; }
