import type { JsMem } from './mem.js';
// STUB: to be implemented.
export function flowTableBytes(m: JsMem, capacity: number): number { return 0; }
export function flowInit(m: JsMem, ptr: number, capacity: number, seed: number): void {}
export function flowInsert(m: JsMem, t: number, proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number, now: number): number { return -2; }
export function flowLookup(m: JsMem, t: number, proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number): number { return -1; }
export function flowTouch(m: JsMem, t: number, proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number, now: number): number { return -1; }
export function flowRemove(m: JsMem, t: number, proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number): number { return -1; }
export function flowCount(m: JsMem, t: number): number { return 0; }
export function flowIdle(m: JsMem, t: number, now: number, idle: number, out: number, max: number): number { return 0; }
export function flowLookupBatch(m: JsMem, t: number, keys: number, n: number, out: number): number { return 0; }
export function flowClear(m: JsMem, t: number): void {}
export function flowLastSeen(m: JsMem, t: number, id: number): number { return 0; }
export function flowKeyOf(m: JsMem, t: number, id: number, out: number): number { return 0; }
