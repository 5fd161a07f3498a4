/**
 * Frame builders for tests (any module's tests may import them): well-formed
 * Ethernet frames with every checksum right, built through the src/wire
 * emitters, plus fast-check arbitraries over them and a harness that runs
 * classify() on a backend and returns the descriptors as bytes.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { emitEthernet, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from '../../src/wire/ethernet.js';
import { emitArp, ARP_LEN } from '../../src/wire/arp.js';
import { emitIpv4, ipv4HeaderLen, IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, type Ipv4Repr } from '../../src/wire/ipv4.js';
import { emitUdp, UDP_HEADER_LEN } from '../../src/wire/udp.js';
import { emitTcp, tcpHeaderLen, type TcpRepr } from '../../src/wire/tcp.js';
import { emitIcmp, icmpLen, type IcmpRepr } from '../../src/wire/icmp.js';
import { readPcap } from '../../src/wire/pcap.js';
import { createKernels, type Kernels, type BackendName } from '../../src/kernels/index.js';
import { FRAME_ENTRY_SIZE, DESC_SIZE } from '../../assembly/layout.js';

export const GUEST_MAC = new Uint8Array([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
export const GW_MAC = new Uint8Array([0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd]);
export const GUEST_IP = 0xc0a84103; // 192.168.65.3
export const GW_IP = 0xc0a84101; // 192.168.65.1

export interface L2Options {
  dstMac?: Uint8Array;
  srcMac?: Uint8Array;
  /** 802.1Q TCI: tag the frame. */
  vlan?: number;
  /** Zero bytes after the datagram (Ethernet minimum-size padding, or junk). */
  padding?: number;
}

export interface IpOptions extends L2Options {
  src?: number;
  dst?: number;
  ttl?: number;
  ident?: number;
  dontFrag?: boolean;
  moreFrags?: boolean;
  fragOffset?: number;
  /** Raw IPv4 option bytes (padded to 4 with EOL). */
  ipOptions?: Uint8Array;
}

function l2Len(o: L2Options): number {
  return o.vlan === undefined ? 14 : 18;
}

/** An Ethernet frame carrying `payload` with `ethertype`. */
export function ethFrame(ethertype: number, payload: Uint8Array, o: L2Options = {}): Uint8Array {
  const hl = l2Len(o);
  const f = new Uint8Array(hl + payload.length + (o.padding ?? 0));
  emitEthernet({ dst: o.dstMac ?? GW_MAC, src: o.srcMac ?? GUEST_MAC, ethertype, vlanTci: o.vlan }, f, 0);
  f.set(payload, hl);
  return f;
}

export function arpFrame(op: number, senderIp: number, targetIp: number, o: L2Options & { senderMac?: Uint8Array; targetMac?: Uint8Array } = {}): Uint8Array {
  const body = new Uint8Array(ARP_LEN);
  emitArp({ op, senderMac: o.senderMac ?? GUEST_MAC, senderIp, targetMac: o.targetMac ?? new Uint8Array(6), targetIp }, body, 0);
  return ethFrame(ETHERTYPE_ARP, body, { dstMac: new Uint8Array([255, 255, 255, 255, 255, 255]), ...o });
}

function ipRepr(proto: number, payloadLen: number, o: IpOptions): Ipv4Repr {
  return {
    src: o.src ?? GUEST_IP, dst: o.dst ?? GW_IP, protocol: proto, payloadLen, ttl: o.ttl ?? 64,
    ident: o.ident ?? 0x1234, dontFrag: o.dontFrag ?? true, moreFrags: o.moreFrags, fragOffset: o.fragOffset,
    options: o.ipOptions,
  };
}

/** An IPv4 frame whose L4 bytes are written by `writeL4(buf, off, src, dst)` (which must fill exactly `l4Len`). */
export function ipv4Frame(proto: number, l4Len: number, writeL4: (buf: Uint8Array, off: number, src: number, dst: number) => void, o: IpOptions = {}): Uint8Array {
  const ip = ipRepr(proto, l4Len, o);
  const l2 = l2Len(o);
  const ihl = ipv4HeaderLen(ip);
  const f = new Uint8Array(l2 + ihl + l4Len + (o.padding ?? 0));
  emitEthernet({ dst: o.dstMac ?? GW_MAC, src: o.srcMac ?? GUEST_MAC, ethertype: ETHERTYPE_IPV4, vlanTci: o.vlan }, f, 0);
  emitIpv4(ip, f, l2);
  writeL4(f, l2 + ihl, ip.src, ip.dst);
  return f;
}

