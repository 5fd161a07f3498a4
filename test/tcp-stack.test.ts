/**
 * Behaviour of the engine's TCP against a raw-frame guest peer and real host
 * sockets on 127.0.0.1, with fake time for every timer.
 */
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  TcpHarness, Sim, TcpPeer, HOST_ALIAS, GUEST_IP, seededBytes, sha256, buildFrame, SYN, ACK, RST, FIN, PSH,
  type HarnessOptions, type Impairments,
} from './support/tcp-peer.js';
import { D_FLOW_STATUS, D_FLOW_ID, D_SRC_IP, D_DST_IP, D_SRC_PORT, D_DST_PORT, FLOW_NEW } from '../assembly/layout.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

interface Srv { port: number; socks: net.Socket[]; rx: Buffer[]; ended: boolean[]; closed: boolean[]; errors: string[] }

/** A server on 127.0.0.1, or on the unix socket `path`. */
async function listen(onConn?: (s: net.Socket, i: number) => void, path?: string): Promise<Srv> {
  const st: Srv = { port: 0, socks: [], rx: [], ended: [], closed: [], errors: [] };
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    const i = st.socks.length;
    st.socks.push(s);
    st.rx.push(Buffer.alloc(0));
    st.ended.push(false);
    st.closed.push(false);
    s.on('data', (d) => { st.rx[i] = Buffer.concat([st.rx[i], d]); });
    s.on('end', () => { st.ended[i] = true; });
    s.on('close', () => { st.closed[i] = true; });
    s.on('error', (e: NodeJS.ErrnoException) => { st.errors.push(e.code ?? e.message); });
    onConn?.(s, i);
  });
  if (path !== undefined) await new Promise<void>((r) => srv.listen(path, r));
  else {
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    st.port = (srv.address() as net.AddressInfo).port;
  }
  cleanups.push(() => {
    for (const s of st.socks) s.destroy();
    srv.close();
  });
  return st;
}

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function setup(o: HarnessOptions = {}, seed = 1) {
  const h = new TcpHarness({ ...o, tcp: { manualTimers: true, ...o.tcp } });
  cleanups.push(() => h.stack.close());
  const sim = new Sim(h, seed);
  return { h, sim };
}

async function established(sim: Sim, port: number, lport = 40000, opts: Partial<ConstructorParameters<typeof TcpPeer>[2]> = {}): Promise<TcpPeer> {
  const p = sim.peer({ port: lport, keep: true, ...opts });
  p.connect(HOST_ALIAS, port);
  expect(await sim.run(() => p.state === 'established', 5000)).toBe(true);
  // ...and the engine has seen the handshake's last ACK.
  expect(await sim.run(() => sim.h.stack.flows().find((f) => f.guest.endsWith(`:${lport}`))?.state !== 'syn-received', 5000)).toBe(true);
  return p;
}

const engineSegs = (p: TcpPeer) => p.log;

describe('handshake and options', () => {
  it('connects the host socket first, then answers SYN-ACK with MSS = mtu-40 and window scaling (≥ 1 MiB window); declines SACK and timestamps', async () => {
    const srv = await listen();
    const { h, sim } = setup({ mtu: 1500 });
    const p = sim.peer({ port: 40000, offerSackTs: true });
    p.connect(HOST_ALIAS, srv.port);
    sim.step();
    // Nothing answers the SYN until the host socket has connected.
    expect(engineSegs(p).length).toBe(0);
    expect(h.stack.stats().pendingConnects).toBe(1);
    expect(await sim.run(() => p.state === 'established', 5000)).toBe(true);
    const synack = engineSegs(p)[0];
    expect(synack.flags).toBe(SYN | ACK);
    expect(synack.mss).toBe(1460);
    expect(synack.wscale).toBeGreaterThanOrEqual(5);
    expect(synack.sackPerm).toBe(false);
    expect(synack.ts).toBe(false);
    expect(srv.socks.length).toBe(1);
    await sim.run(() => h.stack.flows()[0]?.state === 'established', 1000);
    expect(h.stack.flows()[0]).toMatchObject({ proto: 'tcp', guest: '192.168.65.3:40000', state: 'established' });
    // A lone sending flow is offered its VM's whole share once scaled: vmWindowSegments (512) × MSS.
    p.write(Buffer.from('x'));
    await sim.run(() => srv.rx[0]?.length === 1 && engineSegs(p).some((s) => s.ack === p.sndNxt), 5000);
    const last = engineSegs(p)[engineSegs(p).length - 1];
    expect(last.ack).toBe(p.sndNxt);
    expect(last.window << synack.wscale!).toBeGreaterThanOrEqual(512 * 1460 - (1 << synack.wscale!));
  });

  it('host sockets made ahead of time: each flow reads and writes its own host connection', async () => {
    // Each connection's server greets it with its index, then echoes what it gets.
    const srv = await listen((s, i) => {
      s.write(`hello ${i};`);
      s.on('data', (d) => s.write(d));
    });
    const { h, sim } = setup();
    const peers: TcpPeer[] = [];
    for (let i = 0; i < 4; i++) {
      const p = await established(sim, srv.port, 40000 + i, { keep: true });
      peers.push(p);
      // The next flow's socket is made after this turn's frames went out.
      if (i < 3) expect(h.stack.stats().hostSocketsMadeAhead).toBe(i);
    }
    expect(h.stack.stats().hostSocketsMadeAhead).toBe(3);
    // Every flow, the earlier ones still open, talks to its own server socket.
    for (let i = 0; i < 4; i++) peers[i].write(Buffer.from(`from ${i}`));
    expect(await sim.run(() => peers.every((p, i) => Buffer.concat(p.keep).length === `hello ${i};from ${i}`.length), 5000)).toBe(true);
    for (let i = 0; i < 4; i++) {
      expect(Buffer.concat(peers[i].keep).toString()).toBe(`hello ${i};from ${i}`);
      expect(srv.rx[i].toString()).toBe(`from ${i}`);
    }
  });

  it('without the guest offering window scaling, sends no WSCALE and keeps the window within 64 KiB', async () => {
    const srv = await listen((s) => s.end(seededBytes(300_000, 9)));
    const { sim } = setup();
    const p = await established(sim, srv.port, 40000, { wscale: null, keep: false });
    expect(p.peerOffered!.wscale).toBeUndefined();
    const data = seededBytes(300_000, 10);
    p.write(data);
    p.end();
    expect(await sim.run(() => p.finRcvd && p.finAcked && srv.ended[0], 30_000)).toBe(true);
    expect(sha256(srv.rx[0])).toBe(sha256(data));
    expect(p.digest).toBe(sha256(seededBytes(300_000, 9)));
    for (const s of p.log) expect(s.window).toBeLessThanOrEqual(65535);
  });

  it('honours the guest MSS (smaller than ours) and clamps a lying tiny MSS', async () => {
    const srv = await listen((s) => s.write(seededBytes(20_000, 1)));
    const { h, sim } = setup({ mtu: 9000 });
    const p = await established(sim, srv.port, 40000, { mss: 1000 });
    await sim.run(() => p.received >= 20_000, 10_000);
    const sizes = p.log.map((s) => s.payload.length);
    expect(Math.max(...sizes)).toBe(1000);
    // A SYN announcing MSS 1 (classify already clamps a shift above 14).
    const q = sim.peer({ port: 40001 });
    q.remoteIp = HOST_ALIAS;
    q.remotePort = srv.port;
    sim.inject(buildFrame({ srcIp: GUEST_IP, dstIp: HOST_ALIAS, srcPort: 40001, dstPort: srv.port, seq: 5, ack: 0, flags: SYN, window: 65535, mss: 1, wscale: 20 }));
    await sim.run(() => q.log.length > 0, 5000);
    expect(h.stack.stats().badOptions).toBe(1);
    expect(q.log[0].flags).toBe(SYN | ACK);
    expect(q.log[0].wscale).toBeDefined();
  });

  it('a SYN whose option length lies is dropped by classify and never reaches the stack', async () => {
    const srv = await listen();
    const { h, sim } = setup();
    sim.inject(buildFrame({
      srcIp: GUEST_IP, dstIp: HOST_ALIAS, srcPort: 40002, dstPort: srv.port, seq: 1, ack: 0, flags: SYN, window: 1000,
      rawOptions: new Uint8Array([2, 12, 5, 180]),
    }));
    sim.inject(buildFrame({ srcIp: GUEST_IP, dstIp: HOST_ALIAS, srcPort: 40003, dstPort: srv.port, seq: 1, ack: 0, flags: SYN, window: 1000, badChecksum: true }));
    sim.step();
    expect(h.dropped).toBe(2);
    expect(h.stack.stats().synReceived).toBe(0);
    expect(h.flowCount()).toBe(0);
  });
});

