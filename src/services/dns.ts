/**
 * The gateway's DNS server: local names (builtins, zones, hosts file) are
 * answered here; everything else is forwarded to upstream resolvers and the
 * upstream's answer bytes are passed back untouched except for the query id,
 * so TTLs, CNAME chains, DNSSEC data and record types we know nothing about
 * all survive. Only structure is checked (dns-wire.ts walks every message
 * before it is used), local answers are encoded with dns-packet.
 *
 * Upstream UDP uses a fresh socket per query (source-port entropy, no id
 * remapping table to get wrong) connected to the upstream, so the kernel
 * filters replies by source and reports ICMP port-unreachable as
 * ECONNREFUSED, which moves on to the next upstream at once.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';
import { RE2JS } from 're2js';
import { VnetkitError, ErrorCodes } from '../errors.js';
import { formatIPv4, parseIPv4 } from '../wire/addr.js';
import { nullLogger, type Logger } from '../log.js';
import {
  be16, putBe16, walkMessage, newLayout, truncateMessage, frameTcp, DnsTcpDeframer, type MsgLayout,
  HEADER_LEN, TYPE_A, TYPE_ANY, CLASS_IN, FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD, FLAG_RA, UDP_CLASSIC,
  RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_NOTIMP, RCODE_REFUSED, RCODE_NOERROR,
} from './dns-wire.js';

export { frameTcp, DnsTcpDeframer } from './dns-wire.js';

export interface DnsZone {
  /** e.g. 'docker.internal.' */
  name: string;
  /**
   * `name` is exact (FQDN, with or without the trailing dot) or relative to
   * the zone; `regexp` is searched for in the relative part (unanchored, like
   * gvisor-tap-vsock's MatchString; case-insensitive, as DNS names are). Its
   * syntax is RE2's (Go's regexp package): no backreferences or lookaround.
   */
  records: { name: string; ip?: string; regexp?: string }[];
  /** Answer for any other name in the zone; without it they are NXDOMAIN. */
  defaultIp?: string;
}

export interface DnsUpstream {
  host: string;
  port?: number;
}

export interface DnsOptions {
  /** Default: the nameservers of /etc/resolv.conf (port 53). */
  upstreams?: DnsUpstream[];
  /** Exact names answered with an address (host.docker.internal → hostIp, VM names...). */
  builtins?: Record<string, number>;
  zones?: DnsZone[];
  /** Hosts file whose IPv4 entries are served (default /etc/hosts; null for none). Read once, see reloadHosts(). */
  hostsFile?: string | null;
  /** Total time budget for one forwarded query across all upstreams, ms (default 5000). */
  timeoutMs?: number;
  /** Forwarded queries in flight at once; beyond that the answer is SERVFAIL (default 256). */
  maxInflight?: number;
  /** TTL of locally answered records (default 0: these names change under the guest). */
  localTtl?: number;
  /** Largest UDP answer ever sent, whatever EDNS0 asks (default 4096, as the engine fragments above the MTU). */
  udpMaxPayload?: number;
  /** DNS over TCP on the gateway (src/engine/gateway-dns-tcp.ts). */
  tcp?: DnsTcpOptions;
  log?: Logger;
}

/**
 * Bounds of the gateway's DNS-over-TCP sessions. A guest that stops reading
 * its answers makes its session stop reading queries (the TCP window to the
 * guest closes), so what one session holds is bounded by these, not by what
 * the guest sends.
 */
export interface DnsTcpOptions {
  /**
   * A session in which nothing happens for this long (no query taken, no
   * answer read by the guest, nothing being resolved) is closed: with a FIN
   * when nothing is left to send, else with a reset (RFC 7766 §6.2.3).
   * Default 10 000 ms.
   */
  idleMs?: number;
  /**
   * Answer bytes one session holds for its guest. At a quarter of it the
   * session stops taking queries until the guest reads; an answer that would
   * take it past the whole (answers already being resolved can) is replaced
   * by SERVFAIL. Default 256 KiB.
   */
  sessionBytes?: number;
  /**
   * Answer bytes all sessions together hold. An answer that would take them
   * past it first resets the session holding the most (a guest that does not
   * read its answers loses its connection, not one that reads). Default 16 MiB.
   */
  totalBytes?: number;
  /** Largest query taken over TCP: a longer length prefix closes the session with a reset. Default 4096. */
  maxQueryBytes?: number;
}

