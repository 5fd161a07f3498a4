import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { fold, sumBytes, combine, pseudoHeader, finish, update16, update32 } from '../src/wire/checksum.js';

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!.map((h) => parseInt(h, 16)));
const IPV4 = () => hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7'); // checksum 0xb861

/** The textbook loop, word by word with an end-around carry after every add. */
function slowSum(buf: Uint8Array, start: number, end: number, sum = 0): number {
  let s = sum;
  for (let i = start; i < end; i += 2) {
    s += (buf[i] << 8) | (i + 1 < end ? buf[i + 1] : 0);
    if (s > 0xffff) s = (s & 0xffff) + 1;
  }
  return s;
}

describe('fold', () => {
  it('carries end-around and never turns a non-zero sum into 0', () => {
    expect(fold(0)).toBe(0);
    expect(fold(0xffff)).toBe(0xffff);
    expect(fold(0x10000)).toBe(1);
    expect(fold(0x1ffff)).toBe(1);
    expect(fold(0x2fffd)).toBe(0xffff);
    expect(fold(0xffffffff)).toBe(0xffff);
  });

  it('equals ((s - 1) mod 0xffff) + 1 for any positive sum below 2^53', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (s) => fold(s) === ((s - 1) % 0xffff) + 1),
    );
  });
});

describe('sumBytes', () => {
  it('RFC 1071 §3 example sums to 0xddf2', () => {
    expect(sumBytes(hex('0001f203f4f5f6f7'))).toBe(0xddf2);
    expect(finish(0xddf2)).toBe(0x220d);
  });

  it('a valid IPv4 header sums to 0xffff; with the field zeroed it gives the checksum back', () => {
    const h = IPV4();
    expect(sumBytes(h)).toBe(0xffff);
    h[10] = h[11] = 0;
    expect(finish(sumBytes(h))).toBe(0xb861);
  });

  it('honours start, end and an incoming sum; an odd tail is zero-padded', () => {
    const b = hex('ffff 1234 56');
    expect(sumBytes(b, 2)).toBe(0x1234 + 0x5600);
    expect(sumBytes(b, 2, 4)).toBe(0x1234);
    expect(sumBytes(b, 2, 3)).toBe(0x1200);
    expect(sumBytes(b, 2, 2, 0xabcd)).toBe(0xabcd);
    expect(sumBytes(b, 0, 4, 1)).toBe(0x1235); // 0xffff + 0x1234 + 1 = 0x11234 -> 0x1234 + 1
    expect(sumBytes(b, 0, 4, 1)).toBe(slowSum(b, 0, 4, 1));
  });

  it('matches the word-by-word loop for random data and ranges', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 0xffff }), (buf, a, b, sum) => {
        const start = buf.length ? a % (buf.length + 1) : 0;
        const end = start + (buf.length - start ? b % (buf.length - start + 1) : 0);
        return sumBytes(buf, start, end, sum) === slowSum(buf, start, end, sum);
      }),
    );
  });
});

describe('combine', () => {
  it('joins the partials of two halves split at any offset, odd ones included', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.nat(), (buf, r) => {
        const split = r % (buf.length + 1);
        return combine(sumBytes(buf, 0, split), sumBytes(buf, split), split) === sumBytes(buf);
      }),
    );
  });

  it('an odd offset swaps the second partial (RFC 1071 §2(B))', () => {
    expect(combine(0, 0x1234, 1)).toBe(0x3412);
    expect(combine(0, 0x1234, 2)).toBe(0x1234);
  });
});

describe('pseudoHeader', () => {
  it('equals the sum of the 12-byte pseudo-header', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 0xffff }),
        (src, dst, proto, len) => {
          const b = new Uint8Array(12);
          const dv = new DataView(b.buffer);
          dv.setUint32(0, src);
          dv.setUint32(4, dst);
          dv.setUint8(9, proto);
          dv.setUint16(10, len);
          return pseudoHeader(src, dst, proto, len) === sumBytes(b);
        },
      ),
    );
  });
});

/**
 * Eqn. 3 and recomputation agree except for data that sums to zero (all zero
 * bytes): recomputation gives ~0 = 0xffff, eqn. 3 gives 0x0000 — the two
 * one's-complement zeros, both valid. Real headers are never all zero.
 */
function agrees(updated: number, data: Uint8Array): boolean {
  const sum = sumBytes(data);
  return sum === 0 ? updated === 0 && finish(sum) === 0xffff : updated === finish(sum);
}

describe('RFC 1624 incremental updates', () => {
  it('all-zero data: eqn. 3 yields the other one\'s-complement zero', () => {
    expect(update16(0xffff, 0, 0)).toBe(0x0000);
    expect(update16(finish(sumBytes(hex('0000 1234'))), 0x1234, 0)).toBe(0x0000);
    expect(finish(sumBytes(hex('0000 0000')))).toBe(0xffff);
  });

  it('decrementing TTL in a real header matches recomputation', () => {
    const h = IPV4();
    const old = (h[8] << 8) | h[9];
    h[8] -= 1;
    const fresh = (h[8] << 8) | h[9];
    const updated = update16(0xb861, old, fresh);
    h[10] = h[11] = 0;
    expect(updated).toBe(finish(sumBytes(h)));
    expect(updated).toBe(0xb961);
  });

  it('update16 equals recomputing after any 16-bit field change', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 2, maxLength: 200 }), fc.nat(), fc.integer({ min: 0, max: 0xffff }), (buf, r, next) => {
        const data = buf.subarray(0, buf.length & ~1);
        const i = (r % (data.length / 2)) * 2;
        const before = finish(sumBytes(data));
        const old = (data[i] << 8) | data[i + 1];
        data[i] = next >> 8;
        data[i + 1] = next & 0xff;
        return agrees(update16(before, old, next), data);
      }),
      { numRuns: 500 },
    );
  });

  it('update32 equals recomputing after rewriting an address (NAT)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 4, maxLength: 200 }), fc.nat(), fc.integer({ min: 0, max: 0xffffffff }), (buf, r, next) => {
        const data = buf.subarray(0, buf.length & ~1);
        const i = (r % ((data.length - 2) / 2)) * 2;
        const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
        const before = finish(sumBytes(data));
        const old = dv.getUint32(i);
        dv.setUint32(i, next);
        return agrees(update32(before, old, next), data);
      }),
      { numRuns: 500 },
    );
  });
});
