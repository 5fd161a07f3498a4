// STUB: to be implemented (IPv4 fragment reassembly).
export function fragBytes(slots: u32, maxDatagram: u32): u32 { return 0; }
export function fragInit(ptr: usize, slots: u32, maxDatagram: u32, timeout: u32): void {}
export function fragInsert(t: usize, ip: usize, len: u32, now: u32): i32 { return -5; }
export function fragDatagramPtr(t: usize, slot: u32): usize { return 0; }
export function fragDatagramLen(t: usize, slot: u32): u32 { return 0; }
export function fragRelease(t: usize, slot: u32): void {}
export function fragExpire(t: usize, now: u32): u32 { return 0; }
export function fragPending(t: usize): u32 { return 0; }
