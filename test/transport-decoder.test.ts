import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEC_EMPTY, DEC_OK, DEC_TOO_LARGE, FrameDecoder, HDR_BE32, HDR_LE16 } from '../src/transport/decoder.js';

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
  views: number;
}

function run(hdr: Hdr, max: number, chunks: Uint8Array[]): Collected & { dec: FrameDecoder } {
  const col: Collected = { frames: [], views: 0 };
  let current: Uint8Array | null = null;
  const dec = new FrameDecoder(hdr, max, (buf, off, len) => {
    if (buf === current) col.views++;
    col.frames.push(Uint8Array.from(buf.subarray(off, off + len)));
  });
  for (const c of chunks) {
    current = c;
    const p = dec.push(c, 0, c.length);
    if (dec.error !== DEC_OK) break;
    expect(p).toBe(c.length);
  }
  return { ...col, dec };
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
        expect(got.dec.buffered).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('handles large frames split into many small chunks (assembly buffer growth)', () => {
    fc.assert(
      fc.property(fc.array(frameArb(hdr === HDR_LE16 ? 65535 : 70000), { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 9000 }), (frames, step) => {
        const bytes = encode(hdr, frames);
        const cuts: number[] = [];
        for (let i = step; i < bytes.length; i += step) cuts.push(i);
        const got = run(hdr, 70000, split(bytes, cuts));
        expect(got.frames).toEqual(frames);
      }),
      { numRuns: 30 },
    );
  });

  it('hands out views into the chunk for frames that do not straddle', () => {
    const frames = [1, 2, 3, 4, 5].map((i) => new Uint8Array(100).fill(i));
    const got = run(hdr, 65550, [encode(hdr, frames)]);
    expect(got.frames).toEqual(frames);
    expect(got.views).toBe(5);
  });

  it('single-byte chunks: every frame is assembled, none is a view', () => {
    const frames = [new Uint8Array([9, 8, 7]), new Uint8Array(300).fill(1)];
    const bytes = encode(hdr, frames);
    const chunks = [...bytes].map((b) => new Uint8Array([b]));
    const got = run(hdr, 65550, chunks);
    expect(got.frames).toEqual(frames);
    expect(got.views).toBe(0);
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
    expect(got.dec.push(new Uint8Array([0, 0, 0, 1, 5]), 0, 5)).toBe(0);
  });

  it('stop set from the sink returns the position after that frame; pushing the rest continues in order', () => {
    fc.assert(
      fc.property(fc.array(frameArb(100), { minLength: 1, maxLength: 20 }), fc.nat(), fc.array(fc.nat(), { maxLength: 10 }), (frames, stopAtRaw, cuts) => {
        const stopAt = stopAtRaw % frames.length;
        const out: Uint8Array[] = [];
        const dec: FrameDecoder = new FrameDecoder(hdr, 65550, (b, o, l) => {
          out.push(Uint8Array.from(b.subarray(o, o + l)));
          if (out.length === stopAt + 1) dec.stop = true;
        });
        for (const c of split(encode(hdr, frames), cuts)) {
          let p = 0;
          while (p < c.length) {
            const q = dec.push(c, p, c.length);
            if (dec.stop) {
              expect(out.length).toBe(stopAt + 1);
              dec.stop = false; // resume
            }
            p = q;
          }
        }
        expect(out).toEqual(frames);
      }),
      { numRuns: 200 },
    );
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