describe('setup failures', () => {
  it('refused connect → RST|ACK acknowledging the SYN, flow removed', async () => {
    const port = await closedPort();
    const { h, sim } = setup();
    const p = sim.peer({ port: 40000 });
    p.connect(HOST_ALIAS, port);
    expect(await sim.run(() => p.state === 'reset', 5000)).toBe(true);
    const rst = p.log[0];
    expect(rst.flags).toBe(RST | ACK);
    expect(rst.ack).toBe((p.iss + 1) >>> 0);
    expect(h.stack.stats()).toMatchObject({ refused: 1, flows: 0, pendingConnects: 0 });
    expect(h.flowCount()).toBe(0);
  });

  it('policy refusal (resolveDestination → null) → RST without a host connect', async () => {
    const { h, sim } = setup({ resolve: () => null });
    const p = sim.peer({ port: 40000 });
    p.connect(0x08080808, 443);
    expect(await sim.run(() => p.state === 'reset', 2000)).toBe(true);
    expect(h.stack.stats()).toMatchObject({ policyRefused: 1, flows: 0 });
    expect(h.flowCount()).toBe(0);
  });

  it('connect timeout (10 s default) → RST, not before', async () => {
    const stuck: net.Socket[] = [];
    const { h, sim } = setup({ tcp: { connect: () => { const s = new net.Socket(); stuck.push(s); return s; } } });
    const p = sim.peer({ port: 40000, rtoMs: 60_000 });
    p.connect(0x01020304, 80);
    sim.step();
    sim.advance(9_990);
    sim.step();
    expect(p.state).toBe('syn-sent');
    sim.advance(20);
    sim.step();
    sim.step();
    expect(p.state).toBe('reset');
    expect(h.stack.stats()).toMatchObject({ connectTimeouts: 1, flows: 0, pendingConnects: 0 });
    expect(stuck[0].destroyed).toBe(true);
  });

  it('pending connects are capped: SYNs beyond the cap get RST and are counted, others proceed', async () => {
    const { h, sim } = setup({ tcp: { maxPendingConnects: 3, connect: () => new net.Socket() } });
    const peers = Array.from({ length: 5 }, (_, i) => sim.peer({ port: 41000 + i, rtoMs: 60_000 }));
    for (const p of peers) p.connect(0x01020304, 80);
    sim.step();
    sim.step();
    expect(peers.filter((p) => p.state === 'reset').length).toBe(2);
    expect(h.stack.stats()).toMatchObject({ synOverCap: 2, pendingConnects: 3, flows: 3 });
    expect(h.flowCount()).toBe(3);
  });

  it('duplicate SYNs while connecting are absorbed (one SYN-ACK)', async () => {
    let release: (() => void) | undefined;
    const srv = await listen();
    const { h, sim } = setup({
      tcp: {
        connect: (host, port) => {
          const s = new net.Socket({ allowHalfOpen: true } as net.SocketConstructorOpts);
          release = () => s.connect(port, host);
          return s;
        },
      },
    });
    const p = sim.peer({ port: 40000 });
    p.connect(HOST_ALIAS, srv.port);
    sim.step();
    for (let i = 0; i < 3; i++) sim.inject(buildFrame({ srcIp: GUEST_IP, dstIp: HOST_ALIAS, srcPort: 40000, dstPort: srv.port, seq: p.iss, ack: 0, flags: SYN, window: 65535, mss: 1460 }));
    sim.step();
    expect(h.stack.stats().dupSyn).toBe(3);
    release!();
    expect(await sim.run(() => p.state === 'established', 5000)).toBe(true);
    expect(p.log.filter((s) => s.flags === (SYN | ACK)).length).toBe(1);
  });
});

describe('data and close', () => {
  it('large frames: with mtu 65520 both directions use ~64 KiB segments', async () => {
    const down = seededBytes(2_000_000, 21);
    const srv = await listen((s) => s.end(down));
    const { h, sim } = setup({ mtu: 65520 });
    const p = await established(sim, srv.port, 40000, { mss: 65480, keep: false });
    expect(p.log[0].mss).toBe(65480);
    const up = seededBytes(2_000_000, 22);
    p.write(up);
    p.end();
    expect(await sim.run(() => p.finRcvd && p.finAcked && srv.ended[0] && h.stack.size === 0, 30_000)).toBe(true);
    expect(sha256(srv.rx[0])).toBe(sha256(up));
    expect(p.digest).toBe(sha256(down));
    const big = p.log.filter((s) => s.payload.length === 65480).length;
    expect(big).toBeGreaterThanOrEqual(20);
    expect(p.badFrames).toEqual([]);
  });

  it('sequence numbers wrap on both sides', async () => {
    const down = seededBytes(200_000, 31);
    const srv = await listen((s) => s.end(down));
    const { h, sim } = setup({ tcp: { initialSequence: () => 0xffffff00 } });
    const p = sim.peer({ port: 40000 });
    p.connect(HOST_ALIAS, srv.port, 0xfffff000);
    const up = seededBytes(200_000, 32);
    p.write(up);
    p.end();
    expect(await sim.run(() => p.finRcvd && p.finAcked && srv.ended[0] && h.stack.size === 0, 30_000)).toBe(true);
    expect(sha256(srv.rx[0])).toBe(sha256(up));
    expect(p.digest).toBe(sha256(down));
  });

  it('half-close, guest first: guest FIN → host end(); the host keeps sending until it closes', async () => {
    const srv = await listen((s) => s.on('end', () => {
      setTimeout(() => s.end(seededBytes(100_000, 41)), 5);
    }));
    const { h, sim } = setup();
    const p = await established(sim, srv.port, 40000, { keep: false });
    p.write(Buffer.from('request'));
    p.end();
    expect(await sim.run(() => srv.ended[0], 5000)).toBe(true);
    expect(h.stack.flows()[0].state).toBe('close-wait');
    expect(await sim.run(() => p.finRcvd && h.stack.size === 0, 10_000)).toBe(true);
    expect(p.digest).toBe(sha256(seededBytes(100_000, 41)));
    expect(h.flowCount()).toBe(0);
  });

  it('half-close, host first: host end → FIN to the guest; the guest keeps sending', async () => {
    const srv = await listen((s) => s.end('greeting'));
    const { h, sim } = setup();
    const p = await established(sim, srv.port);
    expect(await sim.run(() => p.finRcvd, 5000)).toBe(true);
    expect(Buffer.concat(p.keep).toString()).toBe('greeting');
    expect(h.stack.flows()[0].state).toBe('fin-wait');
    const up = seededBytes(500_000, 42);
    p.write(up);
    expect(await sim.run(() => srv.rx[0].length === up.length, 10_000)).toBe(true);
    expect(sha256(srv.rx[0])).toBe(sha256(up));
    p.end();
    expect(await sim.run(() => srv.ended[0] && h.stack.size === 0, 5000)).toBe(true);
    expect(h.flowCount()).toBe(0);
  });

  it('guest RST resets the host socket; host reset sends RST to the guest', async () => {
    const srv = await listen();
    const { h, sim } = setup();
    const p = await established(sim, srv.port, 40000);
    await sim.run(() => srv.socks.length === 1, 2000);
    p.abort();
    sim.step();
    expect(h.stack.size).toBe(0);
    expect(await sim.run(() => srv.closed[0], 2000)).toBe(true);
    expect(srv.errors).toContain('ECONNRESET');
    expect(h.stack.stats().rstReceived).toBe(1);

    const q = await established(sim, srv.port, 40001);
    await sim.run(() => srv.socks.length === 2, 2000);
    srv.socks[1].resetAndDestroy();
    expect(await sim.run(() => q.state === 'reset', 5000)).toBe(true);
    expect(h.stack.size).toBe(0);
    expect(h.flowCount()).toBe(0);
  });

  it('a guest RST on a flow whose host side is a unix socket (an embedder connect()) closes it: Node cannot reset one, so it is destroyed', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'vnetkit-unix-')), 'host.sock');
    const srv = await listen(undefined, path);
    const { h, sim } = setup({ tcp: { connect: () => net.connect({ path, allowHalfOpen: true }) } });
    const p = await established(sim, 5001, 40000);
    await sim.run(() => srv.socks.length === 1, 2000);
    p.abort();
    sim.step();
    expect(h.stack.size).toBe(0);
    // No RST on a unix socket: the server sees the end of the stream.
    expect(await sim.run(() => srv.ended[0], 2000)).toBe(true);
    expect(h.stack.stats().rstReceived).toBe(1);
  });
});

