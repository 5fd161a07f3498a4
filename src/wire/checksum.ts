/**
 * Internet checksum arithmetic (RFC 1071, RFC 1624) for the TypeScript side:
 * slow paths and Repr.emit use these on plain Uint8Arrays. The bulk kernel
 * over linear memory is csumPartial in assembly/checksum.ts and its twin in
 * src/kernels/js/checksum.ts.
 *
 * A "partial" is a folded, uncomplemented 16-bit one's-complement sum.
 */

/** Fold a 32-bit (or larger, < 2^53) accumulated sum to 16 bits with end-around carry. */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** Sum bytes [start, end) of `buf` as big-endian 16-bit words, added to `sum`. */
export function sumBytes(buf: Uint8Array, start = 0, end = buf.length, sum = 0): number {
  let s = sum;
  let i = start;
  const last = end - 1;
  for (; i < last; i += 2) s += (buf[i] << 8) | buf[i + 1];
  if (i < end) s += buf[i] << 8;
  return fold(s);
}

/**
 * Combine the partial `b` of a block that starts `offset` bytes after the
 * start of the block whose partial is `a`. An odd offset swaps b's bytes
 * (RFC 1071 §2(B)).
 */
export function combine(a: number, b: number, offset: number): number {
  if (offset & 1) b = ((b & 0xff) << 8) | (b >>> 8);
  return fold(a + b);
}

/** Partial of the IPv4 pseudo-header (src, dst, zero, protocol, L4 length). */
export function pseudoHeader(src: number, dst: number, proto: number, length: number): number {
  return fold((src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + length);
}

/** The value to store in a checksum field: the complement of the folded sum. */
export function finish(sum: number): number {
  return ~fold(sum) & 0xffff;
}

/**
 * RFC 1624 eqn. 3: new checksum after a 16-bit field changes from `oldVal`
 * to `newVal`, without re-summing the data: HC' = ~(~HC + ~m + m').
 */
export function update16(checksum: number, oldVal: number, newVal: number): number {
  return ~fold((~checksum & 0xffff) + (~oldVal & 0xffff) + (newVal & 0xffff)) & 0xffff;
}

/** RFC 1624 update for a 32-bit field (an IPv4 address): two 16-bit updates. */
export function update32(checksum: number, oldVal: number, newVal: number): number {
  const c = update16(checksum, oldVal >>> 16, newVal >>> 16);
  return update16(c, oldVal & 0xffff, newVal & 0xffff);
}
