import { describe, it, expect, beforeAll } from 'vitest';
import fc from 'fast-check';
import {
  DESC_SIZE, KIND_INVALID, KIND_ARP, KIND_ICMP, KIND_UDP, KIND_TCP, KIND_FRAGMENT, KIND_IPV6, KIND_OTHER,
  R_OK, R_SHORT_FRAME, R_SHORT_ARP, R_BAD_ARP, R_SHORT_IPV4, R_BAD_IP_VERSION, R_BAD_IHL, R_BAD_TOTAL_LENGTH,
  R_BAD_IP_CHECKSUM, R_SHORT_L4, R_BAD_TCP_OFFSET, R_BAD_L4_CHECKSUM, R_BAD_UDP_LENGTH, R_BAD_TCP_OPTIONS,
  R_BAD_TCP_FLAGS, R_COUNT,
  FLOW_NONE, FLOW_FOUND, FLOW_NEW, FLOW_FULL, FLOW_MISS, CF_INSERT_TCP_SYN, CF_INSERT_UDP,
  OPT_MSS, OPT_WSCALE, OPT_SACK_PERM, OPT_TS, OPT_SACK,
} from '../assembly/layout.js';
import type { BackendName } from '../src/kernels/index.js';
import { EthernetPacket } from '../src/wire/ethernet.js';
import { Ipv4Packet, parseIpv4, type Ipv4Repr } from '../src/wire/ipv4.js';
import { TcpPacket, parseTcp, type TcpRepr } from '../src/wire/tcp.js';
import { UdpPacket, parseUdp, type UdpRepr } from '../src/wire/udp.js';
import { IcmpPacket, parseIcmp } from '../src/wire/icmp.js';
import { ArpPacket, parseArp, type ArpRepr } from '../src/wire/arp.js';
import {
  classifyHarness, descView, fixtureFrames, arbValidFrame, tcpFrame, udpFrame, echoFrame, arpFrame, ipv4Frame,
  ipv6Frame, GUEST_IP, GW_IP, type ClassifyHarness, type FrameCase,
} from './support/frames.js';

const BACKENDS: BackendName[] = ['wasm-simd', 'wasm', 'js'];
const KIND_OF: Record<FrameCase['kind'], number> = {
  tcp: KIND_TCP, udp: KIND_UDP, icmp: KIND_ICMP, arp: KIND_ARP, ipv6: KIND_IPV6, other: KIND_OTHER, fragment: KIND_FRAGMENT,
};

let h: Record<BackendName, ClassifyHarness>;
beforeAll(() => {
  h = { 'wasm-simd': classifyHarness('wasm-simd'), wasm: classifyHarness('wasm'), js: classifyHarness('js') };
  expect(h.wasm.kernels.build).toBe('test'); // bounds-checked: an out-of-range access traps
});

/** Descriptors from every backend; asserts they are byte-identical and returns them. */
function all(frames: Uint8Array[], opts?: Parameters<ClassifyHarness['run']>[1]): Uint8Array {
  const js = h.js.run(frames, opts);
  for (const b of ['wasm-simd', 'wasm'] as const) {
    const d = h[b].run(frames, opts);
    if (!Buffer.from(d).equals(Buffer.from(js))) {
      for (let i = 0; i < frames.length; i++) {
        expect({ backend: b, frame: Buffer.from(frames[i]).toString('hex'), ...descView(d, i) })
          .toEqual({ backend: b, frame: Buffer.from(frames[i]).toString('hex'), ...descView(js, i) });
      }
    }
  }
  return js;
}

const one = (f: Uint8Array) => descView(all([f]), 0);

/** Where the L3/L4 headers of a frame built by test/support/frames.ts are. */
function offsets(f: Uint8Array) {
  const l3 = f.length >= 14 && f[12] === 0x81 && f[13] === 0 ? 18 : 14;
  const l4 = l3 + (f[l3] & 15) * 4;
  return { l3, l4 };
}

