import { describe, expect, it } from 'vitest';
import type { Kernels } from '../src/kernels/index.js';
import { ReadArea, READ_AREA_BUFFERS, WARM_BYTES } from '../src/engine/read-area.js';
import { StreamReader } from '../src/transport/stream-reader.js';
import { rng } from './support/rng.js';

const BUF = 512 * 1024;
const MAX_FRAME = 65550;

/** Byte j of frame i: every frame's bytes can be checked wherever they lie. */
const byteOf = (i: number, j: number) => (i * 131 + j * 7) & 255;

interface Frame { i: number; lo: number; len: number; h: number }

/**
 * A link's reads into a ReadArea of kernel memory, with the rest of the engine
 * played by the test: frames consumed join the batch in hand, a turn's end
 * (or a refill) handles the batch, and some handled frames are lent to
 * "host writes" that give them back later. Every frame's bytes are checked
 * when consumed, when handled and when given back.
 */
function run(seed: number, opts: { reads: number; turnP: number; lendP: number; releaseP: number; fullP: number }) {
  const u8 = new Uint8Array(READ_AREA_BUFFERS * BUF);
  const r = rng(seed);
  let batch: Frame[] = [];
  const lent: (Frame & { release: () => void })[] = [];
  let bad = 0;
  const intact = (f: Frame) => {
    for (let j = 0; j < f.len; j += 97) if (u8[f.lo + j] !== byteOf(f.i, j)) return false;
    return u8[f.lo + f.len - 1] === byteOf(f.i, f.len - 1);
  };
  let area!: ReadArea;
  const handle = (): boolean => {
    for (const f of batch) {
      if (!intact(f)) bad++;
      if (r() < opts.lendP && area.lending.canLend(f.h)) lent.push({ ...f, release: area.lending.lend(f.h) });
    }
    batch = [];
    return true;
  };
  area = new ReadArea({ u8 } as unknown as Kernels, 0, BUF, READ_AREA_BUFFERS, handle, (h) => batch.some((f) => f.h === h));

  // The stream: frames of 60..MAX_FRAME bytes behind 4-byte big-endian lengths.
  let produced = 0;
  let pending = new Uint8Array(0);
  let pendingOff = 0;
  const more = () => {
    const len = 60 + Math.floor(r() * r() * (MAX_FRAME - 60));
    const b = new Uint8Array(4 + len);
    new DataView(b.buffer).setUint32(0, len);
    for (let j = 0; j < len; j++) b[4 + j] = byteOf(produced, j);
    produced++;
    pending = b;
    pendingOff = 0;
  };
  let consumed = 0;
  const reader = new StreamReader(256 * 1024 + MAX_FRAME);
  reader.consume = (b, s, e) => {
    while (e - s >= 4) {
      const len = new DataView(b.buffer, b.byteOffset + s).getUint32(0);
      if (e - s < 4 + len) break;
      expect(b.buffer).toBe(u8.buffer);
      const lo = b.byteOffset + s + 4;
      const f = { i: consumed++, lo, len, h: Math.floor(lo / BUF) };
      if (!intact(f)) bad++;
      batch.push(f);
      s += 4 + len;
    }
    return s;
  };
  reader.use(area);

  const overlaps = (lo: number, hi: number, f: Frame) => lo < f.lo + f.len && f.lo < hi;
  let clashes = 0;
  const starts: number[] = [];
  for (let n = 0; n < opts.reads; n++) {
    const v = reader.next();
    const lo = v.byteOffset;
    const hi = lo + v.length;
    for (const f of batch) if (overlaps(lo, hi, f)) clashes++;
    for (const f of lent) if (overlaps(lo, hi, f)) clashes++;
    starts.push(lo);
    const k = r() < opts.fullP ? v.length : 1 + Math.floor(r() * v.length);
    for (let o = 0; o < k;) {
      if (pendingOff === pending.length) more();
      const c = Math.min(k - o, pending.length - pendingOff);
      v.set(pending.subarray(pendingOff, pendingOff + c), o);
      o += c;
      pendingOff += c;
    }
    reader.filled(k);
    if (r() < opts.turnP) handle();
    for (let i = lent.length - 1; i >= 0; i--) {
      if (r() >= opts.releaseP) continue;
      if (!intact(lent[i])) bad++;
      lent[i].release();
      lent.splice(i, 1);
    }
  }
  return { bad, clashes, starts, consumed, area };
}

describe('ReadArea', () => {
  it('never hands a read memory that holds a frame of the batch in hand or lent bytes, and every frame arrives intact', () => {
    for (const seed of [1, 2, 3]) {
      const res = run(seed, { reads: 4000, turnP: 0.3, lendP: 0.4, releaseP: 0.2, fullP: 0.3 });
      expect(res.clashes).toBe(0);
      expect(res.bad).toBe(0);
      expect(res.consumed).toBeGreaterThan(1000);
      // Both ways of moving on were taken: to a free buffer, and a refill after the batch was handled early.
      expect(res.area.swaps).toBeGreaterThan(0);
      expect(res.area.refills).toBeGreaterThan(0);
    }
  });

  it('keeps reads near the start of the first two buffers when each turn handles its batch and writes give their bytes back', () => {
    const res = run(4, { reads: 4000, turnP: 1, lendP: 0.5, releaseP: 1, fullP: 0.3 });
    expect(res.clashes).toBe(0);
    expect(res.bad).toBe(0);
    expect(res.area.refills).toBe(0);
    for (const at of res.starts) {
      expect(Math.floor(at / BUF)).toBeLessThan(2);
      // Behind held bytes that start below WARM_BYTES at most, or behind a moved partial frame.
      expect(at % BUF).toBeLessThan(WARM_BYTES + 4 + MAX_FRAME);
    }
  });
});
