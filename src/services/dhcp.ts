/**
 * DHCPv4 server (RFC 2131 / RFC 2132) as pure logic over UDP payload bytes.
 *
 * The engine hands us the payload of a datagram from client port 68 to 67 and
 * the Ethernet source MAC; we hand back the reply payload plus where it must
 * go. Leases are keyed by that Ethernet MAC rather than chaddr: the switch has
 * already tied the MAC to a port, whereas chaddr is whatever the guest wrote.
 *
 * The engine also names the attachment (VM connection) a message came from:
 * a lease then belongs to that attachment and MAC together, an attachment
 * holds at most `maxLeasesPerVm` lease records (so one VM inventing client
 * MACs cannot take the pool), another attachment's address is never offered
 * or acknowledged, and releaseVm() frees everything an attachment held when
 * it leaves.
 *
 * This server is authoritative for the virtual subnet: an INIT-REBOOT or
 * RENEWING client we have no record of (e.g. after a daemon restart) gets its
 * address back when it is free, instead of the silence RFC 2131 §4.3.2
 * prescribes for non-authoritative servers, so guests keep their addresses.
 */
import { VnetkitError, ErrorCodes } from '../errors.js';
import { formatIPv4, formatMac, parseMac, prefixMask } from '../wire/addr.js';
import { nullLogger, type Logger } from '../log.js';
import type { QuotaStats } from '../engine/quota.js';

export interface DhcpOptions {
  serverIp: number;
  prefix: number;
  router: number;
  dnsServers: number[];
  domainName?: string;
  searchDomains?: string[];
  mtu: number;
  leaseSeconds: number;
  poolStart: number;
  poolEnd: number;
  staticLeases?: { mac: string; ip: number }[];
  /** Addresses never handed out (besides serverIp and router), e.g. the host alias. */
  reservedIps?: number[];
  /** Cap on dynamic lease records, expired ones included (default: pool size). */
  maxLeases?: number;
  /** How long an OFFER holds its address for the client, ms (default 60 000). */
  offerHoldMs?: number;
  /**
   * Lease records (offers, leases, declined addresses) one attachment may hold, static
   * leases not counted (default: no bound). Full: the attachment's own oldest expired
   * record makes room, else its new client gets no OFFER (counted `perVmRefused`).
   */
  maxLeasesPerVm?: number;
  /**
   * Whether attachment `vm` may be given `ip` (the switch's view: no other attachment uses it,
   * and `vm` has room for another address). Addresses it refuses are not offered, and
   * REQUESTs for them are NAKed. Only asked for messages that name an attachment.
   */
  mayHold?: (ip: number, vm: number) => boolean;
  log?: Logger;
}

export interface DhcpReply {
  reply: Uint8Array;
  /** Send to 255.255.255.255 / ff:ff:ff:ff:ff:ff (RFC 2131 §4.1). */
  broadcast: boolean;
  /** The yiaddr field of the reply (0 for NAK and INFORM). */
  yiaddr: number;
  /**
   * Unicast destination IP when !broadcast: ciaddr when the client has one
   * (renewal, INFORM), else yiaddr, sent to the client MAC without ARP.
   * 0xffffffff when broadcast.
   */
  dest: number;
}

export interface DhcpLease {
  mac: string;
  /** The attachment that holds it, when the engine named one. */
  vm?: number;
  ip: number;
  hostname?: string;
  expiresAt: number;
  static: boolean;
}

// Fixed BOOTP header fields (RFC 2131 §2, figure 1).
const OFF_OP = 0;
const OFF_HTYPE = 1;
const OFF_HLEN = 2;
const OFF_XID = 4;
const OFF_FLAGS = 10;
const OFF_CIADDR = 12;
const OFF_YIADDR = 16;
const OFF_GIADDR = 24;
const OFF_CHADDR = 28;
const OFF_COOKIE = 236;
const OFF_OPTIONS = 240;
const MAGIC_COOKIE = 0x63825363;
const BOOTP_MIN = 300;
const FLAG_BROADCAST = 0x8000;

// Message types (option 53).
const DISCOVER = 1;
const OFFER = 2;
const REQUEST = 3;
const DECLINE = 4;
const ACK = 5;
const NAK = 6;
const RELEASE = 7;
const INFORM = 8;

// Option codes (RFC 2132, RFC 3397).
const O_PAD = 0;
const O_MASK = 1;
const O_ROUTER = 3;
const O_DNS = 6;
const O_HOSTNAME = 12;
const O_DOMAIN = 15;
const O_MTU = 26;
const O_BROADCAST = 28;
const O_REQUESTED_IP = 50;
const O_LEASE = 51;
const O_MSG_TYPE = 53;
const O_SERVER_ID = 54;
const O_PARAM_LIST = 55;
const O_MESSAGE = 56;
const O_RENEWAL = 58;
const O_REBINDING = 59;
const O_SEARCH = 119;
const O_END = 255;

