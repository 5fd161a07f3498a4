// Flow table: open addressing over linear memory, keyed by the 5-tuple
// (proto, srcIp, srcPort, dstIp, dstPort), with dense stable ids.
//
// Why this shape:
// - Linear probing with backward-shift deletion (Knuth's algorithm R): there
//   are no tombstones, so after any amount of churn probe lengths stay those
//   of a table freshly filled with as many keys (test/flow.test.ts checks this
//   after 1e5 remove/insert cycles). Slot count is the power of two
//   >= 2 * capacity, so load never exceeds 0.5.
// - The hash is HalfSipHash-1-3 keyed from `seed`. A guest chooses its ports
//   and destination addresses; plain multiply/xorshift mixes have
//   seed-independent differentials (a flip of bit 31 passes through a 32-bit
//   multiply unchanged), which would let a guest pile flows into one probe
//   run. HalfSipHash-1-3 (the reduced-round keyed hash Linux uses for hash
//   tables) is built from 32-bit add/rotate/xor, so the JS twin computes the
//   same value with plain int32 arithmetic. Its key is derived from the 32-bit
//   seed, so the seed should come from a CSPRNG.
// - Each slot holds the full key and the id (16 bytes), so a probe step is one
//   64-bit load + compare that rejects almost every mismatch (the ports and
//   protocol word) and a second one for the addresses; no second cache line is
//   touched until the match is certain. That makes a separate stored tag
//   redundant, and the home slot needed by backward shift is recomputed
//   from the key instead of stored.
// - Ids come from a stack of free ids inside the table, so they stay in
//   0..capacity-1 and do not move when slots shift: the JS side indexes its
//   per-flow objects by id. Per-id records keep a copy of the key (flowKeyOf)
//   and last-seen, in id order so flowIdle scans deterministically.
//
// Memory (all offsets relative to the table pointer t, little-endian, so the
// table bytes are position-independent and comparable across backends):
//   header  32 bytes: capacity, slot mask, count, k0, k1, recs, seen, free
//   scratch 128 bytes: flowLookupBatch's per-chunk home slots (see there)
//   slots   nslots * 16: u32 srcIp, u32 dstIp, u32 ports (src | dst << 16),
//                        u32 meta (proto << 24 | id + 1; 0 = empty)
//   recs    capacity * 16: the slot image of flow `id` (meta 0 = unused id)
//   seen    capacity * 4: u32 last-seen ms
//   free    capacity * 4: stack of free ids; entries [0, capacity - count)
// Capacity is limited to 1..(1 << 22) so ids + 1 fit the 24-bit meta field and
// the whole table stays below 2^31 bytes; flowTableBytes returns 0 outside
// that range, and flowInit then writes nothing (callers must check).
import {
  FT_MISS, FT_FULL, FT_EXISTS,
  K_PROTO, K_SRC_PORT, K_DST_PORT, K_SRC_IP, K_DST_IP, KEY_SIZE,
} from './layout';

const MAX_CAPACITY: u32 = 1 << 22;

const HEADER: usize = 32;
// flowLookupBatch works in chunks of CHUNK keys; their home slots are parked
// here between its two passes (inside the table, so `out` may alias `keys`).
const CHUNK: u32 = 32;
const SCRATCH: usize = HEADER;
const SLOTS: usize = SCRATCH + (<usize>CHUNK << 2);
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
const ID_MASK: u32 = 0xffffff;
// Selects ports (low word) and proto (top byte of meta) in the slot's second u64.
const KEY_HI_MASK: u64 = 0xff000000_ffffffff;

// @ts-ignore: decorator
@inline function fmix32(h: u32): u32 {
  h ^= h >>> 16;
  h *= 0x85ebca6b;
  h ^= h >>> 13;
  h *= 0xc2b2ae35;
  h ^= h >>> 16;
  return h;
}

/**
 * HalfSipHash-1-3 (32-bit output) of the 13-byte message
 * srcIp | dstIp | ports (little-endian words) | proto, under key (k0, k1).
 * Three full words get one compression round each; proto is the tail byte in
 * the final block together with the length (13) in the top byte.
 */
