import { describe, it, expect, afterEach } from 'vitest';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { systemPing, IcmpProxy } from '../src/engine/icmp-proxy.js';
import { GuestClient, ethType, ipProto, ipSrc } from './support/guest-client.js';
import { parseIPv4 } from '../src/wire/addr.js';

const GW_MAC = new Uint8Array([0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6]);
const mac = new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const me = parseIPv4('192.168.65.3');

describe('ICMP echo beyond the engine', () => {
  let engine: Engine | undefined;
  let client: GuestClient | undefined;
  afterEach(async () => {
    client?.close();
    await engine?.close();
  });

  async function setup(answers: (ip: number) => boolean) {
    const asked: number[] = [];
    const sock = join(mkdtempSync(join(tmpdir(), 'vnk-')), 'e.sock');
    engine = createEngine({ pinger: async (ip) => { asked.push(ip); return answers(ip); }, dns: { upstreams: [{ host: '127.0.0.1', port: 9 }], hostsFile: null } });
    await engine.listen(`unix://${sock}`, { framing: 'qemu' });
    client = await GuestClient.connect(sock, mac);
    return asked;
  }

  it('replies only after the destination really answered', async () => {
    const reachable = parseIPv4('203.0.113.5');
    const asked = await setup((ip) => ip === reachable);
    client!.send(client!.echoFrame(GW_MAC, me, reachable, 3, 1, new Uint8Array([9, 9, 9])));
    const r = await client!.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1);
    expect(ipSrc(r)).toBe(reachable);
    expect(r[34]).toBe(0);
    expect([...r.subarray(42)]).toEqual([9, 9, 9]);
    const silent = parseIPv4('203.0.113.6');
    client!.send(client!.echoFrame(GW_MAC, me, silent, 3, 2, new Uint8Array([1])));
    await expect(client!.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1, 500)).rejects.toThrow();
    expect(asked).toEqual([reachable, silent]);
    expect(engine!.stats().icmp).toMatchObject({ sent: 2, answered: 1, unanswered: 1 });
  });

  it('never probes forbidden destinations (link-local, loopback, the virtual subnet)', async () => {
    const asked = await setup(() => true);
    for (const dst of ['169.254.169.254', '127.0.0.1', '192.168.65.77']) {
      client!.send(client!.echoFrame(GW_MAC, me, parseIPv4(dst), 4, 1, new Uint8Array([1])));
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(asked).toEqual([]);
    expect(engine!.stats().drops['icmp-blocked-destination']).toBe(3);
  });

  it('caps probes in flight and counts the rest', async () => {
    let release!: () => void;
    const gate = new Promise<boolean>((r) => { release = () => r(true); });
    const proxy = new IcmpProxy({ pinger: () => gate, maxInflight: 2 });
    let replies = 0;
    for (let i = 0; i < 5; i++) proxy.probe(7, 100 + i, () => replies++);
    expect(proxy.counters).toMatchObject({ sent: 2, overCap: 3 });
    release();
    await new Promise((r) => setTimeout(r, 10));
    expect(replies).toBe(2);
  });

  it('an echo flood from one VM starts at most burst + rate x elapsed probes; another VM is still probed and answered', async () => {
    const calls: number[] = [];
    const sock = join(mkdtempSync(join(tmpdir(), 'vnk-')), 'e.sock');
    // Test addresses only, and the fake pinger never sends anything.
    engine = createEngine({
      pinger: (ip) => {
        calls.push(ip);
        return new Promise((r) => setTimeout(() => r(true), 5));
      },
      limits: { echoProbesPerSecond: 5, echoProbeBurst: 10 },
      dns: { upstreams: [{ host: '127.0.0.1', port: 9 }], hostsFile: null },
    });
    await engine.listen(`unix://${sock}`, { framing: 'qemu' });
    client = await GuestClient.connect(sock, mac);
    const other = await GuestClient.connect(sock, new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x57]));
    try {
      const t0 = performance.now();
      const flood = 1000;
      for (let i = 0; i < flood; i++) {
        client.send(client.echoFrame(GW_MAC, me, parseIPv4(`198.51.100.${1 + (i % 250)}`), 9, i, new Uint8Array(8)));
      }
      const handled = () => {
        const c = engine!.stats().icmp as Record<string, number>;
        return (c.sent ?? 0) + (c.overCap ?? 0) + (c.rateLimited ?? 0) + (c.cached ?? 0) + (c.coalesced ?? 0) + (c.waitersFull ?? 0);
      };
      for (let t = 0; t < 500 && handled() < flood; t++) await new Promise((r) => setTimeout(r, 10));
      expect(handled()).toBe(flood);
      const elapsedS = (performance.now() - t0) / 1000;
      expect(calls.length).toBeLessThanOrEqual(Math.floor(10 + 5 * elapsedS));
      expect(calls.length).toBeGreaterThanOrEqual(10);
      expect(engine.stats().icmp.rateLimited).toBeGreaterThan(0);
      expect(engine.stats().limits.echoProbes).toMatchObject({ perVm: 10, total: 32 });

      // The second VM has a bucket of its own.
      const victim = parseIPv4('203.0.113.9');
      other.send(other.echoFrame(GW_MAC, parseIPv4('192.168.65.4'), victim, 3, 1, new Uint8Array([5])));
      const r = await other.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1);
      expect(ipSrc(r)).toBe(victim);
      expect(calls).toContain(victim);
    } finally {
      other.close();
    }
  });

  it('the system ping reaches the host loopback', async () => {
    // Without a ping binary systemPing can only say "no answer": say why instead.
    const found = process.env.PATH?.split(':').some((d) => d !== '' && existsSync(join(d, 'ping')));
    expect(found, 'no `ping` on PATH: run scripts/testbed/install-deps.sh (package iputils-ping)').toBe(true);
    expect(await systemPing(0x7f000001, 2000)).toBe(true);
  });
});