/** Declined addresses stay out of the pool this long (someone else answers ARP for them). */
const DECLINE_QUARANTINE_MS = 10 * 60_000;
/** Hostnames are kept for the leases API only; bound them. */
const MAX_HOSTNAME = 64;

interface Lease {
  /** byMac's key: the MAC, prefixed with the attachment when one was named. */
  key: string;
  /** '' for a quarantined (declined) address. */
  mac: string;
  vm?: number;
  ip: number;
  hostname?: string;
  expiresAt: number;
  static: boolean;
  /** true once ACKed; an unACKed offer only holds the address briefly. */
  bound: boolean;
}

/** What one scan of the options area found; reused across calls. */
/** Who sent the message being handled. */
interface Client {
  mac: string;
  key: string;
  vm?: number;
}

function keyOf(mac: string, vm: number | undefined): string {
  return vm === undefined ? mac : `${vm}/${mac}`;
}

interface Parsed {
  msgType: number;
  requestedIp: number;
  hasRequestedIp: boolean;
  serverId: number;
  hasServerId: boolean;
  paramOff: number;
  paramLen: number;
  hostOff: number;
  hostLen: number;
}

function dropReason(r: string): string {
  return `drop_${r}`;
}

/**
 * Encode a list of domain names as RFC 1035 wire names with message
 * compression, offsets relative to the start of the list (RFC 3397 §2).
 */
export function encodeSearchList(domains: string[]): Uint8Array {
  const out: number[] = [];
  // suffix (lower-case, dotted) → offset where it was first written
  const seen = new Map<string, number>();
  for (const raw of domains) {
    const labels = splitDomain(raw);
    let i = 0;
    for (; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.').toLowerCase();
      const at = seen.get(suffix);
      if (at !== undefined) {
        out.push(0xc0 | (at >> 8), at & 0xff);
        break;
      }
      // Pointers carry 14 bits; later suffixes simply go uncompressed.
      if (out.length < 0x3fff) seen.set(suffix, out.length);
      const l = labels[i];
      out.push(l.length);
      for (let k = 0; k < l.length; k++) out.push(l.charCodeAt(k));
    }
    if (i === labels.length) out.push(0);
  }
  return Uint8Array.from(out);
}

function splitDomain(raw: string): string[] {
  const name = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  if (name.length === 0 || name.length > 253) bad('searchDomains', raw);
  const labels = name.split('.');
  for (const l of labels) {
    if (l.length === 0 || l.length > 63 || !/^[A-Za-z0-9_-]+$/.test(l)) bad('searchDomains', raw);
  }
  return labels;
}

function bad(what: string, v: unknown): never {
  throw new VnetkitError(ErrorCodes.BAD_OPTION, `invalid DHCP ${what}: ${JSON.stringify(v)}`);
}

function u32(ip: number): number[] {
  return [(ip >>> 24) & 0xff, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff];
}

/**
 * One option as code/len/data, split into consecutive instances when longer
 * than 255 bytes (RFC 3396 concatenation).
 */
function encodeOption(code: number, data: ArrayLike<number>): Uint8Array {
  const chunks = Math.max(1, Math.ceil(data.length / 255));
  const out = new Uint8Array(data.length + 2 * chunks);
  let o = 0;
  for (let c = 0; c < chunks; c++) {
    const start = c * 255;
    const len = Math.min(255, data.length - start);
    out[o++] = code;
    out[o++] = len;
    for (let k = 0; k < len; k++) out[o++] = data[start + k];
  }
  return out;
}

export class DhcpServer {
  private readonly serverIp: number;
  private readonly mask: number;
  private readonly network: number;
  private readonly poolStart: number;
  private readonly poolEnd: number;
  private readonly maxLeases: number;
  private readonly leaseMs: number;
  private readonly offerHoldMs: number;
  private readonly log: Logger;
  /** Pre-encoded configuration options by code, in our default order. */
  private readonly cfgOptions = new Map<number, Uint8Array>();
  private readonly leaseOptions: Uint8Array;
  private readonly serverIdOption: Uint8Array;