// @ts-ignore: decorator
@inline function flowHash(k0: u32, k1: u32, srcIp: u32, dstIp: u32, ports: u32, proto: u32): u32 {
  let v0 = k0;
  let v1 = k1;
  let v2 = k0 ^ 0x6c796765;
  let v3 = k1 ^ 0x74656462;
  const b: u32 = proto | (13 << 24);

  v3 ^= srcIp;
  v0 += v1; v1 = rotl<u32>(v1, 5); v1 ^= v0; v0 = rotl<u32>(v0, 16);
  v2 += v3; v3 = rotl<u32>(v3, 8); v3 ^= v2;
  v0 += v3; v3 = rotl<u32>(v3, 7); v3 ^= v0;
  v2 += v1; v1 = rotl<u32>(v1, 13); v1 ^= v2; v2 = rotl<u32>(v2, 16);
  v0 ^= srcIp;

  v3 ^= dstIp;
  v0 += v1; v1 = rotl<u32>(v1, 5); v1 ^= v0; v0 = rotl<u32>(v0, 16);
  v2 += v3; v3 = rotl<u32>(v3, 8); v3 ^= v2;
  v0 += v3; v3 = rotl<u32>(v3, 7); v3 ^= v0;
  v2 += v1; v1 = rotl<u32>(v1, 13); v1 ^= v2; v2 = rotl<u32>(v2, 16);
  v0 ^= dstIp;

  v3 ^= ports;
  v0 += v1; v1 = rotl<u32>(v1, 5); v1 ^= v0; v0 = rotl<u32>(v0, 16);
  v2 += v3; v3 = rotl<u32>(v3, 8); v3 ^= v2;
  v0 += v3; v3 = rotl<u32>(v3, 7); v3 ^= v0;
  v2 += v1; v1 = rotl<u32>(v1, 13); v1 ^= v2; v2 = rotl<u32>(v2, 16);
  v0 ^= ports;

  v3 ^= b;
  v0 += v1; v1 = rotl<u32>(v1, 5); v1 ^= v0; v0 = rotl<u32>(v0, 16);
  v2 += v3; v3 = rotl<u32>(v3, 8); v3 ^= v2;
  v0 += v3; v3 = rotl<u32>(v3, 7); v3 ^= v0;
  v2 += v1; v1 = rotl<u32>(v1, 13); v1 ^= v2; v2 = rotl<u32>(v2, 16);
  v0 ^= b;

  v2 ^= 0xff;
  v0 += v1; v1 = rotl<u32>(v1, 5); v1 ^= v0; v0 = rotl<u32>(v0, 16);
  v2 += v3; v3 = rotl<u32>(v3, 8); v3 ^= v2;
  v0 += v3; v3 = rotl<u32>(v3, 7); v3 ^= v0;
  v2 += v1; v1 = rotl<u32>(v1, 13); v1 ^= v2; v2 = rotl<u32>(v2, 16);

  v0 += v1; v1 = rotl<u32>(v1, 5); v1 ^= v0; v0 = rotl<u32>(v0, 16);
  v2 += v3; v3 = rotl<u32>(v3, 8); v3 ^= v2;
  v0 += v3; v3 = rotl<u32>(v3, 7); v3 ^= v0;
  v2 += v1; v1 = rotl<u32>(v1, 13); v1 ^= v2; v2 = rotl<u32>(v2, 16);

  v0 += v1; v1 = rotl<u32>(v1, 5); v1 ^= v0; v0 = rotl<u32>(v0, 16);
  v2 += v3; v3 = rotl<u32>(v3, 8); v3 ^= v2;
  v0 += v3; v3 = rotl<u32>(v3, 7); v3 ^= v0;
  v2 += v1; v1 = rotl<u32>(v1, 13); v1 ^= v2; v2 = rotl<u32>(v2, 16);

  return v1 ^ v3;
}

// @ts-ignore: decorator
@inline function slotCount(capacity: u32): u32 {
  return (<u32>1) << (32 - clz<u32>(capacity * 2 - 1));
}

// @ts-ignore: decorator
@inline function packPorts(srcPort: u32, dstPort: u32): u32 {
  return (srcPort & 0xffff) | (dstPort << 16);
}

