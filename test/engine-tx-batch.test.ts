import { describe, expect, it } from 'vitest';
import { createKernels, type BackendName } from '../src/kernels/index.js';
import { TxBatch, type TcpSegment, type TxSink } from '../src/engine/tx-batch.js';
import type { FrameHold } from '../src/transport/types.js';
import { OPT_MSS, OPT_SACK_PERM, OPT_TS, OPT_WSCALE } from '../assembly/layout.js';
import { pseudoHeader, sumBytes } from '../src/wire/checksum.js';
import { rng } from './support/rng.js';

const BACKENDS: BackendName[] = ['wasm-simd', 'wasm', 'js'];
const GW = Uint8Array.of(0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6);
const VM = Uint8Array.of(0x02, 0, 0, 0, 0, 5);

interface View {
  mem: Uint8Array;
  ptr: number;
  len: number;
  /** The frame as it was handed over: what the link would write, whenever it writes. */
  snap: Buffer;
  hold: FrameHold;
}

/** A VM link stand-in: takes frames in place (keeping its views until told to let go) or, when asked to, only by copy. */
class Sink implements TxSink {
  readonly frames: Buffer[] = [];
  readonly views: View[] = [];
  copied = 0;
  constructor(readonly framePrefix = 4) {}
  send(buf: Uint8Array, off: number, len: number): void {
    this.frames.push(Buffer.from(buf.subarray(off, off + len)));
    this.copied++;
  }
  sendInPlace(buf: Uint8Array, off: number, len: number, hold: FrameHold): void {
    hold.retain();
    const snap = Buffer.from(buf.subarray(off, off + len));
    this.frames.push(snap);
    this.views.push({ mem: buf, ptr: off, len, snap, hold });
  }
  /** The link wrote its oldest `n` views. */
  written(n = this.views.length): void {
    for (const v of this.views.splice(0, n)) v.hold.release();
  }
  /** Every view still held shows the bytes it was handed: nothing wrote over pinned memory. */
  intact(): boolean {
    return this.views.every((v) => Buffer.from(v.mem.subarray(v.ptr, v.ptr + v.len)).equals(v.snap));
  }
}

function verify(f: Buffer): void {
  expect(f.readUInt16BE(12)).toBe(0x0800);
  expect(sumBytes(f, 14, 34)).toBe(0xffff);
  const proto = f[23];
  const l4 = f.length - 34;
  expect(sumBytes(f, 34, f.length, pseudoHeader(f.readUInt32BE(26), f.readUInt32BE(30), proto, l4))).toBe(0xffff);
}

function seg(i: number, opt: number): TcpSegment {
  return {
    srcIp: 0xc0a84102, srcPort: 80, dstIp: 0xc0a84103, dstPort: 40000 + (i % 7), seq: i * 1000, ack: 5,
    flags: 0x18, window: 512, optFlags: opt, mss: 1460, wscale: 7, tsVal: i, tsEcr: 3,
  };
}

const OPTS = [0, OPT_TS, OPT_MSS | OPT_SACK_PERM | OPT_TS | OPT_WSCALE, OPT_MSS, OPT_SACK_PERM, OPT_WSCALE | OPT_MSS];