  /** By Lease.key (attachment and MAC). */
  private readonly byMac = new Map<string, Lease>();
  /** Each attachment's non-static lease records. */
  private readonly byVm = new Map<number, Set<Lease>>();
  private readonly maxPerVm: number;
  private readonly mayHold?: (ip: number, vm: number) => boolean;
  private readonly byIp = new Map<number, Lease>();
  private readonly staticByMac = new Map<string, number>();
  private readonly staticIps = new Set<number>();
  private readonly reservedByMac = new Map<string, number>();
  private readonly reservedIps = new Map<number, string>();
  /** Addresses that are never leased: ours, the router's, opts.reservedIps. */
  private readonly excluded = new Set<number>();
  /** Dynamic lease records (static ones are not counted against maxLeases). */
  private dynamicCount = 0;
  /** Next-fit scan position, so a full-ish pool is not rescanned from the start each time. */
  private cursor: number;
  private readonly counters: Record<string, number> = Object.create(null);
  private readonly p: Parsed = {
    msgType: 0, requestedIp: 0, hasRequestedIp: false, serverId: 0, hasServerId: false,
    paramOff: 0, paramLen: 0, hostOff: 0, hostLen: 0,
  };

  constructor(opts: DhcpOptions) {
    if (!Number.isInteger(opts.prefix) || opts.prefix < 1 || opts.prefix > 30) bad('prefix', opts.prefix);
    this.serverIp = opts.serverIp >>> 0;
    this.mask = prefixMask(opts.prefix);
    this.network = (this.serverIp & this.mask) >>> 0;
    this.poolStart = opts.poolStart >>> 0;
    this.poolEnd = opts.poolEnd >>> 0;
    if (this.poolEnd < this.poolStart) bad('pool', [formatIPv4(this.poolStart), formatIPv4(this.poolEnd)]);
    if (!this.inSubnet(this.poolStart) || !this.inSubnet(this.poolEnd)) bad('pool (outside the subnet)', formatIPv4(this.poolStart));
    const poolSize = this.poolEnd - this.poolStart + 1;
    this.maxLeases = Math.max(1, Math.min(opts.maxLeases ?? poolSize, poolSize, 1 << 20));
    if (!Number.isFinite(opts.leaseSeconds) || opts.leaseSeconds < 1) bad('leaseSeconds', opts.leaseSeconds);
    const leaseSeconds = Math.min(Math.floor(opts.leaseSeconds), 0xffffffff);
    this.leaseMs = leaseSeconds * 1000;
    this.offerHoldMs = opts.offerHoldMs ?? 60_000;
    this.maxPerVm = opts.maxLeasesPerVm ?? Number.POSITIVE_INFINITY;
    this.mayHold = opts.mayHold;
    this.log = opts.log ?? nullLogger;
    this.cursor = this.poolStart;
    this.excluded.add(this.serverIp);
    this.excluded.add(opts.router >>> 0);
    for (const ip of opts.reservedIps ?? []) this.excluded.add(ip >>> 0);
    if (!Number.isInteger(opts.mtu) || opts.mtu < 68 || opts.mtu > 65535) bad('mtu', opts.mtu);

    for (const s of opts.staticLeases ?? []) {
      const mac = formatMac(parseMac(s.mac));
      const ip = s.ip >>> 0;
      if (!this.inSubnet(ip)) bad('static lease (outside the subnet)', s);
      this.staticByMac.set(mac, ip);
      this.staticIps.add(ip);
    }

    this.serverIdOption = encodeOption(O_SERVER_ID, u32(this.serverIp));
    // 0xffffffff means "infinite" (RFC 2132 §9.2); T1/T2 are the RFC 2131 §4.4.5 defaults.
    const lease = [
      ...encodeOption(O_LEASE, u32(leaseSeconds)),
      ...encodeOption(O_RENEWAL, u32(leaseSeconds === 0xffffffff ? 0xffffffff : Math.floor(leaseSeconds * 0.5))),
      ...encodeOption(O_REBINDING, u32(leaseSeconds === 0xffffffff ? 0xffffffff : Math.floor(leaseSeconds * 0.875))),
    ];
    this.leaseOptions = Uint8Array.from(lease);

    this.cfgOptions.set(O_MASK, encodeOption(O_MASK, u32(this.mask)));
    this.cfgOptions.set(O_ROUTER, encodeOption(O_ROUTER, u32(opts.router >>> 0)));
    if (opts.dnsServers.length > 0) {
      if (opts.dnsServers.length > 16) bad('dnsServers (more than 16)', opts.dnsServers.length);
      this.cfgOptions.set(O_DNS, encodeOption(O_DNS, opts.dnsServers.flatMap((ip) => u32(ip >>> 0))));
    }
    if (opts.domainName !== undefined && opts.domainName !== '') {
      splitDomain(opts.domainName);
      const d = opts.domainName.endsWith('.') ? opts.domainName.slice(0, -1) : opts.domainName;
      this.cfgOptions.set(O_DOMAIN, encodeOption(O_DOMAIN, Array.from(d, (c) => c.charCodeAt(0))));
    }
    if (opts.searchDomains !== undefined && opts.searchDomains.length > 0) {
      const list = encodeSearchList(opts.searchDomains);
      // Keeps every reply inside the 576-byte datagram every client must accept.
      if (list.length > 200) bad('searchDomains (encoded list longer than 200 bytes)', opts.searchDomains);
      this.cfgOptions.set(O_SEARCH, encodeOption(O_SEARCH, list));
    }
    this.cfgOptions.set(O_MTU, encodeOption(O_MTU, [opts.mtu >>> 8, opts.mtu & 0xff]));
    this.cfgOptions.set(O_BROADCAST, encodeOption(O_BROADCAST, u32((this.network | ~this.mask) >>> 0)));
  }

