import type { Kernels } from '../../src/kernels/index.js';
import { KEY_SIZE, K_PROTO, K_SRC_PORT, K_DST_PORT, K_SRC_IP, K_DST_IP } from '../../assembly/layout.js';
import { rng, sink, type RowSpec } from '../lib.js';

// Lookups go through flowLookupBatch, BATCH keys per call, so the JS→WASM
// call cost is amortised the way classify() amortises it per frame batch.
const BATCH = 256;
// Batches per measured iteration: enough work that tinybench's per-iteration
// timing overhead is noise.
const BATCHES_PER_RUN = 8;
// Key batches rotated over: 64k keys (1 MiB) so a 100k table is walked across
// most of its slots instead of a cache-resident few.
const POOL_BATCHES = 256;

interface Keys { proto: Uint8Array; srcIp: Uint32Array; srcPort: Uint16Array; dstIp: Uint32Array; dstPort: Uint16Array; n: number }

/** `n` distinct guest-like keys (one guest subnet, random peers and ports). */
function makeKeys(n: number, seed: number): Keys {
  const r = rng(seed);
  const u32 = () => Math.floor(r() * 4294967296) >>> 0;
  const k: Keys = {
    proto: new Uint8Array(n), srcIp: new Uint32Array(n), srcPort: new Uint16Array(n),
    dstIp: new Uint32Array(n), dstPort: new Uint16Array(n), n,
  };
  const seen = new Set<string>();
  for (let i = 0; i < n; ) {
    const proto = r() < 0.7 ? 6 : 17;
    const srcIp = (0xc0a84100 | (u32() & 0xff)) >>> 0;
    const srcPort = u32() & 0xffff;
    const dstIp = u32();
    const dstPort = r() < 0.5 ? 443 : u32() & 0xffff;
    const s = `${proto}/${srcIp}/${srcPort}/${dstIp}/${dstPort}`;
    if (seen.has(s)) continue;
    seen.add(s);
    k.proto[i] = proto; k.srcIp[i] = srcIp; k.srcPort[i] = srcPort; k.dstIp[i] = dstIp; k.dstPort[i] = dstPort;
    i++;
  }
  return k;
}

function writeKey(kn: Kernels, p: number, k: Keys, i: number): void {
  kn.u8.fill(0, p, p + KEY_SIZE);
  kn.dv.setUint8(p + K_PROTO, k.proto[i]);
  kn.dv.setUint16(p + K_SRC_PORT, k.srcPort[i], true);
  kn.dv.setUint16(p + K_DST_PORT, k.dstPort[i], true);
  kn.dv.setUint32(p + K_SRC_IP, k.srcIp[i], true);
  kn.dv.setUint32(p + K_DST_IP, k.dstIp[i], true);
}

/** A table holding the first `entries` keys of `present`. */
function fill(kn: Kernels, capacity: number, present: Keys, entries: number): number {
  const t = kn.alloc(kn.k.flowTableBytes(capacity));
  kn.k.flowInit(t, capacity, 0x9e3779b9);
  for (let i = 0; i < entries; i++) {
    const id = kn.k.flowInsert(t, present.proto[i], present.srcIp[i], present.srcPort[i], present.dstIp[i], present.dstPort[i], 0);
    if (id < 0) throw new Error(`bench setup: insert ${i} returned ${id}`);
  }
  return t;
}