export type ResolvedDnsTcpOptions = Required<DnsTcpOptions>;

/** What the server's book needs of a DNS-over-TCP session. */
export interface DnsTcpHolder {
  /** Unread answer bytes booked with tcpHold(). */
  readonly heldBytes: number;
  /** Reset the session; its bytes are given back with tcpHold() and tcpSessionClosed() before this returns. */
  evict(): void;
}

export function resolveDnsTcpOptions(o: DnsTcpOptions = {}): ResolvedDnsTcpOptions {
  const pos = (v: number | undefined, def: number, min: number, max: number) =>
    v === undefined || !Number.isFinite(v) ? def : Math.min(max, Math.max(min, Math.floor(v)));
  return {
    idleMs: pos(o.idleMs, 10_000, 1, 3_600_000),
    sessionBytes: pos(o.sessionBytes, 256 * 1024, 4096, 64 << 20),
    totalBytes: pos(o.totalBytes, 16 << 20, 4096, 1 << 30),
    // A query is one question and an OPT record; room for EDNS options and padding, nothing like zone data.
    maxQueryBytes: pos(o.maxQueryBytes, 4096, 512, 65535),
  };
}

/** gvisor-tap-vsock's API JSON shape for a zone (/services/dns/all, /services/dns/add). */
export interface DnsZoneJson {
  Name: string;
  Records: { Name: string; IP: string; Regexp?: string }[];
  DefaultIP: string;
}

const MAX_ZONES = 256;
const MAX_RECORDS_PER_ZONE = 4096;
const MAX_REGEXP_LEN = 256;
/**
 * Every query into a zone may run each of its regexps over the name: linear
 * time each, but the guest chooses how often. This bounds the work of the
 * worst query, and of compiling a zone.
 */
const MAX_REGEXPS_PER_ZONE = 256;
const MAX_HOSTS_BYTES = 1 << 20;
const MAX_HOSTS_NAMES = 16384;
const MAX_UPSTREAMS = 8;

interface ZoneRecord {
  /** Lower-case, no trailing dot; matched as relative and as exact name. */
  name: string;
  /** RE2 matches in time linear in the name, whatever the pattern: the guest chooses the names. */
  re: RE2JS | null;
  ip: number;
}

interface Zone {
  /** Lower-case, no trailing dot. */
  base: string;
  records: ZoneRecord[];
  defaultIp: number | null;
  src: DnsZone;
}

type Local = { kind: 'a'; ips: number[] } | { kind: 'nodata' } | { kind: 'nxdomain' };

/** Parse resolv.conf text into upstreams (nameserver lines, port 53). */
export function parseResolvConf(text: string): DnsUpstream[] {
  const out: DnsUpstream[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^nameserver\s+(\S+)/.exec(line);
    if (m === null) continue;
    const host = m[1];
    if (net.isIP(host.replace(/%.*$/, '')) === 0) continue;
    out.push({ host, port: 53 });
    if (out.length >= MAX_UPSTREAMS) break;
  }
  return out;
}

/** The nameservers of a resolv.conf file; [] when it cannot be read. */
export function readResolvConf(path = '/etc/resolv.conf'): DnsUpstream[] {
  try {
    return parseResolvConf(readFileSync(path, 'utf8'));
  } catch {
    return [];
  }
}

/** Parse hosts-file text into lower-case name → IPv4 addresses (IPv6 entries are skipped: the guest link is IPv4). */
export function parseHosts(text: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') continue;
    const parts = line.split(/\s+/);
    let ip: number;
    try {
      ip = parseIPv4(parts[0]);
    } catch {
      continue;
    }
    for (let i = 1; i < parts.length; i++) {
      const name = normName(parts[i]);
      if (name === '') continue;
      let list = out.get(name);
      if (list === undefined) {
        if (out.size >= MAX_HOSTS_NAMES) return out;
        list = [];
        out.set(name, list);
      }
      if (!list.includes(ip) && list.length < 16) list.push(ip);
    }
  }
  return out;
}