/**
 * Slot address holding the key, probing from slot `i`, or 0 (slots start past
 * the header, so 0 is never a slot). The probe is capped at one lap so a
 * corrupted table with no empty slot still terminates.
 */
// @ts-ignore: decorator
@inline function probeFrom(slots: usize, mask: u32, i: u32, ips: u64, want: u64): usize {
  for (let n: u32 = 0; n <= mask; n++) {
    const s = slots + ((<usize>i) << 4);
    const hi = load<u64>(s, S_PORTS);
    if ((hi >>> 32) == 0) return 0;
    if ((hi & KEY_HI_MASK) == want && load<u64>(s, S_SRC_IP) == ips) return s;
    i = (i + 1) & mask;
  }
  return 0;
}

// @ts-ignore: decorator
@inline function findSlot(t: usize, proto: u32, srcIp: u32, dstIp: u32, ports: u32): usize {
  const mask = load<u32>(t, H_MASK);
  const i = flowHash(load<u32>(t, H_K0), load<u32>(t, H_K1), srcIp, dstIp, ports, proto) & mask;
  return probeFrom(t + SLOTS, mask, i, <u64>srcIp | (<u64>dstIp << 32), <u64>ports | (<u64>proto << 56));
}

// @ts-ignore: decorator
@inline function recsOf(t: usize): usize { return t + <usize>load<u32>(t, H_RECS); }
// @ts-ignore: decorator
@inline function seenOf(t: usize): usize { return t + <usize>load<u32>(t, H_SEEN); }
// @ts-ignore: decorator
@inline function freeOf(t: usize): usize { return t + <usize>load<u32>(t, H_FREE); }

export function flowTableBytes(capacity: u32): u32 {
  if (capacity == 0 || capacity > MAX_CAPACITY) return 0;
  return <u32>SLOTS + (slotCount(capacity) << 4) + capacity * 24;
}

export function flowInit(ptr: usize, capacity: u32, seed: u32): void {
  if (capacity == 0 || capacity > MAX_CAPACITY) return;
  const nslots = slotCount(capacity);
  const recs = <u32>SLOTS + (nslots << 4);
  const seen = recs + (capacity << 4);
  store<u32>(ptr, capacity, H_CAPACITY);
  store<u32>(ptr, nslots - 1, H_MASK);
  store<u32>(ptr, 0, H_COUNT);
  // Two different bijections of the seed, so distinct seeds give distinct keys.
  store<u32>(ptr, fmix32(seed ^ 0x243f6a88), H_K0);
  store<u32>(ptr, fmix32(seed ^ 0x85a308d3), H_K1);
  store<u32>(ptr, recs, H_RECS);
  store<u32>(ptr, seen, H_SEEN);
  store<u32>(ptr, seen + (capacity << 2), H_FREE);
  flowClear(ptr);
}

export function flowClear(t: usize): void {
  const capacity = load<u32>(t, H_CAPACITY);
  const nslots = <usize>load<u32>(t, H_MASK) + 1;
  // Scratch, slots, records and last-seen are contiguous.
  memory.fill(t + SCRATCH, 0, (SLOTS - SCRATCH) + (nslots << 4) + (<usize>capacity << 4) + (<usize>capacity << 2));
  // Top of the stack is the last entry; filling it descending hands out ids
  // 0, 1, 2, ... to a fresh table.
  const free = freeOf(t);
  for (let i: u32 = 0; i < capacity; i++) store<u32>(free + (<usize>i << 2), capacity - 1 - i);
  store<u32>(t, 0, H_COUNT);
}