describe.each(BACKENDS)('TxBatch on %s', (backend) => {
  const make = (ringBytes = 8 << 20) => {
    const k = createKernels({ backend, memoryBytes: 16 << 20 });
    return { k, tx: new TxBatch(k, 1024, ringBytes, GW) };
  };

  it('frames taken in place lie back to back behind their prefixes and equal the copied ones, byte for byte', () => {
    const r = rng(7);
    const payload = Buffer.alloc(9000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 255;
    const a = make();
    const b = make();
    const inPlace = new Sink(4);
    const le16 = new Sink(2);
    const copy: TxSink & { frames: Buffer[] } = { frames: [], send(buf, off, len) { this.frames.push(Buffer.from(buf.subarray(off, off + len))); } };
    const copy2: TxSink & { frames: Buffer[] } = { frames: [], send(buf, off, len) { this.frames.push(Buffer.from(buf.subarray(off, off + len))); } };
    for (let i = 0; i < 300; i++) {
      const len = r() < 0.3 ? 0 : Math.floor(r() * 1500);
      const sinkA = i % 5 === 4 ? le16 : inPlace;
      const sinkB = i % 5 === 4 ? copy2 : copy;
      if (i % 9 === 8) {
        a.tx.udp(sinkA, VM, 0xc0a84102, 53, 0xc0a84103, 1000 + i, payload, i, len);
        b.tx.udp(sinkB, VM, 0xc0a84102, 53, 0xc0a84103, 1000 + i, payload, i, len);
      } else {
        a.tx.tcp(sinkA, VM, seg(i, OPTS[i % OPTS.length]), payload, i, len);
        b.tx.tcp(sinkB, VM, seg(i, OPTS[i % OPTS.length]), payload, i, len);
      }
      if (i % 37 === 36) {
        a.tx.flush();
        b.tx.flush();
      }
    }
    a.tx.flush();
    b.tx.flush();
    expect(inPlace.copied + le16.copied).toBe(0);
    expect(a.tx.framesInPlace).toBe(300);
    expect(inPlace.frames).toEqual(copy.frames);
    expect(le16.frames).toEqual(copy2.frames);
    for (const f of inPlace.frames) verify(f);
    // Within a batch, one sink's consecutive frames are adjacent but for its prefix: one write.
    const v = inPlace.views;
    let adjacent = 0;
    for (let i = 1; i < v.length; i++) if (v[i].ptr === v[i - 1].ptr + v[i - 1].len + 4) adjacent++;
    expect(adjacent).toBeGreaterThan(150);
    expect(inPlace.intact()).toBe(true);
  });

  it('pinned frames are never overwritten: with the ring held, batches go through scratch by copy, and back in place once released', () => {
    const { tx } = make(256 * 1024);
    const sink = new Sink(4);
    const data = Buffer.alloc(1400, 0x5a);
    const turn = (n: number) => {
      for (let i = 0; i < n; i++) tx.tcp(sink, VM, seg(i, OPT_TS), data, 0, data.length);
      tx.flush();
    };
    for (let t = 0; t < 10; t++) turn(40); // 10 × 40 × ~1470 B: more than the 256 KiB ring
    expect(tx.scratchBatches).toBeGreaterThan(0);
    expect(sink.copied).toBeGreaterThan(0);
    expect(sink.frames.length).toBe(400);
    expect(sink.intact()).toBe(true);
    expect(tx.pinnedBytes).toBeGreaterThan(200 * 1024);
    for (const f of sink.frames) verify(f);
    const before = tx.framesInPlace;
    sink.written();
    expect(tx.pinnedBytes).toBe(0);
    turn(10);
    expect(tx.framesInPlace).toBe(before + 10);
  });

  it('the ring wraps while links lag a few batches behind, releasing in any order, without touching what they hold', () => {
    const { tx } = make(256 * 1024);
    const sinks = [new Sink(4), new Sink(2)];
    const r = rng(11);
    const data = Buffer.alloc(4000);
    for (let i = 0; i < data.length; i++) data[i] = i & 255;
    let wrapped = 0;
    let last = -1;
    for (let t = 0; t < 1000; t++) {
      const n = 1 + Math.floor(r() * 20);
      for (let i = 0; i < n; i++) {
        const s = sinks[Math.floor(r() * 2)];
        tx.tcp(s, VM, seg(t * 20 + i, OPT_TS), data, i, Math.floor(r() * 3000));
      }
      tx.flush();
      const v = sinks[0].views;
      if (v.length > 0) {
        const p = v[v.length - 1].ptr;
        if (p < last) wrapped++;
        last = p;
      }
      for (const s of sinks) {
        expect(s.intact()).toBe(true);
        // Each link lags behind by 40-120 frames (much of the ring), its writes completing now and then.
        if (r() < 0.6) s.written(Math.max(0, s.views.length - 40 - Math.floor(r() * 80)));
      }
    }
    expect(wrapped).toBeGreaterThan(5);
    for (const s of sinks) for (const f of s.frames) verify(f);
    for (const s of sinks) s.written();
    expect(tx.pinnedBytes).toBe(0);
  });
});
