/**
 * The soak's hostile guest (bench/e2e/soak.ts): a fake VM on the engine's qemu socket whose
 * frames are written here, cycling through the attacks of issue 23, one per interval. It
 * addresses only the gateway (192.168.65.1), the host alias (192.168.65.2, whose servers
 * the soak starts on 127.0.0.1), the well-behaved guests' addresses it impersonates, and
 * TEST-NET-2 (198.51.100.0/24) for the echo flood, which the soak's engine answers with a
 * fake pinger (nothing is sent off the machine).
 *
 * Every attack is bounded: a count (scaled by --soak-scale), a send rate, the interval's
 * deadline, and the link's write queue (sending waits while 4 MiB are queued). Its TCP
 * flows are reset when its interval ends; the link itself is closed and reopened after each
 * full cycle, so what the engine keeps per VM must also go at disconnect.
 *
 * The frame builders are pure (test/bench-e2e-soak.test.ts checks them).
 */
import dnsPacket from 'dns-packet';
import { StreamVmPeer } from '../../test/support/vm-peer.js';
import { arpFrame, echoFrame, ipv4Frame, udpFrame } from '../../test/support/frames.js';
import { buildFrame, parseFrame, ACK, RST, SYN, type ParsedSegment } from '../../test/support/tcp-peer.js';
import { IP_PROTO_UDP } from '../../src/wire/ipv4.js';
import { parseIPv4 } from '../../src/wire/addr.js';

export const GW_IP = parseIPv4('192.168.65.1');
export const HOST_ALIAS = parseIPv4('192.168.65.2');
/** The engine's default gateway MAC (every virtual service address answers with it). */
export const GW_MAC = new Uint8Array([0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6]);
export const BCAST_MAC = new Uint8Array(6).fill(0xff);
export const HOSTILE_IP = parseIPv4('192.168.65.66');
export const HOSTILE_MAC = new Uint8Array([0x52, 0x54, 0x00, 0x66, 0x66, 0x66]);
const TEST_NET_2 = parseIPv4('198.51.100.0');
const ARP_REQUEST = 1;
const ARP_REPLY = 2;

export type AttackName =
  | 'dns-tcp-zero-window' | 'zero-window-flows' | 'syn-flood' | 'takeover' | 'dhcp-exhaustion'
  | 'udp-binding-flood' | 'fragment-flood' | 'echo-flood' | 'dns-regexp';

/** The cycle, in order. */
export const ATTACKS: readonly AttackName[] = [
  'dns-tcp-zero-window', 'zero-window-flows', 'syn-flood', 'takeover', 'dhcp-exhaustion',
  'udp-binding-flood', 'fragment-flood', 'echo-flood', 'dns-regexp',
];

/** Counts at --soak-scale 1 and send rates (per second); each attack also stops at its interval's end. */
export const ATTACK_COUNTS = {
  dnsTcpFlows: 4,
  dnsTcpBytes: 16 << 20,
  zeroWindowFlows: 1000,
  synFlood: 17_000,
  dhcpMacs: 300,
  udpBindings: 5000,
  fragments: 5000,
  echoes: 5000,
  takeoverPerS: 20,
} as const;
const RATE = { syn: 1500, flows: 500, dhcp: 100, udp: 1000, frag: 1000, echo: 1000 } as const;

/** Attack `i` of the run (0-based, the baseline excluded): the cycle repeats. */
export function attackAt(i: number): AttackName {
  return ATTACKS[((i % ATTACKS.length) + ATTACKS.length) % ATTACKS.length];
}

/** A count at a scale, at least 1. */
export function scaled(n: number, scale: number): number {
  return Math.max(1, Math.round(n * scale));
}

// ---- frame builders ------------------------------------------------------------------------

