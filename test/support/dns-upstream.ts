/**
 * A real authoritative-ish DNS server on 127.0.0.1 (random port, UDP and TCP)
 * for the DNS forwarding tests, so they never touch the host's resolver.
 *
 * Zone content (all under .test):
 *   a.test           A     1.2.3.4                       ttl 123
 *   a.test           AAAA  (none: NODATA)
 *   v6.test          AAAA  2001:db8::1                   ttl 321
 *   alias.test       CNAME alias2.test → CNAME a.test (chain, answered in full)
 *   mx.test          MX    10 mail.test                  ttl 300
 *   txt.test         TXT   "hello" "world"               ttl 60
 *   big.test         TXT   12 × 100-byte strings (> 512 bytes: exercises TC)
 *   rude.test        TXT   the same, but always sent whole over UDP (a server ignoring the size limit)
 *   _http._tcp.srv.test SRV 0 5 8080 a.test              ttl 30
 *   4.3.2.1.in-addr.arpa PTR a.test                      ttl 77
 *   fail.test        SERVFAIL
 *   slow.test        never answered
 *   anything else    NXDOMAIN with an SOA
 * UDP answers longer than the query's EDNS0 size (512 without OPT) are
 * sent with TC and no records, like a real server.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';

export interface UpstreamQueryLog {
  transport: 'udp' | 'tcp';
  id: number;
  name: string;
  type: string;
  /** EDNS0 UDP size of the query, 0 without OPT. */
  udpSize: number;
}

export interface DnsUpstream {
  port: number;
  queries: UpstreamQueryLog[];
  close(): Promise<void>;
}

const SOA: dnsPacket.Answer = {
  name: 'test', type: 'SOA', ttl: 900, class: 'IN',
  data: { mname: 'ns.test', rname: 'admin.test', serial: 2024010101, refresh: 3600, retry: 600, expire: 86400, minimum: 60 },
};

const RCODES = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3 } as const;

export const BIG_TXT_STRINGS = Array.from({ length: 12 }, (_, i) => String.fromCharCode(97 + i).repeat(100));

function answerFor(q: dnsPacket.Question): { rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL'; answers: dnsPacket.Answer[]; authorities: dnsPacket.Answer[] } | null {
  const name = q.name.toLowerCase();
  const A = (n: string, ip: string, ttl: number): dnsPacket.Answer => ({ name: n, type: 'A', ttl, class: 'IN', data: ip });
  const ok = (answers: dnsPacket.Answer[]) => ({ rcode: 'NOERROR' as const, answers, authorities: answers.length ? [] : [SOA] });
  switch (name) {
    case 'a.test':
      return ok(q.type === 'A' ? [A(q.name, '1.2.3.4', 123)] : []);
    case 'v6.test':
      return ok(q.type === 'AAAA' ? [{ name: q.name, type: 'AAAA', ttl: 321, class: 'IN', data: '2001:db8::1' }] : []);
    case 'alias.test':
      return ok([
        { name: q.name, type: 'CNAME', ttl: 50, class: 'IN', data: 'alias2.test' },
        { name: 'alias2.test', type: 'CNAME', ttl: 40, class: 'IN', data: 'a.test' },
        ...(q.type === 'A' ? [A('a.test', '1.2.3.4', 123)] : []),
      ]);
    case 'mx.test':
      return ok(q.type === 'MX' ? [{ name: q.name, type: 'MX', ttl: 300, class: 'IN', data: { preference: 10, exchange: 'mail.test' } }] : []);
    case 'txt.test':
      return ok(q.type === 'TXT' ? [{ name: q.name, type: 'TXT', ttl: 60, class: 'IN', data: ['hello', 'world'] }] : []);
    case 'big.test':
    case 'rude.test':
      return ok(q.type === 'TXT' ? BIG_TXT_STRINGS.map((s) => ({ name: q.name, type: 'TXT' as const, ttl: 61, class: 'IN' as const, data: [s] })) : []);
    case '_http._tcp.srv.test':
      return ok(q.type === 'SRV' ? [{ name: q.name, type: 'SRV', ttl: 30, class: 'IN', data: { priority: 0, weight: 5, port: 8080, target: 'a.test' } }] : []);
    case '4.3.2.1.in-addr.arpa':
      return ok(q.type === 'PTR' ? [{ name: q.name, type: 'PTR', ttl: 77, class: 'IN', data: 'a.test' }] : []);
    case 'fail.test':
      return { rcode: 'SERVFAIL', answers: [], authorities: [] };
    case 'slow.test':
      return null;
    default:
      return { rcode: 'NXDOMAIN', answers: [], authorities: [SOA] };
  }
}