/** A valid frame mangled the way a buggy or hostile guest would: truncated, bytes changed, or lying length fields. */
const arbMangled: fc.Arbitrary<Uint8Array> = fc.tuple(arbValidFrame, fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 4 }))
  .map(([c, a, b, v, how]) => {
    const f = c.frame.slice();
    const { l3, l4 } = offsets(f);
    const set = (at: number, val: number) => { if (at < f.length) f[at] = val; };
    switch (how) {
      case 0: return f.subarray(0, a % (f.length + 1));
      case 1: set(a % f.length, v); set(b % f.length, (v * 7) & 0xff); return f;
      case 2: set(l3, v); return f; // version/IHL
      case 3: set(l3 + 2 + (a & 1), v); return f; // IPv4 total length
      default: {
        // L4 length fields: TCP data offset, UDP length, or a TCP option's length byte
        const which = a % 3;
        if (which === 0) set(l4 + 12, v);
        else if (which === 1) set(l4 + 4 + (b & 1), v);
        else set(l4 + 20 + (b % 40), v);
        return f;
      }
    }
  });

describe('classify: the real guest capture', () => {
  it.each(BACKENDS)('%s: kinds and fields of every fixture frame', (backend) => {
    const frames = fixtureFrames();
    const d = h[backend].run(frames);
    const kinds = frames.map((_, i) => descView(d, i).kind);
    expect(kinds).toEqual([
      KIND_UDP, KIND_IPV6, KIND_IPV6, KIND_ARP, KIND_ARP, KIND_ICMP, KIND_ICMP, KIND_IPV6, KIND_ICMP, KIND_ICMP,
      KIND_IPV6, KIND_IPV6, KIND_UDP, KIND_UDP, KIND_IPV6, KIND_TCP, KIND_TCP,
    ]);
    for (let i = 0; i < frames.length; i++) {
      expect(descView(d, i).reason).toBe(R_OK);
      expect(descView(d, i).flowId).toBe(-1);
      expect(descView(d, i).flowStatus).toBe(FLOW_NONE);
    }
    expect(descView(d, 0)).toMatchObject({ // DHCP DISCOVER
      proto: 17, srcIp: 0, dstIp: 0xffffffff, srcPort: 68, dstPort: 67, l3Off: 14, l4Off: 34, payloadOff: 42, payloadLen: 300, ethertype: 0x0800,
    });
    expect(descView(d, 1)).toMatchObject({ ethertype: 0x86dd, l3Off: 14, proto: 0, srcIp: 0 });
    expect(descView(d, 3)).toMatchObject({ srcIp: GUEST_IP, dstIp: GW_IP, srcPort: 1, ethertype: 0x0806, l3Off: 14 });
    expect(descView(d, 4)).toMatchObject({ srcIp: GW_IP, dstIp: GUEST_IP, srcPort: 2 });
    expect(descView(d, 5)).toMatchObject({ proto: 1, icmpType: 8, icmpCode: 0, srcPort: 0x77, dstPort: 0, payloadOff: 42, payloadLen: 56 });
    expect(descView(d, 8)).toMatchObject({ icmpType: 8, srcPort: 0x77, dstPort: 1 });
    expect(descView(d, 9)).toMatchObject({ icmpType: 0, srcIp: GW_IP, dstIp: GUEST_IP });
    expect(descView(d, 12)).toMatchObject({ srcPort: 0xde29, dstPort: 53, payloadLen: 30 });
    expect(descView(d, 15)).toEqual({
      kind: KIND_TCP, reason: 0, proto: 6, tcpFlags: 2, flowStatus: FLOW_NONE, optFlags: OPT_MSS | OPT_WSCALE | OPT_SACK_PERM | OPT_TS,
      wscale: 5, sackCount: 0, l3Off: 14, l4Off: 34, payloadOff: 74, payloadLen: 0, srcIp: GUEST_IP, dstIp: GW_IP,
      srcPort: 43468, dstPort: 8080, seq: 0x117a57f0, ack: 0, window: 64240, mss: 1460, tsVal: 0xc1939db5, tsEcr: 0,
      flowId: -1, reserved: 0, ethertype: 0x0800, icmpType: 0, icmpCode: 0,
    });
  });

  it('all backends agree on the capture byte for byte', () => {
    all(fixtureFrames());
  });
});