export function flowInsert(t: usize, proto: u32, srcIp: u32, srcPort: u32, dstIp: u32, dstPort: u32, now: u32): i32 {
  proto &= 0xff;
  const ports = packPorts(srcPort, dstPort);
  const mask = load<u32>(t, H_MASK);
  const slots = t + SLOTS;
  const ips: u64 = <u64>srcIp | (<u64>dstIp << 32);
  const want: u64 = <u64>ports | (<u64>proto << 56);
  let i = flowHash(load<u32>(t, H_K0), load<u32>(t, H_K1), srcIp, dstIp, ports, proto) & mask;
  for (let n: u32 = 0; n <= mask; n++) {
    const s = slots + ((<usize>i) << 4);
    const hi = load<u64>(s, S_PORTS);
    if ((hi >>> 32) == 0) {
      const capacity = load<u32>(t, H_CAPACITY);
      const count = load<u32>(t, H_COUNT);
      if (count >= capacity) return FT_FULL;
      const id = load<u32>(freeOf(t) + (<usize>(capacity - count - 1) << 2));
      const meta: u32 = (proto << 24) | (id + 1);
      const hiNew: u64 = <u64>ports | (<u64>meta << 32);
      store<u64>(s, ips, S_SRC_IP);
      store<u64>(s, hiNew, S_PORTS);
      const r = recsOf(t) + (<usize>id << 4);
      store<u64>(r, ips, S_SRC_IP);
      store<u64>(r, hiNew, S_PORTS);
      store<u32>(seenOf(t) + (<usize>id << 2), now);
      store<u32>(t, count + 1, H_COUNT);
      return <i32>id;
    }
    if ((hi & KEY_HI_MASK) == want && load<u64>(s, S_SRC_IP) == ips) return FT_EXISTS;
    i = (i + 1) & mask;
  }
  // Only reachable if the table was corrupted into having no empty slot.
  return FT_FULL;
}

export function flowLookup(t: usize, proto: u32, srcIp: u32, srcPort: u32, dstIp: u32, dstPort: u32): i32 {
  const s = findSlot(t, proto & 0xff, srcIp, dstIp, packPorts(srcPort, dstPort));
  if (s == 0) return FT_MISS;
  return <i32>(load<u32>(s, S_META) & ID_MASK) - 1;
}

export function flowTouch(t: usize, proto: u32, srcIp: u32, srcPort: u32, dstIp: u32, dstPort: u32, now: u32): i32 {
  const s = findSlot(t, proto & 0xff, srcIp, dstIp, packPorts(srcPort, dstPort));
  if (s == 0) return FT_MISS;
  const id = (load<u32>(s, S_META) & ID_MASK) - 1;
  store<u32>(seenOf(t) + (<usize>id << 2), now);
  return <i32>id;
}

export function flowRemove(t: usize, proto: u32, srcIp: u32, srcPort: u32, dstIp: u32, dstPort: u32): i32 {
  const found = findSlot(t, proto & 0xff, srcIp, dstIp, packPorts(srcPort, dstPort));
  if (found == 0) return FT_MISS;
  const id = (load<u32>(found, S_META) & ID_MASK) - 1;
  const mask = load<u32>(t, H_MASK);
  const k0 = load<u32>(t, H_K0);
  const k1 = load<u32>(t, H_K1);
  const slots = t + SLOTS;
  // Backward shift: walk the run after the hole and pull back every entry
  // whose home slot is not cyclically inside (hole, j], so no probe sequence
  // ever crosses an empty slot before reaching its key.
  let hole = <u32>((found - slots) >> 4);
  let j = hole;
  for (let n: u32 = 0; n < mask; n++) {
    j = (j + 1) & mask;
    const sj = slots + ((<usize>j) << 4);
    const meta = load<u32>(sj, S_META);
    if (meta == 0) break;
    const home = flowHash(k0, k1, load<u32>(sj, S_SRC_IP), load<u32>(sj, S_DST_IP), load<u32>(sj, S_PORTS), meta >>> 24) & mask;
    if (((j - home) & mask) < ((j - hole) & mask)) continue;
    const sh = slots + ((<usize>hole) << 4);
    store<u64>(sh, load<u64>(sj, S_SRC_IP), S_SRC_IP);
    store<u64>(sh, load<u64>(sj, S_PORTS), S_PORTS);
    hole = j;
  }
  const sh = slots + ((<usize>hole) << 4);
  store<u64>(sh, 0, S_SRC_IP);
  store<u64>(sh, 0, S_PORTS);

  const r = recsOf(t) + (<usize>id << 4);
  store<u64>(r, 0, S_SRC_IP);
  store<u64>(r, 0, S_PORTS);
  store<u32>(seenOf(t) + (<usize>id << 2), 0);
  const capacity = load<u32>(t, H_CAPACITY);
  const count = load<u32>(t, H_COUNT);
  store<u32>(freeOf(t) + (<usize>(capacity - count) << 2), id);
  store<u32>(t, count - 1, H_COUNT);
  return <i32>id;
}

