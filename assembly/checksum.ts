// RFC 1071 internet checksum over linear memory, one source for both builds:
// ASC_FEATURE_SIMD is a compile-time constant, so the SIMD build drops the
// scalar bulk loop and the scalar build never sees a v128 instruction.
//
// Everything is summed in the little-endian domain: WebAssembly loads are
// little-endian, and RFC 1071 §2(B) says the one's-complement sum of
// byte-swapped words is the byte-swap of the sum. So the loops add native
// loads and the result is swapped once at the end, instead of swapping every
// word. The word boundaries stay anchored at `ptr` (loads are unaligned-safe),
// so an odd start address needs no special case.

/** Bytes of linear memory, as u64 so a full 4 GiB memory does not wrap to 0. */
// @ts-ignore: decorator
@inline export function memBytes(): u64 {
  return (<u64>memory.size()) << 16;
}

// @ts-ignore: decorator
@inline function swap16(x: u32): u32 {
  return ((x & 0xff) << 8) | (x >> 8);
}

/** Fold a u64 one's-complement accumulator to 16 bits (end-around carries). */
// @ts-ignore: decorator
@inline export function fold64(s: u64): u32 {
  s = (s & 0xffffffff) + (s >> 32); // <= 2^33 - 2
  s = (s & 0xffffffff) + (s >> 32); // <= 2^32 - 1: the carry cannot carry again
  let x = <u32>s;
  x = (x & 0xffff) + (x >> 16);
  x = (x & 0xffff) + (x >> 16);
  return x;
}

/**
 * Little-endian-domain sum of `n` bytes at `p`, unfolded. Each u64 load adds
 * two u32 halves (< 2^33 per load), so the u64 accumulator cannot overflow
 * before 2^31 loads, i.e. more bytes than a 32-bit memory holds.
 */
// @ts-ignore: decorator
@inline function sumScalar(p: usize, n: usize, acc: u64): u64 {
  let acc1: u64 = 0;
  while (n >= 32) {
    const v0 = load<u64>(p);
    const v1 = load<u64>(p, 8);
    const v2 = load<u64>(p, 16);
    const v3 = load<u64>(p, 24);
    // Two chains so the adds of consecutive loads can issue in parallel.
    acc += (v0 & 0xffffffff) + (v0 >> 32) + (v1 & 0xffffffff) + (v1 >> 32);
    acc1 += (v2 & 0xffffffff) + (v2 >> 32) + (v3 & 0xffffffff) + (v3 >> 32);
    p += 32;
    n -= 32;
  }
  acc += acc1;
  while (n >= 8) {
    const v = load<u64>(p);
    acc += (v & 0xffffffff) + (v >> 32);
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    acc += <u64>load<u32>(p);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    acc += <u64>load<u16>(p);
    p += 2;
    n -= 2;
  }
  // A lone last byte is the high byte of a big-endian word: in the
  // little-endian domain that is the low byte.
  if (n != 0) acc += <u64>load<u8>(p);
  return acc;
}

/**
 * Add the four u32 lanes of a v128 accumulator to a u64. Lanes are widened
 * first because two full lanes can exceed 2^32.
 */
// @ts-ignore: decorator
@inline function lanes64(v: v128): u64 {
  return (
    <u64>(<u32>i32x4.extract_lane(v, 0)) +
    <u64>(<u32>i32x4.extract_lane(v, 1)) +
    <u64>(<u32>i32x4.extract_lane(v, 2)) +
    <u64>(<u32>i32x4.extract_lane(v, 3))
  );
}

// Each extadd_pairwise lane is <= 2 * 0xffff = 131070. In the 64-byte loop
// every accumulator lane takes two of those per iteration, so 16383
// iterations stay below 2^32; 8192 (512 KiB) leaves margin.
const SIMD_BLOCK_ITERS: usize = 8192;

/** Little-endian-domain sum of `n` bytes at `p` (SIMD build), unfolded. */
// @ts-ignore: decorator
@inline function sumSimd(p: usize, n: usize, acc: u64): u64 {
  while (n >= 64) {
    let iters = n >> 6;
    if (iters > SIMD_BLOCK_ITERS) iters = SIMD_BLOCK_ITERS;
    n -= iters << 6;
    let a = i32x4.splat(0);
    let b = i32x4.splat(0);
    do {
      a = i32x4.add(a, i32x4.extadd_pairwise_i16x8_u(v128.load(p)));
      b = i32x4.add(b, i32x4.extadd_pairwise_i16x8_u(v128.load(p, 16)));
      a = i32x4.add(a, i32x4.extadd_pairwise_i16x8_u(v128.load(p, 32)));
      b = i32x4.add(b, i32x4.extadd_pairwise_i16x8_u(v128.load(p, 48)));
      p += 64;
    } while (--iters);
    acc += lanes64(a) + lanes64(b);
  }
  if (n >= 16) {
    let a = i32x4.splat(0);
    do {
      a = i32x4.add(a, i32x4.extadd_pairwise_i16x8_u(v128.load(p)));
      p += 16;
      n -= 16;
    } while (n >= 16);
    acc += lanes64(a);
  }
  return sumScalar(p, n, acc);
}

