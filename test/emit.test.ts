import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { createKernels, type Kernels, type BackendName } from '../src/kernels/index.js';
import { sumBytes, pseudoHeader, fold } from '../src/wire/checksum.js';
import {
  TX_SIZE, T_PROTO, T_TCP_FLAGS, T_OPT_FLAGS, T_WSCALE, T_SRC_IP, T_DST_IP, T_SRC_PORT, T_DST_PORT,
  T_SEQ, T_ACK, T_WINDOW, T_MSS, T_TS_VAL, T_TS_ECR, T_PAYLOAD_PTR, T_PAYLOAD_LEN, T_IP_ID, T_TTL,
  T_DST_MAC, T_SRC_MAC, T_FRAME_LEN, T_COPY_FROM, FRAME_ENTRY_SIZE, FE_PTR, FE_LEN,
  OPT_MSS, OPT_WSCALE, OPT_SACK_PERM, OPT_TS, OPT_SACK,
} from '../assembly/layout.js';

const BACKENDS: BackendName[] = ['wasm-simd', 'wasm', 'js'];
const MAX_TX = 48;
const OUT_CAP = 1 << 20;
const CANARY = 4096;
const PAYLOAD_AREA = 256 * 1024;

interface Tx {
  proto: number;
  flags: number;
  opt: number;
  wscale: number;
  src: number;
  dst: number;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  window: number;
  mss: number;
  tsVal: number;
  tsEcr: number;
  payload: Uint8Array;
  /** Written to T_PAYLOAD_LEN instead of payload.length (for oversize cases). */
  lenOverride?: number;
  /** Written to T_PAYLOAD_PTR instead of the staged payload's address. */
  ptrOverride?: number;
  /** T_COPY_FROM: the staged payload's address (true), or this value. */
  copyFrom?: true | number;
  ipId: number;
  ttl: number;
  dstMac: number[];
  srcMac: number[];
}

interface Env {
  k: Kernels;
  txs: number;
  table: number;
  payloads: number;
  out: number; // region start; the test's `out` argument is out + a small offset
}

const envs = new Map<BackendName, Env>();
for (const b of BACKENDS) {
  const k = createKernels({ backend: b, memoryBytes: 4 << 20 });
  envs.set(b, {
    k,
    txs: k.alloc(TX_SIZE * MAX_TX, 64),
    table: k.alloc(FRAME_ENTRY_SIZE * MAX_TX, 64),
    payloads: k.alloc(PAYLOAD_AREA, 64),
    out: k.alloc(OUT_CAP + 2 * CANARY, 64) + CANARY,
  });
}

function tx(partial: Partial<Tx>): Tx {
  return {
    proto: 6, flags: 0x10, opt: 0, wscale: 0, src: 0xc0a84101, dst: 0xc0a84103, sport: 80, dport: 40000,
    seq: 1, ack: 2, window: 65535, mss: 1460, tsVal: 0, tsEcr: 0, payload: new Uint8Array(0),
    ipId: 0, ttl: 64, dstMac: [0x52, 0x54, 0, 0x12, 0x34, 0x56], srcMac: [0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd],
    ...partial,
  };
}