  /**
   * Handle one DHCP message; see DhcpReply. Never throws on packet contents.
   * `vm`: the attachment it came from (see the file comment); without it leases are keyed by MAC alone.
   */
  handle(payload: Uint8Array, clientMac: Uint8Array, now: number, reserved?: number, vm?: number): DhcpReply | null {
    this.count('rx');
    const reason = this.parse(payload);
    if (reason !== null) {
      this.count(dropReason(reason));
      return null;
    }
    if (clientMac.length < 6) {
      this.count(dropReason('bad_client_mac'));
      return null;
    }
    const mac = formatMac(clientMac);
    const c: Client = { mac, key: keyOf(mac, vm), vm };
    const p = this.p;
    switch (p.msgType) {
      case DISCOVER:
        this.count('discover');
        return this.onDiscover(payload, c, now, reserved);
      case REQUEST:
        this.count('request');
        return this.onRequest(payload, c, now, reserved);
      case DECLINE:
        this.count('decline');
        this.onDecline(payload, c, now);
        return null;
      case RELEASE:
        this.count('release');
        this.onRelease(payload, c, now);
        return null;
      case INFORM:
        this.count('inform');
        return this.onInform(payload);
      default:
        this.count(dropReason('unexpected_type'));
        return null;
    }
  }

  leases(): DhcpLease[] {
    const out: DhcpLease[] = [];
    for (const l of this.byIp.values()) {
      if (l.mac === '' || !l.bound) continue;
      const e: DhcpLease = { mac: l.mac, ip: l.ip, expiresAt: l.expiresAt, static: l.static };
      if (l.vm !== undefined) e.vm = l.vm;
      if (l.hostname !== undefined) e.hostname = l.hostname;
      out.push(e);
    }
    return out;
  }

  /** Forget a client's leases, on any attachment (their addresses return to the pool), and its reservation. Static leases stay. */
  release(mac: string): void {
    const key = normMac(mac);
    if (key === null) return;
    for (const l of [...this.byIp.values()]) if (l.mac === key && !l.static) this.drop(l);
    const r = this.reservedByMac.get(key);
    if (r !== undefined) {
      this.reservedByMac.delete(key);
      this.reservedIps.delete(r);
    }
  }

  /**
   * The attachment left: every lease record it held goes (its addresses return to the
   * pool at once). Static leases and reservations (vpnkit UUIDs) stay pinned to their MAC.
   */
  releaseVm(vm: number): void {
    const set = this.byVm.get(vm);
    if (set === undefined) return;
    for (const l of [...set]) this.drop(l);
    this.byVm.delete(vm);
  }

  /**
   * May attachment `vm`, sending from `mac`, use `ip` as an address it configured itself?
   * Not when the address is another MAC's static lease or reservation, or another
   * attachment holds an unexpired record for it (offer, lease, quarantine).
   */
  mayClaim(ip: number, vm: number, mac: string, now: number): boolean {
    ip = ip >>> 0;
    if (this.excluded.has(ip)) return false;
    if (this.staticIps.has(ip)) return this.staticByMac.get(mac) === ip;
    const r = this.reservedIps.get(ip);
    if (r !== undefined) return r === mac;
    const l = this.byIp.get(ip);
    return l === undefined || l.vm === vm || (!l.static && l.expiresAt <= now);
  }

  /** Lease records per attachment against maxLeasesPerVm (static leases not counted). */
  quotaStats(): QuotaStats {
    let used = 0;
    let maxVmUsed = 0;
    for (const s of this.byVm.values()) {
      used += s.size;
      if (s.size > maxVmUsed) maxVmUsed = s.size;
    }
    return {
      used, total: this.maxLeases, perVm: Number.isFinite(this.maxPerVm) ? this.maxPerVm : this.maxLeases,
      refusedVm: this.counters.perVmRefused ?? 0, refusedTotal: this.counters.pool_exhausted ?? 0, maxVmUsed,
    };
  }

