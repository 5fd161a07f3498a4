// JS twin of assembly/flow.ts: the same table layout, hash and operation
// order, so identical call sequences leave identical bytes. See the WASM
// source for the design; comments here cover only what differs in JS.
//
// Arguments are normalised the way WebAssembly's i32 parameters would see
// them (ToInt32 / ToUint32), and results that WASM returns as i32 are
// returned as int32 here too (`| 0`), so results compare equal as numbers.
import type { JsMem } from './mem.js';
import {
  FT_MISS, FT_FULL, FT_EXISTS,
  K_PROTO, K_SRC_PORT, K_DST_PORT, K_SRC_IP, K_DST_IP, KEY_SIZE,
} from '../../../assembly/layout.js';

const MAX_CAPACITY = 1 << 22;

const HEADER = 32;
const CHUNK = 32;
const SCRATCH = HEADER;
const SLOTS = SCRATCH + CHUNK * 4;
const HOME_EMPTY = 0x80000000;
const H_CAPACITY = 0;
const H_MASK = 4;
const H_COUNT = 8;
const H_K0 = 12;
const H_K1 = 16;
const H_RECS = 20;
const H_SEEN = 24;
const H_FREE = 28;

const S_SRC_IP = 0;
const S_DST_IP = 4;
const S_PORTS = 8;
const S_META = 12;
const ID_MASK = 0xffffff;

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** HalfSipHash-1-3, as in the WASM source; int32 arithmetic throughout. */
function flowHash(k0: number, k1: number, srcIp: number, dstIp: number, ports: number, proto: number): number {
  let v0 = k0 | 0;
  let v1 = k1 | 0;
  let v2 = (k0 ^ 0x6c796765) | 0;
  let v3 = (k1 ^ 0x74656462) | 0;
  const b = proto | (13 << 24);

  v3 ^= srcIp;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= srcIp;

  v3 ^= dstIp;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= dstIp;

  v3 ^= ports;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= ports;

  v3 ^= b;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= b;

  v2 ^= 0xff;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);

  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);

  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);

  return v1 ^ v3;
}

function slotCount(capacity: number): number {
  return 2 ** (32 - Math.clz32(capacity * 2 - 1));
}

/** Slot address holding the key, probing from slot `i`, or -1. */
function probeFrom(dv: DataView, slots: number, mask: number, i: number, proto: number, srcIp: number, dstIp: number, ports: number): number {
  for (let n = 0; n <= mask; n++) {
    const s = slots + i * 16;
    const meta = dv.getUint32(s + S_META, true);
    if (meta === 0) return -1;
    if (
      dv.getUint32(s + S_PORTS, true) === ports &&
      meta >>> 24 === proto &&
      dv.getUint32(s + S_SRC_IP, true) === srcIp &&
      dv.getUint32(s + S_DST_IP, true) === dstIp
    ) {
      return s;
    }
    i = (i + 1) & mask;
  }
  return -1;
}

/**
 * Slot address holding the key, or -1. Arguments must already be normalised:
 * proto 0..255, ips and ports as uint32.
 */
function findSlot(dv: DataView, t: number, proto: number, srcIp: number, dstIp: number, ports: number): number {
  const mask = dv.getUint32(t + H_MASK, true);
  const i = flowHash(dv.getUint32(t + H_K0, true), dv.getUint32(t + H_K1, true), srcIp, dstIp, ports, proto) & mask;
  return probeFrom(dv, t + SLOTS, mask, i, proto, srcIp, dstIp, ports);
}

function packPorts(srcPort: number, dstPort: number): number {
  return ((srcPort & 0xffff) | (dstPort << 16)) >>> 0;
}

function validCapacity(capacity: number): boolean {
  return capacity !== 0 && capacity <= MAX_CAPACITY;
}

export function flowTableBytes(m: JsMem, capacity: number): number {
  capacity >>>= 0;
  if (!validCapacity(capacity)) return 0;
  return SLOTS + slotCount(capacity) * 16 + capacity * 24;
}

export function flowInit(m: JsMem, ptr: number, capacity: number, seed: number): void {
  capacity >>>= 0;
  if (!validCapacity(capacity)) return;
  const dv = m.dv;
  const nslots = slotCount(capacity);
  const recs = SLOTS + nslots * 16;
  const seen = recs + capacity * 16;
  dv.setUint32(ptr + H_CAPACITY, capacity, true);
  dv.setUint32(ptr + H_MASK, nslots - 1, true);
  dv.setUint32(ptr + H_COUNT, 0, true);
  dv.setUint32(ptr + H_K0, fmix32(seed ^ 0x243f6a88), true);
  dv.setUint32(ptr + H_K1, fmix32(seed ^ 0x85a308d3), true);
  dv.setUint32(ptr + H_RECS, recs, true);
  dv.setUint32(ptr + H_SEEN, seen, true);
  dv.setUint32(ptr + H_FREE, seen + capacity * 4, true);
  flowClear(m, ptr);
}