describe('hostile and odd segments', () => {
  it('RST storm: only an exact-sequence RST resets; in-window ones get (rate-limited) challenge ACKs', async () => {
    const srv = await listen();
    const { h, sim } = setup({ tcp: { challengeAcksPerSecond: 10 } });
    const p = await established(sim, srv.port);
    for (let i = 1; i <= 50; i++) p.raw({ seq: (p.sndNxt + i * 100) >>> 0, flags: RST });
    for (let i = 1; i <= 50; i++) p.raw({ seq: (p.sndNxt + 0x40000000 + i) >>> 0, flags: RST });
    sim.step();
    sim.step();
    const st = h.stack.stats();
    expect(st.flows).toBe(1);
    expect(st.challengeAcks).toBe(10);
    expect(st.challengeAcksSuppressed).toBe(40);
    expect(st.outOfWindow).toBe(50);
    // Still works.
    p.write(Buffer.from('still here'));
    expect(await sim.run(() => srv.rx[0]?.toString() === 'still here', 5000)).toBe(true);
    p.raw({ seq: p.sndNxt, flags: RST });
    sim.step();
    expect(h.stack.size).toBe(0);
  });

  it('SYN on an established flow → challenge ACK; segments without ACK are dropped and counted', async () => {
    const srv = await listen();
    const { h, sim } = setup();
    const p = await established(sim, srv.port);
    const before = p.log.length;
    p.raw({ flags: SYN, seq: 12345 });
    sim.step();
    sim.step();
    expect(h.stack.stats().challengeAcks).toBe(1);
    expect(p.log.length).toBe(before + 1);
    expect(p.log[before].flags).toBe(ACK);
    p.raw({ flags: FIN });
    p.raw({ flags: PSH, payload: Buffer.from('zz') });
    sim.step();
    expect(h.stack.stats().badFlags).toBe(2);
    expect(h.stack.flows()[0].state).toBe('established');
    await sim.run(() => false, 50);
    expect(srv.rx[0]?.length ?? 0).toBe(0);
  });

  it('out-of-window data is answered with an ACK and not delivered; keepalive probes are answered', async () => {
    const srv = await listen();
    const { h, sim } = setup();
    const p = await established(sim, srv.port);
    const n0 = p.log.length;
    p.raw({ seq: (p.sndNxt + 0x20000000) >>> 0, payload: Buffer.from('far away') });
    sim.step();
    sim.step();
    expect(h.stack.stats().outOfWindow).toBe(1);
    expect(p.log.length).toBe(n0 + 1);
    expect(p.log[n0].ack).toBe(p.sndNxt);
    // keepalive: one below snd.nxt, no data
    p.raw({ seq: (p.sndNxt - 1) >>> 0 });
    sim.step();
    sim.step();
    expect(p.log.length).toBe(n0 + 2);
    expect(p.log[n0 + 1].ack).toBe(p.sndNxt);
    await sim.run(() => false, 50);
    expect(srv.rx[0]?.length ?? 0).toBe(0);
  });

  it('segments for unknown flows get RST; an RST for an unknown flow gets nothing', async () => {
    const { h, sim } = setup();
    const q = sim.peer({ port: 40009 });
    q.remoteIp = HOST_ALIAS;
    q.remotePort = 80;
    q.state = 'established';
    q.raw({ seq: 100, ack: 200, flags: ACK, payload: Buffer.from('hi') });
    q.raw({ seq: 100, ack: 200, flags: RST });
    sim.step();
    sim.step();
    expect(q.log.length).toBe(1);
    expect(q.log[0].flags).toBe(RST);
    expect(q.log[0].seq).toBe(200);
    expect(h.stack.stats().noFlow).toBe(2);
  });

  it('flow table full → RST for new SYNs while existing flows keep working', async () => {
    const srv = await listen();
    const { h, sim } = setup({ flowCapacity: 8 });
    const peers: TcpPeer[] = [];
    for (let i = 0; i < 8; i++) peers.push(await established(sim, srv.port, 42000 + i));
    const extra = sim.peer({ port: 42100 });
    extra.connect(HOST_ALIAS, srv.port);
    expect(await sim.run(() => extra.state === 'reset', 2000)).toBe(true);
    expect(h.stack.stats().flowTableFull).toBe(1);
    peers[3].write(Buffer.from('ok'));
    expect(await sim.run(() => srv.rx.some((b) => b.toString() === 'ok'), 5000)).toBe(true);
    // Closing one frees a slot.
    peers[0].end();
    srv.socks[0]?.end();
    await sim.run(() => h.stack.size === 7, 5000);
    const again = await established(sim, srv.port, 42101);
    expect(again.state).toBe('established');
  });
});

