/**
 * vnetkit with real Linux guests (qemu TCG, busybox userland): what the
 * guest's own tools print is the assertion. Part 1: DHCP, ICMP to the gateway
 * and host alias, DNS (built-in names and upstream forwarding), UDP NAT to the
 * host's loopback, the L2 switch between two guests, the dgram transport, and
 * a misbehaving connection that must not disturb a healthy guest.
 *
 * Boots are combined (each costs ~3-5 s under TCG): one guest runs most checks
 * while the host attacks the engine from a second connection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createEngine } from '../../src/index.js';
import { bootGuest, context, startGuest, type GuestResult } from './harness.js';
import { startDnsUpstream, startUdpEcho, type DnsUpstream, type UdpEcho } from './host-services.js';

type Engine = ReturnType<typeof createEngine>;

const GW = '192.168.65.1';
const HOST = '192.168.65.2';
const UPSTREAM_NAME = 'svc.upstream.test';
const UPSTREAM_ADDR = '10.11.12.13';

// Each boot runs on a different kernel backend, so the JS twin and both WASM builds all
// carry real guest traffic without extra boots.
function engineOptions(upstreamPort: number, mtu: number, backend: 'wasm-simd' | 'wasm' | 'js') {
  return {
    backend,
    subnet: '192.168.65.0/24',
    gatewayIp: GW,
    hostIp: HOST,
    dhcpStart: '192.168.65.3',
    mtu,
    domainName: 'vnetkit.test',
    searchDomains: ['vnetkit.test', 'corp.example'],
    dns: { upstreams: [{ host: '127.0.0.1', port: upstreamPort }], zones: [], hostsFile: null },
  };
}

const sum = (drops: Record<string, number>) => Object.values(drops).reduce((a, b) => a + b, 0);

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** xorshift32: the garbage is random-looking but the same on every run */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/**
 * Frames that can only be dropped: runts shorter than an Ethernet header, and
 * random bytes whose ethertype is neither ARP nor IPv4 (a random ARP request
 * could be a valid one, and would be answered instead of counted).
 */
function garbageFrames(seed: number): { frames: Buffer[]; runts: number } {
  const next = rng(seed);
  const frames: Buffer[] = [];
  const runts = 8;
  for (let i = 0; i < runts; i++) {
    const f = Buffer.alloc(1 + (i % 13));
    for (let j = 0; j < f.length; j++) f[j] = next() & 0xff;
    frames.push(f);
  }
  for (let i = 0; i < 24; i++) {
    const f = Buffer.alloc(14 + (next() % 600));
    for (let j = 0; j < f.length; j++) f[j] = next() & 0xff;
    const et = f.readUInt16BE(12);
    if (et === 0x0800 || et === 0x0806) f.writeUInt16BE(0x88b5, 12); // IEEE local experimental
    frames.push(f);
  }
  return { frames, runts };
}

const qemuFrame = (f: Buffer) => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(f.length);
  return Buffer.concat([h, f]);
};