export function flowClear(m: JsMem, t: number): void {
  const dv = m.dv;
  const capacity = dv.getUint32(t + H_CAPACITY, true);
  const nslots = dv.getUint32(t + H_MASK, true) + 1;
  m.u8.fill(0, t + SCRATCH, t + SLOTS + nslots * 16 + capacity * 20);
  const free = t + dv.getUint32(t + H_FREE, true);
  for (let i = 0; i < capacity; i++) dv.setUint32(free + i * 4, capacity - 1 - i, true);
  dv.setUint32(t + H_COUNT, 0, true);
}

export function flowInsert(m: JsMem, t: number, proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number, now: number): number {
  const dv = m.dv;
  proto &= 0xff;
  srcIp >>>= 0;
  dstIp >>>= 0;
  const ports = packPorts(srcPort, dstPort);
  const mask = dv.getUint32(t + H_MASK, true);
  const slots = t + SLOTS;
  let i = flowHash(dv.getUint32(t + H_K0, true), dv.getUint32(t + H_K1, true), srcIp, dstIp, ports, proto) & mask;
  for (let n = 0; n <= mask; n++) {
    const s = slots + i * 16;
    const meta = dv.getUint32(s + S_META, true);
    if (meta === 0) {
      const capacity = dv.getUint32(t + H_CAPACITY, true);
      const count = dv.getUint32(t + H_COUNT, true);
      if (count >= capacity) return FT_FULL;
      const id = dv.getUint32(t + dv.getUint32(t + H_FREE, true) + (capacity - count - 1) * 4, true);
      const newMeta = ((proto << 24) | (id + 1)) >>> 0;
      dv.setUint32(s + S_SRC_IP, srcIp, true);
      dv.setUint32(s + S_DST_IP, dstIp, true);
      dv.setUint32(s + S_PORTS, ports, true);
      dv.setUint32(s + S_META, newMeta, true);
      const r = t + dv.getUint32(t + H_RECS, true) + id * 16;
      dv.setUint32(r + S_SRC_IP, srcIp, true);
      dv.setUint32(r + S_DST_IP, dstIp, true);
      dv.setUint32(r + S_PORTS, ports, true);
      dv.setUint32(r + S_META, newMeta, true);
      dv.setUint32(t + dv.getUint32(t + H_SEEN, true) + id * 4, now, true);
      dv.setUint32(t + H_COUNT, count + 1, true);
      return id;
    }
    if (
      dv.getUint32(s + S_PORTS, true) === ports &&
      meta >>> 24 === proto &&
      dv.getUint32(s + S_SRC_IP, true) === srcIp &&
      dv.getUint32(s + S_DST_IP, true) === dstIp
    ) {
      return FT_EXISTS;
    }
    i = (i + 1) & mask;
  }
  return FT_FULL;
}

export function flowLookup(m: JsMem, t: number, proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number): number {
  const s = findSlot(m.dv, t, proto & 0xff, srcIp >>> 0, dstIp >>> 0, packPorts(srcPort, dstPort));
  if (s < 0) return FT_MISS;
  return (m.dv.getUint32(s + S_META, true) & ID_MASK) - 1;
}

export function flowTouch(m: JsMem, t: number, proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number, now: number): number {
  const dv = m.dv;
  const s = findSlot(dv, t, proto & 0xff, srcIp >>> 0, dstIp >>> 0, packPorts(srcPort, dstPort));
  if (s < 0) return FT_MISS;
  const id = (dv.getUint32(s + S_META, true) & ID_MASK) - 1;
  dv.setUint32(t + dv.getUint32(t + H_SEEN, true) + id * 4, now, true);
  return id;
}

export function flowRemove(m: JsMem, t: number, proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number): number {
  const dv = m.dv;
  const found = findSlot(dv, t, proto & 0xff, srcIp >>> 0, dstIp >>> 0, packPorts(srcPort, dstPort));
  if (found < 0) return FT_MISS;
  const id = (dv.getUint32(found + S_META, true) & ID_MASK) - 1;
  const mask = dv.getUint32(t + H_MASK, true);
  const k0 = dv.getUint32(t + H_K0, true);
  const k1 = dv.getUint32(t + H_K1, true);
  const slots = t + SLOTS;
  let hole = (found - slots) / 16;
  let j = hole;
  for (let n = 0; n < mask; n++) {
    j = (j + 1) & mask;
    const sj = slots + j * 16;
    const meta = dv.getUint32(sj + S_META, true);
    if (meta === 0) break;
    const sIp = dv.getUint32(sj + S_SRC_IP, true);
    const dIp = dv.getUint32(sj + S_DST_IP, true);
    const ports = dv.getUint32(sj + S_PORTS, true);
    const home = flowHash(k0, k1, sIp, dIp, ports, meta >>> 24) & mask;
    if (((j - home) & mask) < ((j - hole) & mask)) continue;
    const sh = slots + hole * 16;
    dv.setUint32(sh + S_SRC_IP, sIp, true);
    dv.setUint32(sh + S_DST_IP, dIp, true);
    dv.setUint32(sh + S_PORTS, ports, true);
    dv.setUint32(sh + S_META, meta, true);
    hole = j;
  }
  const sh = slots + hole * 16;
  m.u8.fill(0, sh, sh + 16);

  const r = t + dv.getUint32(t + H_RECS, true) + id * 16;
  m.u8.fill(0, r, r + 16);
  dv.setUint32(t + dv.getUint32(t + H_SEEN, true) + id * 4, 0, true);
  const capacity = dv.getUint32(t + H_CAPACITY, true);
  const count = dv.getUint32(t + H_COUNT, true);
  dv.setUint32(t + dv.getUint32(t + H_FREE, true) + (capacity - count) * 4, id, true);
  dv.setUint32(t + H_COUNT, count - 1, true);
  return id;
}