describe('classify: targeted malformations', () => {
  const syn = () => tcpFrame({ mss: 1460, sackPermitted: true, tsVal: 1, tsEcr: 0, wscale: 7 });
  const cases: Array<[string, () => Uint8Array, number]> = [
    ['13-byte frame', () => new Uint8Array(13), R_SHORT_FRAME],
    ['VLAN tag cut short', () => syn().subarray(0, 17).map((x, i) => (i === 12 ? 0x81 : i === 13 ? 0 : x)), R_SHORT_FRAME],
    ['ARP cut to 27 bytes', () => arpFrame(1, GUEST_IP, GW_IP).subarray(0, 14 + 27), R_SHORT_ARP],
    ['ARP for IPv6 protocol', () => { const f = arpFrame(1, GUEST_IP, GW_IP); f[16] = 0x86; f[17] = 0xdd; return f; }, R_BAD_ARP],
    ['IPv4 cut to 19 bytes', () => syn().subarray(0, 33), R_SHORT_IPV4],
    ['IP version 6 in an IPv4 ethertype', () => { const f = syn(); f[14] = 0x65; return f; }, R_BAD_IP_VERSION],
    ['IHL 4', () => { const f = syn(); f[14] = 0x44; return f; }, R_BAD_IHL],
    ['IHL past the frame', () => { const f = echoFrame(1, 1, new Uint8Array(0)); f[14] = 0x4f; return f.subarray(0, 14 + 40); }, R_BAD_IHL],
    ['total length past the frame', () => syn().subarray(0, 60), R_BAD_TOTAL_LENGTH],
    ['total length < IHL', () => { const f = syn(); f[16] = 0; f[17] = 19; return f; }, R_BAD_TOTAL_LENGTH],
    ['IP checksum off by one', () => { const f = syn(); f[25] ^= 1; return f; }, R_BAD_IP_CHECKSUM],
    ['TCP header cut (total length says 19 L4 bytes)', () => ipv4Frame(6, 19, () => {}), R_SHORT_L4],
    ['TCP data offset 4', () => fixL4(syn(), (f, l4) => { f[l4 + 12] = 0x40; }), R_BAD_TCP_OFFSET],
    ['TCP data offset past the segment', () => fixL4(tcpFrame(), (f, l4) => { f[l4 + 12] = 0x60; }), R_BAD_TCP_OFFSET],
    ['TCP checksum wrong', () => { const f = syn(); f[f.length - 1] ^= 0x10; return f; }, R_BAD_L4_CHECKSUM],
    ['TCP option length runs past the header', () => fixL4(syn(), (f, l4) => { f[l4 + 21] = 40; }), R_BAD_TCP_OPTIONS],
    ['TCP option length 1', () => fixL4(syn(), (f, l4) => { f[l4 + 21] = 1; }), R_BAD_TCP_OPTIONS],
    ['SYN+FIN', () => tcpFrame({ flags: 3 }), R_BAD_TCP_FLAGS],
    ['SYN+RST', () => tcpFrame({ flags: 6 }), R_BAD_TCP_FLAGS],
    ['no TCP flags', () => tcpFrame({ flags: 0 }), R_BAD_TCP_FLAGS],
    ['UDP header cut', () => ipv4Frame(17, 7, () => {}), R_SHORT_L4],
    ['UDP length 7', () => fixL4(udpFrame(1, 2, new Uint8Array(4), { zeroChecksum: true }), (f, l4) => { f[l4 + 5] = 7; }), R_BAD_UDP_LENGTH],
    ['UDP length past the IP payload', () => fixL4(udpFrame(1, 2, new Uint8Array(4), { zeroChecksum: true }), (f, l4) => { f[l4 + 5] = 13; }), R_BAD_UDP_LENGTH],
    ['UDP checksum wrong', () => { const f = udpFrame(1, 2, Uint8Array.of(1, 2, 3)); f[f.length - 1] ^= 1; return f; }, R_BAD_L4_CHECKSUM],
    ['ICMP cut to 7 bytes', () => ipv4Frame(1, 7, () => {}), R_SHORT_L4],
    ['ICMP checksum wrong', () => { const f = echoFrame(1, 2, Uint8Array.of(5)); f[f.length - 1] ^= 1; return f; }, R_BAD_L4_CHECKSUM],
  ];

  /** Edit the L4 header, then re-fix the L4 checksum so the edit is the only fault. */
  function fixL4(f: Uint8Array, edit: (f: Uint8Array, l4: number) => void): Uint8Array {
    const { l3, l4 } = offsets(f);
    edit(f, l4);
    const ip = new Ipv4Packet(f, l3);
    const len = ip.totalLength - ip.headerLen;
    if (ip.protocol === 6) new TcpPacket(f, l4, len).fillChecksum(ip.src, ip.dst);
    return f;
  }

  it.each(cases)('%s', (_name, make, reason) => {
    const d = one(make());
    expect(d.reason).toBe(reason);
    expect(d.kind).toBe(KIND_INVALID);
    expect(d.flowId).toBe(-1);
  });

  it('each reason code has a targeted case', () => {
    const seen = new Set(cases.map((c) => c[2]));
    for (let r = 1; r < R_COUNT; r++) expect(seen.has(r)).toBe(true);
  });

  it('a zero UDP checksum is not verified; Ethernet padding is ignored', () => {
    const f = udpFrame(5000, 53, Uint8Array.of(1, 2, 3, 4), { zeroChecksum: true, padding: 14 });
    expect(one(f)).toMatchObject({ kind: KIND_UDP, reason: 0, payloadLen: 4, payloadOff: 42 });
    const t = tcpFrame({ payload: Uint8Array.of(9, 9, 9), flags: 0x18 }, { padding: 7 });
    expect(one(t)).toMatchObject({ kind: KIND_TCP, payloadLen: 3, payloadOff: 54 });
  });

  it('fragments are reported with addresses and protocol only', () => {
    const f = ipv4Frame(6, 8, (b, o) => b.fill(0xee, o, o + 8), { moreFrags: true, src: 0x0a000001, dst: 0x0a000002 });
    expect(one(f)).toMatchObject({ kind: KIND_FRAGMENT, reason: 0, proto: 6, l3Off: 14, l4Off: 0, srcIp: 0x0a000001, dstIp: 0x0a000002, srcPort: 0, payloadLen: 0 });
    const g = ipv4Frame(17, 8, () => {}, { fragOffset: 8, vlan: 5 });
    expect(one(g)).toMatchObject({ kind: KIND_FRAGMENT, l3Off: 18, proto: 17 });
  });

  it('IPv6, other ethertypes and other IP protocols', () => {
    expect(one(ipv6Frame({ vlan: 1 }))).toMatchObject({ kind: KIND_IPV6, ethertype: 0x86dd, l3Off: 18 });
    expect(one(new Uint8Array(60).fill(0x88, 12, 14))).toMatchObject({ kind: KIND_OTHER, ethertype: 0x8888 });
    expect(one(ipv4Frame(47, 12, () => {}))).toMatchObject({ kind: KIND_OTHER, proto: 47, l4Off: 34, payloadOff: 34, payloadLen: 12 });
  });

  it('SACK blocks and a clamped window scale are reported', () => {
    const f = tcpFrame({ flags: 0x10, sackBlocks: [[1, 2], [3, 4], [5, 6]], wscale: 14 });
    expect(one(f)).toMatchObject({ kind: KIND_TCP, optFlags: OPT_SACK | OPT_WSCALE, sackCount: 3, wscale: 14 });
    // Options are NOP, kind 3, len 3, shift: set the shift to 30.
    const g = fixL4(tcpFrame({ flags: 0x10, wscale: 0 }), (b, l4) => { b[l4 + 23] = 30; });
    expect(one(g)).toMatchObject({ kind: KIND_TCP, wscale: 14 });
  });
});

