import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEC_EMPTY, DEC_OK, DEC_TOO_LARGE, FrameDecoder, HDR_BE32, HDR_LE16 } from '../src/transport/decoder.js';
import { HeapReadSpace, READ_CHUNK, READ_MIN, StreamReader } from '../src/transport/stream-reader.js';
import { readerBytes } from '../src/transport/link.js';
import type { ReadSpace } from '../src/transport/types.js';

type Hdr = typeof HDR_BE32 | typeof HDR_LE16;

function encode(hdr: Hdr, frames: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const f of frames) total += hdr + f.length;
  const out = new Uint8Array(total);
  let p = 0;
  for (const f of frames) {
    const n = f.length;
    if (hdr === HDR_BE32) {
      out[p] = n >>> 24;
      out[p + 1] = (n >>> 16) & 255;
      out[p + 2] = (n >>> 8) & 255;
      out[p + 3] = n & 255;
    } else {
      out[p] = n & 255;
      out[p + 1] = n >>> 8;
    }
    out.set(f, p + hdr);
    p += hdr + n;
  }
  return out;
}

/** Cut `bytes` at the given (sorted, deduplicated) points into fresh chunk Buffers, as a socket would. */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const pts = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...pts, bytes.length]) {
    if (c > prev) chunks.push(Uint8Array.from(bytes.subarray(prev, c)));
    prev = c;
  }
  return chunks;
}

interface Collected {
  frames: Uint8Array[];
  /** Buffers the frames were views of. */
  bufs: Set<ArrayBufferLike>;
}

/** A heap space that records every move: how many bytes were held each time. */
class CountingSpace implements ReadSpace {
  readonly inner: HeapReadSpace;
  moves: number[] = [];
  constructor(bytes: number) {
    this.inner = new HeapReadSpace(bytes);
  }
  take(prev: Uint8Array, start: number, end: number, room: number): Uint8Array {
    this.moves.push(end - start);
    return this.inner.take(prev, start, end, room);
  }
  release(): void {}
}

/**
 * Decoder behind a StreamReader, as a link runs it. 'chunks' copies each chunk in
 * (append, a stream's 'data'); 'reads' writes each chunk into the buffers next()
 * hands out, as a socket's reads would, at most as much as each offers.
 */
function run(hdr: Hdr, max: number, chunks: Uint8Array[], how: 'chunks' | 'reads' = 'chunks'): Collected & { dec: FrameDecoder; reader: StreamReader; space: CountingSpace } {
  const col: Collected = { frames: [], bufs: new Set() };
  const dec = new FrameDecoder(hdr, max, (buf, off, len) => {
    col.bufs.add(buf.buffer);
    col.frames.push(Uint8Array.from(buf.subarray(off, off + len)));
  });
  const reader = new StreamReader(readerBytes(max));
  const space = new CountingSpace(readerBytes(max));
  reader.use(space);
  reader.consume = (b, s, e) => {
    const p = dec.decode(b, s, e);
    return dec.error !== DEC_OK ? e : p;
  };
  for (const c of chunks) {
    if (how === 'chunks') reader.append(c);
    else {
      for (let off = 0; off < c.length;) {
        const v = reader.next();
        const k = Math.min(v.length, c.length - off);
        v.set(c.subarray(off, off + k));
        off += k;
        reader.filled(k);
      }
    }
    if (dec.error !== DEC_OK) break;
  }
  return { ...col, dec, reader, space };
}

const frameArb = (max: number) => fc.uint8Array({ minLength: 1, maxLength: max });

