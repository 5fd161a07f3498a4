import type { JsMem } from './mem.js';
// STUB: to be implemented.
export function fragBytes(m: JsMem, slots: number, maxDatagram: number): number { return 0; }
export function fragInit(m: JsMem, ptr: number, slots: number, maxDatagram: number, timeout: number): void {}
export function fragInsert(m: JsMem, t: number, ip: number, len: number, now: number): number { return -5; }
export function fragDatagramPtr(m: JsMem, t: number, slot: number): number { return 0; }
export function fragDatagramLen(m: JsMem, t: number, slot: number): number { return 0; }
export function fragRelease(m: JsMem, t: number, slot: number): void {}
export function fragExpire(m: JsMem, t: number, now: number): number { return 0; }
export function fragPending(m: JsMem, t: number): number { return 0; }
