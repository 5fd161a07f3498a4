import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import {
  ATTACKS, ATTACK_COUNTS, GW_IP, HOST_ALIAS, HOSTILE_IP, HOSTILE_MAC, HostileVm, attackAt, dhcpFrame, dhcpMessage, dnsTcpQueries,
  firstFragment, madeUpMac, parseDhcpReply, regexpAttackName, scaled, takeoverFrames, testNetIp, hostileTcp,
} from '../bench/e2e/hostile-vm.js';
import {
  fillRatios, guestDelta, renderSoak, soakVerdict, throughputCheck, warmupRows, type GuestCounters, type SoakResult, type SoakRow,
} from '../bench/e2e/soak-report.js';
import { parseFrame, SYN } from './support/tcp-peer.js';
import { udpFrame } from './support/frames.js';
import { readName } from '../src/services/dns-wire.js';
import { parseIPv4 } from '../src/wire/addr.js';

// The soak itself needs root and half an hour; what it concludes from its numbers and the
// frames its hostile VM writes are plain code, checked here.

function counters(id: string, over: Partial<GuestCounters> = {}): GuestCounters {
  return {
    id, t: 0, upBytes: 0, downBytes: 0, bulkOk: 0, bulkFail: 0, bulkCorrupt: 0, lostBytes: 0, firstBulkErr: null,
    connOk: 0, connFail: 0, dnsOk: 0, dnsFail: 0, udpOk: 0, udpFail: 0, ...over,
  };
}

function row(index: number, rss: number, fds: number, mbps: [number, number], attack?: (typeof ATTACKS)[number], alive = true): SoakRow {
  const g = (id: string, m: number) => ({ ...guestDelta(undefined, counters(id, { upBytes: (m * 1e6) / 8 }), 1) });
  return {
    index, startS: index * 60, seconds: 60, phase: index === 0 ? 'baseline' : 'attack', attack,
    rssMiB: rss, rssPeakMiB: rss, fds, fdsPeak: fds, alive, guests: [g('a', mbps[0]), g('b', mbps[1])],
  };
}

/** Baseline + `cycles` full attack cycles, RSS/fds from `level(i)`, throughput from `tput(i)`. */
function runOf(n: number, level: (i: number) => [number, number], tput: (i: number) => [number, number] = () => [100, 100]): SoakRow[] {
  const rows = Array.from({ length: n }, (_, i) => row(i, level(i)[0], level(i)[1], tput(i), i === 0 ? undefined : attackAt(i - 1)));
  fillRatios(rows);
  return rows;
}

