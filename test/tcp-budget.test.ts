/**
 * The TCP stack's per-VM and global bounds, driven by hostile fake guests
 * (raw frames) next to a well-behaved one, against real host sockets on
 * 127.0.0.1 and fake time for every timer.
 */
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import {
  TcpHarness, Sim, TcpPeer, HOST_ALIAS, GUEST_IP, GUEST_MAC, seededBytes, sha256, buildFrame, parseFrame, SYN, ACK,
  type HarnessOptions,
} from './support/tcp-peer.js';
import { Quota } from '../src/engine/quota.js';

const MIB = 1024 * 1024;
/** VM B's guest (VM A is the harness's default port, 192.168.65.3). */
const GUEST_B = 0xc0a84104; // 192.168.65.4

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

interface Srv { port: number; socks: net.Socket[]; closed: number }

async function listen(onConn: (s: net.Socket) => void = () => {}): Promise<Srv> {
  const st: Srv = { port: 0, socks: [], closed: 0 };
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    st.socks.push(s);
    s.on('error', () => {});
    s.on('close', () => { st.closed++; });
    onConn(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', 1024, r));
  st.port = (srv.address() as net.AddressInfo).port;
  cleanups.push(() => {
    for (const s of st.socks) s.destroy();
    srv.close();
  });
  return st;
}

function setup(o: HarnessOptions = {}) {
  const h = new TcpHarness({ ...o, tcp: { manualTimers: true, ...o.tcp } });
  cleanups.push(() => h.stack.close());
  const sim = new Sim(h, 1);
  return { h, sim };
}

async function established(sim: Sim, port: number, lport: number, opts: Partial<ConstructorParameters<typeof TcpPeer>[2]> = {}): Promise<TcpPeer> {
  const p = sim.peer({ port: lport, ...opts });
  p.connect(HOST_ALIAS, port);
  expect(await sim.run(() => p.state === 'established' || p.state === 'reset', 5000)).toBe(true);
  expect(p.state).toBe('established');
  return p;
}

function syn(srcIp: number, srcPort: number, dstPort: number, window = 65535): Uint8Array {
  return buildFrame({ srcIp, dstIp: HOST_ALIAS, srcPort, dstPort, seq: 1000, ack: 0, flags: SYN, window, mss: 1460, wscale: 7 });
}

/**
 * A hostile guest of many raw flows: it answers each SYN-ACK with an ACK that
 * closes its window, and answers probes with the same zero window. Put among
 * the Sim's peers so it sees the engine's frames.
 */
class ZeroWindowGuest {
  readonly established = new Set<number>();
  constructor(private readonly sim: Sim, private readonly ip: number) {}

  input(f: Uint8Array): void {
    const s = parseFrame(f);
    if (typeof s === 'string' || s.dstIp !== this.ip) return;
    if ((s.flags & (SYN | ACK)) === (SYN | ACK)) this.established.add(s.dstPort);
    if ((s.flags & ACK) === 0) return;
    // Every segment from the engine (SYN-ACK, probe, data) gets "nothing more, please".
    const ack = (s.seq + s.payload.length + ((s.flags & SYN) !== 0 ? 1 : 0)) >>> 0;
    this.sim.up.push(buildFrame({
      srcIp: this.ip, dstIp: s.srcIp, srcPort: s.dstPort, dstPort: s.srcPort, seq: 1001, ack, flags: ACK, window: 0,
    }));
  }

  flushAck(): void {}
  tick(): void {}
}

describe('byte budget', () => {
  it('1,000 zero-window flows from one VM hold no more than its budget; another VM still downloads at once, intact', async () => {
    const perVm = 16 * MIB;
    const big = seededBytes(4 * MIB, 5);
    const srv = await listen((s) => s.end(big));
    const { h, sim } = setup({ flowCapacity: 4096, limits: { tcpBufferBytesPerVm: perVm, tcpBufferBytes: 32 * MIB } });
    const heap0 = process.memoryUsage().arrayBuffers;
    const a = new ZeroWindowGuest(sim, GUEST_IP);
    sim.peers.push(a as unknown as TcpPeer);
    const N = 1000;
    for (let i = 0; i < N; i += 100) {
      for (let j = i; j < i + 100; j++) sim.up.push(syn(GUEST_IP, 20000 + j, srv.port));
      expect(await sim.run(() => a.established.size >= i + 100, 10_000)).toBe(true);
    }
    const queued = () => h.stack.flows().reduce((n, f) => n + f.sndQueued + f.rcvQueued, 0);
    // Let the host side push until every flow is paused: nothing more comes in.
    let last = -1;
    for (let i = 0; i < 200; i++) {
      await sim.run(() => false, 50);
      const q = queued();
      if (q === last) break;
      last = q;
    }
    expect(h.stack.flows().filter((f) => f.state === 'established').length).toBe(N);
    // Besides the budget, each flow may hold its floor (here 1 KiB) per direction.
    expect(queued()).toBeLessThanOrEqual(perVm + N * 2 * 1024);
    expect(h.stack.floorBytes).toBe(1024);
    expect(queued()).toBeGreaterThan(perVm / 2);
    expect(h.stack.limitStats().tcpBufferBytes.maxVmUsed).toBeLessThanOrEqual(perVm);
    expect(h.stack.stats().sndBudgetPauses).toBeGreaterThan(0);

    // VM B downloads the same 4 MiB while A's flows hold their share.
    h.addPort(2, GUEST_B);
    const b = sim.peer({ ip: GUEST_B, port: 50000 });
    b.connect(HOST_ALIAS, srv.port);
    expect(await sim.run(() => b.finRcvd, 60_000)).toBe(true);
    expect(b.received).toBe(big.length);
    expect(b.digest).toBe(sha256(big));
    expect(h.stack.limitStats().tcpBufferBytes.used).toBeLessThanOrEqual(32 * MIB);
    // Memory held for buffers stays in the budget's range (old code: over 1 GiB here).
    expect(process.memoryUsage().arrayBuffers - heap0).toBeLessThan(96 * MIB);

    // The VM leaves: everything it held goes back.
    h.stack.purge(h.port.id);
    const after = h.stack.limitStats();
    expect(after.tcpBufferBytes.used).toBe(0);
    // B's flow is all that is left (the guest has not closed its side).
    expect(after.tcpFlows.used).toBe(1);
    expect(h.stack.size).toBe(1);
  }, 60_000);

  it('a VM with many flows thins only its own flows\' shares: another VM\'s one flow still gets its whole send buffer', async () => {
    // A's flows each hold a little (256 KiB, all their server sends), so many of them hold some of
    // the budget; split by flows instead of by VMs, B's one flow would get 1/33 of the global bound.
    const small = await listen((s) => s.end(seededBytes(256 * 1024, 6)));
    const large = await listen((s) => s.end(seededBytes(4 * MIB, 7)));
    const { h, sim } = setup({ flowCapacity: 4096, limits: { tcpBufferBytesPerVm: 8 * MIB, tcpBufferBytes: 16 * MIB } });
    const a = new ZeroWindowGuest(sim, GUEST_IP);
    sim.peers.push(a as unknown as TcpPeer);
    const N = 200;
    for (let j = 0; j < N; j++) sim.up.push(syn(GUEST_IP, 20000 + j, small.port));
    expect(await sim.run(() => a.established.size >= N, 10_000)).toBe(true);
    const queuedBy = (ip: string) => h.stack.flows().filter((f) => f.guest.startsWith(`${ip}:`)).reduce((n, f) => n + f.sndQueued, 0);
    let last = -1;
    for (let i = 0; i < 200; i++) {
      await sim.run(() => false, 50);
      const q = queuedBy('192.168.65.3');
      if (q === last) break;
      last = q;
    }
    expect(h.stack.limitStats().tcpBufferBytes.maxVmUsed).toBeGreaterThan(6 * MIB);

    // VM B's guest also stops reading: its one flow may still fill its send buffer (1 MiB at MTU 1500).
    h.addPort(2, GUEST_B);
    const b = new ZeroWindowGuest(sim, GUEST_B);
    sim.peers.push(b as unknown as TcpPeer);
    sim.up.push(syn(GUEST_B, 50000, large.port));
    expect(await sim.run(() => b.established.size === 1, 5000)).toBe(true);
    await sim.run(() => queuedBy('192.168.65.4') >= MIB, 5000);
    expect(queuedBy('192.168.65.4')).toBeGreaterThanOrEqual(MIB);
    expect(h.stack.limitStats().tcpBufferBytes.used).toBeLessThanOrEqual(16 * MIB);
  }, 60_000);

  it('guest data beyond the budget is dropped, never queued: a host that does not read holds the VM to its budget', async () => {
    const perVm = 4 * MIB;
    // Host sockets that never read: what the guest sends piles up in their write queues.
    const srv = await listen((s) => s.pause());
    const { h, sim } = setup({ mtu: 9000, flowCapacity: 64, limits: { tcpFlowsPerVm: 64, tcpBufferBytesPerVm: perVm, tcpBufferBytes: 64 * MIB }, tcp: { rcvBufBytes: 2 * MIB } });
    const peers: TcpPeer[] = [];
    for (let i = 0; i < 8; i++) peers.push(await established(sim, srv.port, 40000 + i, { mss: 8960 }));
    // Far more than the kernel's socket buffers take (a few MiB per connection at most).
    const data = seededBytes(16 * MIB, 100);
    for (const p of peers) p.write(data);
    // Until the guests make no more progress: the host took what it could, the stack holds the rest.
    const acked = () => peers.reduce((n, p) => n + (data.length - p.unacked), 0);
    let last = -1;
    let still = 0;
    for (let i = 0; i < 400 && still < 3; i++) {
      await sim.run(() => false, 50);
      const a = acked();
      still = a === last ? still + 1 : 0;
      last = a;
    }
    expect(still).toBe(3);
    expect(acked()).toBeLessThan(peers.length * data.length);
    const held = h.stack.flows().reduce((n, f) => n + f.rcvQueued, 0);
    // Each flow may hold its floor (16 KiB here: a quarter of the budget over the flow bound) besides.
    expect(held).toBeLessThanOrEqual(perVm + 8 * 16384);
    expect(h.stack.floorBytes).toBe(16384);
    expect(held).toBeGreaterThan(perVm / 4);
    expect(h.stack.limitStats().tcpBufferBytes.maxVmUsed).toBeLessThanOrEqual(perVm);
  }, 60_000);
});

describe('flows and handshakes', () => {
  it('SYN flood: 17,000 half-open flows from VM A stop at its bound; VM B still gets SYN-ACK; the handshake timeout frees A\'s host connections', async () => {
    const srv = await listen();
    const hostSockets = new Quota('hostSockets', 2048, 1024);
    const { h, sim } = setup({ flowCapacity: 16384, hostSockets, tcp: { handshakeTimeoutMs: 3000 } });
    const half = 256;
    for (let i = 0; i < 17_000; i += 200) {
      for (let j = i; j < Math.min(i + 200, 17_000); j++) sim.up.push(syn(GUEST_IP, 1024 + j, srv.port));
      sim.step();
    }
    // A's connects complete; it never answers a SYN-ACK.
    await sim.run(() => h.stack.stats().pendingConnects === 0, 2000);
    const st = h.stack.stats();
    expect(st.flows).toBeLessThanOrEqual(half);
    expect(st.refusedHalfOpen).toBeGreaterThanOrEqual(17_000 - half);
    // Refused SYNs gave their flow-table entries back.
    expect(h.flowCount()).toBe(st.flows);
    expect(h.stack.limitStats().tcpHalfOpen.maxVmUsed).toBeLessThanOrEqual(half);

    h.addPort(2, GUEST_B);
    const b = sim.peer({ ip: GUEST_B, port: 50000 });
    b.connect(HOST_ALIAS, srv.port);
    expect(await sim.run(() => b.state === 'established' || b.state === 'reset', 1000)).toBe(true);
    expect(b.state).toBe('established');
    expect(b.log[0].flags).toBe(SYN | ACK);

    // A's half-open flows go after handshakeTimeoutMs, and their host sockets with them.
    expect(hostSockets.usedBy(1)).toBeGreaterThan(0);
    expect(await sim.run(() => hostSockets.usedBy(1) === 0, 20_000)).toBe(true);
    expect(h.stack.stats().handshakeTimeouts).toBe(st.flows);
    expect(h.stack.flows().map((f) => f.guest)).toEqual(['192.168.65.4:50000']);
    expect(h.stack.limitStats().tcpHalfOpen.used).toBe(0);
    expect(hostSockets.used).toBe(1);
  }, 60_000);

  it('a VM at its flow bound gets RST for the next SYN; other VMs do not', async () => {
    const srv = await listen();
    const { h, sim } = setup({ limits: { tcpFlowsPerVm: 3 } });
    for (let i = 0; i < 3; i++) await established(sim, srv.port, 40000 + i);
    const over = sim.peer({ port: 40003 });
    over.connect(HOST_ALIAS, srv.port);
    expect(await sim.run(() => over.state === 'reset', 2000)).toBe(true);
    expect(h.stack.stats().refusedVmFlows).toBe(1);
    expect(h.flowCount()).toBe(3);
    h.addPort(2, GUEST_B);
    await established(sim, srv.port, 40000, { ip: GUEST_B });
    expect(h.stack.limitStats().tcpFlows).toMatchObject({ used: 4, maxVmUsed: 3, perVm: 3 });
  });
});

describe('forwarded connections', () => {
  it('a guest that never answers a forwarded SYN holds it only for handshakeTimeoutMs; the host socket is closed and given back', async () => {
    const accepted: net.Socket[] = [];
    const srv = net.createServer((s) => accepted.push(s));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
    client.on('error', () => {});
    cleanups.push(() => {
      client.destroy();
      srv.close();
    });
    const hostSockets = new Quota('hostSockets', 20, 10);
    const { h, sim } = setup({ hostSockets, tcp: { handshakeTimeoutMs: 2000 } });
    expect(await sim.run(() => accepted.length === 1, 2000)).toBe(true);
    expect(h.stack.connectToGuest(h.port, GUEST_MAC, GUEST_IP, 8080, HOST_ALIAS, 5555, accepted[0])).toBe(true);
    expect(hostSockets.usedBy(1)).toBe(1);
    expect(await sim.run(() => h.stack.size === 0, 1900)).toBe(false);
    expect(await sim.run(() => h.stack.size === 0 && hostSockets.used === 0, 2000)).toBe(true);
    expect(h.stack.stats().handshakeTimeouts).toBe(1);
    expect(accepted[0].destroyed).toBe(true);
  });
});

describe('reassembly slots', () => {
  it('a VM holding its share of the pool gets no more; another VM still gets one', async () => {
    const srv = await listen();
    const { h, sim } = setup({ tcp: { reasmSlots: 8 } });
    const mine: TcpPeer[] = [];
    for (let i = 0; i < 8; i++) mine.push(await established(sim, srv.port, 40000 + i));
    // Each of A's flows leaves a gap: a segment 1000 bytes ahead of what it sent.
    for (const p of mine) p.raw({ seq: (p.sndNxt + 1000) >>> 0, payload: new Uint8Array(100) });
    await sim.run(() => false, 5);
    let st = h.stack.stats();
    expect(st.reasmInUse).toBe(4);
    expect(st.refusedReasmSlots).toBe(4);
    h.addPort(2, GUEST_B);
    const b = await established(sim, srv.port, 40000, { ip: GUEST_B });
    b.raw({ seq: (b.sndNxt + 1000) >>> 0, payload: new Uint8Array(100) });
    await sim.run(() => false, 5);
    st = h.stack.stats();
    expect(st.reasmInUse).toBe(5);
    expect(st.oooNoBuffer).toBe(0);
    expect(h.stack.limitStats().tcpReasmSlots).toMatchObject({ used: 5, perVm: 4, total: 8, maxVmUsed: 4 });
    h.stack.purge(h.port.id);
    expect(h.stack.limitStats().tcpReasmSlots.used).toBe(1);
  });
});

describe('host sockets', () => {
  it('with 20 host sockets, 10 per VM: VM A cannot open an 11th (RST, counted); VM B can; a closed one is given back', async () => {
    const srv = await listen();
    const hostSockets = new Quota('hostSockets', 20, 10);
    const { h, sim } = setup({ hostSockets });
    const a: TcpPeer[] = [];
    for (let i = 0; i < 10; i++) a.push(await established(sim, srv.port, 40000 + i));
    const over = sim.peer({ port: 40010 });
    over.connect(HOST_ALIAS, srv.port);
    expect(await sim.run(() => over.state === 'reset', 2000)).toBe(true);
    expect(hostSockets.usedBy(1)).toBe(10);
    expect(h.stack.stats().refusedHostSockets).toBe(1);
    expect(srv.socks.length).toBe(10);
    // A forwarded connection to A is one more host socket for A: refused too.
    const fwd = new net.Socket();
    expect(h.stack.connectToGuest(h.port, GUEST_MAC, GUEST_IP, 8080, HOST_ALIAS, 5555, fwd)).toBe(false);
    expect(fwd.destroyed).toBe(true);
    h.addPort(2, GUEST_B);
    await established(sim, srv.port, 40000, { ip: GUEST_B });
    expect(hostSockets.usedBy(2)).toBe(1);
    // A resets one flow: once its socket has closed, A may open another.
    a[0].abort();
    expect(await sim.run(() => hostSockets.usedBy(1) === 9, 2000)).toBe(true);
    await established(sim, srv.port, 40011);
    expect(hostSockets.usedBy(1)).toBe(10);
    h.stack.purge(h.port.id);
    expect(await sim.run(() => hostSockets.usedBy(1) === 0, 2000)).toBe(true);
    expect(hostSockets.used).toBe(1);
  });
});

describe('engine', () => {
  it("stats().limits shows the TCP bounds from the engine's limits", async () => {
    const { createEngine } = await import('../src/engine/engine.js');
    const e = createEngine({ backend: 'js', limits: { tcpFlowsPerVm: 100, tcpHalfOpenPerVm: 10, tcpBufferBytesPerVm: 8 * MIB, tcpReasmSlotsPerVm: 2 } });
    try {
      const l = e.stats().limits;
      expect(l.tcpFlows).toMatchObject({ used: 0, perVm: 100, total: 16384 });
      expect(l.tcpHalfOpen).toMatchObject({ used: 0, perVm: 10 });
      expect(l.tcpBufferBytes).toMatchObject({ used: 0, perVm: 8 * MIB, total: 256 * MIB });
      expect(l.tcpReasmSlots).toMatchObject({ used: 0, perVm: 2, total: 8 });
      expect(e.stats().tcp).toMatchObject({ refusedVmFlows: 0, refusedHalfOpen: 0, refusedHostSockets: 0, refusedReasmSlots: 0, handshakeTimeouts: 0 });
    } finally {
      await e.close();
    }
  });
});

describe('under the budget', () => {
  it('flows held back by a full budget (guests and hosts not reading) all finish intact once both read again, over a reordering link', async () => {
    const perVm = 4 * MIB;
    const N = 8;
    const size = 2 * MIB;
    const up = Array.from({ length: N }, (_, i) => seededBytes(size, 200 + i));
    const down = seededBytes(size, 300);
    const got: Buffer[][] = [];
    const socks: net.Socket[] = [];
    const srv = await listen((s) => {
      const i = socks.length;
      socks.push(s);
      got[i] = [];
      s.pause();
      s.on('data', (d) => got[i].push(d));
      s.write(down);
    });
    const { h, sim } = setup({ flowCapacity: 64, limits: { tcpFlowsPerVm: 64, tcpBufferBytesPerVm: perVm, tcpBufferBytes: 8 * MIB } });
    const peers: TcpPeer[] = [];
    for (let i = 0; i < N; i++) {
      const p = await established(sim, srv.port, 40000 + i, { rcvBuf: 256 * 1024 });
      p.setReadPaused(true);
      p.write(up[i]);
      peers.push(p);
    }
    // Reordering puts guest bytes through the reassembly buffers, which wait for the budget too.
    sim.up.imp = { reorder: 0.02 };
    sim.down.imp = { reorder: 0.02 };
    let last = -1;
    for (let i = 0; i < 200; i++) {
      await sim.run(() => false, 50);
      const q = h.stack.bufferedBytes();
      if (q === last) break;
      last = q;
    }
    expect(h.stack.limitStats().tcpBufferBytes.maxVmUsed).toBeLessThanOrEqual(perVm);
    expect(h.stack.bufferedBytes()).toBeLessThanOrEqual(perVm + N * 2 * h.stack.floorBytes);
    // The budget, shared among the flows, is what held them.
    expect(h.stack.limitStats().tcpBufferBytes.used).toBeGreaterThan(perVm / 2);
    for (const s of socks) s.resume();
    for (const p of peers) p.setReadPaused(false);
    const done = () => peers.every((p) => p.received === size) && got.every((g) => g.reduce((n, b) => n + b.length, 0) === size);
    expect(await sim.run(done, 600_000)).toBe(true);
    for (let i = 0; i < N; i++) {
      expect(peers[i].digest).toBe(sha256(down));
      expect(sha256(Buffer.concat(got[i]))).toBe(sha256(up[i]));
    }
  }, 60_000);
});