/** gvisor-tap-vsock zone JSON → DnsZone (accepts lower-case keys too). Throws VnetkitError on bad input. */
export function zoneFromJson(v: unknown): DnsZone {
  if (typeof v !== 'object' || v === null) badZone('zone must be an object', v);
  const o = v as Record<string, unknown>;
  const name = o.Name ?? o.name;
  if (typeof name !== 'string') badZone('zone Name must be a string', v);
  const recs = o.Records ?? o.records ?? [];
  if (!Array.isArray(recs)) badZone('zone Records must be an array', v);
  // Counted before anything is compiled.
  if (recs.length > MAX_RECORDS_PER_ZONE) badZone(`more than ${MAX_RECORDS_PER_ZONE} records`, name);
  const nRe = recs.filter((r: unknown) => {
    const re = typeof r === 'object' && r !== null ? (r as Record<string, unknown>).Regexp ?? (r as Record<string, unknown>).regexp : undefined;
    return typeof re === 'string' && re !== '';
  }).length;
  if (nRe > MAX_REGEXPS_PER_ZONE) badZone(`more than ${MAX_REGEXPS_PER_ZONE} regexp records`, name);
  const records = recs.map((r: unknown) => {
    if (typeof r !== 'object' || r === null) badZone('record must be an object', r);
    const ro = r as Record<string, unknown>;
    const rn = ro.Name ?? ro.name ?? '';
    const ip = ro.IP ?? ro.ip;
    const re = ro.Regexp ?? ro.regexp;
    if (typeof rn !== 'string' || (ip !== undefined && typeof ip !== 'string') || (re !== undefined && re !== null && typeof re !== 'string')) {
      badZone('record fields must be strings', r);
    }
    const rec: DnsZone['records'][number] = { name: rn };
    if (typeof ip === 'string' && ip !== '') rec.ip = ip;
    if (typeof re === 'string' && re !== '') {
      // Refused here already, so a daemon flag or API call names the bad pattern before any engine exists.
      compileZoneRegexp(name, re);
      rec.regexp = re;
    }
    return rec;
  });
  const zone: DnsZone = { name, records };
  const def = o.DefaultIP ?? o.defaultIp ?? o.defaultIP;
  if (def !== undefined && def !== null && def !== '') {
    if (typeof def !== 'string') badZone('DefaultIP must be a string', v);
    zone.defaultIp = def;
  }
  return zone;
}

/** DnsZone → gvisor-tap-vsock zone JSON. */
export function zoneToJson(z: DnsZone): DnsZoneJson {
  return {
    Name: z.name,
    Records: z.records.map((r) => {
      const o: { Name: string; IP: string; Regexp?: string } = { Name: r.name, IP: r.ip ?? '' };
      if (r.regexp !== undefined) o.Regexp = r.regexp;
      return o;
    }),
    DefaultIP: z.defaultIp ?? '',
  };
}

function badZone(msg: string, v: unknown): never {
  throw new VnetkitError(ErrorCodes.BAD_OPTION, `invalid DNS zone: ${msg}: ${safeJson(v)}`);
}

/**
 * A zone record's pattern compiled once, with RE2 semantics (what
 * gvisor-tap-vsock's Go regexps accept). Backreferences and lookaround have no
 * linear-time match, so RE2 rejects them: such a zone fails to load.
 */
function compileZoneRegexp(zone: string, pattern: string): RE2JS {
  const where = `invalid DNS zone ${safeJson(zone)}: regexp ${safeJson(pattern)}`;
  if (typeof pattern !== 'string') throw new VnetkitError(ErrorCodes.BAD_OPTION, `${where}: not a string`);
  if (pattern.length > MAX_REGEXP_LEN) throw new VnetkitError(ErrorCodes.BAD_OPTION, `${where}: longer than ${MAX_REGEXP_LEN} characters`);
  try {
    return RE2JS.compile(pattern, RE2JS.CASE_INSENSITIVE);
  } catch (err) {
    throw new VnetkitError(ErrorCodes.BAD_OPTION, `${where}: not RE2 syntax (${(err as Error).message})`);
  }
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v)?.slice(0, 200) ?? String(v);
  } catch {
    return String(v);
  }
}

function normName(s: string): string {
  let n = s.toLowerCase();
  if (n.endsWith('.')) n = n.slice(0, -1);
  return n;
}

