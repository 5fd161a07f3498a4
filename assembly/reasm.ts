// TCP receive-stream reassembly: one stream per region, no allocation.
//
// Region layout (all fields u32 little-endian; mirrored in src/kernels/js/reasm.ts):
//   0  cap        ring size in bytes (clamped to RS_MAX_CAP)
//   4  maxHoles   run-list capacity (clamped to 1..RS_MAX_HOLES)
//   8  head       ring index of the first readable byte
//   12 readable   contiguous bytes ready for the reader
//   16 nRuns      out-of-order runs held (each one sits after a hole)
//   20 held       bytes in those runs
//   24 nxt        stream position of the next expected byte (rcv_nxt), wrapping
//   28 reserved
//   32 runs       maxHoles × (pos u32, len u32), sorted, disjoint and never
//                 touching each other or the readable prefix
//   32 + 8·maxHoles: the ring, cap bytes
//
// Runs store absolute (wrapping) stream positions rather than offsets from
// rcv_nxt so that advancing rcv_nxt, the hot in-order path, never has to
// rewrite the list; offsets are recovered with one wrapping subtraction.
// Ring index of a run byte = head + readable + (pos - nxt), because the ring
// keeps rcv_nxt at head + readable.

import { RA_OUTSIDE_WINDOW, RA_TOO_MANY_HOLES } from './layout';

const RS_CAP: usize = 0;
const RS_MAXHOLES: usize = 4;
const RS_HEAD: usize = 8;
const RS_READABLE: usize = 12;
const RS_NRUNS: usize = 16;
const RS_HELD: usize = 20;
const RS_NXT: usize = 24;
const RS_HDR: usize = 32;
const RUN_SIZE: usize = 8;
const RS_MAX_CAP: u32 = 16 * 1024 * 1024;
const RS_MAX_HOLES: u32 = 64;

// Clamping instead of failing keeps reasmBytes and reasmInit consistent for
// any input: the caller sizes the region with reasmBytes, and reasmInit never
// writes past what reasmBytes promised.
@inline function clampCap(cap: u32): u32 {
  return cap > RS_MAX_CAP ? RS_MAX_CAP : cap;
}
@inline function clampHoles(h: u32): u32 {
  return h < 1 ? 1 : h > RS_MAX_HOLES ? RS_MAX_HOLES : h;
}
@inline function ringBase(r: usize): usize {
  return r + RS_HDR + <usize>load<u32>(r, RS_MAXHOLES) * RUN_SIZE;
}

export function reasmBytes(cap: u32, maxHoles: u32): u32 {
  return <u32>RS_HDR + clampHoles(maxHoles) * <u32>RUN_SIZE + clampCap(cap);
}

export function reasmInit(ptr: usize, cap: u32, maxHoles: u32): void {
  store<u32>(ptr, clampCap(cap), RS_CAP);
  store<u32>(ptr, clampHoles(maxHoles), RS_MAXHOLES);
  store<u32>(ptr, 0, 28);
  reasmReset(ptr);
}

export function reasmReset(r: usize): void {
  store<u32>(r, 0, RS_HEAD);
  store<u32>(r, 0, RS_READABLE);
  store<u32>(r, 0, RS_NRUNS);
  store<u32>(r, 0, RS_HELD);
  store<u32>(r, 0, RS_NXT);
}

