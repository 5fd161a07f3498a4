import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import {
  DnsServer, type DnsOptions, frameTcp, DnsTcpDeframer, parseResolvConf, readResolvConf, parseHosts, zoneFromJson, zoneToJson,
} from '../src/services/dns.js';
import { startDnsUpstream, startBlackhole, closedPort, BIG_TXT_STRINGS, type DnsUpstream } from './support/dns-upstream.js';

const HOST_IP = 0xc0a841fe; // 192.168.65.254
const GW_IP = 0xc0a84101;

let up: DnsUpstream;
let dir: string;
let hostsPath: string;

beforeAll(async () => {
  up = await startDnsUpstream();
  dir = mkdtempSync(join(tmpdir(), 'vnetkit-dns-'));
  hostsPath = join(dir, 'hosts');
  writeFileSync(hostsPath, [
    '# comment line',
    '127.0.0.1\tlocalhost',
    '10.9.8.7  fileserver.lan  files  # trailing comment',
    '10.9.8.8  fileserver.lan',
    '::1 ip6-only.lan',
    'garbage line here',
  ].join('\n'));
});

afterAll(async () => {
  await up.close();
  rmSync(dir, { recursive: true, force: true });
});

function server(over: Partial<DnsOptions> = {}): DnsServer {
  return new DnsServer({
    upstreams: [{ host: '127.0.0.1', port: up.port }],
    builtins: { 'host.docker.internal': HOST_IP, 'gateway.docker.internal': GW_IP },
    hostsFile: null,
    timeoutMs: 2000,
    ...over,
  });
}

function q(name: string, type: dnsPacket.RecordType, opts: { id?: number; edns?: number; rd?: boolean } = {}): Uint8Array {
  return dnsPacket.encode({
    id: opts.id ?? 0x4242,
    type: 'query',
    flags: opts.rd === false ? 0 : dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type, class: 'IN' }],
    additionals: opts.edns ? [{ name: '.', type: 'OPT', udpPayloadSize: opts.edns, flags: 0, options: [] } as unknown as dnsPacket.Answer] : [],
  });
}

