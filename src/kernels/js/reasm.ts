/**
 * Pure-JS twin of assembly/reasm.ts: one TCP receive stream over the same
 * region layout, producing the same results and the same bytes in memory.
 * Layout and reasoning live in the AssemblyScript file; the offsets below
 * must stay in step with it (the cross-backend tests compare raw memory).
 */
import type { JsMem } from './mem.js';
import { RA_OUTSIDE_WINDOW, RA_TOO_MANY_HOLES } from '../../../assembly/layout.js';

const RS_CAP = 0;
const RS_MAXHOLES = 4;
const RS_HEAD = 8;
const RS_READABLE = 12;
const RS_NRUNS = 16;
const RS_HELD = 20;
const RS_NXT = 24;
const RS_HDR = 32;
const RUN_SIZE = 8;
const RS_MAX_CAP = 16 * 1024 * 1024;
const RS_MAX_HOLES = 64;

function clampCap(cap: number): number {
  cap >>>= 0;
  return cap > RS_MAX_CAP ? RS_MAX_CAP : cap;
}
function clampHoles(h: number): number {
  h >>>= 0;
  return h < 1 ? 1 : h > RS_MAX_HOLES ? RS_MAX_HOLES : h;
}
function ringBase(dv: DataView, r: number): number {
  return r + RS_HDR + dv.getUint32(r + RS_MAXHOLES, true) * RUN_SIZE;
}

export function reasmBytes(m: JsMem, cap: number, maxHoles: number): number {
  return RS_HDR + clampHoles(maxHoles) * RUN_SIZE + clampCap(cap);
}

export function reasmInit(m: JsMem, ptr: number, cap: number, maxHoles: number): void {
  const dv = m.dv;
  ptr >>>= 0;
  dv.setUint32(ptr + RS_CAP, clampCap(cap), true);
  dv.setUint32(ptr + RS_MAXHOLES, clampHoles(maxHoles), true);
  dv.setUint32(ptr + 28, 0, true);
  reasmReset(m, ptr);
}

export function reasmReset(m: JsMem, r: number): void {
  const dv = m.dv;
  r >>>= 0;
  dv.setUint32(r + RS_HEAD, 0, true);
  dv.setUint32(r + RS_READABLE, 0, true);
  dv.setUint32(r + RS_NRUNS, 0, true);
  dv.setUint32(r + RS_HELD, 0, true);
  dv.setUint32(r + RS_NXT, 0, true);
}

export function reasmWrite(m: JsMem, r: number, offset: number, data: number, len: number): number {
  const dv = m.dv;
  r >>>= 0;
  data >>>= 0;
  len >>>= 0;
  // The WASM export receives an i32; coerce the same way so both agree.
  let start = offset | 0;
  const cap = dv.getUint32(r + RS_CAP, true);
  const readable = dv.getUint32(r + RS_READABLE, true);
  const window = cap - readable;
  let end = start + len;
  if (len === 0) {
    if (start <= 0 || start < window) return readable;
    return RA_OUTSIDE_WINDOW;
  }
  if (end <= 0) return readable;
  if (start < 0) {
    data += -start;
    start = 0;
  }
  if (start >= window) return RA_OUTSIDE_WINDOW;
  if (end > window) end = window;
  const s = start;
  const e = end;

  const n = dv.getUint32(r + RS_NRUNS, true);
  const nxt = dv.getUint32(r + RS_NXT, true);
  const runs = r + RS_HDR;
  let i = 0;
  while (i < n) {
    const p = runs + i * RUN_SIZE;
    const rs = (dv.getUint32(p, true) - nxt) >>> 0;
    if (rs + dv.getUint32(p + 4, true) >= s) break;
    i++;
  }
  let j = i;
  let ms = s;
  let me = e;
  let mergedLen = 0;
  while (j < n) {
    const p = runs + j * RUN_SIZE;
    const rs = (dv.getUint32(p, true) - nxt) >>> 0;
    if (rs > e) break;
    const rl = dv.getUint32(p + 4, true);
    if (rs < ms) ms = rs;
    if (rs + rl > me) me = rs + rl;
    mergedLen += rl;
    j++;
  }
  const merged = j - i;
  const newN = ms === 0 ? n - merged : n - merged + 1;
  if (newN > dv.getUint32(r + RS_MAXHOLES, true)) return RA_TOO_MANY_HOLES;

  const u8 = m.u8;
  const ring = ringBase(dv, r);
  const head = dv.getUint32(r + RS_HEAD, true);
  let idx = head + readable + s;
  if (idx >= cap) idx -= cap;
  if (idx >= cap) idx -= cap;
  const l = e - s;
  const first = l < cap - idx ? l : cap - idx;
  u8.copyWithin(ring + idx, data, data + first);
  if (l > first) u8.copyWithin(ring, data + first, data + l);

  const held = dv.getUint32(r + RS_HELD, true) - mergedLen;
  if (ms === 0) {
    if (j > 0) u8.copyWithin(runs, runs + j * RUN_SIZE, runs + n * RUN_SIZE);
    dv.setUint32(r + RS_READABLE, readable + me, true);
    dv.setUint32(r + RS_NXT, (nxt + me) >>> 0, true);
    dv.setUint32(r + RS_HELD, held, true);
  } else {
    if (merged !== 1) u8.copyWithin(runs + (i + 1) * RUN_SIZE, runs + j * RUN_SIZE, runs + n * RUN_SIZE);
    const p = runs + i * RUN_SIZE;
    dv.setUint32(p, (nxt + ms) >>> 0, true);
    dv.setUint32(p + 4, me - ms, true);
    dv.setUint32(r + RS_HELD, held + (me - ms), true);
  }
  dv.setUint32(r + RS_NRUNS, newN, true);
  return dv.getUint32(r + RS_READABLE, true);
}

export function reasmReadable(m: JsMem, r: number): number {
  return m.dv.getUint32((r >>> 0) + RS_READABLE, true);
}

export function reasmReadPtr(m: JsMem, r: number): number {
  r >>>= 0;
  return ringBase(m.dv, r) + m.dv.getUint32(r + RS_HEAD, true);
}

export function reasmReadChunk(m: JsMem, r: number): number {
  const dv = m.dv;
  r >>>= 0;
  const readable = dv.getUint32(r + RS_READABLE, true);
  const toEnd = dv.getUint32(r + RS_CAP, true) - dv.getUint32(r + RS_HEAD, true);
  return readable < toEnd ? readable : toEnd;
}

export function reasmConsume(m: JsMem, r: number, n: number): void {
  const dv = m.dv;
  r >>>= 0;
  n >>>= 0;
  const readable = dv.getUint32(r + RS_READABLE, true);
  if (n > readable) n = readable;
  const cap = dv.getUint32(r + RS_CAP, true);
  let head = dv.getUint32(r + RS_HEAD, true) + n;
  if (head >= cap) head -= cap;
  const left = readable - n;
  if (left === 0 && dv.getUint32(r + RS_NRUNS, true) === 0) head = 0;
  dv.setUint32(r + RS_HEAD, head, true);
  dv.setUint32(r + RS_READABLE, left, true);
}

export function reasmWindow(m: JsMem, r: number): number {
  r >>>= 0;
  return m.dv.getUint32(r + RS_CAP, true) - m.dv.getUint32(r + RS_READABLE, true);
}

export function reasmHoles(m: JsMem, r: number): number {
  return m.dv.getUint32((r >>> 0) + RS_NRUNS, true);
}

export function reasmHeld(m: JsMem, r: number): number {
  return m.dv.getUint32((r >>> 0) + RS_HELD, true);
}