describe('classify: flow lookup', () => {
  it('inserts bare SYNs and UDP when asked, finds them after, reports MISS and FULL', () => {
    const t = Object.fromEntries(BACKENDS.map((b) => [b, h[b].newFlowTable(2)])) as Record<BackendName, number>;
    const run = (frames: Uint8Array[], now: number, flags: number) => {
      const out = BACKENDS.map((b) => h[b].run(frames, { flowTable: t[b], now, flags }));
      expect(Buffer.from(out[0]).equals(Buffer.from(out[2]))).toBe(true);
      expect(Buffer.from(out[1]).equals(Buffer.from(out[2]))).toBe(true);
      return frames.map((_, i) => descView(out[2], i));
    };
    const syn = tcpFrame({ srcPort: 1000, flags: 2 });
    const synAck = tcpFrame({ srcPort: 1001, flags: 0x12 });
    const dns = udpFrame(2000, 53, Uint8Array.of(1));
    const dns2 = udpFrame(2001, 53, Uint8Array.of(1));
    let d = run([syn, synAck, dns], 10, 0);
    expect(d.map((x) => x.flowStatus)).toEqual([FLOW_MISS, FLOW_MISS, FLOW_MISS]);
    d = run([syn, synAck, dns, syn], 20, CF_INSERT_TCP_SYN | CF_INSERT_UDP);
    expect(d.map((x) => x.flowStatus)).toEqual([FLOW_NEW, FLOW_MISS, FLOW_NEW, FLOW_FOUND]);
    expect(d[0].flowId).toBe(d[3].flowId);
    expect(d[1].flowId).toBe(-1);
    expect(new Set([d[0].flowId, d[2].flowId]).size).toBe(2);
    d = run([dns2, echoFrame(1, 1, new Uint8Array(0)), tcpFrame({ srcPort: 1000, flags: 0x10 })], 30, CF_INSERT_UDP);
    expect(d.map((x) => x.flowStatus)).toEqual([FLOW_FULL, FLOW_NONE, FLOW_FOUND]);
    expect(d[0].flowId).toBe(-1);
    // Touching set last-seen.
    for (const b of BACKENDS) expect(h[b].kernels.k.flowLastSeen(t[b], d[2].flowId) >>> 0).toBe(30);
  });
});