/** A decoded record, loosened: dns-packet's union type hides ttl/data behind the OPT variant. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Rec = { name: string; type: string; ttl?: number; class?: string; data?: any };
interface Decoded {
  id?: number;
  flags?: number;
  rcode?: string;
  questions?: dnsPacket.Question[];
  answers?: Rec[];
  authorities?: Rec[];
  additionals?: Rec[];
}

function decode(b: Uint8Array | null): Decoded {
  expect(b).not.toBeNull();
  return dnsPacket.decode(Buffer.from(b!)) as unknown as Decoded;
}

const TC = dnsPacket.TRUNCATED_RESPONSE;

function udpAsk(port: number, msg: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const t = setTimeout(() => {
      sock.close();
      reject(new Error('no answer'));
    }, 2000);
    sock.on('message', (m) => {
      clearTimeout(t);
      sock.close();
      resolve(m);
    });
    sock.send(msg, port, '127.0.0.1');
  });
}

describe('DNS local names', () => {
  it('answers builtins case-insensitively, NODATA for other types', async () => {
    const s = server();
    const r = decode(await s.query(q('Host.Docker.Internal', 'A', { id: 7 }), 'udp'));
    expect(r.id).toBe(7);
    expect(r.rcode).toBe('NOERROR');
    expect(r.flags! & dnsPacket.AUTHORITATIVE_ANSWER).toBeTruthy();
    expect(r.answers).toEqual([expect.objectContaining({ name: 'Host.Docker.Internal', type: 'A', ttl: 0, data: '192.168.65.254' })]);
    expect(r.questions).toEqual([expect.objectContaining({ name: 'Host.Docker.Internal', type: 'A' })]);
    const six = decode(await s.query(q('host.docker.internal', 'AAAA'), 'udp'));
    expect(six.rcode).toBe('NOERROR');
    expect(six.answers).toEqual([]);
    const mx = decode(await s.query(q('gateway.docker.internal.', 'MX'), 'tcp'));
    expect(mx.rcode).toBe('NOERROR');
    expect(mx.answers).toEqual([]);
    // No upstream was asked.
    expect(up.queries.some((x) => /docker\.internal/i.test(x.name))).toBe(false);
    expect(s.stats().local_answer).toBe(1);
    expect(s.stats().local_nodata).toBe(2);
  });

  it('serves zones: exact, relative, FQDN, regexp, defaultIp, NXDOMAIN, merge on add', async () => {
    const s = server({
      zones: [
        { name: 'dynamic.internal.', records: [{ name: 'web', ip: '192.168.127.10' }, { name: 'db.dynamic.internal.', ip: '192.168.127.11' }, { name: '', regexp: '^node-[0-9]+$', ip: '192.168.127.12' }] },
        { name: 'wild.internal', records: [], defaultIp: '192.168.127.99' },
      ],
    });
    const a = async (n: string) => decode(await s.query(q(n, 'A'), 'udp'));
    expect((await a('web.dynamic.internal')).answers![0].data).toBe('192.168.127.10');
    expect((await a('DB.dynamic.internal')).answers![0].data).toBe('192.168.127.11');
    expect((await a('node-17.dynamic.internal')).answers![0].data).toBe('192.168.127.12');
    expect((await a('node-x.dynamic.internal')).rcode).toBe('NXDOMAIN');
    expect((await a('anything.at.all.wild.internal')).answers![0].data).toBe('192.168.127.99');
    const aaaa = decode(await s.query(q('web.dynamic.internal', 'AAAA'), 'udp'));
    expect(aaaa.rcode).toBe('NOERROR');
    expect(aaaa.answers).toEqual([]);
    // gvisor-tap-vsock merge: new records first (they win), the zone keeps the old ones.
    s.addZone({ name: 'dynamic.internal.', records: [{ name: 'web', ip: '192.168.127.20' }, { name: 'new', ip: '192.168.127.21' }] });
    expect((await a('web.dynamic.internal')).answers![0].data).toBe('192.168.127.20');
    expect((await a('new.dynamic.internal')).answers![0].data).toBe('192.168.127.21');
    expect((await a('db.dynamic.internal')).answers![0].data).toBe('192.168.127.11');
    expect(s.zones().map((z) => z.name)).toEqual(['dynamic.internal.', 'wild.internal']);
    expect(s.zones()[0].records.map((r) => r.name)).toEqual(['web', 'new', 'web', 'db.dynamic.internal.', '']);
    // Names merely ending in the zone's text are not in it.
    expect(up.queries.some((x) => x.name === 'notdynamic.internal')).toBe(false);
    await s.query(q('notdynamic.internal', 'A'), 'udp');
    expect(up.queries.some((x) => x.name === 'notdynamic.internal')).toBe(true);
  });

  it('round-trips the gvisor-tap-vsock JSON shape and rejects bad zones', () => {
    const z = zoneFromJson({ Name: 'dynamic.internal.', Records: [{ Name: 'test', IP: '192.168.127.254' }, { Name: '', IP: '1.1.1.1', Regexp: '^a' }] });
    expect(z).toEqual({ name: 'dynamic.internal.', records: [{ name: 'test', ip: '192.168.127.254' }, { name: '', ip: '1.1.1.1', regexp: '^a' }] });
    expect(zoneToJson(z)).toEqual({ Name: 'dynamic.internal.', Records: [{ Name: 'test', IP: '192.168.127.254' }, { Name: '', IP: '1.1.1.1', Regexp: '^a' }], DefaultIP: '' });
    const s = server();
    expect(() => s.addZone({ name: 'x.', records: [{ name: 'a', ip: 'not-an-ip' }] })).toThrow(/IPv4/);
    expect(() => s.addZone({ name: 'x.', records: [{ name: 'a', ip: '1.2.3.4', regexp: '(' }] })).toThrow(/regexp/);
    expect(() => zoneFromJson(42)).toThrow();
    expect(s.zones()).toEqual([]);
  });

  it('serves IPv4 hosts-file entries, not IPv6-only names', async () => {
    const s = server({ hostsFile: hostsPath });
    const r = decode(await s.query(q('FileServer.lan', 'A'), 'udp'));
    expect(r.answers!.map((x) => x.data)).toEqual(['10.9.8.7', '10.9.8.8']);
    expect(decode(await s.query(q('files', 'A'), 'udp')).answers![0].data).toBe('10.9.8.7');
    expect(decode(await s.query(q('files', 'AAAA'), 'udp')).answers).toEqual([]);
    const before = up.queries.length;
    const six = decode(await s.query(q('ip6-only.lan', 'A'), 'udp'));
    expect(six.rcode).toBe('NXDOMAIN'); // forwarded, the upstream does not know it
    expect(up.queries.length).toBe(before + 1);
    expect(parseHosts('1.2.3.4 a b\n5.6.7.8 A\n').get('a')).toEqual([0x01020304, 0x05060708]);
  });

  it('keeps the EDNS0 OPT in local answers when the query had one', async () => {
    const s = server();
    const r = decode(await s.query(q('host.docker.internal', 'A', { edns: 1232 }), 'udp'));
    expect(r.additionals!.some((x) => x.type === 'OPT')).toBe(true);
  });
});

describe('DNS forwarding', () => {
  it('passes every record type through with TTLs, CNAME chains, NXDOMAIN vs NODATA', async () => {
    const s = server();
    const a = decode(await s.query(q('a.test', 'A', { id: 0x1111 }), 'udp'));
    expect(a.id).toBe(0x1111);
    expect(a.rcode).toBe('NOERROR');
    expect(a.answers).toEqual([expect.objectContaining({ type: 'A', ttl: 123, data: '1.2.3.4' })]);
    // The upstream saw a different (random) id, not the client's.
    const seen = up.queries.filter((x) => x.name === 'a.test' && x.type === 'A').at(-1)!;
    expect(seen.transport).toBe('udp');

    const v6 = decode(await s.query(q('v6.test', 'AAAA'), 'udp'));
    expect(v6.answers).toEqual([expect.objectContaining({ type: 'AAAA', ttl: 321, data: '2001:db8::1' })]);

    const cname = decode(await s.query(q('alias.test', 'A'), 'udp'));
    expect(cname.answers!.map((x) => [x.type, x.ttl, x.data])).toEqual([['CNAME', 50, 'alias2.test'], ['CNAME', 40, 'a.test'], ['A', 123, '1.2.3.4']]);

    const mx = decode(await s.query(q('mx.test', 'MX'), 'udp'));
    expect(mx.answers).toEqual([expect.objectContaining({ type: 'MX', ttl: 300, data: { preference: 10, exchange: 'mail.test' } })]);

    const txt = decode(await s.query(q('txt.test', 'TXT'), 'udp'));
    expect(txt.answers![0].ttl).toBe(60);
    expect((txt.answers![0].data as Buffer[]).map((b) => b.toString())).toEqual(['hello', 'world']);

    const srv = decode(await s.query(q('_http._tcp.srv.test', 'SRV'), 'udp'));
    expect(srv.answers).toEqual([expect.objectContaining({ type: 'SRV', ttl: 30, data: { priority: 0, weight: 5, port: 8080, target: 'a.test' } })]);

    const ptr = decode(await s.query(q('4.3.2.1.in-addr.arpa', 'PTR'), 'udp'));
    expect(ptr.answers).toEqual([expect.objectContaining({ type: 'PTR', ttl: 77, data: 'a.test' })]);

    const nx = decode(await s.query(q('nope.test', 'A'), 'udp'));
    expect(nx.rcode).toBe('NXDOMAIN');
    expect(nx.authorities![0].type).toBe('SOA');

    const nodata = decode(await s.query(q('a.test', 'AAAA'), 'udp'));
    expect(nodata.rcode).toBe('NOERROR');
    expect(nodata.answers).toEqual([]);
    expect(nodata.authorities![0].type).toBe('SOA');
    expect(s.stats().forwarded).toBe(9);
  });

  it('passes the upstream bytes through unchanged except the id', async () => {
    const s = server();
    const ids: number[] = [];
    let got: Uint8Array | null = null;
    for (let i = 0; i < 5; i++) {
      got = await s.query(q('mx.test', 'MX', { id: 0xabcd }), 'udp');
      ids.push(up.queries.at(-1)!.id);
    }
    // Fresh random ids upstream, never simply the client's.
    expect(new Set(ids).size).toBeGreaterThan(1);
    // Ask the upstream ourselves with the id it last saw: same bytes after the id.
    const direct = await udpAsk(up.port, q('mx.test', 'MX', { id: ids[4] }));
    expect(Buffer.from(got!).readUInt16BE(0)).toBe(0xabcd);
    expect(Buffer.from(got!).subarray(2).equals(direct.subarray(2))).toBe(true);
  });

  it('UDP: big answers come back with TC (512 without EDNS0, larger with)', async () => {
    const s = server();
    const small = (await s.query(q('big.test', 'TXT'), 'udp'))!;
    expect(small.length).toBeLessThanOrEqual(512);
    const d = decode(small);
    expect(d.flags! & TC).toBe(TC);
    // EDNS0 asking for 4096: the whole answer fits.
    const big = (await s.query(q('big.test', 'TXT', { edns: 4096 }), 'udp'))!;
    const db = decode(big);
    expect(db.flags! & TC).toBe(0);
    expect(db.answers!.length).toBe(12);
    expect((db.answers![11].data as Buffer[])[0].toString()).toBe(BIG_TXT_STRINGS[11]);
    // The upstream was asked with the client's size (capped at our 4096 maximum).
    expect(up.queries.at(-1)!.udpSize).toBe(4096);
    // EDNS0 asking for 800: TC, and no more than 800 bytes.
    const mid = (await s.query(q('big.test', 'TXT', { edns: 800 }), 'udp'))!;
    expect(mid.length).toBeLessThanOrEqual(800);
    expect(decode(mid).flags! & TC).toBe(TC);
  });

  it('UDP: caps the EDNS0 size it asks upstream for at udpMaxPayload', async () => {
    const s = server({ udpMaxPayload: 1232 });
    const r = (await s.query(q('big.test', 'TXT', { edns: 65000 }), 'udp'))!;
    expect(up.queries.at(-1)!.udpSize).toBe(1232);
    expect(r.length).toBeLessThanOrEqual(1232);
    expect(decode(r).flags! & TC).toBe(TC);
  });

  it('UDP: truncates at record boundaries itself when the upstream ignores the limit', async () => {
    const s = server();
    const raw = (await s.query(q('rude.test', 'TXT'), 'udp'))!;
    expect(raw.length).toBeLessThanOrEqual(512);
    const d = decode(raw);
    expect(d.flags! & TC).toBe(TC);
    expect(d.answers!.length).toBeGreaterThan(0);
    expect(d.answers!.length).toBeLessThan(12);
    d.answers!.forEach((a, i) => expect((a.data as Buffer[])[0].toString()).toBe(BIG_TXT_STRINGS[i]));
    expect(s.stats().truncated).toBe(1);
    // With EDNS0 the OPT record survives truncation.
    const e = decode(await s.query(q('rude.test', 'TXT', { edns: 700 }), 'udp'));
    expect(e.flags! & TC).toBe(TC);
    expect(e.additionals!.some((x) => x.type === 'OPT')).toBe(true);
    expect(e.answers!.length).toBeGreaterThan(d.answers!.length);
    // Over TCP it is whole.
    expect(decode(await s.query(q('rude.test', 'TXT'), 'tcp')).answers!.length).toBe(12);
  });

  it('TCP: full answer, falling back to upstream TCP when the UDP answer has TC', async () => {
    const s = server();
    const before = up.queries.filter((x) => x.transport === 'tcp').length;
    const r = decode(await s.query(q('big.test', 'TXT'), 'tcp'));
    expect(r.flags! & TC).toBe(0);
    expect(r.answers!.length).toBe(12);
    expect(r.answers!.every((x) => x.ttl === 61)).toBe(true);
    expect(up.queries.filter((x) => x.transport === 'tcp').length).toBe(before + 1);
    expect(s.stats().upstream_tcp_retry).toBe(1);
  });

  it('truncates big local answers over UDP too', async () => {
    const hosts = join(dir, 'manyhosts');
    const long = ['x'.repeat(60), 'y'.repeat(60), 'many', 'lan'].join('.');
    writeFileSync(hosts, Array.from({ length: 16 }, (_, i) => `10.0.0.${i + 1} ${long}`).join('\n'));
    const s = server({ hostsFile: hosts });
    const r = (await s.query(q(long, 'A'), 'udp'))!;
    expect(r.length).toBeLessThanOrEqual(512);
    const d = decode(r);
    expect(d.flags! & TC).toBe(TC);
    expect(d.answers!.length).toBeGreaterThan(0);
    expect(d.answers!.length).toBeLessThan(16);
    expect(d.answers![0].data).toBe('10.0.0.1');
    const full = decode(await s.query(q(long, 'A', { edns: 4096 }), 'udp'));
    expect(full.flags! & TC).toBe(0);
    expect(full.answers!.length).toBe(16);
  });

  it('upstream down: SERVFAIL within the timeout; next upstream tried', async () => {
    const hole = await startBlackhole();
    try {
      const s = server({ upstreams: [{ host: '127.0.0.1', port: hole.port }], timeoutMs: 300 });
      const t0 = Date.now();
      const r = decode(await s.query(q('a.test', 'A', { id: 99 }), 'udp'));
      const dt = Date.now() - t0;
      expect(r.rcode).toBe('SERVFAIL');
      expect(r.id).toBe(99);
      expect(dt).toBeGreaterThanOrEqual(250);
      expect(dt).toBeLessThan(1000);
      expect(hole.received()).toBe(2); // sent once, resent once
      expect(s.stats().upstream_timeout).toBe(1);

      // Dead first upstream (port unreachable), live second: answered.
      const dead = await closedPort();
      const s2 = server({ upstreams: [{ host: '127.0.0.1', port: dead }, { host: '127.0.0.1', port: up.port }], timeoutMs: 2000 });
      const t1 = Date.now();
      const ok = decode(await s2.query(q('a.test', 'A'), 'udp'));
      expect(ok.answers![0].data).toBe('1.2.3.4');
      expect(Date.now() - t1).toBeLessThan(900); // refused at once, not after half the budget
      expect(s2.stats().upstream_refused).toBe(1);

      // Blackhole first: its share of the budget, then the live one answers.
      const s3 = server({ upstreams: [{ host: '127.0.0.1', port: hole.port }, { host: '127.0.0.1', port: up.port }], timeoutMs: 400 });
      const ok3 = decode(await s3.query(q('a.test', 'A'), 'udp'));
      expect(ok3.answers![0].data).toBe('1.2.3.4');
    } finally {
      await hole.close();
    }
  });

  it('upstream SERVFAIL: tries the next one, returns SERVFAIL if none does better', async () => {
    const s = server();
    const r = decode(await s.query(q('fail.test', 'A'), 'udp'));
    expect(r.rcode).toBe('SERVFAIL');
    const slow = decode(await server({ timeoutMs: 200 }).query(q('slow.test', 'A'), 'udp'));
    expect(slow.rcode).toBe('SERVFAIL');
  });

  it('no upstreams at all: SERVFAIL', async () => {
    const s = server({ upstreams: [] });
    expect(decode(await s.query(q('a.test', 'A'), 'udp')).rcode).toBe('SERVFAIL');
  });

  it('bounds in-flight forwarded queries', async () => {
    const hole = await startBlackhole();
    try {
      const s = server({ upstreams: [{ host: '127.0.0.1', port: hole.port }], timeoutMs: 300, maxInflight: 2 });
      const ps = [1, 2, 3, 4].map((i) => s.query(q(`n${i}.test`, 'A', { id: i }), 'udp'));
      expect(s.stats().inflight).toBe(2);
      const rs = (await Promise.all(ps)).map(decode);
      expect(rs.every((r) => r.rcode === 'SERVFAIL')).toBe(true);
      expect(s.stats().drop_inflight).toBe(2);
      expect(s.stats().inflight).toBe(0);
    } finally {
      await hole.close();
    }
  });

  it('close() aborts pending queries and refuses new ones', async () => {
    const hole = await startBlackhole();
    try {
      const s = server({ upstreams: [{ host: '127.0.0.1', port: hole.port }], timeoutMs: 5000 });
      const p = s.query(q('a.test', 'A'), 'udp');
      await new Promise((r) => setTimeout(r, 20));
      const t0 = Date.now();
      s.close();
      expect(decode(await p).rcode).toBe('SERVFAIL');
      expect(Date.now() - t0).toBeLessThan(200);
      expect(await s.query(q('a.test', 'A'), 'udp')).toBeNull();
    } finally {
      await hole.close();
    }
  });
});

describe('DNS malformed queries', () => {
  it('drops garbage and responses, counting them', async () => {
    const s = server();
    expect(await s.query(new Uint8Array(5), 'udp')).toBeNull();
    const trunc = q('a.test', 'A').slice(0, 20);
    expect(await s.query(trunc, 'udp')).toBeNull();
    const resp = q('a.test', 'A');
    resp[2] |= 0x80;
    expect(await s.query(resp, 'udp')).toBeNull();
    // A compression pointer to itself.
    const loop = Uint8Array.of(0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1);
    expect(await s.query(loop, 'udp')).toBeNull();
    expect(s.stats().drop_malformed).toBe(3);
    expect(s.stats().drop_response).toBe(1);
  });

  it('FORMERR for qdcount != 1, NOTIMP for other opcodes', async () => {
    const s = server();
    const none = Uint8Array.of(0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const r = decode(await s.query(none, 'udp'));
    expect(r.rcode).toBe('FORMERR');
    expect(r.id).toBe(9);
    const upd = q('a.test', 'A');
    upd[2] = (upd[2] & 0x87) | (5 << 3); // opcode UPDATE
    expect(decode(await s.query(upd, 'udp')).rcode).toBe('NOTIMP');
  });

  it('never throws or rejects on random bytes (fast-check)', async () => {
    const s = server({ upstreams: [] });
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.boolean(), async (bytes, tcp) => {
        const r = await s.query(bytes, tcp ? 'tcp' : 'udp');
        if (r !== null) expect(r.length).toBeGreaterThanOrEqual(12);
      }),
      { numRuns: 2000 },
    );
    // Valid header + random tail exercises the walker harder.
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 3 }), async (tail, qd) => {
        const b = new Uint8Array(12 + tail.length);
        b[5] = qd;
        b.set(tail, 12);
        const r = await s.query(b, 'udp');
        if (r !== null) expect(r.length).toBeLessThanOrEqual(512);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('DNS helpers', () => {
  it('TCP framing round-trips through arbitrary chunking', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 5 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 10 }), (msgs, cuts) => {
        const stream = Buffer.concat(msgs.map((m) => frameTcp(m)));
        const d = new DnsTcpDeframer();
        const got: Uint8Array[] = [];
        let o = 0;
        let k = 0;
        while (o < stream.length) {
          const n = cuts[k++ % cuts.length];
          got.push(...d.push(stream.subarray(o, o + n)));
          o += n;
        }
        expect(got.map((g) => Array.from(g))).toEqual(msgs.map((m) => Array.from(m)));
        expect(d.pending()).toBe(0);
      }),
    );
  });

  it('parses resolv.conf nameservers only, and a missing file gives none', () => {
    expect(parseResolvConf('# x\nsearch a.b\nnameserver 10.0.0.1\nnameserver  ::1 \nnameserver bogus\noptions ndots:1\n')).toEqual([
      { host: '10.0.0.1', port: 53 },
      { host: '::1', port: 53 },
    ]);
    expect(readResolvConf(join(dir, 'does-not-exist'))).toEqual([]);
  });

  it('works behind a real TCP listener with frameTcp/DnsTcpDeframer', async () => {
    const s = server();
    const srv = net.createServer((sock) => {
      const d = new DnsTcpDeframer();
      sock.on('data', (c) => {
        for (const m of d.push(c)) void s.query(m, 'tcp').then((r) => r && sock.write(frameTcp(r)));
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as net.AddressInfo).port;
    const c = net.connect(port, '127.0.0.1');
    const d = new DnsTcpDeframer();
    const answers: Uint8Array[] = [];
    const done = new Promise<void>((res) => c.on('data', (ch) => {
      answers.push(...d.push(ch));
      if (answers.length === 2) res();
    }));
    c.write(Buffer.concat([frameTcp(q('big.test', 'TXT', { id: 1 })), frameTcp(q('host.docker.internal', 'A', { id: 2 }))]));
    await done;
    c.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
    const byId = new Map(answers.map((a) => [decode(a).id, decode(a)]));
    expect(byId.get(1)!.answers!.length).toBe(12);
    expect(byId.get(2)!.answers![0].data).toBe('192.168.65.254');
  });
});