/** Stage descriptors and payloads (payloads at odd and even addresses alike); returns payload pointers. */
function stage(env: Env, list: Tx[]): number[] {
  const { k } = env;
  const dv = k.dv;
  let p = env.payloads;
  const ptrs: number[] = [];
  list.forEach((d, i) => {
    p += i % 3; // vary the payload source alignment
    if (p + d.payload.length > env.payloads + PAYLOAD_AREA) throw new Error('test payload area too small');
    k.u8.set(d.payload, p);
    const t = env.txs + i * TX_SIZE;
    k.u8.fill(0, t, t + TX_SIZE);
    dv.setUint8(t + T_PROTO, d.proto);
    dv.setUint8(t + T_TCP_FLAGS, d.flags);
    dv.setUint8(t + T_OPT_FLAGS, d.opt);
    dv.setUint8(t + T_WSCALE, d.wscale);
    dv.setUint32(t + T_SRC_IP, d.src, true);
    dv.setUint32(t + T_DST_IP, d.dst, true);
    dv.setUint16(t + T_SRC_PORT, d.sport, true);
    dv.setUint16(t + T_DST_PORT, d.dport, true);
    dv.setUint32(t + T_SEQ, d.seq, true);
    dv.setUint32(t + T_ACK, d.ack, true);
    dv.setUint16(t + T_WINDOW, d.window, true);
    dv.setUint16(t + T_MSS, d.mss, true);
    dv.setUint32(t + T_TS_VAL, d.tsVal, true);
    dv.setUint32(t + T_TS_ECR, d.tsEcr, true);
    dv.setUint32(t + T_PAYLOAD_PTR, d.ptrOverride ?? p, true);
    dv.setUint32(t + T_PAYLOAD_LEN, d.lenOverride ?? d.payload.length, true);
    dv.setUint16(t + T_IP_ID, d.ipId, true);
    dv.setUint8(t + T_TTL, d.ttl);
    k.u8.set(d.dstMac, t + T_DST_MAC);
    k.u8.set(d.srcMac, t + T_SRC_MAC);
    dv.setUint32(t + T_FRAME_LEN, 0xdeadbeef, true);
    if (d.copyFrom !== undefined) dv.setUint32(t + T_COPY_FROM, d.copyFrom === true ? p : d.copyFrom, true);
    ptrs.push(p);
    p += d.payload.length;
  });
  return ptrs;
}

interface Built {
  n: number;
  /** per descriptor actually processed: frame offset from the `out` argument, and length */
  frames: { off: number; len: number; bytes: Uint8Array; frameLenField: number }[];
}

function build(b: BackendName, list: Tx[], outOff = 0, outCap = OUT_CAP - 8): Built {
  const env = envs.get(b)!;
  const { k } = env;
  stage(env, list);
  const out = env.out + outOff;
  k.u8.fill(0xa5, env.out - CANARY, env.out + OUT_CAP + CANARY);
  k.u8.fill(0xee, env.table, env.table + FRAME_ENTRY_SIZE * MAX_TX);
  const n = k.k.buildFrames(env.txs, list.length, out, outCap, env.table);
  const frames = [];
  for (let i = 0; i < n; i++) {
    const ptr = k.dv.getUint32(env.table + i * FRAME_ENTRY_SIZE + FE_PTR, true);
    const len = k.dv.getUint32(env.table + i * FRAME_ENTRY_SIZE + FE_LEN, true);
    frames.push({
      off: ptr - out,
      len,
      bytes: k.u8.slice(ptr, ptr + len),
      frameLenField: k.dv.getUint32(env.txs + i * TX_SIZE + T_FRAME_LEN, true),
    });
  }
  return { n, frames };
}

