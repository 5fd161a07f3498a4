import type { JsMem } from './mem.js';

// The pure-JS RFC 1071 kernel. It reads big-endian u32 words through the
// DataView (V8 inlines getUint32 in optimised code) and adds them into plain
// doubles: a double is exact to 2^53, so there is no per-word carry handling;
// 2^32 ≡ 1 (mod 0xffff), so the sum of 32-bit words folds to the same 16-bit
// one's-complement sum as the 16-bit words would.

/** Words each accumulator may take before a reduction: 2^20 * 2^32 < 2^53. */
const CHUNK_BYTES = 1 << 22; // 4 MiB: 2^18 iterations x 4 words, 2^19 words per accumulator

/**
 * One's-complement fold of a non-negative integer-valued double to 16 bits.
 * Iterated end-around carries keep the value mod 0xffff and never reach 0
 * from a positive sum, which is exactly ((s - 1) mod 0xffff) + 1.
 */
function reduce(s: number): number {
  return s === 0 ? 0 : ((s - 1) % 0xffff) + 1;
}

/**
 * RFC 1071 sum of `len` bytes at `ptr` (big-endian 16-bit words from `ptr`)
 * added to the partial `sum`; folded, not complemented. Arguments are taken
 * as u32 like the WASM export; a range past the end of memory is clamped.
 */
export function csumPartial(m: JsMem, ptr: number, len: number, sum: number): number {
  ptr >>>= 0;
  len >>>= 0;
  const size = m.u8.length;
  if (ptr >= size) len = 0;
  else if (len > size - ptr) len = size - ptr;
  const dv = m.dv;
  let total = reduce(sum >>> 0);
  let p = ptr;
  const end = ptr + len;
  while (end - p >= 16) {
    const stop = Math.min(end - ((end - p) & 15), p + CHUNK_BYTES);
    // Two independent chains let the adds overlap.
    let a = 0;
    let b = 0;
    for (; p < stop; p += 16) {
      a += dv.getUint32(p);
      b += dv.getUint32(p + 4);
      a += dv.getUint32(p + 8);
      b += dv.getUint32(p + 12);
    }
    total = reduce(total + a + b);
  }
  for (; end - p >= 4; p += 4) total += dv.getUint32(p);
  if (end - p >= 2) {
    total += dv.getUint16(p);
    p += 2;
  }
  if (p < end) total += m.u8[p] << 8;
  return reduce(total);
}