export type TcpOptionsIn = Partial<Omit<TcpRepr, 'payload'>> & { payload?: Uint8Array };

export function tcpRepr(t: TcpOptionsIn = {}): TcpRepr {
  return {
    srcPort: t.srcPort ?? 43468, dstPort: t.dstPort ?? 8080, seq: t.seq ?? 0x117a57f0, ack: t.ack ?? 0,
    flags: t.flags ?? 2, window: t.window ?? 64240, urgent: t.urgent, mss: t.mss, wscale: t.wscale,
    sackPermitted: t.sackPermitted ?? false, sackBlocks: t.sackBlocks ?? [], tsVal: t.tsVal, tsEcr: t.tsEcr,
    payload: t.payload ?? new Uint8Array(0),
  };
}

export function tcpFrame(t: TcpOptionsIn = {}, o: IpOptions = {}): Uint8Array {
  const r = tcpRepr(t);
  const len = tcpHeaderLen(r) + r.payload.length;
  return ipv4Frame(IP_PROTO_TCP, len, (b, off, s, d) => { emitTcp(r, b, off, s, d); }, o);
}

export function udpFrame(srcPort: number, dstPort: number, payload: Uint8Array, o: IpOptions & { zeroChecksum?: boolean } = {}): Uint8Array {
  return ipv4Frame(IP_PROTO_UDP, UDP_HEADER_LEN + payload.length, (b, off, s, d) => {
    emitUdp({ srcPort, dstPort, payload }, b, off, s, d);
    if (o.zeroChecksum) b[off + 6] = b[off + 7] = 0;
  }, o);
}

export function icmpFrame(repr: IcmpRepr, o: IpOptions = {}): Uint8Array {
  return ipv4Frame(IP_PROTO_ICMP, icmpLen(repr), (b, off) => { emitIcmp(repr, b, off); }, o);
}

export function echoFrame(ident: number, seq: number, data: Uint8Array, o: IpOptions = {}): Uint8Array {
  return icmpFrame({ kind: 'echoRequest', ident, seq, data }, o);
}

/** A minimal IPv6 frame (the classifier only looks at the ethertype). */
export function ipv6Frame(o: L2Options = {}): Uint8Array {
  const body = new Uint8Array(40);
  body[0] = 0x60;
  body[6] = 59; // no next header
  body[7] = 64;
  return ethFrame(ETHERTYPE_IPV6, body, o);
}

// ---- fixture ---------------------------------------------------------------

export const FIXTURE_PATH = fileURLToPath(new URL('../fixtures/guest.pcap', import.meta.url));

/** The frames of test/fixtures/guest.pcap (see scripts/capture-fixture.sh), in capture order. */
export function fixtureFrames(): Uint8Array[] {
  return readPcap(readFileSync(FIXTURE_PATH)).records.map((r) => new Uint8Array(r.data));
}

// ---- fast-check arbitraries --------------------------------------------------

const arbL2: fc.Arbitrary<L2Options> = fc.record(
  { vlan: fc.integer({ min: 0, max: 0xffff }), padding: fc.integer({ min: 0, max: 24 }) },
  { requiredKeys: [] },
);

const arbIp: fc.Arbitrary<IpOptions> = fc.record(
  {
    src: fc.integer({ min: 0, max: 0xffffffff }),
    dst: fc.integer({ min: 0, max: 0xffffffff }),
    ttl: fc.integer({ min: 0, max: 255 }),
    ident: fc.integer({ min: 0, max: 0xffff }),
    dontFrag: fc.boolean(),
    // Timestamp-ish / router-alert-ish bytes; the classifier carries IPv4 options opaquely.
    ipOptions: fc.uint8Array({ minLength: 1, maxLength: 40 }),
  },
  { requiredKeys: [] },
).chain((ip) => arbL2.map((l2) => ({ ...ip, ...l2 })));

const arbPayload = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max });

