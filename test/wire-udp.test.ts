import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { UdpPacket, parseUdp, emitUdp, udpHeaderLen, type UdpRepr } from '../src/wire/udp.js';
import { R_SHORT_L4, R_BAD_UDP_LENGTH, R_BAD_L4_CHECKSUM } from '../assembly/layout.js';
import { fixtureFrames } from './support/frames.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const GUEST = 0xc0a84103;
const GW = 0xc0a84101;

describe('udp', () => {
  it('parses the guest DNS query with its real checksum', () => {
    const f = fixtureFrames()[12];
    const p = new UdpPacket(f, 34, f.length - 34);
    expect(p.checksum).toBe(0xd39a);
    expect(p.verifyChecksum(GUEST, GW)).toBe(true);
    const r = parseUdp(p, GUEST, GW) as UdpRepr;
    expect(r.srcPort).toBe(0xde29);
    expect(r.dstPort).toBe(53);
    expect(r.payload.length).toBe(30);
    // The checksum covers the pseudo-header: other addresses fail it.
    expect(parseUdp(p, GUEST, GW + 1)).toBe(R_BAD_L4_CHECKSUM);
  });

  it('emits the same bytes', () => {
    const f = fixtureFrames()[12];
    const payload = f.slice(42);
    const out = new Uint8Array(8 + payload.length);
    expect(emitUdp({ srcPort: 0xde29, dstPort: 53, payload }, out, 0, GUEST, GW)).toBe(38);
    expect(out).toEqual(f.subarray(34));
    expect(udpHeaderLen()).toBe(8);
  });

  it('zero checksum means none; a computed zero is sent as 0xffff', () => {
    const b = hex('1234 0035 000a 0000 abcd');
    expect(parseUdp(new UdpPacket(b), 1, 2)).toEqual({ srcPort: 0x1234, dstPort: 53, payload: hex('abcd') });
    // Find a payload whose checksum computes to 0 and check it is sent as all ones.
    const out = new Uint8Array(10);
    let found = false;
    for (let x = 0; x < 0x10000 && !found; x++) {
      emitUdp({ srcPort: 1, dstPort: 2, payload: Uint8Array.of(x >> 8, x & 0xff) }, out, 0, 0, 0);
      if (out[6] === 0xff && out[7] === 0xff) found = true;
    }
    expect(found).toBe(true);
    expect(new UdpPacket(out).verifyChecksum(0, 0)).toBe(true);
  });

  it('length field bounds the datagram', () => {
    expect(parseUdp(new UdpPacket(new Uint8Array(7)), 0, 0)).toBe(R_SHORT_L4);
    expect(parseUdp(new UdpPacket(hex('0001 0002 0007 0000')), 0, 0)).toBe(R_BAD_UDP_LENGTH);
    expect(parseUdp(new UdpPacket(hex('0001 0002 000b 0000 0102')), 0, 0)).toBe(R_BAD_UDP_LENGTH);
    // IP payload longer than the UDP length: the rest is padding, not payload.
    expect((parseUdp(new UdpPacket(hex('0001 0002 0009 0000 01 0203')), 0, 0) as UdpRepr).payload).toEqual(hex('01'));
  });

  it('round-trips and never throws', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.uint8Array({ maxLength: 300 }),
      fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), (s, d, payload, src, dst) => {
        const b = new Uint8Array(8 + payload.length + 3);
        emitUdp({ srcPort: s, dstPort: d, payload }, b, 3, src, dst);
        expect(parseUdp(new UdpPacket(b, 3, 8 + payload.length), src, dst)).toEqual({ srcPort: s, dstPort: d, payload });
      }));
    fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
      const r = parseUdp(new UdpPacket(b), 1, 2);
      return typeof r === 'object' || [R_SHORT_L4, R_BAD_UDP_LENGTH, R_BAD_L4_CHECKSUM].includes(r);
    }));
  });
});