export function flowCount(t: usize): u32 {
  return load<u32>(t, H_COUNT);
}

export function flowIdle(t: usize, now: u32, idle: u32, out: usize, max: u32): u32 {
  const capacity = load<u32>(t, H_CAPACITY);
  const count = load<u32>(t, H_COUNT);
  const recs = recsOf(t);
  const seen = seenOf(t);
  let n: u32 = 0;
  let live: u32 = 0;
  if (max == 0) return 0;
  // Stops once every live id has been seen, so a sparse table with low ids
  // does not pay for a full scan.
  for (let id: u32 = 0; id < capacity && live < count; id++) {
    if (load<u32>(recs + (<usize>id << 4), S_META) == 0) continue;
    live++;
    if (now - load<u32>(seen + (<usize>id << 2)) > idle) {
      store<i32>(out + (<usize>n << 2), <i32>id);
      n++;
      if (n == max) break;
    }
  }
  return n;
}

/** Scratch word for a key whose home slot is empty: a certain miss. */
const HOME_EMPTY: u32 = 0x80000000;

// @ts-ignore: decorator
@inline function keyPorts(key: usize): u32 {
  return <u32>load<u16>(key, K_SRC_PORT) | (<u32>load<u16>(key, K_DST_PORT) << 16);
}

/**
 * First pass for keys [i0, i0 + m): the home slot of each, with its meta word
 * loaded. Nothing waits on those loads except a store to scratch, so the CPU
 * keeps many cache misses in flight at once, where probing key by key would
 * take them one after another. The SIMD build hashes four keys per step.
 */