export const arbTcpRepr: fc.Arbitrary<TcpRepr> = fc.record({
  srcPort: fc.integer({ min: 0, max: 0xffff }),
  dstPort: fc.integer({ min: 0, max: 0xffff }),
  seq: fc.integer({ min: 0, max: 0xffffffff }),
  ack: fc.integer({ min: 0, max: 0xffffffff }),
  // Any flags the classifier accepts: not zero, no SYN with FIN or RST.
  flags: fc.integer({ min: 1, max: 255 }).filter((f) => !((f & 2) && (f & 5))),
  window: fc.integer({ min: 0, max: 0xffff }),
  urgent: fc.integer({ min: 0, max: 0xffff }),
  mss: fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
  wscale: fc.option(fc.integer({ min: 0, max: 14 }), { nil: undefined }),
  sackPermitted: fc.boolean(),
  sackBlocks: fc.array(fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff })), { maxLength: 4 }),
  tsVal: fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }),
  tsEcr: fc.integer({ min: 0, max: 0xffffffff }),
  payload: arbPayload(1460),
}).map((r) => (r.tsVal === undefined ? { ...r, tsEcr: undefined } : r));

export type FrameCase = { kind: 'tcp' | 'udp' | 'icmp' | 'arp' | 'ipv6' | 'other' | 'fragment'; frame: Uint8Array };

/** A well-formed frame of any kind the classifier distinguishes. */
export const arbValidFrame: fc.Arbitrary<FrameCase> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(arbTcpRepr, arbIp).map(([t, o]) => ({ kind: 'tcp' as const, frame: tcpFrame(t, o) })) },
  {
    weight: 3,
    arbitrary: fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), arbPayload(1472), fc.boolean(), arbIp)
      .map(([s, d, p, z, o]) => ({ kind: 'udp' as const, frame: udpFrame(s, d, p, { ...o, zeroChecksum: z }) })),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), arbPayload(200), fc.boolean(), arbIp)
      .map(([id, seq, data, req, o]) => ({
        kind: 'icmp' as const,
        frame: icmpFrame({ kind: req ? 'echoRequest' : 'echoReply', ident: id, seq, data }, o),
      })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), arbL2)
      .map(([op, s, t, o]) => ({ kind: 'arp' as const, frame: arpFrame(op, s, t, o) })),
  },
  { weight: 1, arbitrary: arbL2.map((o) => ({ kind: 'ipv6' as const, frame: ipv6Frame(o) })) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom(2, 47, 50, 132), arbPayload(64), arbIp)
      .map(([proto, p, o]) => ({ kind: 'other' as const, frame: ipv4Frame(proto, p.length, (b, off) => b.set(p, off), o) })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom(1, 6, 17), arbPayload(64), fc.boolean(), fc.integer({ min: 0, max: 0x1fff }), arbIp)
      .filter(([, , mf, off]) => mf || off !== 0)
      .map(([proto, p, mf, off, o]) => ({
        kind: 'fragment' as const,
        frame: ipv4Frame(proto, p.length, (b, at) => b.set(p, at), { ...o, moreFrags: mf, fragOffset: off * 8 }),
      })),
  },
);

// ---- classify harness ----------------------------------------------------------

export interface ClassifyHarness {
  readonly kernels: Kernels;
  /** Copies `frames` into kernel memory, runs classify once, returns the descriptors (a copy). */
  run(frames: readonly Uint8Array[], opts?: ClassifyRunOptions): Uint8Array;
  /** A fresh flow table (capacity entries, fixed seed) in this backend's memory. */
  newFlowTable(capacity: number, seed?: number): number;
}

export interface ClassifyRunOptions {
  flowTable?: number;
  now?: number;
  flags?: number;
  /** Follow each frame with 64 bytes of this value (to prove nothing past a frame's length is read). */
  tailFill?: number;
}

export const MAX_BATCH = 512;
const FRAME_AREA = 2 * 1024 * 1024;