function respond(msg: Buffer, transport: 'udp' | 'tcp', log: UpstreamQueryLog[]): Buffer | null {
  let q: dnsPacket.Packet;
  try {
    q = dnsPacket.decode(msg);
  } catch {
    return null;
  }
  const question = q.questions?.[0];
  if (!question) return null;
  const opt = (q.additionals ?? []).find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
  const udpSize = opt?.udpPayloadSize ?? 0;
  log.push({ transport, id: q.id ?? 0, name: question.name, type: question.type, udpSize });
  const a = answerFor(question);
  if (a === null) return null;
  const base = {
    id: q.id,
    type: 'response' as const,
    // dns-packet takes the rcode as the low 4 bits of flags.
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | dnsPacket.AUTHORITATIVE_ANSWER | RCODES[a.rcode],
    questions: [question],
    additionals: opt ? [{ name: '.', type: 'OPT', udpPayloadSize: 4096, flags: 0, options: [] } as unknown as dnsPacket.Answer] : [],
  };
  let out = dnsPacket.encode({ ...base, answers: a.answers, authorities: a.authorities });
  const limit = udpSize > 512 ? udpSize : 512;
  if (transport === 'udp' && out.length > limit && question.name.toLowerCase() !== 'rude.test') {
    out = dnsPacket.encode({ ...base, flags: base.flags | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [] });
  }
  return out;
}

export async function startDnsUpstream(): Promise<DnsUpstream> {
  // TCP on the same port number as UDP, like a real server; another process
  // may hold that TCP port, so retry with a fresh pair a few times.
  for (let attempt = 0; ; attempt++) {
    try {
      return await tryStart();
    } catch (err) {
      if (attempt >= 4) throw err;
    }
  }
}

async function tryStart(): Promise<DnsUpstream> {
  const queries: UpstreamQueryLog[] = [];
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    const r = respond(msg, 'udp', queries);
    if (r) udp.send(r, rinfo.port, rinfo.address);
  });
  await new Promise<void>((res) => udp.bind(0, '127.0.0.1', () => res()));
  const port = udp.address().port;
  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        const m = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        const r = respond(m, 'tcp', queries);
        if (r) {
          const f = Buffer.alloc(2 + r.length);
          f.writeUInt16BE(r.length, 0);
          r.copy(f, 2);
          s.write(f);
        }
      }
    });
  });
  try {
    await new Promise<void>((res, rej) => {
      tcp.once('error', rej);
      tcp.listen(port, '127.0.0.1', () => res());
    });
  } catch (err) {
    udp.close();
    throw err;
  }
  return {
    port,
    queries,
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([
        new Promise<void>((res) => udp.close(() => res())),
        new Promise<void>((res) => tcp.close(() => res())),
      ]);
    },
  };
}

/** A UDP socket that swallows everything: an upstream that never answers. */
export async function startBlackhole(): Promise<{ port: number; received: () => number; close(): Promise<void> }> {
  let n = 0;
  const udp = dgram.createSocket('udp4');
  udp.on('message', () => n++);
  await new Promise<void>((res) => udp.bind(0, '127.0.0.1', () => res()));
  return { port: udp.address().port, received: () => n, close: () => new Promise<void>((res) => udp.close(() => res())) };
}

/** A port with nothing bound (UDP there gets ICMP port unreachable). */
export async function closedPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
  const p = s.address().port;
  await new Promise<void>((res) => s.close(() => res()));
  return p;
}
