import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { createKernels, type Kernels, type BackendName } from '../src/kernels/index.js';
import { sumBytes, fold, combine } from '../src/wire/checksum.js';

const BACKENDS: BackendName[] = ['wasm-simd', 'wasm', 'js'];
const MEM = 1 << 20;

// One instance per backend for the whole file: memory is never grown.
const kernels = new Map<BackendName, Kernels>();
const regions = new Map<BackendName, number>();
for (const b of BACKENDS) {
  const k = createKernels({ backend: b, memoryBytes: MEM });
  kernels.set(b, k);
  regions.set(b, k.alloc(200_000, 64));
}

function put(b: BackendName, offset: number, bytes: Uint8Array): number {
  const k = kernels.get(b)!;
  const p = regions.get(b)! + offset;
  k.u8.set(bytes, p);
  return p;
}

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!.map((h) => parseInt(h, 16)));

describe.each(BACKENDS)('csumPartial on %s', (b) => {
  const k = () => kernels.get(b)!;

  it('RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2', () => {
    const p = put(b, 0, hex('0001f203f4f5f6f7'));
    expect(k().k.csumPartial(p, 8, 0)).toBe(0xddf2);
    // Same bytes from an odd address: the words are anchored at ptr, not at an alignment.
    const q = put(b, 101, hex('0001f203f4f5f6f7'));
    expect(k().k.csumPartial(q, 8, 0)).toBe(0xddf2);
  });

  it('a real IPv4 header verifies to 0xffff and its checksum field is recomputed', () => {
    // 192.168.0.1 -> 192.168.0.199, UDP, TTL 64, DF: checksum 0xb861 (the well-known Wikipedia example).
    const hdr = hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');
    for (const off of [0, 1, 2, 3, 7, 33]) {
      const p = put(b, off, hdr);
      expect(k().k.csumPartial(p, 20, 0)).toBe(0xffff);
      k().u8[p + 10] = 0;
      k().u8[p + 11] = 0;
      expect(~k().k.csumPartial(p, 20, 0) & 0xffff).toBe(0xb861);
    }
  });

  it('odd lengths: the last byte is the high byte of a zero-padded word', () => {
    const p = put(b, 5, hex('ab'));
    expect(k().k.csumPartial(p, 1, 0)).toBe(0xab00);
    const q = put(b, 9, hex('0102 03'));
    expect(k().k.csumPartial(q, 3, 0)).toBe(0x0102 + 0x0300);
    // 17 bytes: one SIMD vector plus a lone byte.
    const r = put(b, 3, Uint8Array.from({ length: 17 }, (_, i) => i + 1));
    expect(k().k.csumPartial(r, 17, 0)).toBe(sumBytes(Uint8Array.from({ length: 17 }, (_, i) => i + 1)));
  });

  it('empty input returns the folded incoming sum; carries wrap end-around', () => {
    expect(k().k.csumPartial(regions.get(b)!, 0, 0)).toBe(0);
    expect(k().k.csumPartial(regions.get(b)!, 0, 0x1234)).toBe(0x1234);
    expect(k().k.csumPartial(regions.get(b)!, 0, 0xffff)).toBe(0xffff);
    expect(k().k.csumPartial(regions.get(b)!, 0, 0x1fffe)).toBe(0xffff);
    const p = put(b, 0, hex('ffff ffff 0001'));
    // 0xffff + 0xffff + 0x0001 = 0x1ffff -> 0xffff + 1 = 0x10000 -> 0x0001.
    expect(k().k.csumPartial(p, 6, 0)).toBe(0x0001);
  });

  it('all-0xff data of every length 1..300 sums to 0xffff (or 0xff00 for a single byte)', () => {
    const ff = new Uint8Array(300).fill(0xff);
    const p = put(b, 1, ff);
    for (let n = 1; n <= 300; n++) {
      expect(k().k.csumPartial(p, n, 0)).toBe(n === 1 ? 0xff00 : n % 2 === 1 ? fold(0xffff * ((n - 1) / 2) + 0xff00) : 0xffff);
    }
  });

  it('a long all-0xff run (several SIMD accumulator blocks) stays exact', () => {
    // 1.5 MiB does not fit the 1 MiB test memory, so use the whole memory above heapBase.
    const kk = k();
    const start = kk.k.heapBase();
    const saved = kk.u8.slice(start);
    kk.u8.fill(0xff, start);
    const len = kk.memoryBytes - start;
    const want = len === 1 ? 0xff00 : len % 2 ? fold(0xffff + 0xff00) : 0xffff;
    expect(kk.k.csumPartial(start, len, 0)).toBe(want);
    // A block with a single non-0xff word in the middle: 0xffff * k + 0xfffe folds to 0xfffe.
    const mid = start + 2 * Math.floor(len / 4);
    kk.u8[mid + 1] = 0xfe;
    expect(kk.k.csumPartial(start, len & ~1, 0)).toBe(0xfffe);
    kk.u8.set(saved, start);
  });

  it('ranges past the end of memory are clamped, never trap', () => {
    const kk = k();
    const last = kk.memoryBytes - 3;
    kk.u8.set([0x12, 0x34, 0x56], last);
    expect(kk.k.csumPartial(last, 1000, 0)).toBe(fold(0x1234 + 0x5600));
    expect(kk.k.csumPartial(last, 0xffffffff, 7)).toBe(fold(0x1234 + 0x5600 + 7));
    expect(kk.k.csumPartial(kk.memoryBytes, 16, 0x55)).toBe(0x55);
    expect(kk.k.csumPartial(0xfffffff0, 64, 0x55)).toBe(0x55);
  });

  it('matches sumBytes for random data, offsets 0..63, lengths 0..70000 and incoming sums', () => {
    const kk = k();
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 63 }),
        fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 70000 })),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (off, len, sum, seed) => {
          const data = randomBytes(len, seed);
          const p = put(b, off, data);
          return kk.k.csumPartial(p, len, sum) === sumBytes(data, 0, len, sum);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('combine() of two halves at any split equals the whole', () => {
    const kk = k();
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 63 }),
        fc.integer({ min: 0, max: 3000 }),
        fc.nat(),
        fc.integer({ min: 0, max: 0xffffffff }),
        (off, len, splitRaw, seed) => {
          const split = len === 0 ? 0 : splitRaw % (len + 1);
          const p = put(b, off, randomBytes(len, seed));
          const whole = kk.k.csumPartial(p, len, 0);
          const left = kk.k.csumPartial(p, split, 0);
          const right = kk.k.csumPartial(p + split, len - split, 0);
          return combine(left, right, split) === whole;
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('csumPartial agrees across backends', () => {
  it('same result on every backend for the same bytes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 63 }),
        fc.integer({ min: 0, max: 70000 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (off, len, sum, seed) => {
          const data = randomBytes(len, seed);
          const got = BACKENDS.map((b) => kernels.get(b)!.k.csumPartial(put(b, off, data), len, sum));
          return got[0] === got[1] && got[1] === got[2] && got[0] === sumBytes(data, 0, len, fold(sum));
        },
      ),
      { numRuns: 100 },
    );
  });
});

/** Deterministic bytes from a seed (xorshift32), so failures replay from the fast-check seed. */
function randomBytes(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed | 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