interface Live {
  abort(): void;
}

export class DnsServer {
  private readonly upstreams: { host: string; port: number; family: 'udp4' | 'udp6' }[];
  private readonly builtins = new Map<string, number>();
  private readonly zoneList: Zone[] = [];
  private hosts = new Map<string, number[]>();
  private readonly hostsFile: string | null;
  private readonly timeoutMs: number;
  private readonly maxInflight: number;
  private readonly localTtl: number;
  private readonly udpMax: number;
  private readonly log: Logger;
  private readonly counters: Record<string, number> = Object.create(null);
  private readonly live = new Set<Live>();
  private inflight = 0;
  private closed = false;
  /** Settings of the gateway's DNS-over-TCP sessions, which keep their book here so stats() shows it. */
  readonly tcpOptions: ResolvedDnsTcpOptions;
  private readonly tcpSessions = new Set<DnsTcpHolder>();
  private tcpHeld = 0;

  constructor(opts: DnsOptions = {}) {
    this.log = opts.log ?? nullLogger;
    const ups = opts.upstreams ?? readResolvConf();
    this.upstreams = ups.slice(0, MAX_UPSTREAMS).map((u) => {
      const port = u.port ?? 53;
      if (typeof u.host !== 'string' || u.host === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
        throw new VnetkitError(ErrorCodes.BAD_OPTION, `invalid DNS upstream: ${safeJson(u)}`);
      }
      return { host: u.host, port, family: net.isIPv6(u.host.replace(/%.*$/, '')) ? 'udp6' as const : 'udp4' as const };
    });
    if (this.upstreams.length === 0) this.log.warn('dns: no upstream resolvers; non-local names will get SERVFAIL');
    for (const [name, ip] of Object.entries(opts.builtins ?? {})) this.builtins.set(normName(name), ip >>> 0);
    for (const z of opts.zones ?? []) this.addZone(z);
    this.hostsFile = opts.hostsFile === undefined ? '/etc/hosts' : opts.hostsFile;
    this.timeoutMs = Math.max(1, opts.timeoutMs ?? 5000);
    this.maxInflight = Math.max(1, opts.maxInflight ?? 256);
    this.localTtl = Math.max(0, Math.floor(opts.localTtl ?? 0));
    this.udpMax = Math.min(65507, Math.max(UDP_CLASSIC, opts.udpMaxPayload ?? 4096));
    this.tcpOptions = resolveDnsTcpOptions(opts.tcp);
    this.reloadHosts();
  }

  /** Re-read the hosts file (bounded to 1 MiB / 16384 names). */
  reloadHosts(): void {
    if (this.hostsFile === null) return;
    try {
      const text = readFileSync(this.hostsFile, 'utf8');
      this.hosts = parseHosts(text.length > MAX_HOSTS_BYTES ? text.slice(0, MAX_HOSTS_BYTES) : text);
    } catch (err) {
      this.log.warn('dns: cannot read hosts file', { path: this.hostsFile, error: (err as Error).message });
      this.hosts = new Map();
    }
  }