function lookupRow(entries: number, hit: boolean): RowSpec {
  return {
    group: 'flow',
    name: `lookup ${hit ? 'hit' : 'miss'} ${entries / 1000}k`,
    unit: 'M/s',
    setup(kn: Kernels) {
      const present = makeKeys(entries, 1);
      const t = fill(kn, entries, present, entries);
      const absent = hit ? present : makeKeysAbsent(present, POOL_BATCHES * BATCH);
      const r = rng(2);
      const keys = kn.alloc(POOL_BATCHES * BATCH * KEY_SIZE);
      for (let i = 0; i < POOL_BATCHES * BATCH; i++) {
        writeKey(kn, keys + i * KEY_SIZE, absent, hit ? Math.floor(r() * entries) : i);
      }
      const out = kn.alloc(BATCH * 4);
      const k = kn.k;
      let b = 0;
      // Check once, untimed, that the workload is what the row says.
      const want = hit ? BATCH : 0;
      const got = k.flowLookupBatch(t, keys, BATCH, out);
      if (got !== want) throw new Error(`bench setup: ${got} hits, want ${want}`);
      return {
        per: BATCH * BATCHES_PER_RUN,
        run() {
          let acc = 0;
          for (let j = 0; j < BATCHES_PER_RUN; j++) {
            acc += k.flowLookupBatch(t, keys + b * BATCH * KEY_SIZE, BATCH, out);
            b = (b + 1) % POOL_BATCHES;
          }
          sink.value = (sink.value + acc + kn.dv.getInt32(out, true)) | 0;
        },
      };
    },
  };
}

/** Keys guaranteed absent from `present` (same distribution, different seed). */
function makeKeysAbsent(present: Keys, n: number): Keys {
  const have = new Set<string>();
  for (let i = 0; i < present.n; i++) {
    have.add(`${present.proto[i]}/${present.srcIp[i]}/${present.srcPort[i]}/${present.dstIp[i]}/${present.dstPort[i]}`);
  }
  const cand = makeKeys(n + 1024, 3);
  const out = makeKeys(0, 0);
  const idx: number[] = [];
  for (let i = 0; i < cand.n && idx.length < n; i++) {
    if (!have.has(`${cand.proto[i]}/${cand.srcIp[i]}/${cand.srcPort[i]}/${cand.dstIp[i]}/${cand.dstPort[i]}`)) idx.push(i);
  }
  if (idx.length < n) throw new Error('bench setup: not enough absent keys');
  out.n = n;
  out.proto = Uint8Array.from(idx, (i) => cand.proto[i]);
  out.srcIp = Uint32Array.from(idx, (i) => cand.srcIp[i]);
  out.srcPort = Uint16Array.from(idx, (i) => cand.srcPort[i]);
  out.dstIp = Uint32Array.from(idx, (i) => cand.dstIp[i]);
  out.dstPort = Uint16Array.from(idx, (i) => cand.dstPort[i]);
  return out;
}

/**
 * Churn at steady state: the table holds a sliding window of `entries` keys
 * out of a ring of entries + SPARE; each step removes the oldest and inserts
 * the next, so every insert lands in a table at full occupancy minus one.
 * The unit counts (remove + insert) pairs.
 */
function churnRow(entries: number): RowSpec {
  const SPARE = 4096;
  const STEPS = 256;
  return {
    group: 'flow',
    name: `insert+remove ${entries / 1000}k`,
    unit: 'M/s',
    setup(kn: Kernels) {
      const ring = entries + SPARE;
      const keys = makeKeys(ring, 4);
      const t = fill(kn, entries, keys, entries);
      const k = kn.k;
      const { proto, srcIp, srcPort, dstIp, dstPort } = keys;
      let head = 0;
      return {
        per: STEPS,
        run() {
          let acc = 0;
          for (let s = 0; s < STEPS; s++) {
            const o = head;
            const n = head + entries < ring ? head + entries : head + entries - ring;
            acc += k.flowRemove(t, proto[o], srcIp[o], srcPort[o], dstIp[o], dstPort[o]);
            acc += k.flowInsert(t, proto[n], srcIp[n], srcPort[n], dstIp[n], dstPort[n], s);
            head = head + 1 === ring ? 0 : head + 1;
          }
          sink.value = (sink.value + acc) | 0;
        },
      };
    },
  };
}

export function rows(): RowSpec[] {
  return [
    lookupRow(10_000, true),
    lookupRow(10_000, false),
    lookupRow(100_000, true),
    lookupRow(100_000, false),
    churnRow(100_000),
  ];
}