describe('timers and flow control', () => {
  it('an idle connection survives an hour of simulated time without sending anything', async () => {
    const srv = await listen();
    const { h, sim } = setup();
    const p = await established(sim, srv.port);
    const n0 = p.log.length;
    for (let t = 0; t < 3600; t += 60) {
      sim.advance(60_000);
      sim.step();
    }
    expect(h.stack.stats().flows).toBe(1);
    expect(p.log.length, JSON.stringify(p.log.slice(n0).map((x) => [x.flags, x.seq, x.ack, x.window]))).toBe(n0);
    p.write(Buffer.from('after an hour'));
    srv.socks[0].write('pong');
    expect(await sim.run(() => srv.rx[0]?.toString() === 'after an hour' && p.received === 4, 5000)).toBe(true);
  });

  it('retransmits unacknowledged data on RTO with exponential backoff, then recovers', async () => {
    const srv = await listen();
    const { h, sim } = setup();
    const p = await established(sim, srv.port, 40000, { keep: false });
    sim.down.imp = { loss: 1 };
    const data = seededBytes(50_000, 51);
    srv.socks[0].write(data);
    await new Promise((r) => setTimeout(r, 20));
    sim.step();
    const t0 = h.now;
    const fired: number[] = [];
    let last = 0;
    while (h.now - t0 < 7_500) {
      sim.advance(10);
      sim.step();
      const n = h.stack.stats().rtoTimeouts;
      if (n !== last) {
        fired.push(h.now - t0);
        last = n;
      }
    }
    // No RTT sample yet: RTO starts at 1 s and doubles: ~1, 3, 7 s.
    expect(fired.length).toBe(3);
    expect(fired[0]).toBeGreaterThanOrEqual(1000);
    expect(fired[1] - fired[0]).toBeGreaterThanOrEqual(2000);
    expect(fired[2] - fired[1]).toBeGreaterThanOrEqual(4000);
    sim.down.imp = {};
    expect(await sim.run(() => p.received === data.length, 30_000)).toBe(true);
    expect(p.digest).toBe(sha256(data));
  });

  it('a congested VM transport holds new data until it drains, then the flow continues intact', async () => {
    const total = 300_000;
    const down = seededBytes(total, 77);
    const srv = await listen((s) => s.end(down));
    const { h, sim } = setup();
    h.link.congested = true;
    const p = await established(sim, srv.port, 40000, { keep: false });
    await sim.run(() => false, 300);
    expect(p.received).toBe(0);
    h.link.congested = false;
    h.stack.portDrained(1);
    expect(await sim.run(() => p.finRcvd, 20_000)).toBe(true);
    expect(p.received).toBe(total);
    expect(p.digest).toBe(sha256(down));
    expect(h.stack.stats().retransmits).toBe(0);
  });

  it('flows bursting in one turn stop at the link\'s high-water mark between them, then continue intact', async () => {
    const srv = await listen((s, i) => s.end(seededBytes(300_000, 50 + i)));
    const { h, sim } = setup({ mtu: 1500 });
    h.link.backlog = 0;
    h.link.highWater = 50_000;
    let cur = 0;
    let max = 0;
    const send0 = h.link.send.bind(h.link);
    h.link.send = (b, o, l) => { cur += l; send0(b, o, l); };
    const flush0 = h.tx.flush.bind(h.tx);
    h.tx.flush = () => { cur = 0; flush0(); max = Math.max(max, cur); };
    const peers: TcpPeer[] = [];
    for (let i = 0; i < 4; i++) {
      const p = sim.peer({ port: 42000 + i });
      p.connect(HOST_ALIAS, srv.port);
      peers.push(p);
    }
    expect(await sim.run(() => peers.every((p) => p.finRcvd), 60_000)).toBe(true);
    for (let i = 0; i < 4; i++) expect(peers[i].digest).toBe(sha256(seededBytes(300_000, 50 + i)));
    expect(max).toBeGreaterThan(40_000);
    expect(max).toBeLessThanOrEqual(50_000 + 1514);
  });

  it('a congested link is shared: after a drain the flows that waited longest send first, so none starves', async () => {
    const size = 2_000_000;
    const srv = await listen((s, i) => s.end(seededBytes(size, 90 + i)));
    const { h, sim } = setup({ mtu: 1500 });
    // A link like StreamLink: congested from the high-water mark until the VM has read it down
    // to half, then one drain; the VM reads 30 kB per step.
    const link = h.link;
    link.backlog = 0;
    link.highWater = 120_000;
    const send0 = link.send.bind(link);
    link.send = (b, o, l) => { link.backlog! += l; send0(b, o, l); };
    const flush0 = h.tx.flush.bind(h.tx);
    h.tx.flush = () => { flush0(); if (link.backlog! >= link.highWater!) link.congested = true; };
    const take0 = h.take.bind(h);
    h.take = () => {
      link.backlog = Math.max(0, link.backlog! - 30_000);
      if (link.congested && link.backlog <= link.highWater! / 2) {
        link.congested = false;
        h.stack.portDrained(1);
      }
      return take0();
    };
    const peers: TcpPeer[] = [];
    for (let i = 0; i < 4; i++) {
      const p = sim.peer({ port: 43000 + i });
      p.connect(HOST_ALIAS, srv.port);
      peers.push(p);
    }
    expect(await sim.run(() => peers.some((p) => p.received >= size / 2), 60_000)).toBe(true);
    const got = peers.map((p) => p.received);
    expect(Math.min(...got)).toBeGreaterThan(0.5 * Math.max(...got));
    expect(await sim.run(() => peers.every((p) => p.finRcvd), 120_000)).toBe(true);
    for (let i = 0; i < 4; i++) expect(peers[i].digest).toBe(sha256(seededBytes(size, 90 + i)));
  });

  it('guest zero window: the engine stops, probes, pauses the host socket, and resumes when the window opens', async () => {
    const total = 8_000_000;
    const down = seededBytes(total, 61);
    let hostWriteBlocked = false;
    const srv = await listen((s) => {
      let off = 0;
      const pump = () => {
        while (off < total) {
          const ok = s.write(down.subarray(off, off + 65536));
          off += 65536;
          if (!ok) {
            hostWriteBlocked = true;
            s.once('drain', pump);
            return;
          }
        }
        s.end();
      };
      pump();
    });
    const { h, sim } = setup({ tcp: { sndBufBytes: 256 * 1024 } });
    const p = await established(sim, srv.port, 40000, { keep: false, rcvBuf: 64 * 1024 });
    p.setReadPaused(true);
    expect(await sim.run(() => p.unread >= 64 * 1024 - 1460, 10_000)).toBe(true);
    await sim.run(() => false, 500);
    const r0 = p.received;
    // Let fake time run: the engine must probe, not give up.
    for (let i = 0; i < 300; i++) {
      sim.advance(100);
      sim.step();
      await new Promise((r) => setImmediate(r));
    }
    const st = h.stack.stats();
    expect(st.zeroWindowProbesSent).toBeGreaterThan(2);
    expect(st.flows).toBe(1);
    expect(p.received).toBe(r0);
    expect(p.unread).toBeLessThanOrEqual(64 * 1024);
    const f = h.stack.flows()[0];
    expect(f.sndQueued).toBeLessThanOrEqual(256 * 1024 + 128 * 1024);
    expect(hostWriteBlocked).toBe(true);
    p.setReadPaused(false);
    expect(await sim.run(() => p.finRcvd, 120_000)).toBe(true);
    expect(p.received).toBe(total);
    expect(p.digest).toBe(sha256(down));
  }, 60_000);

  it('the default send buffer is 64 segments of the flow\'s MSS, at least 1 MiB: a stalled guest lets it fill up to that and no further', async () => {
    const queuedWhenStalled = async (mtu: number, mss: number): Promise<number> => {
      const total = 12_000_000;
      const srv = await listen((s) => {
        s.on('error', () => {});
        s.write(seededBytes(total, 62));
      });
      const { h, sim } = setup({ mtu });
      const p = await established(sim, srv.port, 40000, { keep: false, rcvBuf: 64 * 1024, mss });
      p.setReadPaused(true);
      expect(await sim.run(() => p.unread >= 64 * 1024 - mss, 10_000)).toBe(true);
      // Let the host side fill the queue until the socket is paused.
      let last = -1;
      for (let i = 0; i < 400; i++) {
        await sim.run(() => false, 20);
        const q = h.stack.flows()[0].sndQueued;
        if (q === last && q > 0) break;
        last = q;
      }
      return h.stack.flows()[0].sndQueued;
    };
    // Reads are sized to what is left of the buffer, so the queue never passes it.
    const read = 256 * 1024;
    const small = await queuedWhenStalled(1500, 1460);
    expect(small).toBeGreaterThan((1 << 20) - read);
    expect(small).toBeLessThanOrEqual(1 << 20);
    const big = await queuedWhenStalled(65520, 65480);
    expect(big).toBeGreaterThan(64 * 65480 - read);
    expect(big).toBeLessThanOrEqual(64 * 65480);
  }, 60_000);

  it('slow host socket: the window advertised to the guest shrinks to what the buffer can take, then reopens', async () => {
    let hostSock: net.Socket | undefined;
    const hash = createHash('sha256');
    let got = 0;
    const srv = await listen((s) => {
      hostSock = s;
      s.pause();
      s.on('data', (d) => { hash.update(d); got += d.length; });
    });
    const { h, sim } = setup({ mtu: 9000, tcp: { rcvBufBytes: 256 * 1024 } });
    const p = await established(sim, srv.port, 40000, { mss: 8960 });
    const up = seededBytes(24_000_000, 71);
    p.write(up);
    // Run until the guest is stalled on a zero window.
    let stalled = false;
    for (let i = 0; i < 20000 && !stalled; i++) {
      sim.step();
      await new Promise((r) => setImmediate(r));
      stalled = p.peerWnd === 0 && p.outstanding === 0;
      if (!stalled && i % 50 === 49) await new Promise((r) => setTimeout(r, 1));
    }
    expect(stalled).toBe(true);
    const f = h.stack.flows()[0];
    expect(f.rcvQueued).toBeLessThanOrEqual(256 * 1024);
    expect(f.rcvQueued).toBeGreaterThan(0);
    hostSock!.resume();
    expect(await sim.run(() => got === up.length, 120_000)).toBe(true);
    expect(hash.digest('hex')).toBe(sha256(up));
    expect(h.stack.stats().windowUpdates).toBeGreaterThan(0);
  }, 60_000);

  it('out-of-order segments wait in a pooled reassembly buffer; with the pool empty they are dropped and recovered', async () => {
    const srv = await listen();
    const { h, sim } = setup({ tcp: { reasmSlots: 1 } }, 7);
    const a = await established(sim, srv.port, 40000);
    const b = await established(sim, srv.port, 40001);
    sim.up.imp = { reorder: 0.2 };
    const da = seededBytes(300_000, 81);
    const db = seededBytes(300_000, 82);
    a.write(da);
    b.write(db);
    expect(await sim.run(() => srv.rx.reduce((n, x) => n + x.length, 0) === 600_000, 60_000)).toBe(true);
    const st = h.stack.stats();
    expect(st.oooSegments).toBeGreaterThan(0);
    expect(st.oooNoBuffer).toBeGreaterThan(0);
    expect(st.reasmInUse).toBe(0);
    const bySize = srv.rx.map((x) => sha256(x)).sort();
    expect(bySize).toEqual([sha256(da), sha256(db)].sort());
  });
});

