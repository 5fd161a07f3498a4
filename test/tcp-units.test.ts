/** Property tests for the TCP stack's building blocks: sequence arithmetic and the send queue. */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt } from '../src/engine/tcp/seq.js';
import { SendQueue } from '../src/engine/tcp/send-queue.js';

describe('sequence arithmetic', () => {
  it('orders numbers less than 2^31 apart correctly across the wrap', () => {
    fc.assert(fc.property(fc.nat(0xffffffff), fc.integer({ min: 1, max: 0x7fffffff }), (a, n) => {
      const b = seqAdd(a, n);
      expect(seqLt(a, b)).toBe(true);
      expect(seqLe(a, b)).toBe(true);
      expect(seqGt(b, a)).toBe(true);
      expect(seqGe(b, a)).toBe(true);
      expect(seqLt(b, a)).toBe(false);
      expect(seqDiff(b, a)).toBe(n);
      expect(seqDiff(a, b)).toBe(-n);
      expect(b).toBeGreaterThanOrEqual(0);
      expect(b).toBeLessThanOrEqual(0xffffffff);
    }));
  });
  it('concrete wrap cases', () => {
    expect(seqLt(0xffffffff, 0)).toBe(true);
    expect(seqAdd(0xffffffff, 1)).toBe(0);
    expect(seqAdd(0, -1)).toBe(0xffffffff);
    expect(seqDiff(5, 0xfffffffb)).toBe(10);
    expect(seqLe(7, 7) && seqGe(7, 7) && !seqLt(7, 7)).toBe(true);
  });
});

describe('SendQueue', () => {
  it('copies out and consumes like one flat buffer, whatever the chunking', () => {
    const op = fc.oneof(
      fc.record({ t: fc.constant('push' as const), n: fc.integer({ min: 0, max: 300 }) }),
      fc.record({ t: fc.constant('consume' as const), f: fc.double({ min: 0, max: 1, noNaN: true }) }),
      fc.record({ t: fc.constant('view' as const), a: fc.double({ min: 0, max: 1, noNaN: true }), b: fc.double({ min: 0, max: 1, noNaN: true }) }),
    );
    fc.assert(fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const q = new SendQueue();
      let model: number[] = [];
      let counter = 0;
      const dst = new Uint8Array(1100);
      for (const o of ops) {
        if (o.t === 'push') {
          const b = Buffer.alloc(o.n);
          for (let i = 0; i < o.n; i++) b[i] = counter++ & 0xff;
          q.push(b);
          model = model.concat([...b]);
        } else if (o.t === 'consume') {
          const n = Math.floor(o.f * model.length);
          q.consume(n);
          model = model.slice(n);
        } else if (model.length > 0) {
          const off = Math.floor(o.a * (model.length - 1));
          const len = Math.min(1024, Math.max(1, Math.floor(o.b * (model.length - off))));
          const at = Math.floor(o.a * 7);
          dst.fill(0xee);
          q.copyOut(off, len, dst, at);
          expect([...dst.subarray(at, at + len)]).toEqual(model.slice(off, off + len));
          // Nothing around the range is touched.
          expect(dst[at + len]).toBe(0xee);
          if (at > 0) expect(dst[at - 1]).toBe(0xee);
        }
        expect(q.length).toBe(model.length);
      }
    }), { numRuns: 300 });
  });

  it('releases each chunk exactly once, when its last byte is consumed', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 20 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 20 }), (sizes, cuts) => {
      const q = new SendQueue();
      const released: number[] = [];
      const ends: number[] = [];
      let total = 0;
      sizes.forEach((n, i) => {
        q.push(Buffer.alloc(n), () => released.push(i));
        total += n;
        ends.push(total);
      });
      let consumed = 0;
      for (const f of cuts) {
        const n = Math.floor(f * q.length);
        q.consume(n);
        consumed += n;
        // Exactly the chunks that are wholly consumed (empty ones at once) have been released, in order.
        const expected = sizes.map((_, i) => i).filter((i) => sizes[i] === 0 || ends[i] <= consumed);
        expect([...released].sort((a, b) => a - b)).toEqual(expected);
      }
      q.consume(q.length);
      expect([...released].sort((a, b) => a - b)).toEqual(sizes.map((_, i) => i));
      expect(new Set(released).size).toBe(released.length);
    }), { numRuns: 300 });
  });
});
