/**
 * UDP NAT bindings bounded per VM: one VM opening bindings without end
 * replaces its own, never another VM's within its share; every binding's
 * socket is a unit of the engine's host-socket budget.
 */
import { describe, it, expect, afterEach } from 'vitest';
import dgram from 'node:dgram';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { UdpNat } from '../src/engine/udp-nat.js';
import { Quota } from '../src/engine/quota.js';
import { nullLogger, type Logger } from '../src/log.js';
import { GuestClient, ethType, ipProto, udpPorts } from './support/guest-client.js';
import { parseIPv4 } from '../src/wire/addr.js';

const HOST = parseIPv4('192.168.65.2');
const GW_MAC = new Uint8Array([0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6]);
const macA = new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const macB = new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x57]);
const ipA = parseIPv4('192.168.65.3');
const ipB = parseIPv4('192.168.65.4');
const LOOPBACK = 0x7f000001;
const text = (s: string) => new TextEncoder().encode(s);
const until = async (cond: () => boolean, ms = 3000) => {
  for (let t = 0; t < ms / 10 && !cond(); t++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
};

/** A UDP server on 127.0.0.1 that echoes, and remembers where each message came from. */
async function echoServer() {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const from = new Map<string, number>();
  s.on('message', (m, rinfo) => {
    from.set(m.toString(), rinfo.port);
    s.send(Buffer.concat([Buffer.from('echo:'), m]), rinfo.port, rinfo.address);
  });
  return { s, port: s.address().port, from };
}

describe('UDP bindings per VM (engine)', () => {
  let engine: Engine | undefined;
  const clients: GuestClient[] = [];
  const closers: (() => void)[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const c of closers.splice(0)) c();
    await engine?.close();
    engine = undefined;
  });

  async function setup(opts: { maxUdpFlows: number; udpBindingsPerVm: number }) {
    const sock = join(mkdtempSync(join(tmpdir(), 'vnk-')), 'e.sock');
    engine = createEngine({ maxUdpFlows: opts.maxUdpFlows, limits: { udpBindingsPerVm: opts.udpBindingsPerVm }, dns: { upstreams: [{ host: '127.0.0.1', port: 9 }], hostsFile: null } });
    await engine.listen(`unix://${sock}`, { framing: 'qemu' });
    const guest = async (mac: Uint8Array) => {
      const c = await GuestClient.connect(sock, mac);
      clients.push(c);
      return c;
    };
    return { a: await guest(macA), b: await guest(macB) };
  }

  const isUdpWith = (body: string) => (f: Uint8Array) => ethType(f) === 0x0800 && ipProto(f) === 17 && Buffer.from(udpPorts(f).payload).toString() === body;

  it('a VM opening udpBindingsPerVm + 100 bindings replaces its own; another VM\'s live binding survives and still gets datagrams', async () => {
    const server = await echoServer();
    closers.push(() => server.s.close());
    const { a, b } = await setup({ maxUdpFlows: 16, udpBindingsPerVm: 8 });
    b.send(b.udpFrame(GW_MAC, ipB, 5000, HOST, server.port, text('b-hello')));
    await b.next(isUdpWith('echo:b-hello'));
    const bHostPort = server.from.get('b-hello')!;

    const n = 8 + 100;
    for (let i = 0; i < n; i++) a.send(a.udpFrame(GW_MAC, ipA, 20000 + i, HOST, server.port, text(`a-${i}`)));
    await a.next(isUdpWith(`echo:a-${n - 1}`));
    // The server writes to B's binding first: only a binding that still exists can deliver it.
    server.s.send('unprompted', bHostPort, '127.0.0.1');
    const f = await b.next(isUdpWith('unprompted'), 1000);
    expect(udpPorts(f).dst).toBe(5000);
    b.send(b.udpFrame(GW_MAC, ipB, 5000, HOST, server.port, text('b-again')));
    await b.next(isUdpWith('echo:b-again'));
    expect(server.from.get('b-again')).toBe(bHostPort);

    const st = engine!.stats();
    expect(st.udp.evictedOwn).toBe(n - 8);
    expect(st.udp.evictedFair).toBe(0);
    expect(st.limits.udpBindings).toMatchObject({ used: 9, perVm: 8, total: 16, maxVmUsed: 8 });
    // Every binding's socket is counted in the shared host-socket budget, and only live ones.
    expect(st.limits.hostSockets.used).toBe(9);

    // Leaving gives everything back.
    a.close();
    b.close();
    await until(() => engine!.stats().vms === 0);
    expect(engine!.stats().limits.udpBindings.used).toBe(0);
    expect(engine!.stats().limits.hostSockets.used).toBe(0);
  });

  it('a full table: a VM under its fair share takes the oldest binding of the VM holding the most, never one within its share', async () => {
    const server = await echoServer();
    closers.push(() => server.s.close());
    // Per-VM bound as large as the table: only the fair-share rule protects B.
    const { a, b } = await setup({ maxUdpFlows: 8, udpBindingsPerVm: 8 });
    for (let i = 0; i < 8; i++) a.send(a.udpFrame(GW_MAC, ipA, 20000 + i, HOST, server.port, text(`a-${i}`)));
    await a.next(isUdpWith('echo:a-7'));
    for (let i = 0; i < 3; i++) {
      b.send(b.udpFrame(GW_MAC, ipB, 6000 + i, HOST, server.port, text(`b-${i}`)));
      await b.next(isUdpWith(`echo:b-${i}`));
    }
    // A goes on opening bindings: at its share (8 / 2), it replaces its own.
    for (let i = 8; i < 60; i++) a.send(a.udpFrame(GW_MAC, ipA, 20000 + i, HOST, server.port, text(`a-${i}`)));
    await a.next(isUdpWith('echo:a-59'));
    for (let i = 0; i < 3; i++) {
      const before = server.from.get(`b-${i}`)!;
      b.send(b.udpFrame(GW_MAC, ipB, 6000 + i, HOST, server.port, text(`b-again-${i}`)));
      await b.next(isUdpWith(`echo:b-again-${i}`));
      expect(server.from.get(`b-again-${i}`)).toBe(before);
    }
    const st = engine!.stats();
    expect(st.udp.evictedFair).toBe(3);
    expect(st.udp.evictedOwn).toBe(52);
    expect(st.limits.udpBindings.used).toBe(8);
  });
});