  /** Pin `ip` to `mac` (vpnkit UUID → IP); it is offered to nobody else. */
  reserve(mac: string, ip: number): void {
    const key = normMac(mac);
    if (key === null) bad('reserve MAC', mac);
    ip = ip >>> 0;
    if (!this.inSubnet(ip)) bad('reserved address (outside the subnet)', formatIPv4(ip));
    const prev = this.reservedByMac.get(key);
    if (prev !== undefined) this.reservedIps.delete(prev);
    this.reservedByMac.set(key, ip);
    this.reservedIps.set(ip, key);
  }

  isAllocated(ip: number): boolean {
    ip = ip >>> 0;
    if (this.staticIps.has(ip) || this.reservedIps.has(ip)) return true;
    const l = this.byIp.get(ip);
    return l !== undefined && l.mac !== '';
  }

  stats(): Record<string, number> {
    let bound = 0;
    for (const l of this.byIp.values()) if (l.bound && l.mac !== '') bound++;
    return { ...this.counters, leases: bound, leaseRecords: this.byIp.size };
  }

  // ---- parsing --------------------------------------------------------------

  /** Validates the message and fills this.p; returns a drop reason or null. */
  private parse(b: Uint8Array): string | null {
    if (b.length < OFF_OPTIONS) return 'short';
    if (b[OFF_OP] !== 1) return 'not_request';
    if (b[OFF_HLEN] > 16) return 'bad_hlen';
    if (be32(b, OFF_COOKIE) !== MAGIC_COOKIE) return 'bad_cookie';
    const p = this.p;
    p.msgType = 0;
    p.hasRequestedIp = false;
    p.hasServerId = false;
    p.paramLen = 0;
    p.hostLen = 0;
    let i = OFF_OPTIONS;
    while (i < b.length) {
      const code = b[i];
      if (code === O_PAD) {
        i++;
        continue;
      }
      if (code === O_END) break;
      if (i + 1 >= b.length) return 'bad_options';
      const len = b[i + 1];
      const d = i + 2;
      if (d + len > b.length) return 'bad_options';
      switch (code) {
        case O_MSG_TYPE:
          if (len !== 1) return 'bad_options';
          p.msgType = b[d];
          break;
        case O_REQUESTED_IP:
          if (len !== 4) return 'bad_options';
          p.requestedIp = be32(b, d);
          p.hasRequestedIp = true;
          break;
        case O_SERVER_ID:
          if (len !== 4) return 'bad_options';
          p.serverId = be32(b, d);
          p.hasServerId = true;
          break;
        case O_PARAM_LIST:
          p.paramOff = d;
          p.paramLen = len;
          break;
        case O_HOSTNAME:
          p.hostOff = d;
          p.hostLen = len;
          break;
      }
      i = d + len;
    }
    // Some clients omit END and stop at the datagram's end; accept that, but
    // a message type is the one thing we cannot guess.
    if (p.msgType === 0) return 'no_msg_type';
    return null;
  }

  // ---- message handlers -----------------------------------------------------

  private onDiscover(b: Uint8Array, c: Client, now: number, reserved?: number): DhcpReply | null {
    if (!this.roomFor(c, now)) {
      this.count('perVmRefused');
      this.log.limited('dhcp-per-vm', 'warn', 'dhcp: attachment holds its maximum of leases, no offer', { vm: c.vm, mac: c.mac, max: this.maxPerVm });
      return null;
    }
    const ip = this.choose(c, now, reserved, this.p.hasRequestedIp ? this.p.requestedIp : 0);
    if (ip === 0) {
      this.count('pool_exhausted');
      this.log.warn('dhcp: address pool exhausted, no offer', { mac: c.mac, pool: `${formatIPv4(this.poolStart)}-${formatIPv4(this.poolEnd)}` });
      return null;
    }
    const l = this.bind(c, ip, now, false);
    if (!l.static && !l.bound) l.expiresAt = now + this.offerHoldMs;
    this.count('offer');
    return this.reply(b, OFFER, ip, true);
  }