describe('soak report', () => {
  it('turns cumulative guest counters into one interval: Mbit/s each way, and the differences', () => {
    const prev = counters('a', { upBytes: 1e6, downBytes: 2e6, bulkOk: 3, connOk: 10, lostBytes: 5 });
    const cur = counters('a', { upBytes: 1e6 + 7.5e6, downBytes: 2e6 + 15e6, bulkOk: 5, connOk: 30, lostBytes: 5, firstBulkErr: 'down: stalled' });
    const r = guestDelta(prev, cur, 60);
    expect(r).toMatchObject({ upMbps: 1, downMbps: 2, mbps: 3, bulkOk: 2, connOk: 20, lostBytes: 0, firstBulkErr: 'down: stalled' });
    // an error already reported in an earlier interval is not repeated
    expect(guestDelta(cur, cur, 60).firstBulkErr).toBeUndefined();
  });

  it('warm-up is the baseline and the first full cycle; a run no longer than that is not judged for flatness', () => {
    const cycle = ATTACKS.length;
    expect(warmupRows(runOf(1 + cycle + 3, () => [100, 40]), cycle)).toBe(1 + cycle);
    const short = soakVerdict(runOf(1 + cycle, (i) => [100 + 50 * i, 40 + i]), [counters('a'), counters('b')], cycle);
    expect(short.rss.pass).toBeNull();
    expect(short.fds.pass).toBeNull();
    expect(short.pass).toBe(false);
  });

  it('passes a run whose RSS and fds stay flat after warm-up, and fails one that keeps growing', () => {
    const n = 1 + 3 * ATTACKS.length;
    const flat = runOf(n, (i) => [100 + (i % ATTACKS.length), 50 + (i % 3)]);
    const final = [counters('a', { bulkOk: 10 }), counters('b', { bulkOk: 10 })];
    const ok = soakVerdict(flat, final, ATTACKS.length);
    expect(ok.rss.pass).toBe(true);
    expect(ok.fds.pass).toBe(true);
    expect(ok.pass).toBe(true);
    const leaking = runOf(n, (i) => [100 + 5 * i, 50 + 2 * i]);
    const bad = soakVerdict(leaking, final, ATTACKS.length);
    expect(bad.rss.pass).toBe(false);
    expect(bad.fds.pass).toBe(false);
    expect(bad.pass).toBe(false);
  });

  it('fails a slow leak that a large warm-up peak hides: the same attack ends higher cycle after cycle', () => {
    const n = 1 + 3 * ATTACKS.length;
    // a 1 GiB spike in the first cycle, then every interval ends 2 MiB higher than the one before
    const rows = runOf(n, (i) => [i === 2 ? 1024 : 100 + 2 * i, 50]);
    rows[2].rssPeakMiB = 1024;
    const v = soakVerdict(rows, [counters('a'), counters('b')], ATTACKS.length);
    expect(v.rss.pass).toBe(false);
    expect(v.rss.detail).toContain('same attack, later cycle: at most +36 MiB');
    expect(v.fds.pass).toBe(true);
  });

  it('fails on a dead engine, on lost bytes and on a wrong hash', () => {
    const rows = runOf(1 + ATTACKS.length + 2, () => [100, 40]);
    const good = [counters('a', { bulkOk: 4 }), counters('b', { bulkOk: 4 })];
    expect(soakVerdict(rows, good, ATTACKS.length).pass).toBe(true);
    rows[rows.length - 1].alive = false;
    expect(soakVerdict(rows, good, ATTACKS.length).crashes.pass).toBe(false);
    rows[rows.length - 1].alive = true;
    expect(soakVerdict(rows, [counters('a', { bulkOk: 4, lostBytes: 1 }), good[1]], ATTACKS.length).lostBytes.pass).toBe(false);
    expect(soakVerdict(rows, [counters('a', { bulkOk: 4, bulkFail: 1, bulkCorrupt: 1 }), good[1]], ATTACKS.length).lostBytes.pass).toBe(false);
    // a stalled or reset transfer is a failure, not silently lost bytes
    expect(soakVerdict(rows, [counters('a', { bulkOk: 4, bulkFail: 1 }), good[1]], ATTACKS.length).lostBytes.pass).toBe(true);
    // without the guests' totals nothing can be said about lost bytes
    expect(soakVerdict(rows, [], ATTACKS.length).lostBytes.pass).toBeNull();
    expect(soakVerdict(rows, [], ATTACKS.length).pass).toBe(false);
  });

  it("judges throughput by each attack's mean ratio to the unattacked baseline, per guest", () => {
    const cycle = ATTACKS.length;
    // guest b loses half its throughput whenever the takeover runs, in each of two cycles
    const hurt = runOf(1 + 2 * cycle, () => [100, 40], (i) => (i > 0 && attackAt(i - 1) === 'takeover' ? [100, 50] : [100, 100]));
    const c = throughputCheck(hurt);
    expect(c.pass).toBe(false);
    expect(c.detail).toContain('50 % (b, takeover)');
    // one slow interval among several of the same attack only lowers its mean
    const noisy = runOf(1 + 2 * cycle, () => [100, 40], (i) => (i === 0 || i === 1 + cycle ? [100, 100] : i === 1 ? [70, 100] : [95, 100]));
    expect(throughputCheck(noisy).pass).toBe(true);
    expect(throughputCheck(noisy).detail).toContain('lowest single interval 70 % (a, interval 1)');
    expect(throughputCheck(runOf(1, () => [100, 40])).pass).toBeNull();
  });

  it('renders the verdict and one line per interval, and labels a sample run', () => {
    const rows = runOf(3, () => [100, 40]);
    const final = [counters('a', { bulkOk: 2 }), counters('b', { bulkOk: 2 })];
    const result: SoakResult = {
      meta: {
        date: 'd', commit: 'abcdef0123456', dirty: false, node: 'v20', kernel: 'k', cpus: 2, cpuModel: 'x', load: [1, 2], seconds: 200,
        options: { minutes: 3, interval: 60, scale: 1, mtu: 1500 }, sample: true,
        engine: { regexpZone: 'soak-re.test', regexpZoneAccepted: false, fakePinger: true },
      },
      rows, final, verdict: soakVerdict(rows, final, ATTACKS.length), notes: ['a note'],
    };
    const md = renderSoak(result);
    expect(md).toContain('SHORT SAMPLE RUN');
    expect(md).toContain('refused by the engine at load');
    expect(md).toMatch(/\| 1 \| 60 \| dns-tcp-zero-window \| yes \| 100 \(100\) \| 40 \(40\) \| 100 \(100\/0, 100 %\)/);
    expect(md).toContain('- a note');
  });
});

