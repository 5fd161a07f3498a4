import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { Ipv4Packet, parseIpv4, emitIpv4, ipv4HeaderLen, IP_PROTO_ICMP, type Ipv4Repr } from '../src/wire/ipv4.js';
import {
  R_OK, R_SHORT_IPV4, R_BAD_IP_VERSION, R_BAD_IHL, R_BAD_TOTAL_LENGTH, R_BAD_IP_CHECKSUM,
} from '../assembly/layout.js';
import { fixtureFrames } from './support/frames.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
// The guest's first echo request: id 0xf684, DF, TTL 64, checksum 0x40cf.
const ECHO_HDR = hex('4500 0054 f684 4000 4001 40cf c0a84103 c0a84101');

describe('ipv4', () => {
  it('parses a header with a known checksum', () => {
    const f = fixtureFrames()[5];
    expect(f.subarray(14, 34)).toEqual(ECHO_HDR);
    const p = new Ipv4Packet(f, 14);
    expect(p.check()).toBe(R_OK);
    expect(p.verifyChecksum()).toBe(true);
    expect(p.checksum).toBe(0x40cf);
    expect(parseIpv4(p)).toEqual({
      src: 0xc0a84103, dst: 0xc0a84101, protocol: IP_PROTO_ICMP, payloadLen: 64, ttl: 64, ident: 0xf684,
      dscp: 0, ecn: 0, dontFrag: true, moreFrags: false, fragOffset: 0,
    });
    expect(p.payload.length).toBe(64);
  });

  it('emits the same header bytes, checksum included', () => {
    const buf = new Uint8Array(20);
    const repr: Ipv4Repr = { src: 0xc0a84103, dst: 0xc0a84101, protocol: 1, payloadLen: 64, ttl: 64, ident: 0xf684, dontFrag: true };
    expect(emitIpv4(repr, buf)).toBe(20);
    expect(buf).toEqual(ECHO_HDR);
  });

  it('carries options, padded to 4 bytes, and checksums over them', () => {
    const repr: Ipv4Repr = { src: 1, dst: 2, protocol: 17, payloadLen: 0, ttl: 1, options: hex('940400') };
    expect(ipv4HeaderLen(repr)).toBe(24);
    const buf = new Uint8Array(24);
    emitIpv4(repr, buf);
    const p = new Ipv4Packet(buf);
    expect(p.ihl).toBe(6);
    expect(p.verifyChecksum()).toBe(true);
    expect((parseIpv4(p) as Ipv4Repr).options).toEqual(hex('94040000'));
  });

  it('reports each malformation by code, in check order', () => {
    const frame = () => ECHO_HDR.slice();
    const withTail = (b: Uint8Array, extra: number) => { const o = new Uint8Array(b.length + extra); o.set(b); return o; };
    expect(parseIpv4(new Ipv4Packet(frame(), 0, 19))).toBe(R_SHORT_IPV4);
    let b = frame(); b[0] = 0x65;
    expect(parseIpv4(new Ipv4Packet(b))).toBe(R_BAD_IP_VERSION);
    b = frame(); b[0] = 0x44;
    expect(parseIpv4(new Ipv4Packet(b))).toBe(R_BAD_IHL);
    b = withTail(frame(), 64); b[0] = 0x4f; // 60-byte header claimed, fits, but total length 84 is fine: checksum then fails
    expect(parseIpv4(new Ipv4Packet(b))).toBe(R_BAD_IP_CHECKSUM);
    b = frame(); b[0] = 0x46; // 24-byte header in a 20-byte buffer
    expect(parseIpv4(new Ipv4Packet(b))).toBe(R_BAD_IHL);
    b = withTail(frame(), 63); // total length 84 > 83 bytes available
    expect(parseIpv4(new Ipv4Packet(b))).toBe(R_BAD_TOTAL_LENGTH);
    b = withTail(frame(), 64); b[2] = 0; b[3] = 19; // total length < header
    expect(parseIpv4(new Ipv4Packet(b))).toBe(R_BAD_TOTAL_LENGTH);
    b = withTail(frame(), 64); b[11] ^= 1;
    expect(parseIpv4(new Ipv4Packet(b))).toBe(R_BAD_IP_CHECKSUM);
    expect(typeof parseIpv4(new Ipv4Packet(b), { checksum: false })).toBe('object');
    // Link-layer padding past the total length is fine.
    expect(typeof parseIpv4(new Ipv4Packet(withTail(frame(), 80)))).toBe('object');
  });

  it('fragment fields and setters', () => {
    const b = withFrag(ECHO_HDR.slice());
    const p = new Ipv4Packet(b, 0, 20);
    expect(p.moreFrags).toBe(true);
    expect(p.dontFrag).toBe(false);
    expect(p.fragOffset).toBe(1480);
    expect(p.isFragment).toBe(true);
    function withFrag(h: Uint8Array) {
      const q = new Ipv4Packet(h, 0, 20);
      q.dontFrag = false;
      q.moreFrags = true;
      q.fragOffset = 1480;
      return h;
    }
    expect(b[6]).toBe(0x20);
    expect(b[7]).toBe(185);
  });

  it('round-trips random headers; never throws on junk', () => {
    fc.assert(fc.property(
      fc.record({
        src: fc.integer({ min: 0, max: 0xffffffff }), dst: fc.integer({ min: 0, max: 0xffffffff }),
        protocol: fc.integer({ min: 0, max: 255 }), payloadLen: fc.integer({ min: 0, max: 100 }), ttl: fc.integer({ min: 0, max: 255 }),
        ident: fc.integer({ min: 0, max: 0xffff }), dscp: fc.integer({ min: 0, max: 63 }), ecn: fc.integer({ min: 0, max: 3 }),
        dontFrag: fc.boolean(), moreFrags: fc.boolean(), fragOffset: fc.integer({ min: 0, max: 0x1fff }).map((x) => x * 8),
      }),
      (repr: Ipv4Repr) => {
        const buf = new Uint8Array(20 + repr.payloadLen);
        emitIpv4(repr, buf);
        expect(parseIpv4(new Ipv4Packet(buf))).toEqual(repr);
      }));
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
      const r = parseIpv4(new Ipv4Packet(b));
      return typeof r === 'object' || (r >= R_SHORT_IPV4 && r <= R_BAD_IP_CHECKSUM);
    }));
  });
});