export function reasmWrite(r: usize, offset: i32, data: usize, len: u32): i32 {
  const cap = load<u32>(r, RS_CAP);
  const readable = load<u32>(r, RS_READABLE);
  const window = cap - readable;
  let start: i64 = <i64>offset;
  let end: i64 = start + <i64>len;
  if (len == 0) {
    // RFC 793's acceptability test for an empty segment: rcv_nxt itself is
    // always acceptable (even with a zero window), as is anything older.
    if (start <= 0 || start < <i64>window) return <i32>readable;
    return RA_OUTSIDE_WINDOW;
  }
  if (end <= 0) return <i32>readable; // wholly old: a retransmission we already have
  if (start < 0) {
    data += <usize>(-start);
    start = 0;
  }
  if (start >= <i64>window) return RA_OUTSIDE_WINDOW;
  if (end > <i64>window) end = <i64>window;
  const s = <u32>start;
  const e = <u32>end;

  const n = load<u32>(r, RS_NRUNS);
  const nxt = load<u32>(r, RS_NXT);
  const runs = r + RS_HDR;
  // Runs i..j-1 overlap or touch [s, e) and will be folded into it.
  let i: u32 = 0;
  while (i < n) {
    const p = runs + <usize>i * RUN_SIZE;
    const rs = load<u32>(p) - nxt;
    if (rs + load<u32>(p, 4) >= s) break;
    i++;
  }
  let j = i;
  let ms = s;
  let me = e;
  let mergedLen: u32 = 0;
  while (j < n) {
    const p = runs + <usize>j * RUN_SIZE;
    const rs = load<u32>(p) - nxt;
    if (rs > e) break;
    const rl = load<u32>(p, 4);
    if (rs < ms) ms = rs;
    if (rs + rl > me) me = rs + rl;
    mergedLen += rl;
    j++;
  }
  const merged = j - i;
  // Runs never start at 0 (that would be readable), so ms == 0 exactly when
  // the segment starts at rcv_nxt; it then joins the prefix instead of adding a run.
  const newN = ms == 0 ? n - merged : n - merged + 1;
  if (newN > load<u32>(r, RS_MAXHOLES)) return RA_TOO_MANY_HOLES;

  const ring = ringBase(r);
  const head = load<u32>(r, RS_HEAD);
  let idx = head + readable + s; // < 3·cap: at most two wraps
  if (idx >= cap) idx -= cap;
  if (idx >= cap) idx -= cap;
  const l = e - s;
  const first = l < cap - idx ? l : cap - idx;
  memory.copy(ring + <usize>idx, data, <usize>first);
  if (l > first) memory.copy(ring, data + <usize>first, <usize>(l - first));

  const held = load<u32>(r, RS_HELD) - mergedLen;
  if (ms == 0) {
    // i == 0 here: the prefix swallows runs 0..j-1; the rest slide down.
    if (j > 0) memory.copy(runs, runs + <usize>j * RUN_SIZE, <usize>(n - j) * RUN_SIZE);
    store<u32>(r, readable + me, RS_READABLE);
    store<u32>(r, nxt + me, RS_NXT);
    store<u32>(r, held, RS_HELD);
  } else {
    if (merged != 1) {
      memory.copy(runs + <usize>(i + 1) * RUN_SIZE, runs + <usize>j * RUN_SIZE, <usize>(n - j) * RUN_SIZE);
    }
    const p = runs + <usize>i * RUN_SIZE;
    store<u32>(p, nxt + ms);
    store<u32>(p, me - ms, 4);
    store<u32>(r, held + (me - ms), RS_HELD);
  }
  store<u32>(r, newN, RS_NRUNS);
  return <i32>load<u32>(r, RS_READABLE);
}

export function reasmReadable(r: usize): u32 {
  return load<u32>(r, RS_READABLE);
}

export function reasmReadPtr(r: usize): usize {
  return ringBase(r) + <usize>load<u32>(r, RS_HEAD);
}

export function reasmReadChunk(r: usize): u32 {
  const readable = load<u32>(r, RS_READABLE);
  const toEnd = load<u32>(r, RS_CAP) - load<u32>(r, RS_HEAD);
  return readable < toEnd ? readable : toEnd;
}

export function reasmConsume(r: usize, n: u32): void {
  const readable = load<u32>(r, RS_READABLE);
  if (n > readable) n = readable;
  const cap = load<u32>(r, RS_CAP);
  let head = load<u32>(r, RS_HEAD) + n;
  if (head >= cap) head -= cap;
  const left = readable - n;
  // With nothing buffered at all the ring position is free to choose;
  // rewinding to 0 keeps the next reads in one contiguous chunk.
  if (left == 0 && load<u32>(r, RS_NRUNS) == 0) head = 0;
  store<u32>(r, head, RS_HEAD);
  store<u32>(r, left, RS_READABLE);
}

export function reasmWindow(r: usize): u32 {
  return load<u32>(r, RS_CAP) - load<u32>(r, RS_READABLE);
}

export function reasmHoles(r: usize): u32 {
  return load<u32>(r, RS_NRUNS);
}

export function reasmHeld(r: usize): u32 {
  return load<u32>(r, RS_HELD);
}
