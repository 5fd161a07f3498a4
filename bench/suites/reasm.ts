import { rng, sink, type RowSpec } from '../lib.js';
import type { Kernels } from '../../src/kernels/index.js';

const MSS = 1460;
const BLOCK = 10; // segments between reads, like one receive turn
const BLOCKS = 4; // per iteration
const SRC_SEGS = 64; // distinct source buffers rotated through

/**
 * One stream fed BLOCK × BLOCKS segments per iteration, drained after each
 * block. `order` is the arrival schedule (segment indices within a block,
 * many blocks long); offsets are computed against rcv_nxt as a TCP receiver
 * would, from the stream's own readable count.
 */
function tcpWorkload(k: Kernels, order: Int32Array) {
  const cap = 256 * 1024;
  const r = k.alloc(k.k.reasmBytes(cap, 16), 8);
  k.k.reasmInit(r, cap, 16);
  const src = k.alloc(SRC_SEGS * MSS, 8);
  const fill = rng(1);
  for (let i = 0; i < SRC_SEGS * MSS; i++) k.u8[src + i] = (fill() * 256) | 0;
  const blocks = order.length / BLOCK;
  let consumed = 0; // stream bytes consumed so far
  let base = 0; // stream offset of the current block's first segment
  let b = 0;
  const kk = k.k;
  return {
    per: BLOCK * BLOCKS * MSS,
    run() {
      let acc = 0;
      for (let blk = 0; blk < BLOCKS; blk++) {
        const o = (b++ % blocks) * BLOCK;
        for (let i = 0; i < BLOCK; i++) {
          const seg = order[o + i];
          const nxt = consumed + kk.reasmReadable(r);
          const got = kk.reasmWrite(r, base + seg * MSS - nxt, src + ((b + seg) % SRC_SEGS) * MSS, MSS);
          acc += got;
        }
        // drain in chunks as a socket writer would
        let n = kk.reasmReadable(r);
        while (n > 0) {
          const c = kk.reasmReadChunk(r);
          acc += kk.reasmReadPtr(r);
          kk.reasmConsume(r, c);
          consumed += c;
          n -= c;
        }
        base += BLOCK * MSS;
      }
      sink.value = (sink.value + acc) | 0;
    },
  };
}

function schedule(outOfOrder: boolean): Int32Array {
  const blocks = 256;
  const order = new Int32Array(blocks * BLOCK);
  const rand = rng(7);
  for (let b = 0; b < blocks; b++) {
    for (let i = 0; i < BLOCK; i++) order[b * BLOCK + i] = i;
    if (outOfOrder) {
      // one segment in ten arrives after its successor
      const j = Math.floor(rand() * (BLOCK - 1));
      order[b * BLOCK + j] = j + 1;
      order[b * BLOCK + j + 1] = j;
    }
  }
  return order;
}

const FRAG_PAYLOAD = 1480;
const FRAG_DGRAMS = 16; // per iteration, distinct ids

function fragWorkload(k: Kernels) {
  const t = k.alloc(k.k.fragBytes(4, 3 * FRAG_PAYLOAD), 8);
  k.k.fragInit(t, 4, 3 * FRAG_PAYLOAD, 30000);
  const flen = 20 + FRAG_PAYLOAD;
  const frames = k.alloc(FRAG_DGRAMS * 3 * flen, 8);
  const fill = rng(3);
  for (let d = 0; d < FRAG_DGRAMS; d++) {
    for (let f = 0; f < 3; f++) {
      const p = frames + (d * 3 + f) * flen;
      k.u8[p] = 0x45;
      k.dv.setUint16(p + 2, flen);
      k.dv.setUint16(p + 4, 0x100 + d);
      k.dv.setUint16(p + 6, (f < 2 ? 0x2000 : 0) | ((f * FRAG_PAYLOAD) >> 3));
      k.u8[p + 8] = 64;
      k.u8[p + 9] = 17;
      k.dv.setUint32(p + 12, 0xc0a84102);
      k.dv.setUint32(p + 16, 0xc0a84101);
      for (let i = 20; i < flen; i++) k.u8[p + i] = (fill() * 256) | 0;
    }
  }
  const kk = k.k;
  let now = 0;
  return {
    per: FRAG_DGRAMS,
    run() {
      let acc = 0;
      now = (now + 1) >>> 0;
      for (let d = 0; d < FRAG_DGRAMS; d++) {
        const p = frames + d * 3 * flen;
        kk.fragInsert(t, p, flen, now);
        kk.fragInsert(t, p + flen, flen, now);
        const slot = kk.fragInsert(t, p + 2 * flen, flen, now);
        if (slot >= 0) {
          acc += kk.fragDatagramLen(t, slot);
          kk.fragRelease(t, slot);
        }
      }
      sink.value = (sink.value + acc) | 0;
    },
  };
}

export function rows(): RowSpec[] {
  const inOrder = schedule(false);
  const ooo = schedule(true);
  return [
    { group: 'reasm', name: 'TCP in order 1460 B', unit: 'GB/s', setup: (k) => tcpWorkload(k, inOrder) },
    { group: 'reasm', name: 'TCP 10% out of order 1460 B', unit: 'GB/s', setup: (k) => tcpWorkload(k, ooo) },
    { group: 'reasm', name: 'IPv4 frag 3×1480 B', unit: 'Mpps', setup: (k) => fragWorkload(k) },
  ];
}