export function classifyHarness(backend: BackendName, memoryBytes = 16 * 1024 * 1024): ClassifyHarness {
  const kernels = createKernels({ backend, memoryBytes });
  const table = kernels.alloc(MAX_BATCH * FRAME_ENTRY_SIZE, 8);
  const descs = kernels.alloc(MAX_BATCH * DESC_SIZE, 64);
  const area = kernels.alloc(FRAME_AREA, 64);
  return {
    kernels,
    run(frames, opts = {}) {
      if (frames.length > MAX_BATCH) throw new Error('batch too large for the harness');
      let at = area;
      frames.forEach((f, i) => {
        // Frames sit back to back at odd and even addresses alike, like a real ring.
        if (at + f.length + 64 > area + FRAME_AREA) throw new Error('frame area full');
        kernels.u8.set(f, at);
        kernels.dv.setUint32(table + i * FRAME_ENTRY_SIZE, at, true);
        kernels.dv.setUint32(table + i * FRAME_ENTRY_SIZE + 4, f.length, true);
        at += f.length;
        if (opts.tailFill !== undefined) {
          kernels.u8.fill(opts.tailFill, at, at + 64);
          at += 64;
        }
      });
      // Poison descriptors so a field classify forgets to write shows up.
      kernels.u8.fill(0xa5, descs, descs + frames.length * DESC_SIZE);
      const n = kernels.k.classify(table, frames.length, descs, opts.flowTable ?? 0, opts.now ?? 0, opts.flags ?? 0);
      if (n !== frames.length) throw new Error(`classify returned ${n} for ${frames.length} frames`);
      return kernels.u8.slice(descs, descs + frames.length * DESC_SIZE);
    },
    newFlowTable(capacity, seed = 0x5eed) {
      const t = kernels.alloc(kernels.k.flowTableBytes(capacity), 64);
      kernels.k.flowInit(t, capacity, seed);
      return t;
    },
  };
}

/** Field accessors over a descriptor array returned by ClassifyHarness.run. */
export function descView(descs: Uint8Array, i: number) {
  const dv = new DataView(descs.buffer, descs.byteOffset + i * DESC_SIZE, DESC_SIZE);
  return {
    kind: dv.getUint8(0), reason: dv.getUint8(1), proto: dv.getUint8(2), tcpFlags: dv.getUint8(3),
    flowStatus: dv.getUint8(4), optFlags: dv.getUint8(5), wscale: dv.getUint8(6), sackCount: dv.getUint8(7),
    l3Off: dv.getUint16(8, true), l4Off: dv.getUint16(10, true), payloadOff: dv.getUint32(12, true),
    payloadLen: dv.getUint32(16, true), srcIp: dv.getUint32(20, true), dstIp: dv.getUint32(24, true),
    srcPort: dv.getUint16(28, true), dstPort: dv.getUint16(30, true), seq: dv.getUint32(32, true),
    ack: dv.getUint32(36, true), window: dv.getUint16(40, true), mss: dv.getUint16(42, true),
    tsVal: dv.getUint32(44, true), tsEcr: dv.getUint32(48, true), flowId: dv.getInt32(52, true),
    reserved: dv.getUint32(56, true), ethertype: dv.getUint16(60, true), icmpType: dv.getUint8(62),
    icmpCode: dv.getUint8(63),
  };
}

/** A UDP datagram as IPv4 fragments of at most `mtu` bytes, IP id `ident` (what a Linux guest sends for a large datagram). */
export function fragmentUdp(src: Uint8Array, dst: Uint8Array, srcIp: number, srcPort: number, dstIp: number, dstPort: number, payload: Uint8Array,
  o: { ident?: number; mtu?: number } = {}): Uint8Array[] {
  const udp = new Uint8Array(8 + payload.length);
  emitUdp({ srcPort, dstPort, payload }, udp, 0, srcIp, dstIp);
  const per = ((o.mtu ?? 1500) - 20) & ~7;
  const out: Uint8Array[] = [];
  for (let off = 0; off < udp.length; off += per) {
    const n = Math.min(per, udp.length - off);
    const f = new Uint8Array(34 + n);
    let at = emitEthernet({ dst, src, ethertype: ETHERTYPE_IPV4 }, f, 0);
    at += emitIpv4({ src: srcIp, dst: dstIp, protocol: 17, payloadLen: n, ttl: 64, ident: o.ident ?? 0x4242, moreFrags: off + n < udp.length, fragOffset: off }, f, at);
    f.set(udp.subarray(off, off + n), at);
    out.push(f);
  }
  return out;
}