// @ts-ignore: decorator
@inline function homePass(t: usize, keys: usize, i0: u32, m: u32): void {
  const mask = load<u32>(t, H_MASK);
  const k0 = load<u32>(t, H_K0);
  const k1 = load<u32>(t, H_K1);
  const slots = t + SLOTS;
  let j: u32 = 0;
  if (ASC_FEATURE_SIMD) {
    const c0 = i32x4.splat(k0);
    const c1 = i32x4.splat(k1);
    const c2 = i32x4.splat(k0 ^ 0x6c796765);
    const c3 = i32x4.splat(k1 ^ 0x74656462);
    const byteMask = i32x4.splat(0xff);
    const lenTag = i32x4.splat(13 << 24);
    const ff = i32x4.splat(0xff);
    const vmask = i32x4.splat(mask);
    for (; j + 4 <= m; j += 4) {
      const p = keys + (<usize>(i0 + j)) * KEY_SIZE;
      const a = v128.load(p);
      const b = v128.load(p, 16);
      const c = v128.load(p, 32);
      const d = v128.load(p, 48);
      // Transpose four KEY_SIZE records into one vector per key word.
      const abLo = i32x4.shuffle(a, b, 0, 4, 1, 5);
      const abHi = i32x4.shuffle(a, b, 2, 6, 3, 7);
      const cdLo = i32x4.shuffle(c, d, 0, 4, 1, 5);
      const cdHi = i32x4.shuffle(c, d, 2, 6, 3, 7);
      const w0 = i32x4.shuffle(abLo, cdLo, 0, 1, 4, 5); // proto | pad | srcPort
      const w1 = i32x4.shuffle(abLo, cdLo, 2, 3, 6, 7); // dstPort | pad
      const srcIp = i32x4.shuffle(abHi, cdHi, 0, 1, 4, 5);
      const dstIp = i32x4.shuffle(abHi, cdHi, 2, 3, 6, 7);
      const ports = v128.or(i32x4.shr_u(w0, 16), i32x4.shl(w1, 16));
      const fin = v128.or(v128.and(w0, byteMask), lenTag);

      let v0 = c0;
      let v1 = c1;
      let v2 = c2;
      let v3 = c3;
      v3 = v128.xor(v3, srcIp);
      v0 = i32x4.add(v0, v1); v1 = rotl4(v1, 5); v1 = v128.xor(v1, v0); v0 = rotl4(v0, 16);
      v2 = i32x4.add(v2, v3); v3 = rotl4(v3, 8); v3 = v128.xor(v3, v2);
      v0 = i32x4.add(v0, v3); v3 = rotl4(v3, 7); v3 = v128.xor(v3, v0);
      v2 = i32x4.add(v2, v1); v1 = rotl4(v1, 13); v1 = v128.xor(v1, v2); v2 = rotl4(v2, 16);
      v0 = v128.xor(v0, srcIp);

      v3 = v128.xor(v3, dstIp);
      v0 = i32x4.add(v0, v1); v1 = rotl4(v1, 5); v1 = v128.xor(v1, v0); v0 = rotl4(v0, 16);
      v2 = i32x4.add(v2, v3); v3 = rotl4(v3, 8); v3 = v128.xor(v3, v2);
      v0 = i32x4.add(v0, v3); v3 = rotl4(v3, 7); v3 = v128.xor(v3, v0);
      v2 = i32x4.add(v2, v1); v1 = rotl4(v1, 13); v1 = v128.xor(v1, v2); v2 = rotl4(v2, 16);
      v0 = v128.xor(v0, dstIp);

      v3 = v128.xor(v3, ports);
      v0 = i32x4.add(v0, v1); v1 = rotl4(v1, 5); v1 = v128.xor(v1, v0); v0 = rotl4(v0, 16);
      v2 = i32x4.add(v2, v3); v3 = rotl4(v3, 8); v3 = v128.xor(v3, v2);
      v0 = i32x4.add(v0, v3); v3 = rotl4(v3, 7); v3 = v128.xor(v3, v0);
      v2 = i32x4.add(v2, v1); v1 = rotl4(v1, 13); v1 = v128.xor(v1, v2); v2 = rotl4(v2, 16);
      v0 = v128.xor(v0, ports);

      v3 = v128.xor(v3, fin);
      v0 = i32x4.add(v0, v1); v1 = rotl4(v1, 5); v1 = v128.xor(v1, v0); v0 = rotl4(v0, 16);
      v2 = i32x4.add(v2, v3); v3 = rotl4(v3, 8); v3 = v128.xor(v3, v2);
      v0 = i32x4.add(v0, v3); v3 = rotl4(v3, 7); v3 = v128.xor(v3, v0);
      v2 = i32x4.add(v2, v1); v1 = rotl4(v1, 13); v1 = v128.xor(v1, v2); v2 = rotl4(v2, 16);
      v0 = v128.xor(v0, fin);

      v2 = v128.xor(v2, ff);
      v0 = i32x4.add(v0, v1); v1 = rotl4(v1, 5); v1 = v128.xor(v1, v0); v0 = rotl4(v0, 16);
      v2 = i32x4.add(v2, v3); v3 = rotl4(v3, 8); v3 = v128.xor(v3, v2);
      v0 = i32x4.add(v0, v3); v3 = rotl4(v3, 7); v3 = v128.xor(v3, v0);
      v2 = i32x4.add(v2, v1); v1 = rotl4(v1, 13); v1 = v128.xor(v1, v2); v2 = rotl4(v2, 16);

      v0 = i32x4.add(v0, v1); v1 = rotl4(v1, 5); v1 = v128.xor(v1, v0); v0 = rotl4(v0, 16);
      v2 = i32x4.add(v2, v3); v3 = rotl4(v3, 8); v3 = v128.xor(v3, v2);
      v0 = i32x4.add(v0, v3); v3 = rotl4(v3, 7); v3 = v128.xor(v3, v0);
      v2 = i32x4.add(v2, v1); v1 = rotl4(v1, 13); v1 = v128.xor(v1, v2); v2 = rotl4(v2, 16);

      v0 = i32x4.add(v0, v1); v1 = rotl4(v1, 5); v1 = v128.xor(v1, v0); v0 = rotl4(v0, 16);
      v2 = i32x4.add(v2, v3); v3 = rotl4(v3, 8); v3 = v128.xor(v3, v2);
      v0 = i32x4.add(v0, v3); v3 = rotl4(v3, 7); v3 = v128.xor(v3, v0);
      v2 = i32x4.add(v2, v1); v1 = rotl4(v1, 13); v1 = v128.xor(v1, v2); v2 = rotl4(v2, 16);

      const home = v128.and(v128.xor(v1, v3), vmask);
      const h0 = <u32>i32x4.extract_lane(home, 0);
      const h1 = <u32>i32x4.extract_lane(home, 1);
      const h2 = <u32>i32x4.extract_lane(home, 2);
      const h3 = <u32>i32x4.extract_lane(home, 3);
      const sc = t + SCRATCH + (<usize>j << 2);
      store<u32>(sc, homeWord(slots, h0), 0);
      store<u32>(sc, homeWord(slots, h1), 4);
      store<u32>(sc, homeWord(slots, h2), 8);
      store<u32>(sc, homeWord(slots, h3), 12);
    }
  }
  for (; j < m; j++) {
    const key = keys + (<usize>(i0 + j)) * KEY_SIZE;
    const h = flowHash(k0, k1, load<u32>(key, K_SRC_IP), load<u32>(key, K_DST_IP), keyPorts(key), <u32>load<u8>(key, K_PROTO)) & mask;
    store<u32>(t + SCRATCH + (<usize>j << 2), homeWord(slots, h));
  }
}

