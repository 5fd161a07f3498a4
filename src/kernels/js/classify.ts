import type { JsMem } from './mem.js';
// STUB: to be implemented.
export function classify(m: JsMem, table: number, count: number, descs: number, flowTable: number, now: number, flags: number): number { return 0; }