describe.each([
  ['qemu 4-byte BE', HDR_BE32 as Hdr],
  ['le16', HDR_LE16 as Hdr],
])('FrameDecoder %s', (_name, hdr) => {
  it('yields the same frames for any chunking', () => {
    fc.assert(
      fc.property(fc.array(frameArb(600), { maxLength: 40 }), fc.array(fc.nat(), { maxLength: 60 }), (frames, cuts) => {
        const bytes = encode(hdr, frames);
        const got = run(hdr, 65550, split(bytes, cuts));
        expect(got.dec.error).toBe(DEC_OK);
        expect(got.frames).toEqual(frames);
        expect(got.dec.frames).toBe(frames.length);
        expect(got.dec.bytes).toBe(frames.reduce((a, f) => a + f.length, 0));
        expect(got.reader.held).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('handles large frames split into many small chunks', () => {
    fc.assert(
      fc.property(fc.array(frameArb(hdr === HDR_LE16 ? 65535 : 70000), { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 9000 }), fc.boolean(), (frames, step, reads) => {
        const bytes = encode(hdr, frames);
        const cuts: number[] = [];
        for (let i = step; i < bytes.length; i += step) cuts.push(i);
        const got = run(hdr, 70000, split(bytes, cuts), reads ? 'reads' : 'chunks');
        expect(got.frames).toEqual(frames);
      }),
      { numRuns: 30 },
    );
  });

  it('socket reads of any size yield the same frames, and only bytes not yet whole frames ever move', () => {
    fc.assert(
      fc.property(fc.array(frameArb(20000), { maxLength: 60 }), fc.array(fc.nat(), { maxLength: 80 }), (frames, cuts) => {
        const bytes = encode(hdr, frames);
        const got = run(hdr, 65550, split(bytes, cuts), 'reads');
        expect(got.dec.error).toBe(DEC_OK);
        expect(got.frames).toEqual(frames);
        expect(got.reader.held).toBe(0);
        // The first take sets the buffer up; every later one moves an incomplete frame (with
        // its header) at most, and only once the buffer's room is down to READ_MIN.
        for (const held of got.space.moves.slice(1)) expect(held).toBeLessThan(hdr + 20000);
        expect(got.space.moves.length).toBeLessThanOrEqual(1 + Math.ceil(bytes.length / (readerBytes(65550) - READ_MIN - hdr - 20000)));
      }),
      { numRuns: 200 },
    );
  });

  it('a frame that straddles two reads is handed out as a view of the buffer both reads went into', () => {
    const frames = [new Uint8Array(3000).fill(1), new Uint8Array(5000).fill(2)];
    const bytes = encode(hdr, frames);
    const got = run(hdr, 65550, [bytes.subarray(0, 4000), bytes.subarray(4000)], 'reads');
    expect(got.frames).toEqual(frames);
    expect(got.space.moves).toEqual([0]);
    expect(got.bufs.size).toBe(1);
  });

  it('reads ask for READ_CHUNK at most', () => {
    const reader = new StreamReader(readerBytes(65550));
    expect(reader.next().length).toBe(READ_CHUNK);
  });

  it('stops on a zero length after delivering the frames before it, whatever the chunking', () => {
    fc.assert(
      fc.property(fc.array(frameArb(200), { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 20 }), (frames, cuts) => {
        const good = encode(hdr, frames);
        const bytes = new Uint8Array(good.length + hdr + 10);
        bytes.set(good, 0); // zero header follows, then junk that must not be read as frames
        bytes.fill(0x41, good.length + hdr);
        const got = run(hdr, 65550, split(bytes, cuts));
        expect(got.dec.error).toBe(DEC_EMPTY);
        expect(got.frames).toEqual(frames);
      }),
      { numRuns: 200 },
    );
  });

  it('stops on a length above maxFrame and consumes nothing afterwards', () => {
    const max = 1514;
    const frames = [new Uint8Array(60).fill(1), new Uint8Array(1514).fill(2)];
    const bad = hdr === HDR_BE32 ? [0, 0, 0x05, 0xeb] : [0xeb, 0x05]; // 1515
    const bytes = new Uint8Array([...encode(hdr, frames), ...bad, ...encode(hdr, [new Uint8Array(10)])]);
    const got = run(hdr, max, [bytes]);
    expect(got.dec.error).toBe(DEC_TOO_LARGE);
    expect(got.dec.badLength).toBe(1515);
    expect(got.frames).toEqual(frames);
    expect(got.dec.decode(new Uint8Array([0, 0, 0, 1, 5]), 0, 5)).toBe(0);
  });

  it('stop set from the sink returns the position after that frame; replaying the rest continues in order', () => {
    fc.assert(
      fc.property(fc.array(frameArb(100), { minLength: 1, maxLength: 20 }), fc.nat(), fc.array(fc.nat(), { maxLength: 10 }), (frames, stopAtRaw, cuts) => {
        const stopAt = stopAtRaw % frames.length;
        const out: Uint8Array[] = [];
        const dec: FrameDecoder = new FrameDecoder(hdr, 65550, (b, o, l) => {
          out.push(Uint8Array.from(b.subarray(o, o + l)));
          if (out.length === stopAt + 1) dec.stop = true;
        });
        const reader = new StreamReader(readerBytes(65550));
        reader.consume = (b, s, e) => dec.decode(b, s, e);
        for (const c of split(encode(hdr, frames), cuts)) {
          reader.append(c);
          if (dec.stop) {
            expect(out.length).toBe(stopAt + 1);
            dec.stop = false; // resume: what the stop left is held and goes first
            reader.replay();
          }
        }
        expect(out).toEqual(frames);
        expect(reader.held).toBe(0);
      }),
      { numRuns: 200 },
    );
  });
});

describe('HeapReadSpace', () => {
  it('moves held bytes to the front, and grows when they and the room asked for do not fit', () => {
    const sp = new HeapReadSpace(16);
    const a = sp.take(new Uint8Array(0), 0, 0, 8);
    a.set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const b = sp.take(a, 6, 10, 8);
    expect(b).toBe(a);
    expect([...b.subarray(0, 4)]).toEqual([7, 8, 9, 10]);
    const c = sp.take(b, 0, 12, 8);
    expect(c.length).toBe(20);
    expect([...c.subarray(0, 4)]).toEqual([7, 8, 9, 10]);
  });
});

describe('FrameDecoder limits', () => {
  it('le16 caps maxFrame at 65535 and accepts exactly 65535', () => {
    const f = new Uint8Array(65535).fill(7);
    const got = run(HDR_LE16, 1 << 20, [encode(HDR_LE16, [f])]);
    expect(got.frames.length).toBe(1);
    expect(got.frames[0].length).toBe(65535);
  });

  it('qemu accepts the default limit 65550 exactly and rejects 65551', () => {
    const ok = run(HDR_BE32, 65550, [encode(HDR_BE32, [new Uint8Array(65550)])]);
    expect(ok.frames.length).toBe(1);
    const bad = run(HDR_BE32, 65550, [encode(HDR_BE32, [new Uint8Array(65551)])]);
    expect(bad.dec.error).toBe(DEC_TOO_LARGE);
    expect(bad.frames.length).toBe(0);
  });

  it('a huge declared length (0xffffffff) is rejected without allocating', () => {
    const got = run(HDR_BE32, 65550, [new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 2, 3])]);
    expect(got.dec.error).toBe(DEC_TOO_LARGE);
    expect(got.dec.badLength).toBe(0xffffffff);
  });
});