describe('connectToGuest and management', () => {
  it('opens a connection to a listening guest and pipes it to a host socket', async () => {
    const { h, sim } = setup();
    const g = sim.peer({ port: 8080, keep: true });
    g.listen();
    const srv = await listen();
    const client = net.connect(srv.port, '127.0.0.1');
    const clientRx: Buffer[] = [];
    client.on('data', (d) => clientRx.push(d));
    await new Promise((r) => client.once('connect', r));
    await sim.run(() => srv.socks.length === 1, 2000);
    expect(h.stack.connectToGuest(h.port, new Uint8Array([2, 0, 0, 0, 0, 5]), GUEST_IP, 8080, HOST_ALIAS, 55555, srv.socks[0])).toBe(true);
    expect(await sim.run(() => g.state === 'established', 5000)).toBe(true);
    client.write('from host');
    expect(await sim.run(() => Buffer.concat(g.keep).toString() === 'from host', 5000)).toBe(true);
    g.write(Buffer.from('from guest'));
    expect(await sim.run(() => Buffer.concat(clientRx).toString() === 'from guest', 5000)).toBe(true);
    expect(h.stack.stats().forwardsOpened).toBe(1);
    client.end();
    g.end();
    expect(await sim.run(() => h.stack.size === 0 && g.finRcvd, 5000)).toBe(true);
    client.destroy();
  });

  it('a guest that refuses the forwarded connection → host socket destroyed', async () => {
    const { h, sim } = setup();
    const g = sim.peer({ port: 8081 });
    const srv = await listen();
    const client = net.connect(srv.port, '127.0.0.1');
    client.on('error', () => {});
    await sim.run(() => srv.socks.length === 1, 2000);
    // Not listening: answer the SYN with RST|ACK by hand.
    h.stack.connectToGuest(h.port, new Uint8Array([2, 0, 0, 0, 0, 5]), GUEST_IP, 8081, HOST_ALIAS, 55556, srv.socks[0]);
    sim.step();
    expect(g.log.length).toBe(1);
    const s = g.log[0];
    expect(s.flags).toBe(SYN);
    expect(s.mss).toBe(1460);
    expect(s.wscale).toBeDefined();
    sim.inject(buildFrame({ srcIp: GUEST_IP, dstIp: HOST_ALIAS, srcPort: 8081, dstPort: 55556, seq: 0, ack: (s.seq + 1) >>> 0, flags: RST | ACK, window: 0 }));
    sim.step();
    expect(h.stack.size).toBe(0);
    expect(srv.socks[0].destroyed).toBe(true);
    expect(h.stack.stats().forwardsRefused, JSON.stringify(h.stack.stats())).toBe(1);
    client.destroy();
  });

  it('purge(port) resets the VM’s host sockets and frees its flow ids', async () => {
    const srv = await listen();
    const { h, sim } = setup();
    await established(sim, srv.port, 40000);
    await established(sim, srv.port, 40001);
    await sim.run(() => srv.socks.length === 2, 2000);
    h.stack.purge(h.port.id);
    expect(h.stack.size).toBe(0);
    expect(h.flowCount()).toBe(0);
    expect(await sim.run(() => srv.closed[0] && srv.closed[1], 2000)).toBe(true);
  });

  it('a flow sends at most burstBytes per turn, the rest on following turns', async () => {
    const srv = await listen();
    const { h, sim } = setup({ tcp: { burstBytes: 64 * 1024 } });
    const p = await established(sim, srv.port, 40000, { keep: false });
    const sizes: number[] = [];
    const orig = h.take.bind(h);
    h.take = () => {
      const o = orig();
      sizes.push(o.length);
      return o;
    };
    srv.socks[0].write(seededBytes(3_000_000, 91));
    expect(await sim.run(() => p.received === 3_000_000, 30_000)).toBe(true);
    expect(p.digest).toBe(sha256(seededBytes(3_000_000, 91)));
    // One flush never carries more than the burst (45 full segments of 1460 + the ACK it may owe)...
    expect(Math.max(...sizes)).toBeLessThanOrEqual(Math.ceil((64 * 1024) / 1460) + 1);
    // ...and the limit was actually reached (the congestion window grew past it).
    expect(Math.max(...sizes)).toBeGreaterThanOrEqual(44);
  });

  it('flow-table entries nobody owns are taken back (discard() for frames the engine drops; orphans on first segment)', async () => {
    const { h, sim } = setup();
    const k = h.k;
    // An entry classify inserted for a SYN that the engine then dropped: a later non-SYN segment removes it.
    k.k.flowInsert(h.flowTable, 6, GUEST_IP, 40100, HOST_ALIAS, 80, 0);
    expect(h.flowCount()).toBe(1);
    const q = sim.peer({ port: 40100 });
    q.remoteIp = HOST_ALIAS;
    q.remotePort = 80;
    q.raw({ seq: 1, ack: 1, flags: ACK });
    sim.step();
    sim.step();
    expect(h.flowCount()).toBe(0);
    expect(q.log[0]?.flags).toBe(RST);
    // discard(d) on a FLOW_NEW descriptor removes the entry classify made.
    k.k.flowInsert(h.flowTable, 6, GUEST_IP, 40101, HOST_ALIAS, 81, 0);
    const d = k.alloc(64, 8);
    k.u8.fill(0, d, d + 64);
    k.u8[d + D_FLOW_STATUS] = FLOW_NEW;
    k.dv.setInt32(d + D_FLOW_ID, 0, true);
    k.dv.setUint32(d + D_SRC_IP, GUEST_IP, true);
    k.dv.setUint32(d + D_DST_IP, HOST_ALIAS, true);
    k.dv.setUint16(d + D_SRC_PORT, 40101, true);
    k.dv.setUint16(d + D_DST_PORT, 81, true);
    h.stack.discard(d);
    expect(h.flowCount()).toBe(0);
  });
});