describe('IcmpProxy policy (fake time)', () => {
  /** A pinger whose probes stay pending until the test settles them. */
  function fakePinger() {
    const pending: { ip: number; settle: (ok: boolean) => void }[] = [];
    const pinger = (ip: number) => new Promise<boolean>((r) => pending.push({ ip, settle: r }));
    return { pinger, pending };
  }
  const tick = () => new Promise((r) => setTimeout(r, 0));

  it('a token bucket per VM: burst at once, then the rate; each VM its own', async () => {
    let now = 0;
    const { pinger, pending } = fakePinger();
    const p = new IcmpProxy({ pinger, ratePerSecond: 2, burst: 3, now: () => now });
    for (let i = 0; i < 5; i++) p.probe(1, 1000 + i, () => {});
    expect(pending.length).toBe(3);
    expect(p.counters.rateLimited).toBe(2);
    now = 499;
    p.probe(1, 2000, () => {});
    expect(pending.length).toBe(3);
    now = 500;
    p.probe(1, 2001, () => {});
    expect(pending.length).toBe(4);
    // Another VM is not held back by the first.
    for (let i = 0; i < 3; i++) p.probe(2, 3000 + i, () => {});
    expect(pending.length).toBe(7);
    expect(p.limits()).toMatchObject({ used: 7, perVm: 3, refusedVm: 3, maxVmUsed: 4 });
    for (const x of pending) x.settle(false);
    await tick();
    expect(p.limits().used).toBe(0);
  });

  it('an outcome, answered or not, answers requests to the same destination for cacheMs without a probe; requests during a probe wait for it', async () => {
    let now = 0;
    const { pinger, pending } = fakePinger();
    const p = new IcmpProxy({ pinger, ratePerSecond: 1, burst: 100, cacheMs: 1000, now: () => now });
    let replies = 0;
    for (let i = 0; i < 20; i++) p.probe(1, 7, () => replies++);
    expect(pending.length).toBe(1);
    expect(p.counters.coalesced).toBe(19);
    pending[0].settle(true);
    await tick();
    expect(replies).toBe(20);
    now = 999;
    p.probe(1, 7, () => replies++);
    expect(replies).toBe(21);
    expect(pending.length).toBe(1);
    // Unanswered is remembered as well: nothing is sent, nothing answered.
    p.probe(1, 8, () => replies++);
    pending[1].settle(false);
    await tick();
    for (let i = 0; i < 5; i++) p.probe(1, 8, () => replies++);
    expect(pending.length).toBe(2);
    expect(replies).toBe(21);
    expect(p.counters.cached).toBe(6);
    // Past cacheMs the destination is probed again.
    now = 2100;
    p.probe(1, 7, () => replies++);
    expect(pending.length).toBe(3);
  });
});