/**
 * Little-endian-domain sum, unfolded, of exactly the bytes asked for (the
 * caller has already checked they are inside memory). Shared with emit.ts.
 */
// @ts-ignore: decorator
@inline export function sumLE(p: usize, n: usize, acc: u64): u64 {
  if (ASC_FEATURE_SIMD) {
    return sumSimd(p, n, acc);
  } else {
    return sumScalar(p, n, acc);
  }
}

/**
 * Copy `n` bytes from `src` to `dst` and return their little-endian-domain
 * sum added to `acc` (unfolded), touching each byte once instead of twice as
 * memory.copy followed by sumLE would. The caller guarantees the ranges do
 * not overlap and lie inside memory. Shared with emit.ts for payloads.
 */
export function copySumLE(dst: usize, src: usize, n: usize, acc: u64): u64 {
  if (ASC_FEATURE_SIMD) {
    while (n >= 64) {
      let iters = n >> 6;
      if (iters > SIMD_BLOCK_ITERS) iters = SIMD_BLOCK_ITERS;
      n -= iters << 6;
      let a = i32x4.splat(0);
      let b = i32x4.splat(0);
      do {
        const v0 = v128.load(src);
        const v1 = v128.load(src, 16);
        const v2 = v128.load(src, 32);
        const v3 = v128.load(src, 48);
        v128.store(dst, v0);
        v128.store(dst, v1, 16);
        v128.store(dst, v2, 32);
        v128.store(dst, v3, 48);
        a = i32x4.add(a, i32x4.extadd_pairwise_i16x8_u(v0));
        b = i32x4.add(b, i32x4.extadd_pairwise_i16x8_u(v1));
        a = i32x4.add(a, i32x4.extadd_pairwise_i16x8_u(v2));
        b = i32x4.add(b, i32x4.extadd_pairwise_i16x8_u(v3));
        src += 64;
        dst += 64;
      } while (--iters);
      acc += lanes64(a) + lanes64(b);
    }
    if (n >= 16) {
      let a = i32x4.splat(0);
      do {
        const v = v128.load(src);
        v128.store(dst, v);
        a = i32x4.add(a, i32x4.extadd_pairwise_i16x8_u(v));
        src += 16;
        dst += 16;
        n -= 16;
      } while (n >= 16);
      acc += lanes64(a);
    }
  } else {
    let acc1: u64 = 0;
    while (n >= 32) {
      const v0 = load<u64>(src);
      const v1 = load<u64>(src, 8);
      const v2 = load<u64>(src, 16);
      const v3 = load<u64>(src, 24);
      store<u64>(dst, v0);
      store<u64>(dst, v1, 8);
      store<u64>(dst, v2, 16);
      store<u64>(dst, v3, 24);
      acc += (v0 & 0xffffffff) + (v0 >> 32) + (v1 & 0xffffffff) + (v1 >> 32);
      acc1 += (v2 & 0xffffffff) + (v2 >> 32) + (v3 & 0xffffffff) + (v3 >> 32);
      src += 32;
      dst += 32;
      n -= 32;
    }
    acc += acc1;
  }
  while (n >= 8) {
    const v = load<u64>(src);
    store<u64>(dst, v);
    acc += (v & 0xffffffff) + (v >> 32);
    src += 8;
    dst += 8;
    n -= 8;
  }
  if (n >= 4) {
    const v = load<u32>(src);
    store<u32>(dst, v);
    acc += <u64>v;
    src += 4;
    dst += 4;
    n -= 4;
  }
  if (n >= 2) {
    const v = load<u16>(src);
    store<u16>(dst, v);
    acc += <u64>v;
    src += 2;
    dst += 2;
    n -= 2;
  }
  if (n != 0) {
    const v = load<u8>(src);
    store<u8>(dst, v);
    acc += <u64>v;
  }
  return acc;
}

/**
 * RFC 1071 sum of `len` bytes at `ptr`, read as big-endian 16-bit words from
 * `ptr`, added to the partial `sum`; returns the folded, uncomplemented sum.
 * A range running past the end of memory is clamped to it (bytes that do not
 * exist contribute nothing) rather than trapping; the JS twin does the same.
 */
export function csumPartial(ptr: usize, len: u32, sum: u32): u32 {
  const mem = memBytes();
  let n = <u64>len;
  if (<u64>ptr >= mem) n = 0;
  else if (<u64>ptr + n > mem) n = mem - <u64>ptr;
  // `sum` is a big-endian-domain partial; move it into the little-endian
  // domain so it can join the accumulator before the single final fold.
  const s0 = swap16(fold64(<u64>sum));
  return swap16(fold64(sumLE(ptr, <usize>n, <u64>s0)));
}