describe('delayed ACK', () => {
  /** Step the simulation in real time only (fake time frozen, so no held ACK comes due) until done(). */
  async function stepUntil(sim: Sim, done: () => boolean, realMs = 2000): Promise<boolean> {
    const end = Date.now() + realMs;
    while (!done()) {
      if (Date.now() > end) return false;
      sim.step();
      await new Promise((r) => setTimeout(r, 1));
    }
    return true;
  }

  it('a small request is acknowledged by the host answer itself: one segment back, no pure ACK', async () => {
    const srv = await listen((s) => s.on('data', (d) => s.write(d)));
    const { h, sim } = setup();
    const p = await established(sim, srv.port);
    const before = p.log.length;
    p.write(Buffer.from('ping'));
    expect(await stepUntil(sim, () => p.received === 4)).toBe(true);
    const after = p.log.slice(before);
    expect(after.map((s) => [s.flags & ~PSH, s.payload.length])).toEqual([[ACK, 4]]);
    expect(after[0].ack).toBe(p.sndNxt);
    expect(h.stack.counters.segmentsOut).toBe(2); // SYN-ACK + the answer
  });

  it('with no answer the ACK goes alone once delayedAckMs has passed, and not before', async () => {
    const srv = await listen();
    const { h, sim } = setup({ tcp: { delayedAckMs: 5 } });
    const p = await established(sim, srv.port);
    const before = p.log.length;
    p.write(Buffer.from('quiet'));
    expect(await stepUntil(sim, () => srv.rx[0]?.length === 5)).toBe(true);
    for (let i = 0; i < 5; i++) sim.step();
    expect(p.log.length).toBe(before);
    sim.advance(4);
    sim.step();
    expect(p.log.length).toBe(before);
    sim.advance(1);
    await new Promise((r) => setImmediate(r));
    sim.step();
    const after = p.log.slice(before);
    expect(after.map((s) => [s.flags, s.payload.length, s.ack === p.sndNxt])).toEqual([[ACK, 0, true]]);
    expect(h.stack.stats().flows).toBe(1);
  });

  it('two full segments are acknowledged in the same turn', async () => {
    const srv = await listen();
    const { sim } = setup({ mtu: 1500 });
    const p = await established(sim, srv.port);
    const before = p.log.length;
    p.write(seededBytes(2 * 1460, 3));
    expect(await stepUntil(sim, () => p.log.length > before, 500)).toBe(true);
    expect(p.log[before].flags).toBe(ACK);
    expect(p.log[before].ack).toBe(p.sndNxt);
  });

  it("the guest's FIN is acknowledged by the host's FIN: one FIN|ACK, no separate ACK", async () => {
    const srv = await listen((s) => s.on('end', () => s.end()));
    const { h, sim } = setup();
    const p = await established(sim, srv.port, 40000, { keep: false });
    const before = p.log.length;
    p.end();
    expect(await stepUntil(sim, () => p.finRcvd)).toBe(true);
    const after = p.log.slice(before);
    expect(after.map((s) => s.flags)).toEqual([FIN | ACK]);
    expect(after[0].ack).toBe(p.sndNxt);
    expect(await sim.run(() => h.stack.size === 0, 5000)).toBe(true);
  });

  it('delayedAckMs: 0 acknowledges every turn, before the answer', async () => {
    const srv = await listen((s) => s.on('data', (d) => setTimeout(() => s.write(d), 20)));
    const { sim } = setup({ tcp: { delayedAckMs: 0 } });
    const p = await established(sim, srv.port);
    const before = p.log.length;
    p.write(Buffer.from('ping'));
    expect(await stepUntil(sim, () => p.received === 4)).toBe(true);
    const after = p.log.slice(before);
    expect(after.map((s) => [s.flags & ~PSH, s.payload.length])).toEqual([[ACK, 0], [ACK, 4]]);
  });
});

describe('guest data to host sockets', () => {
  it("segments of several flows interleaved in one turn reach each flow's socket whole and in order", async () => {
    const srv = await listen();
    const { h, sim } = setup();
    const a = await established(sim, srv.port, 43000);
    const b = await established(sim, srv.port, 43001);
    const da = seededBytes(3000, 91);
    const db = seededBytes(3000, 92);
    // a1 b1 a2 b2 a3 b3 in one batch: each flow's parts are apart in the stage.
    for (let i = 0; i < 3; i++) {
      for (const [p, d] of [[a, da], [b, db]] as const) {
        sim.inject(buildFrame({
          srcIp: GUEST_IP, dstIp: HOST_ALIAS, srcPort: p.lport, dstPort: srv.port, seq: (p.sndNxt + i * 1000) >>> 0,
          ack: p.rcvNxt, flags: ACK | PSH, window: 65535, payload: d.subarray(i * 1000, (i + 1) * 1000),
        }));
      }
    }
    h.turn();
    const byPort = new Map<number, Buffer>();
    expect(await sim.run(() => {
      for (let i = 0; i < srv.socks.length; i++) byPort.set(srv.socks[i].remotePort!, srv.rx[i]);
      return srv.rx.reduce((n, x) => n + x.length, 0) === 6000;
    }, 5000)).toBe(true);
    const flows = h.stack.flows().map((f) => f.guest);
    expect(flows).toEqual(expect.arrayContaining(['192.168.65.3:43000', '192.168.65.3:43001']));
    expect(new Set([...byPort.values()].map((x) => sha256(x)))).toEqual(new Set([sha256(da), sha256(db)]));
  });
});

