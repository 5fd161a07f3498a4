import { rng } from './support/rng.js';
import { describe, it, expect, beforeAll } from 'vitest';
import fc from 'fast-check';
import { createKernels, type Kernels, type BackendName } from '../src/kernels/index.js';
import { FR_PENDING, FR_OVERLAP, FR_TOO_BIG, FR_FULL, FR_BAD, FR_TOO_MANY_PIECES } from '../assembly/layout.js';
import { sumBytes, finish } from '../src/wire/checksum.js';

const BACKENDS: BackendName[] = ['wasm-simd', 'wasm', 'js'];
const MEM = 4 * 1024 * 1024;

interface Dgram {
  src: number;
  dst: number;
  id: number;
  proto: number;
  /** IPv4 options carried by the offset-0 fragment (length a multiple of 4, ≤ 40). */
  options: Uint8Array;
  ttl: number;
  payload: Uint8Array;
}


function fill(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

function dgram(over: Partial<Dgram> = {}): Dgram {
  return {
    src: 0xc0a84102,
    dst: 0x08080808,
    id: 0x1234,
    proto: 17,
    options: new Uint8Array(0),
    ttl: 64,
    payload: fill(100, 1),
    ...over,
  };
}

/**
 * One fragment of `d`: payload bytes [start, start + len) with MF as given.
 * Non-first fragments carry no options (RFC 791 copies only flagged ones;
 * dropping them all is allowed). `bytes` overrides the payload (for
 * conflicting overlaps). The header checksum is left wrong on purpose: the
 * kernel trusts classify to have checked it and must recompute anyway.
 */
function frag(d: Dgram, start: number, len: number, mf: boolean, bytes?: Uint8Array): Uint8Array {
  const opts = start === 0 ? d.options : new Uint8Array(0);
  const ihl = 20 + opts.length;
  const b = new Uint8Array(ihl + len);
  const v = new DataView(b.buffer);
  b[0] = 0x40 | (ihl >> 2);
  b[1] = 0x10;
  v.setUint16(2, ihl + len);
  v.setUint16(4, d.id);
  v.setUint16(6, (mf ? 0x2000 : 0) | (start >> 3));
  b[8] = d.ttl;
  b[9] = d.proto;
  v.setUint16(10, 0xbeef);
  v.setUint32(12, d.src);
  v.setUint32(16, d.dst);
  b.set(opts, 20);
  b.set(bytes ?? d.payload.subarray(start, start + len), ihl);
  return b;
}

/** The datagram a correct reassembler hands back (checksum computed here, independently). */
function expected(d: Dgram, payload = d.payload): Uint8Array {
  const first = frag(d, 0, Math.min(8, d.payload.length), true);
  const ihl = 20 + d.options.length;
  const out = new Uint8Array(ihl + payload.length);
  out.set(first.subarray(0, ihl));
  const v = new DataView(out.buffer);
  v.setUint16(2, out.length);
  v.setUint16(6, 0);
  v.setUint16(10, 0);
  v.setUint16(10, finish(sumBytes(out, 0, ihl)));
  out.set(payload, ihl);
  return out;
}

/** Split [0, n) into fragments of `size` (a multiple of 8) bytes. */
function split(n: number, size: number): [number, number, boolean][] {
  const out: [number, number, boolean][] = [];
  for (let s = 0; s < n; s += size) out.push([s, Math.min(size, n - s), s + size < n]);
  return out;
}

interface Table {
  k: Kernels;
  t: number;
  scratch: number;
}

function table(k: Kernels, slots: number, maxDatagram: number, timeout: number): Table {
  const t = k.alloc(k.k.fragBytes(slots, maxDatagram), 8);
  k.k.fragInit(t, slots, maxDatagram, timeout);
  return { k, t, scratch: k.alloc(70000, 8) };
}

function insert(tb: Table, f: Uint8Array, now = 0, len = f.length): number {
  tb.k.u8.set(f, tb.scratch);
  return tb.k.k.fragInsert(tb.t, tb.scratch, len, now);
}

function datagram(tb: Table, slot: number): Uint8Array {
  const p = tb.k.k.fragDatagramPtr(tb.t, slot);
  return tb.k.u8.slice(p, p + tb.k.k.fragDatagramLen(tb.t, slot));
}

describe.each(BACKENDS)('frag on %s', (backend) => {
  let k: Kernels;
  beforeAll(() => {
    k = createKernels({ backend, memoryBytes: MEM });
  });

  it('sizes the table from slots and the datagram bound', () => {
    const one = k.k.fragBytes(1, 1500);
    expect(one % 8).toBe(0);
    expect(one).toBeGreaterThan(1500 + 60);
    expect(k.k.fragBytes(4, 1500)).toBe(32 + 4 * (one - 32));
    // clamped at the largest payload an IPv4 header can describe
    expect(k.k.fragBytes(1, 1 << 30)).toBe(k.k.fragBytes(1, 65515));
  });

  it('reassembles in order, rewriting total length, flags and checksum', () => {
    const tb = table(k, 2, 4000, 1000);
    const d = dgram({ payload: fill(3000, 2) });
    const parts = split(3000, 1480);
    expect(insert(tb, frag(d, ...parts[0]))).toBe(FR_PENDING);
    expect(insert(tb, frag(d, ...parts[1]))).toBe(FR_PENDING);
    expect(k.k.fragPending(tb.t)).toBe(1);
    const slot = insert(tb, frag(d, ...parts[2]));
    expect(slot).toBe(0);
    const out = datagram(tb, slot);
    expect(out).toEqual(expected(d));
    expect(sumBytes(out, 0, 20)).toBe(0xffff);
    expect(k.k.fragPending(tb.t)).toBe(1); // finished but not yet released
    k.k.fragRelease(tb.t, slot);
    expect(k.k.fragPending(tb.t)).toBe(0);
    expect(k.k.fragDatagramPtr(tb.t, slot)).toBe(0);
    expect(k.k.fragDatagramLen(tb.t, slot)).toBe(0);
  });

  it('reassembles out of order and keeps the first fragment header, options included', () => {
    const tb = table(k, 2, 4000, 1000);
    const d = dgram({ payload: fill(1001, 3), options: Uint8Array.of(0x94, 4, 0, 0, 0x01, 0x01, 0x01, 0x00), ttl: 3 });
    const parts = split(1001, 200);
    expect(parts.at(-1)![1]).toBe(1);
    let slot = FR_PENDING;
    for (const p of parts.reverse()) {
      expect(slot).toBe(FR_PENDING);
      slot = insert(tb, frag(d, ...p));
    }
    expect(slot).toBeGreaterThanOrEqual(0);
    const out = datagram(tb, slot);
    expect(out[0]).toBe(0x47);
    expect(out).toEqual(expected(d));
    expect(sumBytes(out, 0, 28)).toBe(0xffff);
    k.k.fragRelease(tb.t, slot);
  });

  it('keeps concurrent datagrams apart by (src, dst, proto, id)', () => {
    const tb = table(k, 4, 2000, 1000);
    const a = dgram({ payload: fill(600, 4) });
    const b = dgram({ payload: fill(600, 5), proto: 6 });
    const c = dgram({ payload: fill(600, 6), src: 0xc0a84103 });
    const e = dgram({ payload: fill(600, 7), id: 0x1235 });
    const all = [a, b, c, e];
    for (const d of all) expect(insert(tb, frag(d, 0, 304, true))).toBe(FR_PENDING);
    expect(k.k.fragPending(tb.t)).toBe(4);
    const done = all.map((d) => insert(tb, frag(d, 304, 296, false)));
    expect(done).toEqual([0, 1, 2, 3]);
    all.forEach((d, i) => expect(datagram(tb, i)).toEqual(expected(d)));
    for (const s of done) k.k.fragRelease(tb.t, s);
  });

  it('drops the whole datagram on any overlap, even an exact duplicate', () => {
    const tb = table(k, 2, 2000, 1000);
    const d = dgram({ payload: fill(800, 8) });
    expect(insert(tb, frag(d, 0, 400, true))).toBe(FR_PENDING);
    expect(insert(tb, frag(d, 0, 400, true))).toBe(FR_OVERLAP);
    expect(k.k.fragPending(tb.t)).toBe(0);
    // the datagram starts afresh; a partial overlap with different bytes also drops it
    expect(insert(tb, frag(d, 400, 400, false))).toBe(FR_PENDING);
    expect(insert(tb, frag(d, 392, 16, true, fill(16, 99)))).toBe(FR_OVERLAP);
    expect(k.k.fragPending(tb.t)).toBe(0);
    // touching is not overlapping
    expect(insert(tb, frag(d, 400, 400, false))).toBe(FR_PENDING);
    expect(insert(tb, frag(d, 0, 400, true))).toBe(0);
    expect(datagram(tb, 0)).toEqual(expected(d));
    k.k.fragRelease(tb.t, 0);
  });

  it('refuses datagrams beyond maxDatagram, and ones whose total length would pass 65535', () => {
    const tb = table(k, 2, 1000, 1000);
    const d = dgram({ payload: fill(1200, 9) });
    expect(insert(tb, frag(d, 0, 496, true))).toBe(FR_PENDING);
    expect(insert(tb, frag(d, 992, 16, true))).toBe(FR_TOO_BIG);
    expect(k.k.fragPending(tb.t)).toBe(0);
    // a too-big first arrival takes no slot at all
    expect(insert(tb, frag(d, 1000, 8, false))).toBe(FR_TOO_BIG);
    expect(k.k.fragPending(tb.t)).toBe(0);

    const big = table(k, 1, 65515, 1000);
    const huge = dgram({ payload: fill(65512, 10), options: new Uint8Array(8) });
    expect(insert(big, frag(huge, 0, 32760, true))).toBe(FR_PENDING);
    expect(insert(big, frag(huge, 32760, 32752, false))).toBe(FR_TOO_BIG); // 28 + 65512 > 65535
    expect(k.k.fragPending(big.t)).toBe(0);
    const max = dgram({ payload: fill(65512, 11), options: new Uint8Array(0) });
    expect(insert(big, frag(max, 32760, 32752, false))).toBe(FR_PENDING);
    expect(insert(big, frag(max, 0, 32760, true))).toBe(0);
    expect(k.k.fragDatagramLen(big.t, 0)).toBe(65532);
    expect(datagram(big, 0)).toEqual(expected(max));
    k.k.fragRelease(big.t, 0);
  });

  it('reports FR_FULL when every slot is busy, including finished unreleased ones', () => {
    const tb = table(k, 2, 2000, 1000);
    const a = dgram({ id: 1 });
    const b = dgram({ id: 2 });
    const c = dgram({ id: 3 });
    expect(insert(tb, frag(a, 0, 48, true))).toBe(FR_PENDING);
    expect(insert(tb, frag(b, 0, 48, true))).toBe(FR_PENDING);
    expect(insert(tb, frag(c, 0, 48, true))).toBe(FR_FULL);
    expect(insert(tb, frag(a, 48, 52, false))).toBe(0);
    expect(insert(tb, frag(c, 0, 48, true))).toBe(FR_FULL);
    k.k.fragRelease(tb.t, 0);
    expect(insert(tb, frag(c, 0, 48, true))).toBe(FR_PENDING);
    expect(k.k.fragPending(tb.t)).toBe(2);
  });

  it('a fragment matching a finished, unreleased datagram starts a new one', () => {
    const tb = table(k, 2, 2000, 1000);
    const d = dgram();
    insert(tb, frag(d, 0, 48, true));
    expect(insert(tb, frag(d, 48, 52, false))).toBe(0);
    expect(insert(tb, frag(d, 48, 52, false))).toBe(FR_PENDING);
    expect(k.k.fragPending(tb.t)).toBe(2);
    expect(datagram(tb, 0)).toEqual(expected(d)); // untouched
    expect(insert(tb, frag(d, 0, 48, true))).toBe(1);
  });

  it('expires open datagrams by first-arrival age across u32 wrap, never finished ones', () => {
    const tb = table(k, 3, 2000, 1000);
    const t0 = 0xffffff00;
    const a = dgram({ id: 1 });
    const b = dgram({ id: 2 });
    const c = dgram({ id: 3 });
    insert(tb, frag(a, 0, 48, true), t0);
    insert(tb, frag(b, 0, 48, true), t0 + 500);
    insert(tb, frag(c, 0, 48, true), t0);
    expect(insert(tb, frag(c, 48, 52, false), t0 + 10)).toBe(2);
    // later fragments don't refresh the age
    expect(insert(tb, frag(a, 48, 16, true), (t0 + 900) >>> 0)).toBe(FR_PENDING);
    expect(k.k.fragExpire(tb.t, (t0 + 1000) >>> 0)).toBe(0);
    expect(k.k.fragExpire(tb.t, (t0 + 1001) >>> 0)).toBe(1);
    expect(k.k.fragPending(tb.t)).toBe(2);
    expect(k.k.fragExpire(tb.t, (t0 + 1501) >>> 0)).toBe(1);
    expect(k.k.fragPending(tb.t)).toBe(1);
    expect(k.k.fragExpire(tb.t, (t0 + 100000) >>> 0)).toBe(0);
    expect(datagram(tb, 2)).toEqual(expected(c));
    // the expired datagram's remaining fragments start over
    expect(insert(tb, frag(a, 64, 36, false), (t0 + 1600) >>> 0)).toBe(FR_PENDING);
  });

  it('bounds the piece list at 64 disjoint ranges; adjacent pieces merge', () => {
    const tb = table(k, 2, 4000, 1000);
    const d = dgram({ payload: fill(2048, 12) });
    // 256 tiny in-order fragments collapse into one piece
    let r = FR_PENDING;
    for (const p of split(2048, 8)) r = insert(tb, frag(d, ...p));
    expect(r).toBe(0);
    expect(datagram(tb, 0)).toEqual(expected(d));
    k.k.fragRelease(tb.t, 0);
    // every other 8-byte block: 64 disjoint pieces fit, the 65th does not
    for (let i = 0; i < 64; i++) expect(insert(tb, frag(d, i * 16, 8, true))).toBe(FR_PENDING);
    expect(insert(tb, frag(d, 64 * 16, 8, true))).toBe(FR_TOO_MANY_PIECES);
    expect(k.k.fragPending(tb.t)).toBe(0);
    // filling a gap merges three into one, so it is never refused
    for (let i = 0; i < 64; i++) insert(tb, frag(d, i * 16, 8, true));
    expect(insert(tb, frag(d, 8, 8, true))).toBe(FR_PENDING);
    expect(insert(tb, frag(d, 64 * 16, 8, true))).toBe(FR_PENDING);
    k.k.fragRelease(tb.t, 0);
  });

  it('rejects malformed and non-fragment input with FR_BAD and no state change', () => {
    const tb = table(k, 2, 2000, 1000);
    const d = dgram();
    const good = frag(d, 0, 48, true);
    const bad = (mut: (b: Uint8Array) => void, len?: number) => {
      const b = good.slice();
      mut(b);
      return insert(tb, b, 0, len ?? b.length);
    };
    expect(bad(() => {}, 19)).toBe(FR_BAD); // shorter than a header
    expect(bad((b) => (b[0] = 0x65))).toBe(FR_BAD); // version 6
    expect(bad((b) => (b[0] = 0x44))).toBe(FR_BAD); // IHL 16
    expect(
      bad((b) => {
        b[0] = 0x4f; // IHL 60 but total length 56
        new DataView(b.buffer).setUint16(2, 56);
      }),
    ).toBe(FR_BAD);
    expect(bad(() => {}, 40)).toBe(FR_BAD); // total length beyond what we were given
    expect(bad((b) => new DataView(b.buffer).setUint16(2, 19))).toBe(FR_BAD);
    expect(bad((b) => new DataView(b.buffer).setUint16(6, 0))).toBe(FR_BAD); // not a fragment
    expect(bad((b) => new DataView(b.buffer).setUint16(2, 20))).toBe(FR_BAD); // empty
    expect(bad((b) => new DataView(b.buffer).setUint16(2, 20 + 44))).toBe(FR_BAD); // MF with 44 bytes
    expect(k.k.fragPending(tb.t)).toBe(0);
  });

  it('drops a datagram whose fragments disagree on where it ends', () => {
    const tb = table(k, 2, 2000, 1000);
    const d = dgram({ payload: fill(400, 13) });
    expect(insert(tb, frag(d, 200, 200, false))).toBe(FR_PENDING);
    expect(insert(tb, frag(d, 96, 8, false))).toBe(FR_BAD); // a second, earlier end
    expect(k.k.fragPending(tb.t)).toBe(0);
    expect(insert(tb, frag(d, 200, 200, false))).toBe(FR_PENDING);
    expect(insert(tb, frag(d, 400, 8, true))).toBe(FR_BAD); // data past the known end
    expect(k.k.fragPending(tb.t)).toBe(0);
    expect(insert(tb, frag(d, 200, 64, true))).toBe(FR_PENDING);
    expect(insert(tb, frag(d, 96, 8, false))).toBe(FR_BAD); // ends before data already held
    expect(k.k.fragPending(tb.t)).toBe(0);
  });

  it('ignores out-of-range slots in release and lookups', () => {
    const tb = table(k, 1, 500, 1000);
    k.k.fragRelease(tb.t, 5);
    k.k.fragRelease(tb.t, 0);
    expect(k.k.fragPending(tb.t)).toBe(0);
    expect(k.k.fragDatagramPtr(tb.t, 7)).toBe(0);
    expect(k.k.fragDatagramLen(tb.t, 0)).toBe(0);
  });
});

// ---- model test ------------------------------------------------------------

interface Frag {
  d: number; // datagram index
  start: number;
  len: number;
  mf: boolean;
  bytes: Uint8Array;
  /** false for the injected conflicting copies */
  genuine: boolean;
}

interface Entry {
  key: string;
  done: boolean;
  first: number;
  total: number | undefined;
  have: Uint8Array;
  data: Uint8Array;
  genuine: boolean;
  d: number;
}

/** Reference reassembler: a byte bitmap per datagram, slots chosen lowest-free like the kernel. */
class Model {
  slots: (Entry | null)[];
  constructor(
    n: number,
    readonly maxD: number,
    readonly timeout: number,
    readonly ds: Dgram[],
  ) {
    this.slots = new Array(n).fill(null);
  }
  key(d: Dgram) {
    return `${d.src}/${d.dst}/${d.proto}/${d.id}`;
  }
  get pending() {
    return this.slots.filter((e) => e !== null).length;
  }
  private runs(have: Uint8Array): number {
    let n = 0;
    for (let i = 0; i < have.length; i++) if (have[i] && (i === 0 || !have[i - 1])) n++;
    return n;
  }
  insert(f: Frag, now: number): number {
    const d = this.ds[f.d];
    const key = this.key(d);
    if (!f.mf && f.start === 0) return FR_BAD; // a whole datagram is not ours to reassemble
    const s = f.start;
    const e = f.start + f.len;
    let slot = this.slots.findIndex((x) => x !== null && !x.done && x.key === key);
    const drop = (code: number) => {
      this.slots[slot] = null;
      return code;
    };
    if (e > this.maxD) return slot >= 0 ? drop(FR_TOO_BIG) : FR_TOO_BIG;
    if (slot < 0) {
      slot = this.slots.indexOf(null);
      if (slot < 0) return FR_FULL;
      this.slots[slot] = {
        key, done: false, first: now, total: undefined, d: f.d, genuine: true,
        have: new Uint8Array(this.maxD), data: new Uint8Array(this.maxD),
      };
    }
    const x = this.slots[slot]!;
    let total = x.total;
    const lastHeld = x.have.lastIndexOf(1) + 1;
    if (total !== undefined) {
      if (e > total || (!f.mf && e !== total)) return drop(FR_BAD);
    } else if (!f.mf) {
      if (lastHeld > e) return drop(FR_BAD);
      total = e;
    }
    for (let i = s; i < e; i++) if (x.have[i]) return drop(FR_OVERLAP);
    const next = x.have.slice();
    next.fill(1, s, e);
    if (this.runs(next) > 64) return drop(FR_TOO_MANY_PIECES);
    x.have = next;
    x.total = total;
    x.data.set(f.bytes, s);
    x.genuine &&= f.genuine;
    if (total === undefined || next.indexOf(0) < total && next.indexOf(0) !== -1) return FR_PENDING;
    const ihl = 20 + this.ds[x.d].options.length;
    if (ihl + total > 65535) return drop(FR_TOO_BIG);
    x.done = true;
    return slot;
  }
  expire(now: number): number {
    let n = 0;
    this.slots.forEach((x, i) => {
      if (x && !x.done && ((now - x.first) >>> 0) > this.timeout) {
        this.slots[i] = null;
        n++;
      }
    });
    return n;
  }
  release(slot: number) {
    this.slots[slot] = null;
  }
}

type Step = { t: 'frag'; f: Frag; dt: number } | { t: 'expire'; dt: number } | { t: 'release'; pick: number };

/** A scenario from a seed: fragment, perturb (drop, duplicate, overlap), shuffle, sprinkle expiry and releases. */
function scenario(seed: number, ds: Dgram[], sizes: number[], dropPs: number[]): Step[] {
  const r = rng(seed);
  const frags: Frag[] = [];
  ds.forEach((d, di) => {
    // Only some datagrams get duplicates and conflicting copies, so the
    // others can live long enough to reach the piece limit.
    const noisy = r() < 0.4;
    for (const [start, len, mf] of split(d.payload.length, sizes[di])) {
      if (r() < dropPs[di]) continue;
      const f = { d: di, start, len, mf, bytes: d.payload.subarray(start, start + len), genuine: true };
      frags.push(f);
      if (noisy && r() < 0.03) frags.push(f); // exact duplicate
      if (noisy && r() < 0.03) {
        // overlapping piece with different bytes, 8-aligned, MF set
        const s = Math.floor((r() * d.payload.length) / 8) * 8;
        const l = 8 * (1 + Math.floor(r() * 20));
        frags.push({ d: di, start: s, len: l, mf: true, bytes: fill(l, seed ^ s), genuine: false });
      }
    }
  });
  for (let i = frags.length - 1; i > 0; i--) {
    // mostly in order with local shuffles, sometimes fully shuffled
    const j = r() < 0.5 ? Math.max(0, i - Math.floor(r() * 4)) : Math.floor(r() * (i + 1));
    [frags[i], frags[j]] = [frags[j], frags[i]];
  }
  const steps: Step[] = [];
  for (const f of frags) {
    steps.push({ t: 'frag', f, dt: r() < 0.8 ? 0 : Math.floor(r() * 60) });
    if (r() < 0.05) steps.push({ t: 'expire', dt: Math.floor(r() * 300) });
    if (r() < 0.1) steps.push({ t: 'release', pick: Math.floor(r() * 1000) });
  }
  steps.push({ t: 'expire', dt: 0 });
  return steps;
}

describe('frag model test: three backends against a bitmap reference', () => {
  const ks: Kernels[] = [];
  beforeAll(() => {
    for (const b of BACKENDS) ks.push(createKernels({ backend: b, memoryBytes: MEM }));
  });

  it('reassembles exactly the original datagrams, rejects what the policy rejects, and backends agree', () => {
    const seen = new Map<number, number>();
    let injectedDone = 0;
    const dgramArb = fc.record({
      // mostly within maxDatagram, sometimes just past it
      permille: fc.integer({ min: 0, max: 1050 }),
      drop: fc.constantFrom(0, 0, 0.05, 0.5),
      optWords: fc.integer({ min: 0, max: 3 }),
      id: fc.integer({ min: 0, max: 15 }),
      proto: fc.constantFrom(6, 17, 1),
      size: fc.oneof(fc.constant(8), fc.integer({ min: 1, max: 185 }).map((x) => x * 8)),
      seed: fc.integer({ min: 1, max: 0x7fffffff }),
    });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom(200, 1500, 3000, 6000),
        fc.constantFrom(30, 300, 30000),
        fc.array(dgramArb, { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: 0x7fffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (nslots, maxD, timeout, specs, seed, t0) => {
          const ds: Dgram[] = specs.map((s) =>
            dgram({
              payload: fill(Math.max(1, Math.floor((s.permille * maxD) / 1000)), s.seed),
              options: fill(s.optWords * 4, s.seed + 1),
              id: s.id,
              proto: s.proto,
            }),
          );
          const steps = scenario(seed, ds, specs.map((s) => s.size), specs.map((s) => s.drop));
          const model = new Model(nslots, maxD, timeout, ds);
          const size = ks[0].k.fragBytes(nslots, maxD);
          const tbs: Table[] = ks.map((k) => {
            const t = Math.ceil(k.k.heapBase() / 64) * 64 + 64;
            // guard bands either side: the table must never write outside its bytes
            k.u8.fill(0xa5, t - 64, t);
            k.u8.fill(0xa5, t + size, t + size + 64);
            k.k.fragInit(t, nslots, maxD, timeout);
            return { k, t, scratch: t + size + 64 };
          });
          const held: number[] = [];
          let now = t0 >>> 0;
          for (const st of steps) {
            if (st.t === 'frag') {
              now = (now + st.dt) >>> 0;
              const f = frag(ds[st.f.d], st.f.start, st.f.len, st.f.mf, st.f.bytes);
              const want = model.insert(st.f, now);
              const got = tbs.map((tb) => insert(tb, f, now));
              expect(got).toEqual([want, want, want]);
              seen.set(want, (seen.get(want) ?? 0) + 1);
              if (want >= 0) {
                const x = model.slots[want]!;
                const d = ds[x.d];
                const ref = expected(d, x.data.subarray(0, x.total));
                // Built only from the sender's own fragments, it is the original datagram.
                if (x.genuine) expect(ref).toEqual(expected(d));
                else injectedDone++;
                for (const tb of tbs) {
                  expect(datagram(tb, want)).toEqual(ref);
                  expect(tb.k.k.fragDatagramPtr(tb.t, want) - tb.t).toBe(tbs[0].k.k.fragDatagramPtr(tbs[0].t, want) - tbs[0].t);
                }
                held.push(want);
              }
            } else if (st.t === 'expire') {
              now = (now + st.dt) >>> 0;
              const want = model.expire(now);
              expect(tbs.map((tb) => tb.k.k.fragExpire(tb.t, now))).toEqual([want, want, want]);
            } else if (held.length > 0) {
              const slot = held.splice(st.pick % held.length, 1)[0];
              model.release(slot);
              for (const tb of tbs) tb.k.k.fragRelease(tb.t, slot);
            }
            for (const tb of tbs) {
              expect(tb.k.k.fragPending(tb.t)).toBe(model.pending);
              expect(Buffer.compare(tb.k.u8.subarray(tb.t, tb.t + size), tbs[0].k.u8.subarray(tbs[0].t, tbs[0].t + size))).toBe(0);
            }
          }
          for (const tb of tbs) {
            expect(tb.k.u8.subarray(tb.t - 64, tb.t).every((b) => b === 0xa5)).toBe(true);
            expect(tb.k.u8.subarray(tb.t + size, tb.t + size + 64).every((b) => b === 0xa5)).toBe(true);
          }
          return true;
        },
      ),
      { numRuns: 150 },
    );
    // Every outcome the policy has must have been reached by the generator.
    for (const code of [FR_PENDING, FR_OVERLAP, FR_TOO_BIG, FR_FULL, FR_TOO_MANY_PIECES, FR_BAD, 0]) {
      expect(seen.get(code) ?? 0, `outcome ${code}`).toBeGreaterThan(0);
    }
  });
});