  private onRequest(b: Uint8Array, c: Client, now: number, reserved?: number): DhcpReply | null {
    const p = this.p;
    const ciaddr = be32(b, OFF_CIADDR);
    if (p.hasServerId) {
      // SELECTING: the client answers one server's OFFER in a broadcast.
      if (p.serverId !== this.serverIp) {
        const l = this.byMac.get(c.key);
        // It chose someone else; let our offer go now rather than at hold expiry.
        if (l !== undefined && !l.bound && !l.static) this.drop(l);
        this.count('request_other_server');
        return null;
      }
      const want = p.hasRequestedIp ? p.requestedIp : ciaddr;
      const l = this.byMac.get(c.key);
      if (want === 0 || l === undefined || l.ip !== want || !this.allowedFor(c.mac, want, reserved)) {
        return this.nak(b, 'not_offered');
      }
      if (!this.holdable(c, want)) return this.nak(b, 'in_use');
      return this.ack(b, c, want, now);
    }
    // INIT-REBOOT (requested-ip, no ciaddr) or RENEWING/REBINDING (ciaddr).
    const want = p.hasRequestedIp && ciaddr === 0 ? p.requestedIp : ciaddr;
    if (want === 0) return this.nak(b, 'no_address');
    const l = this.byMac.get(c.key);
    if (l !== undefined && l.ip === want && this.allowedFor(c.mac, want, reserved)) {
      if (!this.holdable(c, want)) return this.nak(b, 'in_use');
      return this.ack(b, c, want, now);
    }
    if (l === undefined && this.allowedFor(c.mac, want, reserved) && this.freeFor(c, want, now)) {
      if (this.inPool(want) || this.staticByMac.get(c.mac) === want || (reserved !== undefined && reserved >>> 0 === want)) {
        if (!this.holdable(c, want)) return this.nak(b, 'in_use');
        if (!this.roomFor(c, now)) {
          this.count('perVmRefused');
          return this.nak(b, 'per_vm_limit');
        }
        if (!this.makeRoom(now)) return this.nak(b, 'full');
        return this.ack(b, c, want, now);
      }
    }
    return this.nak(b, 'wrong_address');
  }

  private onDecline(b: Uint8Array, c: Client, now: number): void {
    const p = this.p;
    if (p.hasServerId && p.serverId !== this.serverIp) return;
    const l = this.byMac.get(c.key);
    if (l === undefined || l.static || !p.hasRequestedIp || l.ip !== p.requestedIp) return;
    this.drop(l);
    // Quarantine: another host answers for this address, so hand it to nobody for a while.
    // It counts against the attachment that declined, so declining cannot drain the pool.
    const q: Lease = { key: '', mac: '', ip: l.ip, vm: c.vm, expiresAt: now + DECLINE_QUARANTINE_MS, static: false, bound: false };
    this.byIp.set(q.ip, q);
    this.track(q);
    this.dynamicCount++;
    this.log.limited('dhcp-decline', 'warn', 'dhcp: client declined address (in use on the link?)', { mac: c.mac, ip: formatIPv4(l.ip) });
  }

  private onRelease(b: Uint8Array, c: Client, now: number): void {
    const p = this.p;
    if (p.hasServerId && p.serverId !== this.serverIp) return;
    const l = this.byMac.get(c.key);
    const ciaddr = be32(b, OFF_CIADDR);
    if (l === undefined || l.static || l.ip !== ciaddr) return;
    // Keep the record (expired) so the same client gets the same address back
    // if nobody else has needed it meanwhile.
    l.expiresAt = now;
    l.bound = false;
  }

  private onInform(b: Uint8Array): DhcpReply | null {
    this.count('ack');
    return this.reply(b, ACK, 0, false);
  }

  private ack(b: Uint8Array, c: Client, ip: number, now: number): DhcpReply {
    const l = this.bind(c, ip, now, true);
    const p = this.p;
    if (p.hostLen > 0) l.hostname = hostnameOf(b, p.hostOff, Math.min(p.hostLen, MAX_HOSTNAME));
    this.count('ack');
    return this.reply(b, ACK, ip, true);
  }

  private nak(b: Uint8Array, why: string): DhcpReply {
    this.count('nak');
    this.count(`nak_${why}`);
    return this.reply(b, NAK, 0, false);
  }

  // ---- address management ---------------------------------------------------

  private inSubnet(ip: number): boolean {
    return ((ip & this.mask) >>> 0) === this.network && ip !== this.network && ip !== ((this.network | ~this.mask) >>> 0);
  }

  private inPool(ip: number): boolean {
    return ip >= this.poolStart && ip <= this.poolEnd;
  }

  /** May `mac` hold `ip` at all (ignoring current leases)? */
  private allowedFor(mac: string, ip: number, reserved?: number): boolean {
    if (!this.inSubnet(ip) || this.excluded.has(ip)) return false;
    if (reserved !== undefined) return ip === reserved >>> 0;
    const r = this.reservedByMac.get(mac);
    if (r !== undefined) return ip === r;
    const s = this.staticByMac.get(mac);
    if (s !== undefined) return ip === s;
    if (this.staticIps.has(ip)) return false;
    const owner = this.reservedIps.get(ip);
    return owner === undefined || owner === mac;
  }

