import { describe, it, expect } from 'vitest';
import { Slabs, SLAB_BYTES } from '../src/engine/tcp/slabs.js';

describe('Slabs', () => {
  it('cuts pieces from one slab, reuses a slab once all its pieces are released, and never hands out overlapping live pieces', () => {
    const s = new Slabs();
    const a = s.take(SLAB_BYTES / 2);
    const doneA = s.lastDone;
    const b = s.take(SLAB_BYTES / 2);
    const doneB = s.lastDone;
    expect(a.buffer).toBe(b.buffer);
    expect(b.byteOffset).toBe(a.byteOffset + SLAB_BYTES / 2);
    // The next piece does not fit: a second slab; the first is retired but still referenced.
    const c = s.take(1000);
    const doneC = s.lastDone;
    expect(c.buffer).not.toBe(a.buffer);
    expect(s.allocated).toBe(2);
    doneA();
    // Still one live piece in the first slab: it must not come back yet.
    s.take(SLAB_BYTES - 1000);
    s.lastDone();
    const d = s.take(10);
    expect(d.buffer).not.toBe(a.buffer);
    expect(s.allocated).toBe(3);
    doneB();
    doneC();
    // Now the first slab is free and is reused instead of allocating.
    s.take(SLAB_BYTES);
    const e = s.take(SLAB_BYTES);
    expect([a.buffer, c.buffer]).toContain(e.buffer);
    expect(s.allocated).toBe(3);
  });

  it('a request larger than a slab gets its own Buffer and a no-op release', () => {
    const s = new Slabs();
    const big = s.take(SLAB_BYTES + 1);
    expect(big.length).toBe(SLAB_BYTES + 1);
    expect(s.allocated).toBe(0);
    expect(() => s.lastDone()).not.toThrow();
  });

  it('trim hands the tail of the last piece back to its slab, and does nothing once another piece was cut after it', () => {
    const s = new Slabs();
    const a = s.take(1000);
    s.trim(a, 100);
    const b = s.take(10);
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteOffset).toBe(a.byteOffset + 100);
    const c = s.take(50);
    s.take(10);
    s.trim(c, 5);
    const e = s.take(1);
    expect(e.byteOffset).toBe(c.byteOffset + 60);
    // A piece from a slab that is no longer current: its tail stays where it is.
    const f = s.take(SLAB_BYTES - 2000);
    const g = s.take(4000);
    expect(g.buffer).not.toBe(f.buffer);
    s.trim(f, 1);
    expect(s.take(1).byteOffset).toBe(g.byteOffset + 4000);
  });

  it('a fixed pool hands out only its own slabs, comes back empty when they are all in use, and gets each back once released', () => {
    const mem = new ArrayBuffer(3 * SLAB_BYTES);
    const s = new Slabs([Buffer.from(mem, 0, SLAB_BYTES), Buffer.from(mem, SLAB_BYTES, SLAB_BYTES)]);
    expect(s.allocated).toBe(2);
    const a = s.tryTake(SLAB_BYTES)!;
    const doneA = s.lastDone;
    const b = s.tryTake(SLAB_BYTES - 10)!;
    expect(a.buffer).toBe(mem);
    expect(b.buffer).toBe(mem);
    expect(b.byteOffset).not.toBe(a.byteOffset);
    // Both slabs in use, and the rest of the current one is too small.
    expect(s.tryTake(100)).toBeNull();
    expect(s.tryTake(SLAB_BYTES + 1)).toBeNull();
    expect(s.tryTake(10)).not.toBeNull();
    doneA();
    // a's slab was retired when b's became current; with its only piece back it is free again.
    const c = s.tryTake(5000)!;
    expect(c.byteOffset).toBe(a.byteOffset);
    expect(s.allocated).toBe(2);
  });

  it('a pool of one slab starts it over once every piece is back, and not before', () => {
    const mem = new ArrayBuffer(SLAB_BYTES);
    const s = new Slabs([Buffer.from(mem, 0, SLAB_BYTES)]);
    const a = s.tryTake(SLAB_BYTES / 2)!;
    const doneA = s.lastDone;
    s.tryTake(SLAB_BYTES / 2);
    const doneB = s.lastDone;
    expect(s.tryTake(100)).toBeNull();
    doneA();
    // b still holds the slab's second half: nothing may be cut from it yet.
    expect(s.tryTake(100)).toBeNull();
    doneB();
    const c = s.tryTake(100)!;
    expect(c.byteOffset).toBe(a.byteOffset);
  });
});