export function flowCount(m: JsMem, t: number): number {
  return m.dv.getInt32(t + H_COUNT, true);
}

export function flowIdle(m: JsMem, t: number, now: number, idle: number, out: number, max: number): number {
  const dv = m.dv;
  const capacity = dv.getUint32(t + H_CAPACITY, true);
  const count = dv.getUint32(t + H_COUNT, true);
  const recs = t + dv.getUint32(t + H_RECS, true);
  const seen = t + dv.getUint32(t + H_SEEN, true);
  now >>>= 0;
  idle >>>= 0;
  max >>>= 0;
  let n = 0;
  let live = 0;
  if (max === 0) return 0;
  for (let id = 0; id < capacity && live < count; id++) {
    if (dv.getUint32(recs + id * 16 + S_META, true) === 0) continue;
    live++;
    if ((now - dv.getUint32(seen + id * 4, true)) >>> 0 > idle) {
      dv.setInt32(out + n * 4, id, true);
      n++;
      if (n === max) break;
    }
  }
  return n | 0;
}

/**
 * Same two passes per chunk as the WASM version, writing the same scratch
 * words, so the table bytes stay identical; the JS engine gets the same
 * benefit of issuing the home-slot loads back to back.
 */
export function flowLookupBatch(m: JsMem, t: number, keys: number, n: number, out: number): number {
  const dv = m.dv;
  n >>>= 0;
  const mask = dv.getUint32(t + H_MASK, true);
  const k0 = dv.getUint32(t + H_K0, true);
  const k1 = dv.getUint32(t + H_K1, true);
  const slots = t + SLOTS;
  const scratch = t + SCRATCH;
  let hits = 0;
  for (let i0 = 0; i0 < n; i0 += CHUNK) {
    const c = n - i0 < CHUNK ? n - i0 : CHUNK;
    for (let j = 0; j < c; j++) {
      const key = keys + (i0 + j) * KEY_SIZE;
      const ports = (dv.getUint16(key + K_SRC_PORT, true) | (dv.getUint16(key + K_DST_PORT, true) << 16)) >>> 0;
      const h = flowHash(k0, k1, dv.getUint32(key + K_SRC_IP, true), dv.getUint32(key + K_DST_IP, true), ports, dv.getUint8(key + K_PROTO)) & mask;
      dv.setUint32(scratch + j * 4, dv.getUint32(slots + h * 16 + S_META, true) === 0 ? (h | HOME_EMPTY) >>> 0 : h, true);
    }
    for (let j = 0; j < c; j++) {
      const key = keys + (i0 + j) * KEY_SIZE;
      const home = dv.getUint32(scratch + j * 4, true);
      let id = FT_MISS;
      if (home < HOME_EMPTY) {
        const s = probeFrom(
          dv, slots, mask, home,
          dv.getUint8(key + K_PROTO),
          dv.getUint32(key + K_SRC_IP, true),
          dv.getUint32(key + K_DST_IP, true),
          (dv.getUint16(key + K_SRC_PORT, true) | (dv.getUint16(key + K_DST_PORT, true) << 16)) >>> 0,
        );
        if (s >= 0) {
          id = (dv.getUint32(s + S_META, true) & ID_MASK) - 1;
          hits++;
        }
      }
      dv.setInt32(out + (i0 + j) * 4, id, true);
    }
  }
  return hits | 0;
}

export function flowLastSeen(m: JsMem, t: number, id: number): number {
  const dv = m.dv;
  id >>>= 0;
  if (id >= dv.getUint32(t + H_CAPACITY, true)) return 0;
  return dv.getInt32(t + dv.getUint32(t + H_SEEN, true) + id * 4, true);
}

export function flowKeyOf(m: JsMem, t: number, id: number, out: number): number {
  const dv = m.dv;
  id >>>= 0;
  if (id >= dv.getUint32(t + H_CAPACITY, true)) return 0;
  const r = t + dv.getUint32(t + H_RECS, true) + id * 16;
  const meta = dv.getUint32(r + S_META, true);
  if (meta === 0) return 0;
  const ports = dv.getUint32(r + S_PORTS, true);
  m.u8.fill(0, out, out + KEY_SIZE);
  dv.setUint8(out + K_PROTO, meta >>> 24);
  dv.setUint16(out + K_SRC_PORT, ports & 0xffff, true);
  dv.setUint16(out + K_DST_PORT, ports >>> 16, true);
  dv.setUint32(out + K_SRC_IP, dv.getUint32(r + S_SRC_IP, true), true);
  dv.setUint32(out + K_DST_IP, dv.getUint32(r + S_DST_IP, true), true);
  return 1;
}