  /** The switch's word on `ip` for this client's attachment (always yes without one). */
  private holdable(c: Client, ip: number): boolean {
    return c.vm === undefined || this.mayHold === undefined || this.mayHold(ip, c.vm);
  }

  /**
   * Is `ip` unleased, or leased to this client, or held by an expired record,
   * or reserved for this client's MAC (a vpnkit VM back on a new attachment)?
   */
  private freeFor(c: Client, ip: number, now: number): boolean {
    const l = this.byIp.get(ip);
    return l === undefined || l.key === c.key || (!l.static && (l.expiresAt <= now || this.reservedIps.get(ip) === c.mac));
  }

  /**
   * Room for one more record of this client's attachment: true at once below
   * maxLeasesPerVm (or when the client has its record already, or a static
   * lease); at the bound the attachment's own oldest expired record goes;
   * false while all it holds are live (leases, offers within their hold,
   * quarantined addresses).
   */
  private roomFor(c: Client, now: number): boolean {
    if (c.vm === undefined || this.byMac.has(c.key) || this.staticByMac.has(c.mac)) return true;
    const set = this.byVm.get(c.vm);
    if (set === undefined || set.size < this.maxPerVm) return true;
    let best: Lease | undefined;
    for (const l of set) {
      if (l.expiresAt <= now && (best === undefined || l.expiresAt < best.expiresAt)) best = l;
    }
    if (best === undefined) return false;
    this.drop(best);
    return true;
  }

  /** Pick the address to offer this client; 0 when there is none. */
  private choose(c: Client, now: number, reserved: number | undefined, requested: number): number {
    const mac = c.mac;
    const ok = (ip: number) => this.holdable(c, ip);
    if (reserved !== undefined) return this.allowedFor(mac, reserved >>> 0, reserved) && ok(reserved >>> 0) ? reserved >>> 0 : 0;
    const r = this.reservedByMac.get(mac);
    if (r !== undefined) return ok(r) ? r : 0;
    const s = this.staticByMac.get(mac);
    if (s !== undefined) return ok(s) ? s : 0;
    const mine = this.byMac.get(c.key);
    if (mine !== undefined && ok(mine.ip)) return mine.ip;
    if (!this.makeRoom(now)) return 0;
    if (requested !== 0 && this.inPool(requested) && this.allowedFor(mac, requested) && this.freeFor(c, requested, now) && ok(requested)) return requested;
    // Never-used addresses first, so expired records (and the address their
    // owner would get back) survive as long as possible.
    const size = this.poolEnd - this.poolStart + 1;
    for (let n = 0; n < size; n++) {
      const ip = this.cursor;
      this.cursor = ip >= this.poolEnd ? this.poolStart : ip + 1;
      if (!this.byIp.has(ip) && this.allowedFor(mac, ip) && ok(ip)) return ip;
    }
    const old = this.oldestExpired(now, (l) => this.allowedFor(mac, l.ip) && ok(l.ip));
    return old === undefined ? 0 : old.ip;
  }

  /** Ensure one more dynamic record fits under maxLeases; evicts the oldest expired one if needed. */
  private makeRoom(now: number): boolean {
    if (this.dynamicCount < this.maxLeases) return true;
    const old = this.oldestExpired(now, () => true);
    if (old === undefined) return false;
    this.drop(old);
    return true;
  }

  private oldestExpired(now: number, ok: (l: Lease) => boolean): Lease | undefined {
    let best: Lease | undefined;
    for (const l of this.byIp.values()) {
      if (l.static || l.expiresAt > now || !ok(l)) continue;
      if (best === undefined || l.expiresAt < best.expiresAt) best = l;
    }
    return best;
  }

  private bind(c: Client, ip: number, now: number, bound: boolean): Lease {
    let l = this.byMac.get(c.key);
    if (l !== undefined && l.ip !== ip) {
      this.drop(l);
      l = undefined;
    }
    const other = this.byIp.get(ip);
    if (other !== undefined && other !== l) this.drop(other);
    const isStatic = this.staticByMac.get(c.mac) === ip;
    if (l === undefined) {
      l = { key: c.key, mac: c.mac, ip, vm: c.vm, expiresAt: now, static: isStatic, bound: false };
      this.byMac.set(c.key, l);
      this.byIp.set(ip, l);
      if (!isStatic) {
        this.dynamicCount++;
        this.track(l);
      }
    }
    if (bound) {
      l.bound = true;
      l.expiresAt = now + this.leaseMs;
    }
    return l;
  }