  /**
   * Add a zone, or merge into the zone of the same name the way
   * gvisor-tap-vsock does: the new records go first (so they win), and the
   * new defaultIp replaces the old one. Throws VnetkitError on bad input.
   */
  addZone(zone: DnsZone): void {
    if (typeof zone?.name !== 'string' || !Array.isArray(zone.records)) badZone('name and records are required', zone);
    const base = normName(zone.name);
    if (base === '' || base.length > 253) badZone('bad zone name', zone.name);
    const i = this.zoneList.findIndex((z) => z.base === base);
    const old = i >= 0 ? this.zoneList[i] : null;
    // Limits first: nothing is compiled for a zone that would be refused anyway.
    if (old === null && this.zoneList.length >= MAX_ZONES) badZone('too many zones', zone.name);
    if (zone.records.length + (old?.records.length ?? 0) > MAX_RECORDS_PER_ZONE) badZone(`more than ${MAX_RECORDS_PER_ZONE} records`, zone.name);
    const nRe = zone.records.filter((r) => r.regexp !== undefined && r.regexp !== '').length + (old?.records.filter((r) => r.re !== null).length ?? 0);
    if (nRe > MAX_REGEXPS_PER_ZONE) badZone(`more than ${MAX_REGEXPS_PER_ZONE} regexp records`, zone.name);
    const records: ZoneRecord[] = zone.records.map((r) => {
      if (r.ip === undefined) badZone('record without ip', r);
      let re: RE2JS | null = null;
      if (r.regexp !== undefined && r.regexp !== '') re = compileZoneRegexp(zone.name, r.regexp);
      return { name: normName(r.name ?? ''), re, ip: parseIPv4(r.ip) };
    });
    const defaultIp = zone.defaultIp !== undefined && zone.defaultIp !== '' ? parseIPv4(zone.defaultIp) : null;
    const src: DnsZone = { name: zone.name, records: zone.records.map((r) => ({ ...r })) };
    if (zone.defaultIp !== undefined && zone.defaultIp !== '') src.defaultIp = zone.defaultIp;
    if (old !== null) {
      src.records.push(...old.src.records);
      this.zoneList[i] = { base, records: [...records, ...old.records], defaultIp, src };
    } else {
      this.zoneList.push({ base, records, defaultIp, src });
    }
  }

  zones(): DnsZone[] {
    return this.zoneList.map((z) => {
      const c: DnsZone = { name: z.src.name, records: z.src.records.map((r) => ({ ...r })) };
      if (z.src.defaultIp !== undefined) c.defaultIp = z.src.defaultIp;
      return c;
    });
  }

  /** Add or replace one builtin name (e.g. a VM that just got its lease). */
  setName(name: string, ip: number): void {
    this.builtins.set(normName(name), ip >>> 0);
  }

  deleteName(name: string): void {
    this.builtins.delete(normName(name));
  }

  stats(): Record<string, number> {
    return { ...this.counters, inflight: this.inflight, tcp_open: this.tcpSessions.size, tcp_held_bytes: this.tcpHeld };
  }

  // ---- book of the DNS-over-TCP sessions (gateway-dns-tcp.ts) ---------------

  tcpSessionOpened(s: DnsTcpHolder): void {
    this.tcpSessions.add(s);
    this.count('tcp_sessions');
  }

  tcpSessionClosed(s: DnsTcpHolder): void {
    this.tcpSessions.delete(s);
  }

  /**
   * Room for `bytes` more answer bytes within totalBytes: sessions holding
   * the most are reset (evict() must give back their bytes) until it fits.
   */
  tcpMakeRoom(bytes: number): void {
    while (this.tcpHeld + bytes > this.tcpOptions.totalBytes) {
      let top: DnsTcpHolder | null = null;
      for (const s of this.tcpSessions) if (top === null || s.heldBytes > top.heldBytes) top = s;
      if (top === null || top.heldBytes === 0) return;
      this.count('tcp_evicted');
      this.log.limited('dns-tcp-evict', 'info', 'dns: TCP session reset: its guest leaves too many answers unread', { held: top.heldBytes });
      top.evict();
      // A holder that failed to give its bytes back must not spin this loop.
      if (this.tcpSessions.has(top)) return;
    }
  }

  /** Answer bytes all TCP sessions hold for their guests, after adding `delta`. */
  tcpHold(delta: number): number {
    this.tcpHeld += delta;
    return this.tcpHeld;
  }

  /** Count a TCP session event (stable keys, see gateway-dns-tcp.ts). */
  countTcp(key: `tcp_${string}`): void {
    this.count(key);
  }

  close(): void {
    this.closed = true;
    for (const l of [...this.live]) l.abort();
  }

