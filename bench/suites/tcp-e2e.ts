/**
 * Bulk TCP through the engine's TCP stack, end to end: the in-process guest
 * peer (raw frames, test/support/tcp-peer.ts) ⇄ RX batch/classify ⇄ TcpStack
 * ⇄ TxBatch/buildFrames ⇄ a real host socket on 127.0.0.1. Not a kernel call,
 * so it measures itself: wall time for a fixed transfer once the connection
 * is up, reported in Gbit/s of payload, per backend, MTU 1500 and 65520.
 *
 * The guest peer is JavaScript and builds/verifies every frame's checksums,
 * so it costs about as much as the engine; the numbers are a floor for the
 * engine (a real guest does that work in its kernel).
 *
 * Run alone: npx tsx bench/suites/tcp-e2e.ts   (VNETKIT_BENCH_FILTER applies)
 */
import net from 'node:net';
import { BACKENDS, sink, type Row } from '../lib.js';
import type { BackendName } from '../../src/kernels/index.js';
import { TcpHarness, Sim, HOST_ALIAS, seededBytes } from '../../test/support/tcp-peer.js';

export const GROUP = 'tcp-e2e';

interface Case { name: string; mtu: number; dir: 'up' | 'down'; bytes: number }

export const CASES: Case[] = [
  { name: 'guest→host mtu 1500', mtu: 1500, dir: 'up', bytes: 24 << 20 },
  { name: 'host→guest mtu 1500', mtu: 1500, dir: 'down', bytes: 24 << 20 },
  { name: 'guest→host mtu 65520', mtu: 65520, dir: 'up', bytes: 128 << 20 },
  { name: 'host→guest mtu 65520', mtu: 65520, dir: 'down', bytes: 128 << 20 },
];

const CHUNK = seededBytes(1 << 20, 99);

/** One transfer; returns payload Gbit/s. */
export async function measureTransfer(backend: BackendName, c: Case): Promise<number> {
  let received = 0;
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (d) => { received += d.length; });
    s.on('error', () => {});
    if (c.dir === 'down') {
      let sent = 0;
      const pump = () => {
        while (sent < c.bytes) {
          const n = Math.min(CHUNK.length, c.bytes - sent);
          sent += n;
          if (!s.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
            s.once('drain', pump);
            return;
          }
        }
        s.end();
      };
      pump();
    }
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  const h = new TcpHarness({ backend, mtu: c.mtu, tcp: { manualTimers: true } });
  const sim = new Sim(h, 1);
  const p = sim.peer({ port: 40000, mss: c.mtu - 40, rcvBuf: 8 << 20 });
  const base = performance.now();
  const clock = () => {
    h.now = performance.now() - base;
    return h.now;
  };
  const loop = async (done: () => boolean) => {
    let spins = 0;
    while (!done()) {
      const moved = sim.step();
      const now = clock();
      h.stack.tick(now);
      p.tick(now);
      if (!moved || ++spins % 8 === 0) await new Promise((r) => setImmediate(r));
    }
  };
  p.connect(HOST_ALIAS, port);
  await loop(() => p.state === 'established' && h.stack.flows()[0]?.state !== 'syn-received');
  if (c.dir === 'up') {
    // Filling the peer's send buffer is setup, not transfer.
    const data = Buffer.allocUnsafe(c.bytes);
    for (let off = 0; off < c.bytes; off += CHUNK.length) CHUNK.copy(data, off, 0, Math.min(CHUNK.length, c.bytes - off));
    const t0 = performance.now();
    p.write(data);
    await loop(() => received >= c.bytes);
    const sec = (performance.now() - t0) / 1000;
    sink.value ^= received;
    h.stack.close();
    srv.close();
    return (c.bytes * 8) / sec / 1e9;
  }
  const t0 = performance.now();
  await loop(() => p.received >= c.bytes);
  const sec = (performance.now() - t0) / 1000;
  sink.value ^= p.received;
  h.stack.close();
  srv.close();
  return (c.bytes * 8) / sec / 1e9;
}

export async function tcpE2eRows(backends: BackendName[] = BACKENDS, filter = process.env.VNETKIT_BENCH_FILTER ?? ''): Promise<Row[]> {
  const rows: Row[] = [];
  for (const c of CASES) {
    if (filter && !`${GROUP} ${c.name}`.includes(filter)) continue;
    const values: Partial<Record<BackendName, number>> = {};
    // Warm every backend up first: otherwise whichever runs first pays the JIT and socket warm-up.
    for (const b of backends) await measureTransfer(b, { ...c, bytes: c.bytes >> 2 });
    for (const b of backends) values[b] = await measureTransfer(b, c);
    rows.push({ group: GROUP, name: c.name, unit: 'Gbit/s', values, note: 'JS guest peer included; wall time after the handshake' });
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await tcpE2eRows();
  for (const r of rows) {
    const v = r.values;
    console.log(`${r.group} | ${r.name.padEnd(22)} | ${r.unit} | simd ${v['wasm-simd']?.toFixed(2)} | wasm ${v.wasm?.toFixed(2)} | js ${v.js?.toFixed(2)}`);
  }
}