describe("sharing a VM's receive window", () => {
  it('flows sending at once split vmWindowSegments × MSS; a flow left alone gets the whole share back', async () => {
    const srv = await listen();
    const { sim } = setup({ mtu: 1500 });
    const peers: TcpPeer[] = [];
    for (let i = 0; i < 4; i++) peers.push(await established(sim, srv.port, 41000 + i));
    const shift = peers[0].peerShift;
    const lastWindow = (p: TcpPeer) => p.log[p.log.length - 1].window << shift;
    peers.forEach((p, i) => p.write(seededBytes(60_000, 70 + i)));
    expect(await sim.run(() => srv.rx.reduce((n, b) => n + b.length, 0) === 240_000, 10_000)).toBe(true);
    // Flows interleaved in one turn are gathered apart correctly.
    const want = new Set(peers.map((_, i) => sha256(seededBytes(60_000, 70 + i))));
    expect(new Set(srv.rx.map((b) => sha256(b)))).toEqual(want);
    await sim.run(() => peers.every((p) => p.log[p.log.length - 1].ack === p.sndNxt), 1000);
    const share = (512 * 1460) / 4;
    for (const p of peers) {
      expect(lastWindow(p)).toBeLessThanOrEqual(share + (1 << shift));
      expect(lastWindow(p)).toBeGreaterThanOrEqual(8 * 1460 - (1 << shift));
    }
    // Two epochs without data from the others: the one still sending is offered all of it.
    sim.advance(250);
    const p = peers[0];
    for (let i = 0; i < 3; i++) {
      const before = p.log.length;
      p.write(seededBytes(3000, 8 + i));
      await sim.run(() => p.log.length > before && p.log[p.log.length - 1].ack === p.sndNxt, 1000);
    }
    expect(lastWindow(p)).toBeGreaterThan(share * 2);
  });
});

describe('host reads', () => {
  /** A host that sends `total` seeded bytes and ends, to one jumbo guest flow (established). */
  async function jumboDownload(total: number, seed: number) {
    const payload = seededBytes(total, seed);
    const srv = await listen((s) => {
      s.on('error', () => {});
      s.end(payload);
    });
    const { h, sim } = setup({ mtu: 65520 });
    const p = await established(sim, srv.port, 40000, { mss: 65480 });
    return { srv, h, sim, p, payload };
  }

  it('a bulk host sender reads straight into send-queue memory: the guest gets every byte in order, and the reservation is given back when the socket closes', async () => {
    const total = 6_000_000;
    const { srv, h, sim, p, payload } = await jumboDownload(total, 81);
    expect(await sim.run(() => p.received === total && p.finRcvd, 30_000)).toBe(true);
    expect(p.digest).toBe(sha256(payload));
    const st = h.stack.stats();
    expect(st.hostReadsInPlace).toBeGreaterThan(0);
    // The first read, before the socket is known to be a bulk sender, goes through the shared buffer.
    expect(st.hostReadsCopied).toBeGreaterThan(0);
    p.end();
    expect(await sim.run(() => h.stack.size === 0 && srv.closed[0], 10_000)).toBe(true);
    expect(await sim.run(() => h.stack.stats().readReservations === 0, 5000)).toBe(true);
  }, 60_000);

  it('segments of bytes read into kernel slabs are built from there; lost ones go again with the same bytes (also from timers)', async () => {
    const total = 8_000_000;
    const { h, sim, p, payload } = await jumboDownload(total, 83);
    expect(await sim.run(() => p.received > 1_000_000, 10_000)).toBe(true);
    // Everything lost for a while (retransmitted on RTO, from the timer), then some of it.
    sim.down.imp = { loss: 1 };
    expect(await sim.run(() => h.stack.stats().rtoTimeouts > 0, 10_000)).toBe(true);
    sim.down.imp = { loss: 0.03 };
    expect(await sim.run(() => p.received === total && p.finRcvd, 60_000)).toBe(true);
    expect(p.digest).toBe(sha256(payload));
    const st = h.stack.stats();
    expect(st.segmentsFromKernelSlabs).toBeGreaterThan(0);
    expect(st.retransmits).toBeGreaterThan(0);
    expect(st.rtoTimeouts).toBeGreaterThan(0);
  }, 60_000);

  it('a socket torn down while it holds a reservation gives it back once the socket has closed', async () => {
    const srv = await listen((s) => {
      s.on('error', () => {});
      s.write(seededBytes(64_000_000, 82));
    });
    const { h, sim } = setup({ mtu: 65520 });
    await established(sim, srv.port, 40000, { mss: 65480 });
    expect(await sim.run(() => h.stack.stats().readReservations === 1, 20_000)).toBe(true);
    h.stack.close();
    expect(h.stack.stats().readReservations).toBe(1);
    expect(await sim.run(() => h.stack.stats().readReservations === 0, 5000)).toBe(true);
  }, 60_000);

  for (const cap of [0, 2]) {
    it(`readReservations ${cap}: no more sockets than that hold one at a time; the others are copied through the shared buffer, intact`, async () => {
      const flows = 5;
      const total = 3_000_000;
      const payloads = Array.from({ length: flows }, (_, i) => seededBytes(total, 90 + i));
      const srv = await listen((s, i) => {
        s.on('error', () => {});
        s.end(payloads[i]);
      });
      const { h, sim } = setup({ mtu: 65520, tcp: { readReservations: cap } });
      const peers: TcpPeer[] = [];
      let most = 0;
      const held = () => {
        most = Math.max(most, h.stack.stats().readReservations);
        return true;
      };
      for (let i = 0; i < flows; i++) {
        peers.push(sim.peer({ port: 40100 + i, mss: 65480 }));
        peers[i].connect(HOST_ALIAS, srv.port);
      }
      expect(await sim.run(() => held() && peers.every((p) => p.received === total && p.finRcvd), 60_000)).toBe(true);
      // Connections are accepted in SYN order, so server socket i feeds peer i.
      peers.forEach((p, i) => expect(p.digest).toBe(sha256(payloads[i])));
      const st = h.stack.stats();
      if (cap === 0) {
        expect(st.hostReadsInPlace).toBe(0);
        expect(most).toBe(0);
      } else {
        expect(st.hostReadsInPlace).toBeGreaterThan(0);
        expect(most).toBe(cap);
      }
      expect(st.hostReadsCopied).toBeGreaterThan(flows);
    }, 90_000);
  }
});

/**
 * Frames took the route the test asked for: all in place from the read area (which moved
 * reads to free buffers and, with `refilled`, also had to refill busy ones), or all copied.
 */
function expectRoute(h: TcpHarness, viaReads: boolean, refilled = true): void {
  if (viaReads) {
    expect(h.rx.framesCopied).toBe(0);
    expect(h.rx.framesInPlace).toBeGreaterThan(0);
    expect(h.rx.readAreaSwaps).toBeGreaterThan(0);
    if (refilled) expect(h.rx.readAreaRefills).toBeGreaterThan(0);
  } else {
    expect(h.rx.framesInPlace).toBe(0);
  }
}