  /**
   * Answer one query. UDP answers are cut to 512 bytes, or the query's EDNS0
   * size (capped by udpMaxPayload), with TC set; TCP answers are complete
   * (frame them with frameTcp). Resolves to null when the query is dropped.
   * Never rejects.
   */
  async query(msg: Uint8Array, transport: 'udp' | 'tcp'): Promise<Uint8Array | null> {
    this.count(transport === 'udp' ? 'queries_udp' : 'queries_tcp');
    if (this.closed) {
      this.count('drop_closed');
      return null;
    }
    const l = newLayout();
    if (!walkMessage(msg, l)) {
      this.count('drop_malformed');
      return null;
    }
    const flags = be16(msg, 2);
    if ((flags & FLAG_QR) !== 0) {
      // A response aimed at a server: answering could loop two servers forever.
      this.count('drop_response');
      return null;
    }
    const limit = transport === 'tcp' ? 65535 : l.optOff >= 0 ? Math.min(this.udpMax, Math.max(UDP_CLASSIC, l.udpSize)) : UDP_CLASSIC;
    const opcode = (flags >>> 11) & 0xf;
    if (opcode !== 0) {
      this.count('notimp');
      return this.fit(errorResponse(msg, l, RCODE_NOTIMP), limit);
    }
    if (l.qdcount !== 1) {
      this.count('formerr');
      return this.fit(errorResponse(msg, l, RCODE_FORMERR), limit);
    }
    if (l.qnamePlain && (l.qclass === CLASS_IN || l.qclass === TYPE_ANY)) {
      const local = this.lookupLocal(normName(l.qname));
      if (local !== null) return this.fit(this.localResponse(msg, l, local), limit);
    }
    if (this.upstreams.length === 0) {
      this.count('servfail');
      return this.fit(errorResponse(msg, l, RCODE_SERVFAIL), limit);
    }
    if (this.inflight >= this.maxInflight) {
      this.count('drop_inflight');
      this.count('servfail');
      return this.fit(errorResponse(msg, l, RCODE_SERVFAIL), limit);
    }
    this.inflight++;
    try {
      return await this.forward(msg, l, transport, limit);
    } catch (err) {
      // Socket APIs can throw synchronously on odd hosts/ports; never let that escape.
      this.count('forward_error');
      this.log.limited('dns-forward', 'warn', 'dns: forwarding failed', { error: (err as Error).message });
      return this.fit(errorResponse(msg, l, RCODE_SERVFAIL), limit);
    } finally {
      this.inflight--;
    }
  }

  // ---- local names ----------------------------------------------------------

  private lookupLocal(name: string): Local | null {
    const b = this.builtins.get(name);
    if (b !== undefined) return { kind: 'a', ips: [b] };
    for (const z of this.zoneList) {
      const r = matchZone(z, name);
      if (r !== null) return r;
    }
    const h = this.hosts.get(name);
    if (h !== undefined) return { kind: 'a', ips: h };
    return null;
  }