/** Options the descriptor asks for, in the byte layout Linux writes. */
function expectedOptions(d: Tx): number[] {
  const o: number[] = [];
  if (d.opt & OPT_MSS) o.push(2, 4, d.mss >> 8, d.mss & 0xff);
  const be32 = (v: number) => [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
  if (d.opt & OPT_TS) o.push(...(d.opt & OPT_SACK_PERM ? [4, 2] : [1, 1]), 8, 10, ...be32(d.tsVal), ...be32(d.tsEcr));
  else if (d.opt & OPT_SACK_PERM) o.push(1, 1, 4, 2);
  if (d.opt & OPT_WSCALE) o.push(1, 3, 3, d.wscale);
  return o;
}

function buildable(d: Tx): boolean {
  const len = d.lenOverride ?? d.payload.length;
  if (d.proto === 6) return 20 + 20 + expectedOptions(d).length + len <= 65535;
  if (d.proto === 17) return 28 + len <= 65535;
  return false;
}

/** Independent check of one built frame against its descriptor. */
function verify(f: Uint8Array, d: Tx): void {
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  expect([...f.subarray(0, 6)]).toEqual(d.dstMac);
  expect([...f.subarray(6, 12)]).toEqual(d.srcMac);
  expect(dv.getUint16(12)).toBe(0x0800);
  const ip = f.subarray(14);
  expect(ip[0]).toBe(0x45);
  expect(ip[1]).toBe(0);
  expect(dv.getUint16(16)).toBe(f.length - 14);
  expect(dv.getUint16(18)).toBe(d.ipId);
  expect(dv.getUint16(20)).toBe(0x4000); // DF, no fragment offset
  expect(ip[8]).toBe(d.ttl === 0 ? 64 : d.ttl);
  expect(ip[9]).toBe(d.proto);
  expect(sumBytes(f, 14, 34)).toBe(0xffff);
  expect(dv.getUint32(26)).toBe(d.src >>> 0);
  expect(dv.getUint32(30)).toBe(d.dst >>> 0);
  const l4Len = f.length - 34;
  expect(dv.getUint16(34)).toBe(d.sport);
  expect(dv.getUint16(36)).toBe(d.dport);
  let hdr: number;
  if (d.proto === 6) {
    expect(dv.getUint32(38)).toBe(d.seq >>> 0);
    expect(dv.getUint32(42)).toBe(d.ack >>> 0);
    hdr = (f[46] >> 4) * 4;
    expect(f[46] & 0x0f).toBe(0);
    expect(f[47]).toBe(d.flags);
    expect(dv.getUint16(48)).toBe(d.window);
    expect(dv.getUint16(52)).toBe(0);
    expect([...f.subarray(54, 34 + hdr)]).toEqual(expectedOptions(d));
  } else {
    hdr = 8;
    expect(dv.getUint16(38)).toBe(l4Len);
    expect(dv.getUint16(40)).not.toBe(0);
  }
  expect(hdr % 4).toBe(0);
  expect(f.length).toBe(34 + hdr + d.payload.length);
  expect(f.subarray(34 + hdr)).toEqual(d.payload);
  expect(sumBytes(f, 34, f.length, pseudoHeader(d.src >>> 0, d.dst >>> 0, d.proto, l4Len))).toBe(0xffff);
}

const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((h) => parseInt(h, 16)));

// Two frames from test/fixtures/guest.pcap (a Linux 6.1 guest): a DNS query
// over UDP and a TCP SYN with Linux's MSS, SACK-perm+TS, NOP+WS options.
const GUEST_DNS = hex(
  '5a94efe40cdd52540012345608004500003a482b40004011ef32c0a84103c0a84101de2900350026d39a17ad0100000100000000000007766e65746b697404746573740000010001',
);
const GUEST_SYN = hex(
  '5a94efe40cdd52540012345608004500003c089e400040062ec9c0a84103c0a84101a9cc1f90117a57f000000000a002faf0b7ab0000020405b40402080ac1939db50000000001030305',
);
const GUEST_MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const GW_MAC = [0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd];

const arbTx: fc.Arbitrary<Tx> = fc
  .record({
    proto: fc.oneof({ weight: 5, arbitrary: fc.constant(6) }, { weight: 4, arbitrary: fc.constant(17) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
    flags: fc.integer({ min: 0, max: 255 }),
    opt: fc.integer({ min: 0, max: 31 }),
    wscale: fc.integer({ min: 0, max: 255 }),
    src: fc.integer({ min: 0, max: 0xffffffff }),
    dst: fc.integer({ min: 0, max: 0xffffffff }),
    sport: fc.integer({ min: 0, max: 0xffff }),
    dport: fc.integer({ min: 0, max: 0xffff }),
    seq: fc.integer({ min: 0, max: 0xffffffff }),
    ack: fc.integer({ min: 0, max: 0xffffffff }),
    window: fc.integer({ min: 0, max: 0xffff }),
    mss: fc.integer({ min: 0, max: 0xffff }),
    tsVal: fc.integer({ min: 0, max: 0xffffffff }),
    tsEcr: fc.integer({ min: 0, max: 0xffffffff }),
    payload: fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ minLength: 1400, maxLength: 1500 }),
      fc.uint8Array({ maxLength: 4000 }),
    ),
    ipId: fc.integer({ min: 0, max: 0xffff }),
    ttl: fc.integer({ min: 0, max: 255 }),
    dstMac: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }),
    srcMac: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }),
  })
  .map((r) => r as Tx);