describe('classify: agrees with the TypeScript Reprs', () => {
  it('on random valid frames', () => {
    fc.assert(fc.property(arbValidFrame, ({ kind, frame }) => {
      const d = one(frame);
      expect(d.kind).toBe(KIND_OF[kind]);
      expect(d.reason).toBe(R_OK);
      const eth = new EthernetPacket(frame);
      expect(d.ethertype).toBe(eth.ethertype);
      expect(d.l3Off).toBe(eth.headerLen);
      if (kind === 'arp') {
        const a = parseArp(new ArpPacket(frame, d.l3Off)) as ArpRepr;
        expect([d.srcIp, d.dstIp, d.srcPort]).toEqual([a.senderIp, a.targetIp, a.op]);
        return;
      }
      if (kind === 'ipv6') return;
      const ipp = new Ipv4Packet(frame, d.l3Off);
      const ip = parseIpv4(ipp) as Ipv4Repr;
      expect([d.proto, d.srcIp, d.dstIp]).toEqual([ip.protocol, ip.src, ip.dst]);
      if (kind === 'fragment') return;
      const l4 = d.l3Off + ipp.headerLen;
      expect(d.l4Off).toBe(l4);
      if (kind === 'tcp') {
        const t = parseTcp(new TcpPacket(frame, l4, ip.payloadLen), ip.src, ip.dst) as TcpRepr;
        expect(d).toMatchObject({
          srcPort: t.srcPort, dstPort: t.dstPort, seq: t.seq, ack: t.ack, tcpFlags: t.flags, window: t.window,
          mss: t.mss ?? 0, wscale: t.wscale ?? 0, tsVal: t.tsVal ?? 0, tsEcr: t.tsVal === undefined ? 0 : t.tsEcr,
          sackCount: t.sackBlocks.length, payloadLen: t.payload.length, payloadOff: t.payload.byteOffset - frame.byteOffset,
          optFlags: (t.mss !== undefined ? OPT_MSS : 0) | (t.wscale !== undefined ? OPT_WSCALE : 0) | (t.sackPermitted ? OPT_SACK_PERM : 0)
            | (t.tsVal !== undefined ? OPT_TS : 0) | (t.sackBlocks.length ? OPT_SACK : 0),
        });
      } else if (kind === 'udp') {
        const u = parseUdp(new UdpPacket(frame, l4, ip.payloadLen), ip.src, ip.dst) as UdpRepr;
        expect(d).toMatchObject({ srcPort: u.srcPort, dstPort: u.dstPort, payloadLen: u.payload.length, payloadOff: l4 + 8 });
      } else if (kind === 'icmp') {
        const c = parseIcmp(new IcmpPacket(frame, l4, ip.payloadLen));
        expect(typeof c).toBe('object');
        if (typeof c === 'object' && (c.kind === 'echoRequest' || c.kind === 'echoReply')) {
          expect(d).toMatchObject({ srcPort: c.ident, dstPort: c.seq, icmpType: c.kind === 'echoRequest' ? 8 : 0, payloadLen: c.data.length });
        }
      }
    }), { numRuns: 300 });
  });

  it('on mangled frames: same verdict as the Repr chain', () => {
    fc.assert(fc.property(arbMangled, (frame) => {
      const d = one(frame);
      expect(d.reason).toBe(reprReason(frame));
    }), { numRuns: 500 });
  });
});