describe('host writes', () => {
  /** A server that hashes what each connection sends; `bursty` pauses every socket for `offMs`, then reads for `onMs`, over and over. */
  async function hashingServer(bursty: boolean, onMs = 3, offMs = 3, path?: string) {
    const got: { hash: ReturnType<typeof createHash>; n: number }[] = [];
    const timers: NodeJS.Timeout[] = [];
    const srv = await listen((s, i) => {
      got[i] = { hash: createHash('sha256'), n: 0 };
      s.removeAllListeners('data');
      s.on('data', (d) => { got[i].hash.update(d); got[i].n += d.length; });
      if (bursty) {
        const off = () => {
          s.pause();
          timers.push(setTimeout(on, offMs));
        };
        const on = () => {
          s.resume();
          timers.push(setTimeout(off, onMs));
        };
        timers.push(setTimeout(off, onMs));
      }
    }, path);
    cleanups.push(() => timers.forEach(clearTimeout));
    return { srv, got };
  }

  /**
   * Host sockets that check each chunk is unchanged when its write completes
   * (libuv reads it until then, and the engine lends kernel memory to such
   * writes); a changed chunk counts in `bad.n`. `holdMs(i)` > 0 makes the i-th
   * socket hand each single write to the kernel only that much later, as when its
   * buffer is full: the bytes are held for certain while the engine goes on.
   */
  function checkedConnect(bad: { n: number }, path?: string, holdMs: (i: number) => number = () => 0) {
    type Cb = (err?: Error | null) => void;
    let made = 0;
    return (host: string, port: number): net.Socket => {
      const hold = holdMs(made++);
      const s = path !== undefined ? net.connect({ path, allowHalfOpen: true }) : net.connect({ host, port, allowHalfOpen: true });
      const w = s as unknown as { _write: (d: Buffer, e: string, cb: Cb) => void; _writev: (c: { chunk: Buffer }[], cb: Cb) => void };
      const write = w._write, writev = w._writev;
      w._write = function (d, e, cb) {
        const was = sha256(d);
        const go = () => write.call(this, d, e, (err) => {
          if (sha256(d) !== was) bad.n++;
          cb(err);
        });
        if (hold > 0) setTimeout(go, hold);
        else go();
      };
      w._writev = function (chunks, cb) {
        // Node replaces the entries with their chunks in place: keep our own list.
        const bufs = chunks.map((c) => c.chunk);
        const was = bufs.map(sha256);
        writev.call(this, chunks, (err) => {
          bufs.forEach((b, i) => { if (sha256(b) !== was[i]) bad.n++; });
          cb(err);
        });
      };
      return s;
    };
  }

  /**
   * Guest flow i (local port lport + i) uploads ups[i] to `port`, over a link with `imp`
   * from the moment the flows are open; resolves once every host socket has all of its
   * flow's bytes within `maxSimMs` of fake time, with their hashes checked. Connections are accepted in SYN order, so
   * server socket i hears flow i.
   */
  async function uploadAll(sim: Sim, got: { hash: ReturnType<typeof createHash>; n: number }[], ups: Buffer[], port: number, lport: number, opts: Partial<ConstructorParameters<typeof TcpPeer>[2]> = {}, imp?: Impairments, maxSimMs = 120_000) {
    const peers: TcpPeer[] = [];
    for (let i = 0; i < ups.length; i++) peers.push(await established(sim, port, lport + i, opts));
    if (imp !== undefined) sim.up.imp = imp;
    peers.forEach((p, i) => p.write(ups[i]));
    expect(await sim.run(() => ups.every((u, i) => got[i]?.n === u.length), maxSimMs)).toBe(true);
    ups.forEach((u, i) => expect(got[i].hash.digest('hex')).toBe(sha256(u)));
  }

  /** One guest flow uploads `size` seeded bytes; resolves once the host has all of them, with their hash checked. */
  async function uploadOne(mtu: number, size: number, seed: number) {
    const { srv, got } = await hashingServer(false);
    const { h, sim } = setup({ mtu });
    await uploadAll(sim, got, [seededBytes(size, seed)], srv.port, 40000, { mss: mtu - 40 }, undefined, 60_000);
    return h.stack.stats();
  }

  it('jumbo segments go to the host socket straight from the stage, one view per flow and turn, intact', async () => {
    expect((await uploadOne(65520, 8_000_000, 101)).hostWritesInPlace).toBeGreaterThan(0);
  }, 60_000);

  it('MTU 1500 segments are gathered and copied instead (a view per segment would cost more than the copy), into kernel slabs', async () => {
    const st = await uploadOne(1500, 1_000_000, 102);
    expect(st.hostWritesInPlace).toBe(0);
    expect(st.hostWritesFromKernelSlabs).toBeGreaterThan(0);
  }, 60_000);

  /** Guest frames through a link's reads into a small read area (refilled every 512 KiB), instead of pushed one by one. */
  const viaReads = { bufBytes: 512 * 1024, maxRead: 96 * 1024 };
  const frameRoutes = [
    ['pushed frames (RX arena)', undefined],
    ['socket reads (read area)', viaReads],
  ] as const;

  it.each(frameRoutes)('interleaved flows to hosts that read in bursts: bytes a host write still holds are never staged over; %s', async (_route, reads) => {
    const { srv, got } = await hashingServer(true);
    const { h, sim } = setup({ mtu: 65520, reads });
    const ups = [0, 1, 2].map((i) => seededBytes(6_000_000, 110 + i));
    await uploadAll(sim, got, ups, srv.port, 40200, { mss: 65480 });
    expect(h.stack.stats().hostWritesInPlace).toBeGreaterThan(0);
    expectRoute(h, reads !== undefined);
  }, 120_000);

  it.each(frameRoutes)('MTU 1500 flows to bursty hosts: kernel slab pieces a write still holds are never written over; %s', async (_route, reads) => {
    const path = join(mkdtempSync(join(tmpdir(), 'vnetkit-lend-')), 'host.sock');
    const { srv, got } = await hashingServer(true, 1, 10, path);
    const bad = { n: 0 };
    // One kernel slab, started over as soon as it may be, and the first flow's host holding
    // each write 300 ms while the others go through the slab many times: a piece released
    // too early is written over.
    const { h, sim } = setup({ mtu: 1500, tcp: { connect: checkedConnect(bad, path, (i) => (i === 0 ? 300 : 0)), readReservations: 1 }, reads });
    const ups = [300_000, 3_000_000, 3_000_000, 3_000_000].map((n, i) => seededBytes(n, 130 + i));
    await uploadAll(sim, got, ups, 5001, 40400, {}, { loss: 0.02, reorder: 0.3 });
    expect(bad.n).toBe(0);
    const st = h.stack.stats();
    expect(st.hostWritesFromKernelSlabs).toBeGreaterThan(0);
    // Nothing holds read-area bytes at MTU 1500 (they are copied into slab pieces), so a
    // free buffer is always there to move to.
    expectRoute(h, reads !== undefined, false);
  }, 120_000);

  it.each(frameRoutes)('jumbo flows over a lossy, reordering link: reassembled bytes (copied to the stage) and in-order ones (left where they arrived) reach bursty hosts intact; %s', async (_route, reads) => {
    // A unix socket stands in for the host connection: its buffer is small and fixed, so
    // writes are often still in flight when the next batch stages and arrives.
    const path = join(mkdtempSync(join(tmpdir(), 'vnetkit-lend-')), 'host.sock');
    const { srv, got } = await hashingServer(true, 1, 10, path);
    const bad = { n: 0 };
    // The first flow's host holds each write 50 ms: bytes it was lent stay lent while the
    // other flows' frames keep arriving.
    const { h, sim } = setup({ mtu: 65520, tcp: { connect: checkedConnect(bad, path, (i) => (i === 0 ? 50 : 0)) }, reads });
    const ups = [0, 1, 2].map((i) => seededBytes(12_000_000, 120 + i));
    // The guest dials any port; checkedConnect takes it to the unix socket.
    await uploadAll(sim, got, ups, 5001, 40300, { mss: 65480 }, { loss: 0.05, reorder: 0.5 });
    const st = h.stack.stats();
    expect(bad.n).toBe(0);
    expect(st.oooSegments).toBeGreaterThan(0);
    expect(st.hostWritesInPlace).toBeGreaterThan(0);
    expectRoute(h, reads !== undefined);
  }, 120_000);
});