describe('vnetkit engine with real guests (part 1)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-e2e1-'));
  let upstream: DnsUpstream;
  let echo: UdpEcho;
  const engines: Engine[] = [];

  beforeAll(async () => {
    upstream = await startDnsUpstream({ [UPSTREAM_NAME]: UPSTREAM_ADDR });
    echo = await startUdpEcho();
  });
  afterAll(async () => {
    await Promise.all(engines.map((e) => e.close()));
    await upstream?.close();
    await echo?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('one guest over a unix stream (SIMD WASM): DHCP, ICMP, DNS, UDP NAT, with a hostile second connection', () => {
    let engine: Engine;
    let r: GuestResult;
    const events = { connected: 0, disconnected: 0 };
    const attack = {
      dropsBefore: 0,
      dropsAfterGarbage: 0,
      shortBefore: 0,
      shortAfterGarbage: 0,
      framesSent: 0,
      runts: 0,
      vmsDuring: -1,
      openAfterGarbage: false,
      closedAfterBadHeader: false,
      closeMs: -1,
      vmsAfter: -1,
      disconnectedDelta: 0,
    };

    /**
     * A raw client that first sends well-framed garbage (must be dropped and
     * counted, the link kept), then a 0xffffffff length header (broken framing:
     * the engine must close this connection and only this one).
     */
    async function misbehave(sock: string) {
      const c = net.createConnection(sock);
      await new Promise<void>((res, rej) => c.once('connect', res).once('error', rej));
      let closed = false;
      c.on('close', () => (closed = true));
      c.on('error', () => {}); // a reset on close is the expected outcome, not a failure
      c.on('data', () => {}); // flooded broadcasts may reach us; read them so nothing backs up
      await until(() => engine.stats().vms === 2, 2000);
      attack.vmsDuring = engine.stats().vms;
      const disconnectedBefore = events.disconnected;

      const s0 = engine.stats().drops;
      attack.dropsBefore = sum(s0);
      attack.shortBefore = s0['short-frame'] ?? 0;
      const { frames, runts } = garbageFrames(0x5eed);
      attack.framesSent = frames.length;
      attack.runts = runts;
      c.write(Buffer.concat(frames.map(qemuFrame)));
      await until(() => sum(engine.stats().drops) - attack.dropsBefore >= frames.length, 3000);
      const s1 = engine.stats().drops;
      attack.dropsAfterGarbage = sum(s1);
      attack.shortAfterGarbage = s1['short-frame'] ?? 0;
      attack.openAfterGarbage = !closed && !c.destroyed;

      const t0 = Date.now();
      c.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef]));
      attack.closedAfterBadHeader = await until(() => closed, 3000);
      attack.closeMs = Date.now() - t0;
      c.destroy();
      await until(() => engine.stats().vms === 1, 1000);
      attack.vmsAfter = engine.stats().vms;
      attack.disconnectedDelta = events.disconnected - disconnectedBefore;
    }

    beforeAll(async () => {
      engine = createEngine(engineOptions(upstream.port, 1500, 'wasm-simd'));
      engines.push(engine);
      engine.on('vm-connected', () => events.connected++);
      engine.on('vm-disconnected', () => events.disconnected++);
      const sock = path.join(dir, 'engine.sock');
      await engine.listen(`unix://${sock}`, { framing: 'qemu' });
      const g = await startGuest({
        name: 'part1-main',
        socket: sock,
        mac: '52:54:00:e2:10:01',
        env: { UDP_PORT: String(echo.port), UPSTREAM_NAME },
        timeoutMs: 90_000,
        script: `
          tb_dhcp || exit 1
          tb_link
          tb_ping ${GW} 3 0.3
          tb_ping ${HOST} 3 0.3
          tb_dns host.docker.internal ${GW}
          tb_dns "$UPSTREAM_NAME"
          tb_dns does-not-exist.upstream.test
          tb_udp ${HOST} "$UDP_PORT" vnetkit-udp-probe
          # the host attacks the engine from another connection while this ping runs
          tb window ok
          tb_ping ${GW} 25 0.2
          tb after ok
          tb_ping ${GW} 3 0.3
          exit 0`,
      });
      await g.waitFor((l) => l.what === 'window');
      await misbehave(sock);
      r = await g.result;
    });

    it('the guest script ran to the end', () => {
      expect(r.exitCode, context(r)).toBe(0);
    });

    it('DHCP: first pool address, /24, gateway as router and DNS, MTU, domain and search list', () => {
      const d = r.find('dhcp', 'ok');
      expect(d, context(r)).toBeDefined();
      expect(d!.args[0]).toBe('192.168.65.3');
      expect(d!.fields).toMatchObject({
        prefix: '24',
        router: GW,
        dns: GW,
        serverid: GW,
        mtu: '1500',
        domain: 'vnetkit.test',
        search: 'vnetkit.test,corp.example',
      });
      expect(r.find('link', 'ok')?.fields, context(r)).toMatchObject({ mtu: '1500', addr: '192.168.65.3/24' });
    });

    it('ICMP: the gateway and the host alias answer every echo', () => {
      const pings = r.findAll('ping');
      const gw = pings.find((p) => p.args[0] === GW);
      const host = pings.find((p) => p.args[0] === HOST);
      expect(gw?.fields, context(r)).toMatchObject({ sent: '3', recv: '3' });
      expect(host?.fields, context(r)).toMatchObject({ sent: '3', recv: '3' });
    });

    it('DNS: host.docker.internal is answered by the engine with the host alias', () => {
      const l = r.findAll('dns').find((x) => x.args[0] === 'host.docker.internal');
      expect(l?.status, context(r)).toBe('ok');
      expect(l!.fields.addr).toBe(HOST);
      expect(upstream.queries.some((q) => q.name === 'host.docker.internal')).toBe(false);
    });

    it('DNS: other names are forwarded to the configured upstream, NXDOMAIN included', () => {
      const ok = r.findAll('dns').find((x) => x.args[0] === UPSTREAM_NAME);
      expect(ok?.status, context(r)).toBe('ok');
      expect(ok!.fields.addr).toBe(UPSTREAM_ADDR);
      expect(upstream.queries).toContainEqual(expect.objectContaining({ name: UPSTREAM_NAME, type: 'A' }));
      const nx = r.findAll('dns').find((x) => x.args[0] === 'does-not-exist.upstream.test');
      expect(nx?.status, context(r)).toBe('fail');
      expect(nx!.raw).toMatch(/NXDOMAIN/);
      expect(upstream.queries.some((q) => q.name === 'does-not-exist.upstream.test')).toBe(true);
    });

    it('UDP: a datagram to the host alias reaches 127.0.0.1 and the reply comes back', () => {
      const u = r.find('udp');
      expect(u?.status, context(r)).toBe('ok');
      expect(u!.fields.reply).toBe('echo:vnetkit-udp-probe');
      const seen = echo.seen.find((s) => s.data === 'vnetkit-udp-probe');
      expect(seen?.from.address).toBe('127.0.0.1');
    });

    it('garbage frames from another connection are dropped and counted, the link stays up', () => {
      expect(attack.vmsDuring).toBe(2);
      expect(attack.dropsAfterGarbage - attack.dropsBefore).toBeGreaterThanOrEqual(attack.framesSent);
      expect(attack.shortAfterGarbage - attack.shortBefore).toBeGreaterThanOrEqual(attack.runts);
      expect(attack.openAfterGarbage).toBe(true);
    });

    it('a broken length header closes that connection only', () => {
      expect(attack.closedAfterBadHeader, `closed after ${attack.closeMs} ms`).toBe(true);
      expect(attack.disconnectedDelta).toBe(1);
      expect(attack.vmsAfter).toBe(1);
      expect(events.connected).toBe(2);
    });

    it('the guest kept pinging through the attack without losing a reply', () => {
      const i = r.lines.findIndex((l) => l.what === 'window');
      const during = r.lines.slice(i).find((l) => l.what === 'ping');
      expect(during?.fields, context(r)).toMatchObject({ sent: '25', recv: '25' });
      const j = r.lines.findIndex((l) => l.what === 'after');
      const after = r.lines.slice(j).find((l) => l.what === 'ping');
      expect(after?.fields, context(r)).toMatchObject({ sent: '3', recv: '3' });
      expect(engine.stats().rx.frames).toBeGreaterThan(40);
      expect(engine.stats().backend).toBe('wasm-simd');
    });
  });

  describe('two guests on one engine (MTU 1400, scalar WASM)', () => {
    let engine: Engine;
    let a: GuestResult;
    let b: GuestResult;

    beforeAll(async () => {
      engine = createEngine(engineOptions(upstream.port, 1400, 'wasm'));
      engines.push(engine);
      const sock = path.join(dir, 'two.sock');
      await engine.listen(`unix://${sock}`, { framing: 'qemu' });
      // symmetric: whichever guest leases first gets .3; each waits for the other to
      // come up, pings it (also with a full 1400-byte packet), then stays up long enough
      // to answer the slower one
      const script = `
        tb_dhcp || exit 1
        tb_link
        case "$TB_IP" in
          192.168.65.3) peer=192.168.65.4 ;;
          192.168.65.4) peer=192.168.65.3 ;;
          *) tb peer fail ip="$TB_IP"; exit 2 ;;
        esac
        tb_ping_until "$peer" 40 || exit 3
        tb_ping "$peer" 3 0.3 || exit 4
        tb_ping "$peer" 2 0.3 1372 || exit 5
        sleep 5
        exit 0`;
      [a, b] = await Promise.all([
        bootGuest({ name: 'part1-pair-a', socket: sock, mac: '52:54:00:e2:20:01', script, timeoutMs: 120_000 }),
        bootGuest({ name: 'part1-pair-b', socket: sock, mac: '52:54:00:e2:20:02', script, timeoutMs: 120_000 }),
      ]);
    });

    it('they lease .3 and .4 with the configured MTU applied', () => {
      expect(a.exitCode, context(a)).toBe(0);
      expect(b.exitCode, context(b)).toBe(0);
      const ips = [a.find('dhcp', 'ok')?.args[0], b.find('dhcp', 'ok')?.args[0]].sort();
      expect(ips).toEqual(['192.168.65.3', '192.168.65.4']);
      for (const g of [a, b]) {
        expect(g.find('dhcp', 'ok')?.fields.mtu, context(g)).toBe('1400');
        expect(g.find('link', 'ok')?.fields.mtu, context(g)).toBe('1400');
      }
    });

    it('they ping each other through the switch, full-MTU packets included', () => {
      for (const g of [a, b]) {
        expect(g.find('reach', 'ok'), context(g)).toBeDefined();
        const pings = g.findAll('ping');
        expect(pings[0]?.fields, context(g)).toMatchObject({ sent: '3', recv: '3', size: '56' });
        expect(pings[1]?.fields, context(g)).toMatchObject({ sent: '2', recv: '2', size: '1372' });
      }
      expect(engine.stats().switch.forwarded).toBeGreaterThan(0);
      expect(engine.stats().backend).toBe('wasm');
    });
  });

  describe('a qemu -netdev dgram guest over udp://127.0.0.1 (JS kernels)', () => {
    let engine: Engine;
    let r: GuestResult;

    beforeAll(async () => {
      engine = createEngine(engineOptions(upstream.port, 1500, 'js'));
      engines.push(engine);
      const l = await engine.listen('udp://127.0.0.1:0', { framing: 'dgram', allowGuestReachable: true });
      const port = Number(l.address.slice(l.address.lastIndexOf(':') + 1));
      r = await bootGuest({
        name: 'part1-dgram',
        dgram: { port },
        mac: '52:54:00:e2:30:01',
        env: { UDP_PORT: String(echo.port) },
        timeoutMs: 90_000,
        script: `
          tb_dhcp || exit 1
          tb_ping ${GW} 3 0.3 || exit 2
          tb_dns host.docker.internal || exit 3
          tb_udp ${HOST} "$UDP_PORT" over-dgram || exit 4
          exit 0`,
      });
    });

    it('gets a lease, pings the gateway, resolves and talks UDP', () => {
      expect(r.exitCode, context(r)).toBe(0);
      expect(r.find('dhcp', 'ok')?.args[0]).toBe('192.168.65.3');
      expect(r.find('ping', 'ok')?.fields).toMatchObject({ sent: '3', recv: '3' });
      expect(r.find('dns', 'ok')?.fields.addr).toBe(HOST);
      expect(r.find('udp', 'ok')?.fields.reply).toBe('echo:over-dgram');
      expect(engine.stats().backend).toBe('js');
    });
  });
});
