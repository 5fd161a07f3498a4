// STUB: to be implemented (flow table).
export function flowTableBytes(capacity: u32): u32 { return 0; }
export function flowInit(ptr: usize, capacity: u32, seed: u32): void {}
export function flowInsert(t: usize, proto: u32, srcIp: u32, srcPort: u32, dstIp: u32, dstPort: u32, now: u32): i32 { return -2; }
export function flowLookup(t: usize, proto: u32, srcIp: u32, srcPort: u32, dstIp: u32, dstPort: u32): i32 { return -1; }
export function flowTouch(t: usize, proto: u32, srcIp: u32, srcPort: u32, dstIp: u32, dstPort: u32, now: u32): i32 { return -1; }
export function flowRemove(t: usize, proto: u32, srcIp: u32, srcPort: u32, dstIp: u32, dstPort: u32): i32 { return -1; }
export function flowCount(t: usize): u32 { return 0; }
export function flowIdle(t: usize, now: u32, idle: u32, out: usize, max: u32): u32 { return 0; }
export function flowLookupBatch(t: usize, keys: usize, n: u32, out: usize): u32 { return 0; }
export function flowClear(t: usize): void {}
export function flowLastSeen(t: usize, id: u32): u32 { return 0; }
export function flowKeyOf(t: usize, id: u32, out: usize): u32 { return 0; }
