/**
 * Data integrity through the engine's TCP against a real host server on
 * 127.0.0.1, over a simulated link with seeded loss, duplication and
 * reordering: a sweep of transfer sizes × impairments, in both directions at
 * once, on the WASM and the JS backends.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { TcpHarness, Sim, HOST_ALIAS, seededBytes, sha256, type Impairments } from './support/tcp-peer.js';
import type { BackendName } from '../src/kernels/index.js';

interface ServerConn { rxHash: string; rxBytes: number; ended: boolean; txHash: string }

/** Per connection: hashes what it receives; sends `size` seeded bytes (seed from the first 4 bytes it reads? no: fixed) then ends. */
async function server(sendSize: number, seed: number) {
  const conns: ServerConn[] = [];
  const payload = seededBytes(sendSize, seed);
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    const c: ServerConn = { rxHash: '', rxBytes: 0, ended: false, txHash: sha256(payload) };
    conns.push(c);
    const h = createHash('sha256');
    s.on('data', (d) => { h.update(d); c.rxBytes += d.length; });
    s.on('end', () => { c.rxHash = h.digest('hex'); c.ended = true; });
    s.on('error', () => {});
    s.end(payload);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { srv, conns, port: (srv.address() as net.AddressInfo).port, payload };
}

const SIZES = [1, 1000, 100_000, 1_000_000];
const IMPAIRMENTS: [string, Impairments][] = [
  ['clean', {}],
  ['loss1%', { loss: 0.01, dup: 0.01, reorder: 0.02 }],
  ['loss5%', { loss: 0.05, dup: 0.02, reorder: 0.05 }],
];

async function transfer(backend: BackendName, mtu: number, up: number, down: number, imp: Impairments, seed: number) {
  const { srv, conns, port, payload } = await server(down, seed + 1);
  const h = new TcpHarness({ backend, mtu, tcp: { manualTimers: true } });
  const sim = new Sim(h, seed, imp);
  const p = sim.peer({ port: 40000 + (seed % 1000), mss: mtu - 40 });
  const data = seededBytes(up, seed);
  p.connect(HOST_ALIAS, port);
  p.write(data);
  p.end();
  const ok = await sim.run(() => p.finRcvd && p.finAcked && conns.length === 1 && conns[0].ended && h.stack.size === 0, 600_000);
  srv.close();
  return { ok, p, conns, data, payload, h, sim };
}

describe('tcp integrity sweep', () => {
  for (const backend of ['wasm-simd', 'js'] as BackendName[]) {
    for (const [iname, imp] of IMPAIRMENTS) {
      for (const size of SIZES) {
        if (backend === 'js' && size > 100_000 && iname !== 'clean') continue;
        it(`${backend} ${iname} ${size} bytes each way`, async () => {
          const r = await transfer(backend, 1500, size, size, imp, size + iname.length * 7);
          expect(r.ok, JSON.stringify({ st: r.h.stack.stats(), p: { state: r.p.state, rcv: r.p.received, una: r.p.unacked } })).toBe(true);
          expect(r.conns[0].rxBytes).toBe(size);
          expect(r.conns[0].rxHash).toBe(sha256(r.data));
          expect(r.p.received).toBe(size);
          expect(r.p.digest).toBe(sha256(r.payload));
          expect(r.p.badFrames).toEqual([]);
          expect(r.h.flowCount()).toBe(0);
          if (imp.loss && size >= 100_000) expect(r.sim.down.lost + r.sim.up.lost).toBeGreaterThan(0);
        }, 60_000);
      }
    }
  }
});
