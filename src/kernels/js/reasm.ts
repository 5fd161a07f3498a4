import type { JsMem } from './mem.js';
// STUB: to be implemented.
export function reasmBytes(m: JsMem, cap: number, maxHoles: number): number { return 0; }
export function reasmInit(m: JsMem, ptr: number, cap: number, maxHoles: number): void {}
export function reasmWrite(m: JsMem, r: number, offset: number, data: number, len: number): number { return -1; }
export function reasmReadable(m: JsMem, r: number): number { return 0; }
export function reasmReadPtr(m: JsMem, r: number): number { return 0; }
export function reasmReadChunk(m: JsMem, r: number): number { return 0; }
export function reasmConsume(m: JsMem, r: number, n: number): void {}
export function reasmWindow(m: JsMem, r: number): number { return 0; }
export function reasmHoles(m: JsMem, r: number): number { return 0; }
export function reasmHeld(m: JsMem, r: number): number { return 0; }
export function reasmReset(m: JsMem, r: number): void {}