describe('UdpNat bounds (unit)', () => {
  const nats: UdpNat<number>[] = [];
  afterEach(() => {
    for (const n of nats.splice(0)) n.close();
  });

  function nat(opts: { maxFlows: number; perVm?: number; sockets?: Quota; log?: Logger; now?: () => number }) {
    const n = new UdpNat<number>({
      idleMs: 60_000, maxFlows: opts.maxFlows, perVm: opts.perVm, sockets: opts.sockets, vmOf: (p) => p,
      hostIp: HOST, log: opts.log ?? nullLogger, now: opts.now ?? (() => 0), deliver: () => {}, refused: () => {},
    });
    nats.push(n);
    return n;
  }
  const send = (n: UdpNat<number>, vm: number, guestPort: number) =>
    n.send(vm, macA, parseIPv4('192.168.65.10') + vm, guestPort, LOOPBACK, 9, new Uint8Array(4), 0, 4);

  it('refuses a binding when the host-socket budget is spent and the VM has none of its own to give up, and says so in the log', () => {
    const sockets = new Quota('hostSockets', 4, 4);
    sockets.take(99, 4); // held by someone else (say, TCP flows)
    const lines: string[] = [];
    const log = { ...nullLogger, limited: (key: string) => lines.push(key) } as Logger;
    const n = nat({ maxFlows: 16, sockets, log });
    expect(send(n, 1, 1000)).toBe(false);
    expect(n.counters.socketRefused).toBe(1);
    expect(n.size).toBe(0);
    expect(lines).toContain('udp-sockets');
    // Once a socket is free the VM gets it; at the budget again it gives up its own oldest.
    sockets.give(99, 1);
    expect(send(n, 1, 1000)).toBe(true);
    expect(send(n, 1, 1001)).toBe(true);
    expect(n.counters.evictedOwn).toBe(1);
    expect(n.size).toBe(1);
    expect(sockets.used).toBe(4);
  });

  it('gives each binding\'s socket back exactly once (evicted, expired, purged, closed)', () => {
    const sockets = new Quota('hostSockets', 100, 100);
    const n = nat({ maxFlows: 4, perVm: 2, sockets });
    for (let p = 0; p < 5; p++) send(n, 1, 2000 + p);
    send(n, 2, 3000);
    expect(sockets.usedBy(1)).toBe(2);
    expect(sockets.usedBy(2)).toBe(1);
    n.purge(1);
    n.purge(1);
    expect(sockets.usedBy(1)).toBe(0);
    expect(n.limits()).toMatchObject({ used: 1, maxVmUsed: 1 });
    n.close();
    n.close();
    expect(sockets.used).toBe(0);
    expect(n.limits().used).toBe(0);
  });

  it('knows its own sockets\' local ports once bound, and forgets them a while after they close (a datagram may still be on its way)', async () => {
    let now = 0;
    const n = nat({ maxFlows: 4, now: () => now });
    const server = dgram.createSocket('udp4');
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
    const from = new Promise<number>((r) => server.once('message', (_m, rinfo) => r(rinfo.port)));
    n.send(1, macA, ipA, 4000, LOOPBACK, server.address().port, text('x'), 0, 1);
    const port = await from;
    expect(n.ownsLocalPort(port)).toBe(true);
    n.purge(1);
    expect(n.ownsLocalPort(port)).toBe(true);
    now = 5000;
    expect(n.ownsLocalPort(port)).toBe(true);
    now = 5001;
    expect(n.ownsLocalPort(port)).toBe(false);
    n.expire();
    expect(n.ownsLocalPort(port)).toBe(false);
    server.close();
  });
});
