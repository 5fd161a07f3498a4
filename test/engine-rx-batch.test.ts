import { describe, expect, it } from 'vitest';
import { createKernels } from '../src/kernels/index.js';
import { RxBatch } from '../src/engine/rx-batch.js';

// The batch clock: everything one batch does sees the time the batch started,
// and nothing outside a batch sees a frozen time.
describe('RxBatch clock', () => {
  const frame = new Uint8Array(60).fill(7);

  function setup(handler: (rx: RxBatch) => void, after: (rx: RxBatch) => void = () => {}) {
    const k = createKernels({ backend: 'js', memoryBytes: 4 * 1024 * 1024 });
    let t = 100;
    let reads = 0;
    const seen: number[] = [];
    const rx: RxBatch = new RxBatch(k, { maxFrames: 4, arenaBytes: 64 * 1024 },
      () => seen.push(rx.batchNow),
      () => {
        seen.push(rx.batchNow);
        t += 5; // time passes while frames are handled
        handler(rx);
      },
      () => {
        seen.push(rx.batchNow);
        after(rx);
      },
      () => {
        reads++;
        return t;
      });
    return { rx, seen, reads: () => reads, setTime: (x: number) => (t = x) };
  }

  it('reads the clock once per batch and holds it through classify, the handlers and afterBatch', () => {
    const s = setup(() => {});
    expect(s.rx.batchNow).toBe(-1);
    for (let i = 0; i < 3; i++) s.rx.push(1, frame, 0, frame.length);
    s.rx.flush();
    expect(s.reads()).toBe(1);
    // classify, three handlers, afterBatch: all at the start time although the clock moved on
    expect(s.seen).toEqual([100, 100, 100, 100, 100]);
    expect(s.rx.batchNow).toBe(-1);
    s.setTime(200);
    s.rx.push(1, frame, 0, frame.length);
    s.rx.flush();
    expect(s.reads()).toBe(2);
    expect(s.seen.slice(5)).toEqual([200, 200, 200]);
  });

  it('does not leave a frozen clock behind when a handler throws', () => {
    const s = setup(() => {
      throw new Error('boom');
    });
    s.rx.push(1, frame, 0, frame.length);
    expect(() => s.rx.flush()).toThrow('boom');
    expect(s.rx.batchNow).toBe(-1);
    expect(s.rx.pending).toBe(0);
  });

  it('a batch started from inside another (a frame looped back) takes its own reading and leaves the rest live', () => {
    let looped = false;
    const s = setup(() => {}, (rx) => {
      if (looped) return;
      looped = true;
      rx.push(2, frame, 0, frame.length);
      rx.flush();
      expect(rx.batchNow).toBe(-1);
    });
    s.rx.push(1, frame, 0, frame.length);
    s.rx.flush();
    // outer: classify, handler, afterBatch at 100; inner: classify, handler, afterBatch at 105
    expect(s.seen).toEqual([100, 100, 100, 105, 105, 105]);
    expect(s.reads()).toBe(2);
  });

  it('refuses a frame pushed while the batch is being handled: it would be lost at the reset, and a full batch could not make room', () => {
    const pushed: boolean[] = [];
    let handled = 0;
    const s = setup((rx) => {
      handled++;
      if (pushed.length === 0) for (let i = 0; i < 5; i++) pushed.push(rx.push(2, frame, 0, frame.length));
    });
    for (let i = 0; i < 4; i++) expect(s.rx.push(1, frame, 0, frame.length)).toBe(true);
    s.rx.flush();
    expect(pushed).toEqual([false, false, false, false, false]);
    expect(handled).toBe(4);
    expect(s.rx.pending).toBe(0);
    // The next batch starts clean.
    expect(s.rx.push(1, frame, 0, frame.length)).toBe(true);
    s.rx.flush();
    expect(handled).toBe(5);
  });
});