  /** Count a dynamic record against its attachment. */
  private track(l: Lease): void {
    if (l.vm === undefined) return;
    let set = this.byVm.get(l.vm);
    if (set === undefined) {
      set = new Set();
      this.byVm.set(l.vm, set);
    }
    set.add(l);
  }

  private drop(l: Lease): void {
    if (l.key !== '' && this.byMac.get(l.key) === l) this.byMac.delete(l.key);
    if (this.byIp.get(l.ip) === l) {
      this.byIp.delete(l.ip);
      if (!l.static) this.dynamicCount--;
    }
    if (l.vm !== undefined) {
      const set = this.byVm.get(l.vm);
      if (set !== undefined) {
        set.delete(l);
        if (set.size === 0) this.byVm.delete(l.vm);
      }
    }
  }

  // ---- reply building -------------------------------------------------------

  private reply(req: Uint8Array, type: number, yiaddr: number, withLease: boolean): DhcpReply {
    const opts: Uint8Array[] = [Uint8Array.of(O_MSG_TYPE, 1, type), this.serverIdOption];
    if (type === NAK) {
      opts.push(encodeOption(O_MESSAGE, Array.from('address not available', (c) => c.charCodeAt(0))));
    } else {
      if (withLease) opts.push(this.leaseOptions);
      const used = new Set<number>();
      const p = this.p;
      // Requested parameters first, in the client's order (RFC 2131 §4.3.1).
      for (let k = 0; k < p.paramLen; k++) {
        const code = req[p.paramOff + k];
        const o = this.cfgOptions.get(code);
        if (o === undefined || used.has(code)) continue;
        used.add(code);
        opts.push(o);
      }
      // Then the rest of our configuration (clients ignore what they did not ask for);
      // the broadcast address only on request, it is derivable from the mask.
      for (const [code, o] of this.cfgOptions) {
        if (used.has(code) || code === O_BROADCAST) continue;
        opts.push(o);
      }
    }
    let optLen = 1; // END
    for (const o of opts) optLen += o.length;
    const out = new Uint8Array(Math.max(BOOTP_MIN, OFF_OPTIONS + optLen));
    out[OFF_OP] = 2;
    out[OFF_HTYPE] = req[OFF_HTYPE];
    out[OFF_HLEN] = req[OFF_HLEN];
    out.set(req.subarray(OFF_XID, OFF_XID + 4), OFF_XID);
    out.set(req.subarray(OFF_FLAGS, OFF_FLAGS + 2), OFF_FLAGS);
    const ciaddr = be32(req, OFF_CIADDR);
    const giaddr = be32(req, OFF_GIADDR);
    // RFC 2131 table 3: ciaddr is echoed in ACK (renewal/INFORM) only.
    if (type === ACK) putBe32(out, OFF_CIADDR, ciaddr);
    putBe32(out, OFF_YIADDR, yiaddr);
    putBe32(out, OFF_GIADDR, giaddr);
    out.set(req.subarray(OFF_CHADDR, OFF_CHADDR + 16), OFF_CHADDR);
    putBe32(out, OFF_COOKIE, MAGIC_COOKIE);
    let o = OFF_OPTIONS;
    for (const x of opts) {
      out.set(x, o);
      o += x.length;
    }
    out[o] = O_END;

    // Destination per RFC 2131 §4.1 (no relays exist on a virtual link, so
    // giaddr only matters by being echoed).
    const flags = (req[OFF_FLAGS] << 8) | req[OFF_FLAGS + 1];
    let broadcast: boolean;
    let dest: number;
    if (type === NAK) {
      broadcast = true;
    } else if (ciaddr !== 0) {
      broadcast = false;
    } else {
      broadcast = (flags & FLAG_BROADCAST) !== 0 || yiaddr === 0;
    }
    if (broadcast) dest = 0xffffffff;
    else dest = ciaddr !== 0 ? ciaddr : yiaddr;
    return { reply: out, broadcast, yiaddr, dest };
  }

  private count(k: string): void {
    this.counters[k] = (this.counters[k] ?? 0) + 1;
  }
}

function normMac(mac: string): string | null {
  try {
    return formatMac(parseMac(mac));
  } catch {
    return null;
  }
}

function hostnameOf(b: Uint8Array, off: number, len: number): string {
  let s = '';
  for (let k = 0; k < len; k++) {
    const c = b[off + k];
    // Printable ASCII only: this string ends up in logs and API JSON.
    if (c >= 0x21 && c <= 0x7e) s += String.fromCharCode(c);
  }
  return s;
}

function be32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

function putBe32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}