// @ts-ignore: decorator
@inline function rotl4(v: v128, r: i32): v128 {
  return v128.or(i32x4.shl(v, r), i32x4.shr_u(v, 32 - r));
}

// @ts-ignore: decorator
@inline function homeWord(slots: usize, h: u32): u32 {
  return load<u32>(slots + ((<usize>h) << 4), S_META) == 0 ? h | HOME_EMPTY : h;
}

export function flowLookupBatch(t: usize, keys: usize, n: u32, out: usize): u32 {
  const mask = load<u32>(t, H_MASK);
  const slots = t + SLOTS;
  let hits: u32 = 0;
  for (let i0: u32 = 0; i0 < n; i0 += CHUNK) {
    const m = n - i0 < CHUNK ? n - i0 : CHUNK;
    homePass(t, keys, i0, m);
    // Second pass: every home line is now in cache (or on its way).
    for (let j: u32 = 0; j < m; j++) {
      const key = keys + (<usize>(i0 + j)) * KEY_SIZE;
      const home = load<u32>(t + SCRATCH + (<usize>j << 2));
      let id: i32 = FT_MISS;
      if ((home & HOME_EMPTY) == 0) {
        const ips: u64 = <u64>load<u32>(key, K_SRC_IP) | (<u64>load<u32>(key, K_DST_IP) << 32);
        const want: u64 = <u64>keyPorts(key) | (<u64>load<u8>(key, K_PROTO) << 56);
        const s = probeFrom(slots, mask, home, ips, want);
        if (s != 0) {
          id = <i32>(load<u32>(s, S_META) & ID_MASK) - 1;
          hits++;
        }
      }
      store<i32>(out + (<usize>(i0 + j) << 2), id);
    }
  }
  return hits;
}

export function flowLastSeen(t: usize, id: u32): u32 {
  if (id >= load<u32>(t, H_CAPACITY)) return 0;
  return load<u32>(seenOf(t) + (<usize>id << 2));
}

export function flowKeyOf(t: usize, id: u32, out: usize): u32 {
  if (id >= load<u32>(t, H_CAPACITY)) return 0;
  const r = recsOf(t) + (<usize>id << 4);
  const meta = load<u32>(r, S_META);
  if (meta == 0) return 0;
  const ports = load<u32>(r, S_PORTS);
  // Zero the padding first so the written key is fully determined.
  store<u64>(out, 0);
  store<u64>(out, 0, 8);
  store<u8>(out, <u8>(meta >>> 24), K_PROTO);
  store<u16>(out, <u16>ports, K_SRC_PORT);
  store<u16>(out, <u16>(ports >>> 16), K_DST_PORT);
  store<u32>(out, load<u32>(r, S_SRC_IP), K_SRC_IP);
  store<u32>(out, load<u32>(r, S_DST_IP), K_DST_IP);
  return 1;
}
