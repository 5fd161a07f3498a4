import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { ArpPacket, parseArp, emitArp, arpHeaderLen, ARP_OP_REQUEST, ARP_OP_REPLY } from '../src/wire/arp.js';
import { R_OK, R_SHORT_ARP, R_BAD_ARP } from '../assembly/layout.js';
import { fixtureFrames } from './support/frames.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const REQUEST = hex('0001 0800 06 04 0001 525400123456 c0a84103 000000000000 c0a84101');

describe('arp', () => {
  it('parses a known request (the guest asking for its gateway)', () => {
    const r = parseArp(new ArpPacket(REQUEST));
    expect(r).toEqual({
      op: ARP_OP_REQUEST, senderMac: hex('525400123456'), senderIp: 0xc0a84103, targetMac: new Uint8Array(6), targetIp: 0xc0a84101,
    });
    // The same bytes are what the real guest sent.
    expect(fixtureFrames()[3].subarray(14)).toEqual(REQUEST);
  });

  it('emits a reply byte for byte', () => {
    const buf = new Uint8Array(28);
    expect(emitArp({ op: ARP_OP_REPLY, senderMac: hex('5a94efe40cdd'), senderIp: 0xc0a84101, targetMac: hex('525400123456'), targetIp: 0xc0a84103 }, buf)).toBe(28);
    expect(buf).toEqual(hex('0001 0800 06 04 0002 5a94efe40cdd c0a84101 525400123456 c0a84103'));
    expect(fixtureFrames()[4].subarray(14)).toEqual(buf);
    expect(arpHeaderLen()).toBe(28);
  });

  it('reports short and non-Ethernet/IPv4 ARP by code', () => {
    expect(new ArpPacket(REQUEST, 0, 27).check()).toBe(R_SHORT_ARP);
    for (const [at, v] of [[1, 6], [2, 0x86], [4, 8], [5, 16]] as const) {
      const b = REQUEST.slice();
      b[at] = v;
      expect(parseArp(new ArpPacket(b))).toBe(R_BAD_ARP);
    }
    expect(new ArpPacket(REQUEST).check()).toBe(R_OK);
  });

  it('round-trips any request/reply and never throws on junk', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffff }), fc.uint8Array({ minLength: 6, maxLength: 6 }), fc.integer({ min: 0, max: 0xffffffff }),
      fc.uint8Array({ minLength: 6, maxLength: 6 }), fc.integer({ min: 0, max: 0xffffffff }), (op, sm, si, tm, ti) => {
        const b = new Uint8Array(32);
        emitArp({ op, senderMac: sm, senderIp: si, targetMac: tm, targetIp: ti }, b, 4);
        expect(parseArp(new ArpPacket(b, 4, 28))).toEqual({ op, senderMac: sm, senderIp: si, targetMac: tm, targetIp: ti });
      }));
    fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
      const r = parseArp(new ArpPacket(b));
      return typeof r !== 'number' || r === R_SHORT_ARP || r === R_BAD_ARP;
    }));
  });
});