  private localResponse(msg: Uint8Array, l: MsgLayout, local: Local): Uint8Array {
    const wantA = l.qtype === TYPE_A || l.qtype === TYPE_ANY;
    let rcode = RCODE_NOERROR;
    let ips: number[] = [];
    if (local.kind === 'nxdomain') {
      rcode = RCODE_NXDOMAIN;
      this.count('local_nxdomain');
    } else if (local.kind === 'a' && wantA) {
      ips = local.ips;
      this.count('local_answer');
    } else {
      this.count('local_nodata');
    }
    const flags = FLAG_AA | (be16(msg, 2) & FLAG_RD) | FLAG_RA | rcode;
    const qtype = typeString(l.qtype) as dnsPacket.RecordType;
    const packet: dnsPacket.Packet = {
      id: be16(msg, 0),
      type: 'response',
      flags,
      questions: [{ name: l.qname, type: qtype, class: l.qclass === CLASS_IN ? 'IN' : 'ANY' }],
      answers: ips.map((ip) => ({ name: l.qname, type: 'A' as const, class: 'IN' as const, ttl: this.localTtl, data: formatIPv4(ip) })),
      additionals: l.optOff >= 0 ? [{ name: '.', type: 'OPT', udpPayloadSize: this.udpMax, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] } as unknown as dnsPacket.Answer] : [],
    };
    return dnsPacket.encode(packet);
  }

  // ---- forwarding -----------------------------------------------------------

  private async forward(msg: Uint8Array, l: MsgLayout, transport: 'udp' | 'tcp', limit: number): Promise<Uint8Array> {
    const clientId = be16(msg, 0);
    // Our own copy: new id per upstream attempt, trailing junk dropped.
    // (Not msg.slice: on a Buffer that is a view and would rewrite the caller's bytes.)
    const out = new Uint8Array(l.arEnd);
    out.set(msg.subarray(0, l.arEnd));
    if (transport === 'udp' && l.optOff >= 0) {
      // Ask upstream for no more than we will pass on, so it truncates, not us.
      const sizeAt = l.optOff + 1 + 2; // root name, TYPE, then CLASS = UDP size
      putBe16(out, sizeAt, limit);
    }
    const deadline = Date.now() + this.timeoutMs;
    let fallback: Uint8Array | null = null;
    for (let i = 0; i < this.upstreams.length && !this.closed; i++) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      const up = this.upstreams[i];
      const budget = Math.max(1, Math.floor(remaining / (this.upstreams.length - i)));
      const id = randomInt(0, 0x10000);
      putBe16(out, 0, id);
      let ans = await this.udpExchange(up, out, id, l, budget);
      if (ans !== null && transport === 'tcp' && (be16(ans, 2) & FLAG_TC) !== 0) {
        this.count('upstream_tcp_retry');
        const left = deadline - Date.now();
        const full = left > 0 ? await this.tcpExchange(up, out, id, l, left) : null;
        if (full !== null) ans = full;
      }
      if (ans === null) continue;
      const rcode = be16(ans, 2) & 0xf;
      if (rcode === RCODE_SERVFAIL || rcode === RCODE_REFUSED || rcode === RCODE_NOTIMP) {
        // Another upstream may do better; keep this one in case none does.
        this.count('upstream_error_rcode');
        fallback = ans;
        continue;
      }
      this.count('forwarded');
      return this.finish(ans, clientId, limit);
    }
    if (fallback !== null) return this.finish(fallback, clientId, limit);
    this.count('servfail');
    return this.fit(errorResponse(msg, l, RCODE_SERVFAIL), limit);
  }

  private finish(ans: Uint8Array, clientId: number, limit: number): Uint8Array {
    putBe16(ans, 0, clientId);
    return this.fit(ans, limit);
  }

  /** Truncate to `limit` if needed (the message is known to be well-formed). */
  private fit(m: Uint8Array, limit: number): Uint8Array {
    if (m.length <= limit) return m;
    const l = newLayout();
    if (!walkMessage(m, l)) return m;
    this.count('truncated');
    return truncateMessage(m, l, limit);
  }

  /** Is `m` the answer to `q` (id, QR, same question)? */
  private matches(m: Uint8Array, id: number, q: Uint8Array, ql: MsgLayout, ml: MsgLayout): boolean {
    if (!walkMessage(m, ml)) return false;
    if (be16(m, 0) !== id || (be16(m, 2) & FLAG_QR) === 0) return false;
    if (ml.qdcount === 0) return (be16(m, 2) & 0xf) !== RCODE_NOERROR;
    if (ml.qdcount !== 1 || ml.questionEnd !== ql.questionEnd) return false;
    for (let k = HEADER_LEN; k < ql.questionEnd; k++) {
      let a = q[k];
      let b = m[k];
      if (a >= 0x41 && a <= 0x5a) a |= 0x20;
      if (b >= 0x41 && b <= 0x5a) b |= 0x20;
      if (a !== b) return false;
    }
    return true;
  }

  private udpExchange(up: { host: string; port: number; family: 'udp4' | 'udp6' }, q: Uint8Array, id: number, ql: MsgLayout, budgetMs: number): Promise<Uint8Array | null> {
    return new Promise((resolve) => {
      const sock = dgram.createSocket(up.family);
      const ml = newLayout();
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      let resend: NodeJS.Timeout | undefined;
      const entry: Live = { abort: () => finish(null) };
      const finish = (r: Uint8Array | null): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearTimeout(resend);
        this.live.delete(entry);
        try {
          sock.close();
        } catch {
          // already closed by an error
        }
        resolve(r);
      };
      this.live.add(entry);
      const send = (): void => {
        if (done) return;
        sock.send(q, (err) => {
          if (err) {
            this.count('upstream_send_error');
            finish(null);
          }
        });
      };
      sock.on('error', (err: NodeJS.ErrnoException) => {
        this.count(err.code === 'ECONNREFUSED' ? 'upstream_refused' : 'upstream_error');
        finish(null);
      });
      sock.on('message', (m: Buffer) => {
        if (this.matches(m, id, q, ql, ml)) finish(m);
        else this.count('upstream_bad_answer');
      });
      timer = setTimeout(() => {
        this.count('upstream_timeout');
        finish(null);
      }, budgetMs);
      // One retransmission halfway through covers a single lost datagram.
      resend = setTimeout(send, Math.floor(budgetMs / 2));
      sock.connect(up.port, up.host, send);
    });
  }

  private tcpExchange(up: { host: string; port: number }, q: Uint8Array, id: number, ql: MsgLayout, budgetMs: number): Promise<Uint8Array | null> {
    return new Promise((resolve) => {
      const deframer = new DnsTcpDeframer();
      const ml = newLayout();
      let done = false;
      const sock = net.connect({ host: up.host, port: up.port });
      const entry: Live = { abort: () => finish(null) };
      const finish = (r: Uint8Array | null): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.live.delete(entry);
        sock.destroy();
        resolve(r);
      };
      this.live.add(entry);
      const timer = setTimeout(() => {
        this.count('upstream_tcp_timeout');
        finish(null);
      }, budgetMs);
      sock.on('connect', () => sock.write(frameTcp(q)));
      sock.on('data', (chunk: Buffer) => {
        for (const m of deframer.push(chunk)) {
          if (this.matches(m, id, q, ql, ml)) return finish(m);
          this.count('upstream_bad_answer');
        }
      });
      sock.on('error', () => {
        this.count('upstream_tcp_error');
        finish(null);
      });
      sock.on('close', () => finish(null));
    });
  }

  private count(k: string): void {
    this.counters[k] = (this.counters[k] ?? 0) + 1;
  }
}

