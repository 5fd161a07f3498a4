// STUB: to be implemented (TCP receive-stream reassembly).
export function reasmBytes(cap: u32, maxHoles: u32): u32 { return 0; }
export function reasmInit(ptr: usize, cap: u32, maxHoles: u32): void {}
export function reasmWrite(r: usize, offset: i32, data: usize, len: u32): i32 { return -1; }
export function reasmReadable(r: usize): u32 { return 0; }
export function reasmReadPtr(r: usize): usize { return 0; }
export function reasmReadChunk(r: usize): u32 { return 0; }
export function reasmConsume(r: usize, n: u32): void {}
export function reasmWindow(r: usize): u32 { return 0; }
export function reasmHoles(r: usize): u32 { return 0; }
export function reasmHeld(r: usize): u32 { return 0; }
export function reasmReset(r: usize): void {}
