// Flow table: open addressing over linear memory, keyed by the 5-tuple
// (proto, srcIp, srcPort, dstIp, dstPort), with dense stable ids.
//
// Why this shape:
// - Linear probing with backward-shift deletion (Knuth's algorithm R): there
//   are no tombstones, so after any amount of churn every probe sequence is
//   exactly as short as if the table had been built fresh. Slot count is the
//   power of two >= 2 * capacity, so load never exceeds 0.5.
// - The hash is HalfSipHash-1-3 keyed from `seed`. A guest chooses its ports
//   and destination addresses; plain multiply/xorshift mixes have
//   seed-independent differentials (a flip of bit 31 passes through a 32-bit
//   multiply unchanged), which would let a guest pile flows into one probe
//   run. HalfSipHash is a keyed PRF built from 32-bit add/rotate/xor, so the JS
//   twin computes the same value with plain int32 arithmetic.
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
 * Slot address holding the key, or 0 (slots start at t + 32, so 0 is never a
 * slot). The probe is capped at one lap so a corrupted table with no empty
 * slot still terminates.
 */
// @ts-ignore: decorator
@inline function findSlot(t: usize, proto: u32, srcIp: u32, dstIp: u32, ports: u32): usize {
  const mask = load<u32>(t, H_MASK);
  const slots = t + HEADER;
  const ips: u64 = <u64>srcIp | (<u64>dstIp << 32);
  const want: u64 = <u64>ports | (<u64>proto << 56);
  let i = flowHash(load<u32>(t, H_K0), load<u32>(t, H_K1), srcIp, dstIp, ports, proto) & mask;
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
@inline function recsOf(t: usize): usize { return t + <usize>load<u32>(t, H_RECS); }
// @ts-ignore: decorator
@inline function seenOf(t: usize): usize { return t + <usize>load<u32>(t, H_SEEN); }
// @ts-ignore: decorator
@inline function freeOf(t: usize): usize { return t + <usize>load<u32>(t, H_FREE); }

export function flowTableBytes(capacity: u32): u32 {
  if (capacity == 0 || capacity > MAX_CAPACITY) return 0;
  return <u32>HEADER + (slotCount(capacity) << 4) + capacity * 24;
}

export function flowInit(ptr: usize, capacity: u32, seed: u32): void {
  if (capacity == 0 || capacity > MAX_CAPACITY) return;
  const nslots = slotCount(capacity);
  const recs = <u32>HEADER + (nslots << 4);
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
  // Slots, records and last-seen are contiguous.
  memory.fill(t + HEADER, 0, (nslots << 4) + (<usize>capacity << 4) + (<usize>capacity << 2));
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
  const slots = t + HEADER;
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
  const slots = t + HEADER;
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

export function flowLookupBatch(t: usize, keys: usize, n: u32, out: usize): u32 {
  let hits: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const key = keys + (<usize>i) * KEY_SIZE;
    const s = findSlot(
      t,
      <u32>load<u8>(key, K_PROTO),
      load<u32>(key, K_SRC_IP),
      load<u32>(key, K_DST_IP),
      <u32>load<u16>(key, K_SRC_PORT) | (<u32>load<u16>(key, K_DST_PORT) << 16),
    );
    let id: i32 = FT_MISS;
    if (s != 0) {
      id = <i32>(load<u32>(s, S_META) & ID_MASK) - 1;
      hits++;
    }
    store<i32>(out + (<usize>i << 2), id);
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