/** The reason the TS parsers give for a frame, checked in classify's order (0 if valid). */
function reprReason(frame: Uint8Array): number {
  const eth = new EthernetPacket(frame);
  let r = eth.check();
  if (r) return r;
  const et = eth.ethertype;
  if (et === 0x0806) {
    const a = parseArp(new ArpPacket(frame, eth.headerLen));
    return typeof a === 'number' ? a : 0;
  }
  if (et !== 0x0800) return 0;
  const ipp = new Ipv4Packet(frame, eth.headerLen);
  const ip = parseIpv4(ipp);
  if (typeof ip === 'number') return ip;
  if (ipp.isFragment) return 0;
  const l4 = eth.headerLen + ipp.headerLen;
  if (ip.protocol === 6) r = asReason(parseTcp(new TcpPacket(frame, l4, ip.payloadLen), ip.src, ip.dst));
  else if (ip.protocol === 17) r = asReason(parseUdp(new UdpPacket(frame, l4, ip.payloadLen), ip.src, ip.dst));
  else if (ip.protocol === 1) r = asReason(parseIcmp(new IcmpPacket(frame, l4, ip.payloadLen)));
  return r;
}
const asReason = (x: unknown) => (typeof x === 'number' ? x : 0);

describe('classify: backends are byte-identical and never trap', () => {
  const batch = <T>(a: fc.Arbitrary<T>) => fc.array(a, { minLength: 1, maxLength: 24 });
  const opts = fc.record({ now: fc.integer({ min: 0, max: 0xffffffff }), flags: fc.integer({ min: 0, max: 3 }), withFlows: fc.boolean() });
  let tables: Record<BackendName, number> | undefined;
  const flowTables = () => (tables ??= Object.fromEntries(BACKENDS.map((b) => [b, h[b].newFlowTable(64)])) as Record<BackendName, number>);

  function agree(frames: Uint8Array[], o: { now: number; flags: number; withFlows: boolean }) {
    if (o.withFlows) {
      // Each backend has its own table, fed the same sequence, so ids must match too.
      const t = flowTables();
      const out = BACKENDS.map((b) => h[b].run(frames, { flowTable: t[b], now: o.now, flags: o.flags }));
      expect(Buffer.from(out[0]).toString('hex')).toBe(Buffer.from(out[2]).toString('hex'));
      expect(Buffer.from(out[1]).toString('hex')).toBe(Buffer.from(out[2]).toString('hex'));
      for (const b of BACKENDS) h[b].kernels.k.flowClear(t[b]);
      return out[2];
    }
    return all(frames, { now: o.now, flags: o.flags });
  }

  it('(a) random valid frames', () => {
    fc.assert(fc.property(batch(arbValidFrame), opts, (cases, o) => {
      const d = agree(cases.map((c) => c.frame), o);
      cases.forEach((c, i) => {
        const v = descView(d, i);
        expect(v.kind).toBe(KIND_OF[c.kind]);
        expect(v.reserved).toBe(0);
        if (!o.withFlows || (c.kind !== 'tcp' && c.kind !== 'udp')) expect(v.flowStatus).toBe(FLOW_NONE);
      });
    }), { numRuns: 200 });
  });

  it('(b) truncated, byte-flipped and lying-length frames', () => {
    fc.assert(fc.property(batch(arbMangled), opts, (frames, o) => {
      const d = agree(frames, o);
      for (let i = 0; i < frames.length; i++) {
        const v = descView(d, i);
        expect(v.reason).toBeLessThan(R_COUNT);
        expect(v.kind === KIND_INVALID).toBe(v.reason !== R_OK);
      }
    }), { numRuns: 300 });
  });

  it('(c) pure random bytes', () => {
    const junk = fc.oneof(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 1600 }),
      // random bytes behind a plausible Ethernet+IPv4 start, to get past the first checks
      fc.uint8Array({ minLength: 20, maxLength: 200 }).map((b) => { const f = new Uint8Array(14 + b.length); f[12] = 8; f.set(b, 14); f[14] = 0x45; return f; }));
    fc.assert(fc.property(batch(junk), opts, (frames, o) => { agree(frames, o); }), { numRuns: 300 });
  });

  it('reads nothing past a frame\'s length', () => {
    // Same frames, different bytes right after each one: descriptors must not change.
    fc.assert(fc.property(batch(fc.oneof(arbMangled, arbValidFrame.map((c) => c.frame))), fc.integer({ min: 0, max: 255 }), (frames, fill) => {
      for (const b of BACKENDS) {
        const ref = h[b].run(frames, { tailFill: fill });
        const other = h[b].run(frames, { tailFill: fill ^ 0xff });
        expect(Buffer.from(other).equals(Buffer.from(ref))).toBe(true);
      }
    }), { numRuns: 50 });
  });

  it('a frame ending at the last byte of memory does not trap', () => {
    for (const b of BACKENDS) {
      const k = h[b].kernels;
      const frame = tcpFrame({ mss: 1460 });
      for (const len of [0, 13, 14, 33, 34, 53, frame.length]) {
        const at = k.memoryBytes - len;
        k.u8.set(frame.subarray(0, len), at);
        const table = k.alloc(8, 8);
        const desc = k.alloc(DESC_SIZE, 64);
        k.dv.setUint32(table, at, true);
        k.dv.setUint32(table + 4, len, true);
        expect(() => k.k.classify(table, 1, desc, 0, 0, 0)).not.toThrow();
        expect(k.u8[desc + 1]).toBe(len === frame.length ? R_OK : len < 14 ? R_SHORT_FRAME : len < 34 ? R_SHORT_IPV4 : R_BAD_TOTAL_LENGTH);
      }
    }
  });
});
