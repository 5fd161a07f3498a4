/**
 * TCP sequence-space arithmetic (RFC 793 §3.3, RFC 1982 style): sequence
 * numbers are u32 and wrap, so every comparison goes through the signed
 * 32-bit difference. Valid as long as the two numbers are less than 2^31
 * apart, which TCP's window rules guarantee for anything we compare.
 */

/** a − b as a signed 32-bit distance. */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}
export function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}
export function seqLe(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0;
}
export function seqGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}
export function seqGe(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}
/** a + n wrapped to u32. */
export function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}