function matchZone(z: Zone, name: string): Local | null {
  let rel: string;
  if (name === z.base) rel = '';
  else if (name.endsWith(z.base) && name.charCodeAt(name.length - z.base.length - 1) === 0x2e) rel = name.slice(0, name.length - z.base.length - 1);
  else return null;
  for (const r of z.records) {
    if ((r.name !== '' && (r.name === rel || r.name === name)) || (r.re !== null && rel !== '' && r.re.test(rel))) {
      return { kind: 'a', ips: [r.ip] };
    }
  }
  if (rel === '') return { kind: 'nodata' };
  if (z.defaultIp !== null) return { kind: 'a', ips: [z.defaultIp] };
  return { kind: 'nxdomain' };
}

const TYPE_NAMES: Record<number, string> = { 1: 'A', 28: 'AAAA', 5: 'CNAME', 15: 'MX', 16: 'TXT', 33: 'SRV', 12: 'PTR', 6: 'SOA', 2: 'NS', 255: 'ANY' };

function typeString(t: number): string {
  // dns-packet encodes 'UNKNOWN_<n>' back to n, so any qtype round-trips.
  return TYPE_NAMES[t] ?? `UNKNOWN_${t}`;
}

/** SERVFAIL for a query (header and question), or null when it is not a well-formed message. */
export function servfailFor(query: Uint8Array): Uint8Array | null {
  const l = newLayout();
  if (!walkMessage(query, l)) return null;
  return errorResponse(query, l, RCODE_SERVFAIL);
}

/** Header + question of the query with QR, RA and `rcode` set; OPT echoed when the query had one. */
function errorResponse(q: Uint8Array, l: MsgLayout, rcode: number): Uint8Array {
  const hasOpt = l.optOff >= 0;
  const out = new Uint8Array(l.questionEnd + (hasOpt ? 11 : 0));
  out.set(q.subarray(0, l.questionEnd), 0);
  const flags = be16(q, 2);
  // Keep opcode and RD; clear AA/TC/Z/AD/CD; set QR, RA, rcode.
  putBe16(out, 2, FLAG_QR | (flags & 0x7800) | (flags & FLAG_RD) | FLAG_RA | rcode);
  putBe16(out, 6, 0);
  putBe16(out, 8, 0);
  putBe16(out, 10, hasOpt ? 1 : 0);
  if (hasOpt) {
    const o = l.questionEnd;
    // Root owner, TYPE=OPT, CLASS=UDP size, TTL=0 (ext-rcode, version, flags), RDLEN=0.
    out[o] = 0;
    putBe16(out, o + 1, 41);
    putBe16(out, o + 3, 1232);
  }
  return out;
}
