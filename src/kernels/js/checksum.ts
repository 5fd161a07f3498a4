import type { JsMem } from './mem.js';
// STUB: to be implemented.
export function csumPartial(m: JsMem, ptr: number, len: number, sum: number): number { return 0; }