/** A locally administered MAC made up from `i` (02:5a:xx:xx:xx:xx), never one of the bench's 52:54:00 guests. */
export function madeUpMac(i: number): Uint8Array {
  return new Uint8Array([0x02, 0x5a, (i >>> 24) & 255, (i >>> 16) & 255, (i >>> 8) & 255, i & 255]);
}

/** 198.51.100.1 .. .254 (TEST-NET-2, RFC 5737: never routed). */
export function testNetIp(i: number): number {
  return (TEST_NET_2 + 1 + (((i % 254) + 254) % 254)) >>> 0;
}

/** A BOOTP/DHCP client message (RFC 2131): DISCOVER (1) or REQUEST (3) for `requested` from `server`. */
export function dhcpMessage(chaddr: Uint8Array, xid: number, type: 1 | 3, requested?: number, server?: number): Uint8Array {
  const opts: number[] = [53, 1, type];
  const ip = (code: number, v: number) => opts.push(code, 4, v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
  if (requested !== undefined) ip(50, requested);
  if (server !== undefined) ip(54, server);
  opts.push(55, 3, 1, 3, 6, 255);
  const m = new Uint8Array(240 + opts.length);
  const dv = new DataView(m.buffer);
  m[0] = 1; // BOOTREQUEST
  m[1] = 1; // Ethernet
  m[2] = 6;
  dv.setUint32(4, xid >>> 0);
  dv.setUint16(10, 0x8000); // broadcast reply: the made-up MAC has no port to learn
  m.set(chaddr, 28);
  dv.setUint32(236, 0x63825363);
  m.set(opts, 240);
  return m;
}

/** The DHCP client frame: from 0.0.0.0:68 to 255.255.255.255:67, Ethernet source `srcMac`. */
export function dhcpFrame(srcMac: Uint8Array, msg: Uint8Array): Uint8Array {
  return udpFrame(68, 67, msg, { src: 0, dst: 0xffffffff, srcMac, dstMac: BCAST_MAC, dontFrag: false });
}

export interface DhcpReplyInfo { xid: number; type: number; yiaddr: number; server?: number }

/** A DHCP reply (UDP to port 68 from 67) in an Ethernet frame, or null. */
export function parseDhcpReply(f: Uint8Array): DhcpReplyInfo | null {
  if (f.length < 14 + 20 + 8 + 240 || f[12] !== 0x08 || f[13] !== 0 || f[23] !== IP_PROTO_UDP) return null;
  const l4 = 14 + (f[14] & 0x0f) * 4;
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  if (dv.getUint16(l4) !== 67 || dv.getUint16(l4 + 2) !== 68) return null;
  const m = l4 + 8;
  if (f.length < m + 240 || f[m] !== 2 || dv.getUint32(m + 236) !== 0x63825363) return null;
  const out: DhcpReplyInfo = { xid: dv.getUint32(m + 4), type: 0, yiaddr: dv.getUint32(m + 16) };
  for (let i = m + 240; i + 1 < f.length && f[i] !== 255;) {
    if (f[i] === 0) { i++; continue; }
    const code = f[i], len = f[i + 1];
    if (i + 2 + len > f.length) break;
    if (code === 53 && len === 1) out.type = f[i + 2];
    if (code === 54 && len === 4) out.server = dv.getUint32(i + 2);
    i += 2 + len;
  }
  return out;
}

/** `n` DNS queries for `name`, each with its 2-byte length (RFC 7766 framing), ids from `firstId`. */
export function dnsTcpQueries(n: number, name: string, firstId = 1): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const q = dnsPacket.encode({ type: 'query', id: (firstId + i) & 0xffff, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
    const len = Buffer.alloc(2);
    len.writeUInt16BE(q.length);
    parts.push(len, q);
  }
  return Buffer.concat(parts);
}

/**
 * A name that sends a backtracking matcher of `^([a-z0-9]+-?)+$` into exponential time: `len`
 * letters then '_', which fails the pattern only at the end. ('_' because a name with a byte
 * outside letters, digits, '-', '_' and '*' is never looked up in the zones.)
 */
export function regexpAttackName(len: number, zone: string): string {
  return `${'a'.repeat(Math.max(1, Math.min(len, 62)))}_.${zone}`;
}

/** One DNS query over UDP from the hostile VM to the gateway. */
export function dnsUdpFrame(name: string, id: number, srcPort: number): Uint8Array {
  const q = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
  return udpFrame(srcPort, 53, q, { src: HOSTILE_IP, dst: GW_IP, srcMac: HOSTILE_MAC, dstMac: GW_MAC });
}

/** A first fragment (offset 0, more fragments) of a UDP datagram to the host alias that never completes. */
export function firstFragment(ident: number, dstPort: number): Uint8Array {
  return ipv4Frame(IP_PROTO_UDP, 64, (b, off) => {
    const dv = new DataView(b.buffer, b.byteOffset);
    dv.setUint16(off, 40000);
    dv.setUint16(off + 2, dstPort);
    dv.setUint16(off + 4, 8 + 1400); // the whole datagram's length, most of it never sent
    b.fill(0x5a, off + 8, off + 64);
  }, { src: HOSTILE_IP, dst: HOST_ALIAS, srcMac: HOSTILE_MAC, dstMac: GW_MAC, ident: ident & 0xffff, dontFrag: false, moreFrags: true, fragOffset: 0 });
}

/** The takeover set for one victim: its source IP and MAC on a UDP frame, ARP for its address, and gateway/host-alias claims. */
export function takeoverFrames(victimIp: number, victimMac: Uint8Array, udpPort: number, seq: number): Uint8Array[] {
  const payload = new Uint8Array(32).fill(seq & 255);
  return [
    // a datagram with the victim's source IP and MAC: on an engine that learns addresses from any frame, the victim's replies come here
    udpFrame(30000 + (seq % 1000), udpPort, payload, { src: victimIp, dst: HOST_ALIAS, srcMac: victimMac, dstMac: GW_MAC }),
    // the victim's IP with the attacker's MAC
    udpFrame(30000 + (seq % 1000), udpPort, payload, { src: victimIp, dst: HOST_ALIAS, srcMac: HOSTILE_MAC, dstMac: GW_MAC }),
    // "192.168.65.1 is-at attacker" and "192.168.65.2 is-at attacker", broadcast (gratuitous)
    arpFrame(ARP_REPLY, GW_IP, GW_IP, { senderMac: HOSTILE_MAC, srcMac: HOSTILE_MAC, targetMac: BCAST_MAC }),
    arpFrame(ARP_REPLY, HOST_ALIAS, HOST_ALIAS, { senderMac: HOSTILE_MAC, srcMac: HOSTILE_MAC, targetMac: BCAST_MAC }),
    // "victim is-at attacker"
    arpFrame(ARP_REPLY, victimIp, victimIp, { senderMac: HOSTILE_MAC, srcMac: HOSTILE_MAC, targetMac: BCAST_MAC }),
    // a broadcast carrying the gateway's MAC as its source
    udpFrame(5355, 5355, payload, { src: GW_IP, dst: 0xffffffff, srcMac: GW_MAC, dstMac: BCAST_MAC }),
  ];
}

/** A TCP segment from the hostile VM (no options but MSS on a SYN, so the engine does not scale its window). */
export function hostileTcp(dstIp: number, srcPort: number, dstPort: number, seq: number, ack: number, flags: number, window: number, payload?: Uint8Array): Uint8Array {
  return buildFrame({
    srcIp: HOSTILE_IP, dstIp, srcPort, dstPort, seq, ack, flags, window, payload,
    mss: flags & SYN ? 1460 : undefined, srcMac: HOSTILE_MAC, dstMac: GW_MAC,
  });
}

// ---- the VM ------------------------------------------------------------------------------------

interface Flow {
  dstIp: number; dstPort: number; iss: number; sndNxt: number; sndUna: number;
  irs?: number; peerWnd: number;
  /** What the flow answers the engine with: nothing (half-open) or a zero-window ACK. */
  mode: 'half-open' | 'zero-window';
}

export interface HostileCounters {
  txFrames: number; rxFrames: number;
  /** Frames that reached the hostile VM addressed to another VM's IP: a takeover that worked. */
  stolenFrames: number;
  synAcks: number; dataSegmentsIn: number;
  dhcpOffers: number; dhcpAcks: number;
  dnsAnswers: number;
  /** dns-regexp queries answered, the slowest answer (ms), and those not answered within 10 s (or by the interval's end). */
  regexpAnswered: number; regexpSlowestMs: number; regexpUnanswered: number;
}

const newCounters = (): HostileCounters => ({
  txFrames: 0, rxFrames: 0, stolenFrames: 0, synAcks: 0, dataSegmentsIn: 0, dhcpOffers: 0, dhcpAcks: 0, dnsAnswers: 0,
  regexpAnswered: 0, regexpSlowestMs: 0, regexpUnanswered: 0,
});

export interface HostileEnv {
  sock: string;
  /** Host-alias ports of the soak's servers (127.0.0.1 on the host). */
  ports: { udp: number; big: number; syn: number };
  /** The well-behaved guest it impersonates. */
  victim: { ip: number; mac: Uint8Array };
  /** Other VMs' addresses: a frame to one of them that reaches the hostile VM is counted as stolen. */
  others: number[];
  /** The regexp zone the engine was configured with (or would have been). */
  regexpZone: string;
  scale: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class HostileVm {
  counters = newCounters();
  private peer?: StreamVmPeer;
  private flows = new Map<number, Flow>();
  private nextPort = 20000;
  private dhcpWait = new Map<number, (r: DhcpReplyInfo) => void>();
  private dnsWait = new Map<number, () => void>();

  constructor(private readonly env: HostileEnv) {}

  get connected(): boolean {
    return this.peer !== undefined && !this.peer.closed;
  }

  async connect(): Promise<void> {
    this.peer = await StreamVmPeer.connect({ path: this.env.sock }, 'qemu');
    const peer = this.peer;
    // StreamVmPeer collects frames in an array; take them as they come so nothing accumulates.
    peer.socket.on('data', () => { for (const f of peer.frames.splice(0)) this.onFrame(f); });
    // Claim the address (a static guest's first frame).
    this.send(arpFrame(ARP_REQUEST, HOSTILE_IP, GW_IP, { senderMac: HOSTILE_MAC, srcMac: HOSTILE_MAC }));
  }

  disconnect(): void {
    this.peer?.close();
    this.peer = undefined;
    this.flows.clear();
  }

  /** Take and reset the counters (one row's worth). */
  takeCounters(): HostileCounters {
    const c = this.counters;
    this.counters = newCounters();
    return c;
  }

  private send(...frames: Uint8Array[]): void {
    if (!this.connected || frames.length === 0) return;
    this.peer!.send(...frames);
    this.counters.txFrames += frames.length;
  }

  /** Waits while the link's write queue holds more than 4 MiB (the engine is not reading): sending never piles up here. */
  private async room(deadline: number): Promise<boolean> {
    while (this.connected && this.peer!.socket.writableLength > 4 << 20) {
      if (Date.now() >= deadline) return false;
      await sleep(10);
    }
    return this.connected && Date.now() < deadline;
  }

  /** `count` frames from make(i), at most `perS` a second, until `deadline`. Returns how many went. */
  private async paced(count: number, perS: number, deadline: number, make: (i: number) => Uint8Array | Uint8Array[]): Promise<number> {
    const tick = 10;
    const perTick = Math.max(1, Math.round((perS * tick) / 1000));
    let i = 0;
    while (i < count && (await this.room(deadline))) {
      const batch: Uint8Array[] = [];
      for (const end = Math.min(count, i + perTick); i < end; i++) {
        const f = make(i);
        if (Array.isArray(f)) batch.push(...f);
        else batch.push(f);
      }
      this.send(...batch);
      await sleep(tick);
    }
    return i;
  }

  private port(): number {
    const p = this.nextPort;
    this.nextPort = p >= 59999 ? 20000 : p + 1;
    return p;
  }

  /** A new flow's SYN (sent by the caller) and its source port. */
  private openFlow(dstIp: number, dstPort: number, mode: Flow['mode'], window: number): { port: number; syn: Uint8Array } {
    const port = this.port();
    const iss = (Math.random() * 0xffffffff) >>> 0;
    this.flows.set(port, { dstIp, dstPort, iss, sndNxt: (iss + 1) >>> 0, sndUna: iss, peerWnd: 0, mode });
    return { port, syn: hostileTcp(dstIp, port, dstPort, iss, 0, SYN, window) };
  }

  /** RST every flow (bounded by the flow count) and forget them. */
  private resetFlows(): void {
    const rsts: Uint8Array[] = [];
    for (const [port, f] of this.flows) rsts.push(hostileTcp(f.dstIp, port, f.dstPort, f.sndNxt, 0, RST, 0));
    this.flows.clear();
    for (let i = 0; i < rsts.length; i += 256) this.send(...rsts.slice(i, i + 256));
  }

  private onFrame(f: Buffer): void {
    this.counters.rxFrames++;
    if (f.length < 14) return;
    const type = (f[12] << 8) | f[13];
    if (type === 0x0806 && f.length >= 42) {
      const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
      if (dv.getUint16(20) === ARP_REQUEST && dv.getUint32(38) === HOSTILE_IP) {
        this.send(arpFrame(ARP_REPLY, HOSTILE_IP, dv.getUint32(28), { senderMac: HOSTILE_MAC, srcMac: HOSTILE_MAC, targetMac: f.subarray(22, 28), dstMac: f.subarray(22, 28) }));
      }
      return;
    }
    if (type !== 0x0800 || f.length < 34) return;
    const dst = ((f[30] << 24) | (f[31] << 16) | (f[32] << 8) | f[33]) >>> 0;
    if (this.env.others.includes(dst)) this.counters.stolenFrames++;
    const proto = f[23];
    if (proto === 6 && dst === HOSTILE_IP) {
      const seg = parseFrame(f);
      if (typeof seg !== 'string') this.onSegment(seg);
    } else if (proto === IP_PROTO_UDP) {
      const d = parseDhcpReply(f);
      if (d !== null) {
        this.dhcpWait.get(d.xid)?.(d);
        return;
      }
      const l4 = 14 + (f[14] & 0x0f) * 4;
      if (dst === HOSTILE_IP && f.length >= l4 + 10 && ((f[l4] << 8) | f[l4 + 1]) === 53) {
        this.counters.dnsAnswers++;
        this.dnsWait.get((f[l4 + 8] << 8) | f[l4 + 9])?.();
      }
    }
  }

  private onSegment(s: ParsedSegment): void {
    const fl = this.flows.get(s.dstPort);
    if (fl === undefined) return;
    if (s.flags & RST) {
      this.flows.delete(s.dstPort);
      return;
    }
    if (s.payload.length > 0) this.counters.dataSegmentsIn++;
    if ((s.flags & SYN) && (s.flags & ACK)) {
      this.counters.synAcks++;
      if (fl.mode === 'half-open') return;
      fl.irs = s.seq;
    }
    if (fl.irs === undefined) return;
    if (s.flags & ACK && ((s.ack - fl.sndUna) | 0) > 0) fl.sndUna = s.ack;
    fl.peerWnd = s.window;
    // A SYN-ACK, data or a window probe (anything but a plain ACK at the expected sequence)
    // gets the same answer: nothing taken, window 0.
    if (!(s.flags & SYN) && s.payload.length === 0 && s.seq === ((fl.irs + 1) >>> 0)) return;
    this.send(hostileTcp(fl.dstIp, s.dstPort, fl.dstPort, fl.sndNxt, (fl.irs + 1) >>> 0, ACK, 0));
  }

  /** Runs attack `name` until `deadline`; its flows are reset at the end. */
  async attack(name: AttackName, deadline: number): Promise<void> {
    const { scale, ports, victim } = this.env;
    try {
      switch (name) {
        case 'dns-tcp-zero-window': return await this.dnsTcpZeroWindow(deadline);
        case 'zero-window-flows':
          await this.paced(scaled(ATTACK_COUNTS.zeroWindowFlows, scale), RATE.flows, deadline, () => this.openFlow(HOST_ALIAS, ports.big, 'zero-window', 1024).syn);
          return await this.hold(deadline);
        case 'syn-flood':
          await this.paced(scaled(ATTACK_COUNTS.synFlood, scale), RATE.syn, deadline, () => this.openFlow(HOST_ALIAS, ports.syn, 'half-open', 65535).syn);
          return await this.hold(deadline);
        case 'takeover': {
          const perS = ATTACK_COUNTS.takeoverPerS;
          const n = Math.ceil(((deadline - Date.now()) / 1000) * perS);
          await this.paced(n, perS, deadline, (i) => takeoverFrames(victim.ip, victim.mac, ports.udp, i));
          return;
        }
        case 'dhcp-exhaustion': return await this.dhcpExhaustion(deadline);
        case 'udp-binding-flood':
          await this.paced(scaled(ATTACK_COUNTS.udpBindings, scale), RATE.udp, deadline, (i) =>
            udpFrame(10000 + (i % 50000), ports.udp, new Uint8Array(16), { src: HOSTILE_IP, dst: HOST_ALIAS, srcMac: HOSTILE_MAC, dstMac: GW_MAC }));
          return;
        case 'fragment-flood':
          await this.paced(scaled(ATTACK_COUNTS.fragments, scale), RATE.frag, deadline, (i) => firstFragment(i, ports.udp));
          return;
        case 'echo-flood':
          await this.paced(scaled(ATTACK_COUNTS.echoes, scale), RATE.echo, deadline, (i) =>
            echoFrame(0x5a5a, i & 0xffff, new Uint8Array(56), { src: HOSTILE_IP, dst: testNetIp(i), srcMac: HOSTILE_MAC, dstMac: GW_MAC }));
          return;
        case 'dns-regexp': return await this.dnsRegexp(deadline);
      }
    } finally {
      this.resetFlows();
      this.dhcpWait.clear();
      this.dnsWait.clear();
    }
  }

  private async hold(deadline: number): Promise<void> {
    while (this.connected && Date.now() < deadline) await sleep(100);
  }

  /** Streams queries on DNS-over-TCP sessions to the gateway while advertising window 0: the answers can never leave. */
  private async dnsTcpZeroWindow(deadline: number): Promise<void> {
    const flows = scaled(ATTACK_COUNTS.dnsTcpFlows, this.env.scale);
    let budget = scaled(ATTACK_COUNTS.dnsTcpBytes, this.env.scale);
    const stream = dnsTcpQueries(512, 'host.docker.internal');
    const ports: number[] = [];
    for (let i = 0; i < flows; i++) {
      const { port, syn } = this.openFlow(GW_IP, 53, 'zero-window', 65535);
      this.send(syn);
      ports.push(port);
    }
    let at = 0;
    while (budget > 0 && (await this.room(deadline))) {
      const batch: Uint8Array[] = [];
      for (const p of ports) {
        const f = this.flows.get(p);
        if (f?.irs === undefined) continue;
        // Send only into the window the engine offers: when it stops taking bytes, this stops too.
        const inFlight = (f.sndNxt - f.sndUna) | 0;
        for (let room = Math.min(f.peerWnd, 256 << 10) - inFlight; room >= 1400 && budget > 0; room -= 1400) {
          const n = Math.min(1400, budget);
          const chunk = Buffer.alloc(n);
          for (let k = 0; k < n; k++) chunk[k] = stream[(at + k) % stream.length];
          at = (at + n) % stream.length;
          batch.push(hostileTcp(GW_IP, p, 53, f.sndNxt, (f.irs + 1) >>> 0, ACK, 0, chunk));
          f.sndNxt = (f.sndNxt + n) >>> 0;
          budget -= n;
        }
      }
      this.send(...batch);
      await sleep(10);
    }
    await this.hold(deadline);
  }

  /** DISCOVERs from made-up client MACs, each OFFER taken with a REQUEST. */
  private async dhcpExhaustion(deadline: number): Promise<void> {
    const n = scaled(ATTACK_COUNTS.dhcpMacs, this.env.scale);
    const base = (Math.random() * 0x7fffffff) >>> 0;
    await this.paced(n, RATE.dhcp, deadline, (i) => {
      const mac = madeUpMac(base + i);
      const xid = (base + i) >>> 0;
      // Half with the made-up MAC on the frame as well, half only inside the message.
      const src = i % 2 === 0 ? mac : HOSTILE_MAC;
      this.dhcpWait.set(xid, (r) => {
        if (r.type === 2) {
          this.counters.dhcpOffers++;
          this.send(dhcpFrame(src, dhcpMessage(mac, xid, 3, r.yiaddr, r.server)));
        } else if (r.type === 5) {
          this.counters.dhcpAcks++;
          this.dhcpWait.delete(xid);
        }
      });
      return dhcpFrame(src, dhcpMessage(mac, xid, 1));
    });
    await this.hold(Math.min(deadline, Date.now() + 3000));
  }

  /** Names under the regexp zone that make a backtracking matcher explode, one every 5 s; the answer time is recorded. */
  private async dnsRegexp(deadline: number): Promise<void> {
    for (let i = 0; Date.now() + 1000 < deadline && i < 1000; i++) {
      const id = 0x7000 + i;
      const t0 = Date.now();
      const answered = new Promise<boolean>((res) => {
        const t = setTimeout(() => res(false), Math.max(0, Math.min(10_000, deadline - t0)));
        this.dnsWait.set(id, () => { clearTimeout(t); res(true); });
      });
      this.send(dnsUdpFrame(regexpAttackName(30, this.env.regexpZone), id, 40000 + (i % 1000)));
      const ok = await answered;
      this.dnsWait.delete(id);
      if (ok) {
        this.counters.regexpAnswered++;
        this.counters.regexpSlowestMs = Math.max(this.counters.regexpSlowestMs, Date.now() - t0);
      } else this.counters.regexpUnanswered++;
      await sleep(Math.max(0, Math.min(5000 - (Date.now() - t0), deadline - Date.now())));
    }
  }
}

/**
 * A well-behaved VM's DHCP check: a fresh link, one DISCOVER from `mac`, true when an OFFER
 * comes back within `ms`. The soak runs it every interval, so DHCP exhaustion shows as false.
 */
export async function dhcpProbe(sock: string, mac: Uint8Array, ms = 3000): Promise<boolean> {
  const peer = await StreamVmPeer.connect({ path: sock }, 'qemu');
  try {
    const xid = (Math.random() * 0xffffffff) >>> 0;
    peer.send(dhcpFrame(mac, dhcpMessage(mac, xid, 1)));
    for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) {
      for (const f of peer.frames.splice(0)) {
        const r = parseDhcpReply(f);
        if (r !== null && r.xid === xid && r.type === 2) return true;
      }
      if (peer.closed) return false;
    }
    return false;
  } finally {
    peer.close();
  }
}