describe('hostile VM frames', () => {
  it('cycles through every attack in order', () => {
    expect(ATTACKS.map((_, i) => attackAt(i))).toEqual([...ATTACKS]);
    expect(attackAt(ATTACKS.length)).toBe(ATTACKS[0]);
    expect(scaled(ATTACK_COUNTS.synFlood, 0.00001)).toBe(1);
  });

  it('made-up MACs are locally administered unicast and distinct; echo targets stay in TEST-NET-2', () => {
    const macs = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const m = madeUpMac(i * 7919);
      expect(m[0] & 1).toBe(0);
      expect(m[0] & 2).toBe(2);
      macs.add(Buffer.from(m).toString('hex'));
    }
    expect(macs.size).toBe(1000);
    const net = parseIPv4('198.51.100.0');
    for (const i of [-1, 0, 1, 253, 254, 100_000]) {
      const ip = testNetIp(i);
      expect(ip - net).toBeGreaterThanOrEqual(1);
      expect(ip - net).toBeLessThanOrEqual(254);
    }
  });

  it('a DHCP DISCOVER carries the made-up client MAC, and a reply parses back', () => {
    const mac = madeUpMac(42);
    const msg = dhcpMessage(mac, 0x1234abcd, 3, parseIPv4('192.168.65.120'), GW_IP);
    expect(Buffer.from(msg.subarray(28, 34))).toEqual(Buffer.from(mac));
    const f = dhcpFrame(HOSTILE_MAC, msg);
    expect(f.subarray(0, 6).every((b) => b === 0xff)).toBe(true);
    // the same message turned into a server's OFFER (op 2, yiaddr, type 2), as the engine would send it
    const reply = new Uint8Array(msg);
    reply[0] = 2;
    new DataView(reply.buffer).setUint32(16, parseIPv4('192.168.65.120'));
    reply[242] = 2;
    const r = parseDhcpReply(udpFrame(67, 68, reply, { src: GW_IP, dst: 0xffffffff }));
    expect(r).toEqual({ xid: 0x1234abcd, type: 2, yiaddr: parseIPv4('192.168.65.120'), server: GW_IP });
    expect(parseDhcpReply(f)).toBeNull();
  });

  it('DNS-over-TCP stream: length-prefixed queries that decode', () => {
    const s = dnsTcpQueries(3, 'host.docker.internal', 7);
    let at = 0;
    const ids: number[] = [];
    while (at < s.length) {
      const n = s.readUInt16BE(at);
      const q = dnsPacket.decode(s.subarray(at + 2, at + 2 + n));
      expect(q.questions?.[0].name).toBe('host.docker.internal');
      ids.push(q.id!);
      at += 2 + n;
    }
    expect(ids).toEqual([7, 8, 9]);
  });

  it('the regexp name is one the engine looks up in its zones (plain characters) and fails the pattern only at its end', () => {
    const name = regexpAttackName(30, 'soak-re.test');
    const wire = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name }] });
    expect(readName(wire, 12, wire.length)).toBe(name);
    // letters, digits, '-', '_' and '*' only: a name with anything else is never looked up in the zones
    expect(name).toMatch(/^[a-z0-9_.*-]+$/);
    const rel = name.slice(0, name.indexOf('.'));
    expect(/^([a-z0-9]+-?)+$/.test(rel.slice(0, -1))).toBe(true);
    expect(rel.length).toBe(31);
  });

  it('takeover frames carry the victim source, gateway and host-alias claims; a first fragment never completes', () => {
    const victim = parseIPv4('192.168.65.10');
    const vmac = new Uint8Array([0x52, 0x54, 0, 0x50, 0, 0x0a]);
    const fs = takeoverFrames(victim, vmac, 5314, 1);
    const ipSrc = (f: Uint8Array) => new DataView(f.buffer, f.byteOffset).getUint32(26);
    expect(Buffer.from(fs[0].subarray(6, 12))).toEqual(Buffer.from(vmac));
    expect(ipSrc(fs[0])).toBe(victim);
    const arpSenders = fs.filter((f) => f[12] === 0x08 && f[13] === 0x06).map((f) => new DataView(f.buffer, f.byteOffset).getUint32(28));
    expect(arpSenders).toEqual([GW_IP, HOST_ALIAS, victim]);
    const frag = firstFragment(9, 5314);
    const flags = new DataView(frag.buffer, frag.byteOffset).getUint16(20);
    expect(flags & 0x2000).toBe(0x2000); // more fragments
    expect(flags & 0x1fff).toBe(0); // offset 0
  });

  it('a SYN from the hostile VM parses with valid checksums and no window scaling', () => {
    const seg = parseFrame(hostileTcp(HOST_ALIAS, 20000, 5312, 1000, 0, SYN, 1024));
    expect(typeof seg).toBe('object');
    if (typeof seg === 'string') return;
    expect(seg).toMatchObject({ srcIp: HOSTILE_IP, dstIp: HOST_ALIAS, flags: SYN, window: 1024, mss: 1460 });
    expect(seg.wscale).toBeUndefined();
  });
});