describe.each(BACKENDS)('buildFrames on %s', (b) => {
  const env = () => envs.get(b)!;

  it('rebuilds a captured Linux DNS query and TCP SYN byte for byte', () => {
    const dns = tx({
      proto: 17, src: 0xc0a84103, dst: 0xc0a84101, sport: 0xde29, dport: 53, ipId: 0x482b, ttl: 64,
      payload: GUEST_DNS.subarray(42), dstMac: GW_MAC, srcMac: GUEST_MAC,
    });
    const syn = tx({
      proto: 6, flags: 0x02, opt: OPT_MSS | OPT_SACK_PERM | OPT_TS | OPT_WSCALE, wscale: 5, mss: 1460,
      src: 0xc0a84103, dst: 0xc0a84101, sport: 0xa9cc, dport: 8080, seq: 0x117a57f0, ack: 0, window: 0xfaf0,
      tsVal: 0xc1939db5, tsEcr: 0, ipId: 0x089e, ttl: 0, // TTL 0 means the default, 64
      dstMac: GW_MAC, srcMac: GUEST_MAC,
    });
    const r = build(b, [dns, syn]);
    expect(r.n).toBe(2);
    expect(r.frames[0].bytes).toEqual(GUEST_DNS);
    expect(r.frames[1].bytes).toEqual(GUEST_SYN);
    expect(r.frames.map((f) => f.frameLenField)).toEqual([GUEST_DNS.length, GUEST_SYN.length]);
    // 4-byte-aligned starts, back to back: 72 -> next at 72.
    expect(r.frames[0].off).toBe(0);
    expect(r.frames[1].off).toBe(72);
  });

  it('data segments carry NOP NOP TS; option-less headers are 20 bytes', () => {
    const seg = tx({ opt: OPT_TS, tsVal: 0x01020304, tsEcr: 0xa0b0c0d0, payload: Uint8Array.of(1, 2, 3) });
    const bare = tx({ opt: 0, payload: Uint8Array.of(9) });
    const r = build(b, [seg, bare], 1);
    expect(r.n).toBe(2);
    const f = r.frames[0].bytes;
    expect(f[46]).toBe(0x80); // 32-byte header
    expect([...f.subarray(54, 66)]).toEqual([1, 1, 8, 10, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0]);
    expect(r.frames[1].bytes[46]).toBe(0x50);
    // out + 1 rounds up to the next 4-byte boundary; the second frame starts
    // at the next boundary after 69 bytes.
    expect(r.frames[0].off).toBe(3);
    expect(r.frames[1].off).toBe(3 + 72);
    verify(f, seg);
    verify(r.frames[1].bytes, bare);
  });

  it('a UDP checksum that computes to 0 is sent as 0xffff', () => {
    // Pick a 2-byte payload that makes the sum exactly 0xffff (so ~sum = 0).
    const d = tx({ proto: 17, src: 0x0a000001, dst: 0x0a000002, sport: 1, dport: 2, payload: new Uint8Array(2) });
    const l4Len = 10;
    const partial = fold(pseudoHeader(d.src, d.dst, 17, l4Len) + d.sport + d.dport + l4Len);
    const word = 0xffff - partial;
    d.payload = Uint8Array.of(word >> 8, word & 0xff);
    const r = build(b, [d]);
    expect(new DataView(r.frames[0].bytes.buffer).getUint16(40)).toBe(0xffff);
    verify(r.frames[0].bytes, d);
  });

  it('unbuildable descriptors get a zero-length entry and the batch continues', () => {
    const good = tx({ payload: Uint8Array.of(1, 2, 3, 4, 5) });
    const icmp = tx({ proto: 1 });
    const bigUdp = tx({ proto: 17, lenOverride: 65535 - 28 + 1 });
    const maxUdp = tx({ proto: 17, payload: new Uint8Array(65535 - 28).fill(7) });
    const bigTcp = tx({ proto: 6, opt: OPT_TS, lenOverride: 65535 - 52 + 1 });
    const hugeLen = tx({ proto: 6, lenOverride: 0xffffffff });
    const outside = tx({ proto: 17, ptrOverride: env().k.memoryBytes - 2, lenOverride: 3 });
    const wrapping = tx({ proto: 17, ptrOverride: 0xfffffff0, lenOverride: 0x20 });
    const copyOutside = tx({ payload: Uint8Array.of(1, 2, 3), copyFrom: env().k.memoryBytes - 2 });
    const list = [good, icmp, bigUdp, maxUdp, bigTcp, hugeLen, outside, wrapping, copyOutside, good];
    const r = build(b, list);
    expect(r.n).toBe(list.length);
    expect(r.frames.map((f) => f.len)).toEqual([59, 0, 0, 65535 + 14, 0, 0, 0, 0, 0, 59]);
    expect(r.frames.map((f) => f.frameLenField)).toEqual(r.frames.map((f) => f.len));
    // A skipped descriptor reports where its frame would have started.
    expect(r.frames[1].off).toBe(60);
    expect(r.frames[3].off).toBe(60);
    expect(r.frames[9].off).toBe(Math.ceil((60 + 65535 + 14) / 4) * 4);
    verify(r.frames[0].bytes, good);
    verify(r.frames[3].bytes, maxUdp);
    verify(r.frames[9].bytes, good);
  });

  it('descriptor and table ranges past the end of memory shorten the batch instead of trapping', () => {
    const { k } = env();
    const txs = k.memoryBytes - 2 * TX_SIZE;
    k.u8.fill(0, txs, k.memoryBytes);
    expect(k.k.buildFrames(txs, 5, env().out, 4096, env().table)).toBe(2); // both proto 0: zero-length entries
    const table = k.memoryBytes - FRAME_ENTRY_SIZE;
    stage(env(), [tx({}), tx({})]);
    expect(k.k.buildFrames(env().txs, 2, env().out, 4096, table)).toBe(1);
    expect(k.k.buildFrames(env().txs, 2, env().out, 4096, k.memoryBytes + 64)).toBe(0);
    // An output region past the end of memory is clamped: the frame does not fit, nothing is written.
    expect(k.k.buildFrames(env().txs, 1, k.memoryBytes - 40, 4096, env().table)).toBe(0);
    expect(k.k.buildFrames(env().txs, 1, 0xfffffff0, 0xffff, env().table)).toBe(0);
  });

  it('random descriptors build frames that verify', () => {
    fc.assert(
      fc.property(fc.array(arbTx, { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 7 }), (list, outOff) => {
        const r = build(b, list, outOff);
        expect(r.n).toBe(list.length);
        const out = env().out + outOff;
        let cursor = out;
        list.forEach((d, i) => {
          const start = Math.ceil(cursor / 4) * 4;
          expect(r.frames[i].off).toBe(start - out);
          expect(r.frames[i].frameLenField).toBe(r.frames[i].len);
          if (!buildable(d)) {
            expect(r.frames[i].len).toBe(0);
            return;
          }
          verify(r.frames[i].bytes, d);
          cursor = start + r.frames[i].len;
        });
      }),
      { numRuns: 150 },
    );
  });

  it('stops at the first frame that does not fit and writes nothing past outCap', () => {
    fc.assert(
      fc.property(
        fc.array(arbTx, { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 3 }),
        fc.double({ min: 0, max: 1.1, noNaN: true }),
        (list, outOff, frac) => {
          // Model of the layout: 4-byte-aligned starts, unbuildable ones take no room.
          const base = envs.get(b)!.out;
          let cursor = base + outOff;
          let total = 0;
          const ends: number[] = [];
          for (const d of list) {
            const start = Math.ceil(cursor / 4) * 4;
            const len = buildable(d) ? 34 + (d.proto === 6 ? 20 + expectedOptions(d).length : 8) + d.payload.length : 0;
            if (len) cursor = start + len;
            ends.push(len ? cursor - (base + outOff) : -1);
            total = cursor - (base + outOff);
          }
          const outCap = Math.floor(total * frac);
          let want = 0;
          while (want < list.length && ends[want] <= outCap) want++;
          const r = build(b, list, outOff, outCap);
          expect(r.n).toBe(want);
          const { k, txs, table } = envs.get(b)!;
          const out = base + outOff;
          // Canaries on both sides of [out, out + outCap) survive.
          expect(k.u8.subarray(base - CANARY, out).findIndex((v) => v !== 0xa5)).toBe(-1);
          expect(k.u8.subarray(out + outCap, out + outCap + CANARY).findIndex((v) => v !== 0xa5)).toBe(-1);
          // The descriptors and table slots after the last built one are untouched.
          for (let i = r.n; i < list.length; i++) {
            expect(k.dv.getUint32(txs + i * TX_SIZE + T_FRAME_LEN, true)).toBe(0xdeadbeef);
            expect(k.dv.getUint32(table + i * FRAME_ENTRY_SIZE, true)).toBe(0xeeeeeeee);
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('buildFrames agrees across backends', () => {
  it('byte-identical frames, table entries and lengths for random descriptors', () => {
    fc.assert(
      fc.property(
        fc.array(arbTx, { minLength: 1, maxLength: 16 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 40000 }),
        (list, outOff, outCap) => {
          const results = BACKENDS.map((b) => build(b, list, outOff, outCap));
          expect(results[1]).toEqual(results[0]);
          expect(results[2]).toEqual(results[0]);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('a payload source overlapping the output gives the same bytes everywhere, with valid checksums', () => {
    // The payload is read from inside the frame being built (memmove semantics).
    for (const [rel, len] of [[40, 100], [60, 37], [20, 2000], [54 + 16, 300]] as const) {
      const results = BACKENDS.map((b) => {
        const env = envs.get(b)!;
        return build(b, [tx({ proto: 17, ptrOverride: env.out + rel, lenOverride: len })]);
      });
      expect(results[0].n).toBe(1);
      expect(results[1]).toEqual(results[0]);
      expect(results[2]).toEqual(results[0]);
      const f = results[0].frames[0].bytes;
      expect(f.length).toBe(42 + len);
      expect(sumBytes(f, 14, 34)).toBe(0xffff);
      expect(sumBytes(f, 34, f.length, pseudoHeader(0xc0a84101, 0xc0a84103, 17, 8 + len))).toBe(0xffff);
    }
  });

  it('payloads already in the output region are built around where they lie, not copied', () => {
    // Slots of 96 bytes of headroom, then the payload (possibly empty). The last payload is put
    // too close behind the previous frame for its headers: that one is copied to the next aligned start.
    fc.assert(
      fc.property(fc.array(arbTx.filter(buildable), { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 3 }), (list, gap) => {
        const results = BACKENDS.map((b) => {
          const env = envs.get(b)!;
          const { k } = env;
          const placed: number[] = [];
          let slot = env.out;
          const descs = list.map((d, i) => {
            const last = i === list.length - 1 && i > 0;
            const ptr = last ? slot + gap : slot + 96;
            placed.push(ptr);
            slot = (ptr + d.payload.length + 7) & ~7;
            return { ...d, ptrOverride: ptr };
          });
          stage(env, descs);
          k.u8.fill(0xa5, env.out - CANARY, env.out + OUT_CAP + CANARY);
          descs.forEach((d, i) => k.u8.set(d.payload, placed[i]));
          const n = k.k.buildFrames(env.txs, descs.length, env.out, OUT_CAP - 8, env.table);
          expect(n).toBe(descs.length);
          let cursor = env.out;
          return descs.map((d, i) => {
            const ptr = k.dv.getUint32(env.table + i * FRAME_ENTRY_SIZE + FE_PTR, true);
            const len = k.dv.getUint32(env.table + i * FRAME_ENTRY_SIZE + FE_LEN, true);
            const bytes = k.u8.slice(ptr, ptr + len);
            const hdrs = len - d.payload.length;
            // Empty payloads too: the pointer alone says where a bare ACK goes.
            const inPlace = placed[i] - hdrs >= cursor;
            // A copied payload that overlaps its own frame's headers is clobbered by them (defined
            // only as "the same on every backend", checked below); every other frame must verify.
            if (inPlace || placed[i] >= Math.ceil(cursor / 4) * 4 + hdrs || d.payload.length === 0) verify(bytes, d);
            // In place: the frame ends exactly at its payload's end; otherwise it starts at the aligned cursor.
            expect(ptr).toBe(inPlace ? placed[i] - hdrs : Math.ceil(cursor / 4) * 4);
            if (i === descs.length - 1 && i > 0) expect(inPlace).toBe(false);
            cursor = ptr + len;
            return { off: ptr - env.out, len, bytes };
          });
        });
        expect(results[1]).toEqual(results[0]);
        expect(results[2]).toEqual(results[0]);
      }),
      { numRuns: 100 },
    );
  });

  it('T_COPY_FROM: a payload elsewhere in memory is copied into the frame its slot places, and summed; the same everywhere', () => {
    fc.assert(
      fc.property(fc.array(arbTx.filter(buildable), { minLength: 1, maxLength: 12 }), (list) => {
        const results = BACKENDS.map((b) => {
          const env = envs.get(b)!;
          const { k } = env;
          const slots: number[] = [];
          let slot = env.out;
          const descs = list.map((d) => {
            const ptr = slot + 96;
            slots.push(ptr);
            slot = (ptr + d.payload.length + 7) & ~7;
            return { ...d, ptrOverride: ptr, copyFrom: true as const };
          });
          stage(env, descs);
          // The slots hold stale bytes: what lands there must come from T_COPY_FROM.
          k.u8.fill(0xa5, env.out - CANARY, env.out + OUT_CAP + CANARY);
          const n = k.k.buildFrames(env.txs, descs.length, env.out, OUT_CAP - 8, env.table);
          expect(n).toBe(descs.length);
          return descs.map((d, i) => {
            const ptr = k.dv.getUint32(env.table + i * FRAME_ENTRY_SIZE + FE_PTR, true);
            const len = k.dv.getUint32(env.table + i * FRAME_ENTRY_SIZE + FE_LEN, true);
            const bytes = k.u8.slice(ptr, ptr + len);
            verify(bytes, d);
            expect(ptr + len).toBe(slots[i] + d.payload.length);
            return { off: ptr - env.out, len, bytes };
          });
        });
        expect(results[1]).toEqual(results[0]);
        expect(results[2]).toEqual(results[0]);
      }),
      { numRuns: 100 },
    );
  });

  it('OPT_SACK alone adds no option bytes (the descriptor has no blocks to send)', () => {
    const d = tx({ opt: OPT_SACK, payload: Uint8Array.of(1) });
    for (const b of BACKENDS) {
      const r = build(b, [d]);
      expect(r.frames[0].bytes[46]).toBe(0x50);
      verify(r.frames[0].bytes, d);
    }
  });
});