describe('hostile VM attacks against a sink', () => {
  // A unix socket that only reads frames (qemu framing): every frame every attack writes.
  let dir: string;
  let server: net.Server;
  const frames: Buffer[] = [];
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vnetkit-soak-'));
    server = net.createServer((s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          frames.push(buf.subarray(4, 4 + buf.readUInt32BE(0)));
          buf = buf.subarray(4 + buf.readUInt32BE(0));
        }
      });
      s.on('error', () => {});
    });
    await new Promise<void>((res) => server.listen(join(dir, 'sock'), res));
  });
  afterAll(async () => {
    await new Promise((res) => server.close(res));
    rmSync(dir, { recursive: true, force: true });
  });

  it('every attack ends by its deadline, sends no more than its scaled count, and addresses only the allowed destinations', async () => {
    const victim = parseIPv4('192.168.65.10');
    const vm = new HostileVm({
      sock: join(dir, 'sock'), ports: { udp: 5314, big: 5312, syn: 5313 },
      victim: { ip: victim, mac: new Uint8Array([0x52, 0x54, 0, 0x50, 0, 0x0a]) }, others: [victim],
      regexpZone: 'soak-re.test', scale: 0.002,
    });
    await vm.connect();
    const sent: Record<string, number> = {};
    for (const a of ATTACKS) {
      const t0 = Date.now();
      const ms = a === 'dns-regexp' ? 1500 : 200;
      await vm.attack(a, t0 + ms);
      // bounded by the deadline (with room for a loaded machine), not a speed measure
      expect(Date.now() - t0).toBeLessThan(ms + 2000);
      sent[a] = vm.takeCounters().txFrames;
    }
    vm.disconnect();
    await new Promise((r) => setTimeout(r, 100));
    // counts at scale 0.002: at most the scaled count, plus the RSTs of the flows it opened
    expect(sent['syn-flood']).toBeLessThanOrEqual(2 * scaled(ATTACK_COUNTS.synFlood, 0.002));
    expect(sent['echo-flood']).toBe(scaled(ATTACK_COUNTS.echoes, 0.002));
    expect(sent['udp-binding-flood']).toBe(scaled(ATTACK_COUNTS.udpBindings, 0.002));
    expect(sent['fragment-flood']).toBe(scaled(ATTACK_COUNTS.fragments, 0.002));
    expect(sent['dns-regexp']).toBe(1); // one query, unanswered by the sink until the deadline
    const allowed = new Set([GW_IP, HOST_ALIAS, 0xffffffff]);
    const testNet = parseIPv4('198.51.100.0');
    let ipv4 = 0;
    for (const f of frames) {
      if (f.readUInt16BE(12) !== 0x0800) continue;
      ipv4++;
      const dst = f.readUInt32BE(30);
      expect(allowed.has(dst) || (dst & 0xffffff00) >>> 0 === testNet, `destination ${dst.toString(16)}`).toBe(true);
    }
    expect(ipv4).toBeGreaterThan(20);
  });
});
