import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { EthernetPacket, parseEthernet, emitEthernet, ethernetHeaderLen, ETHERTYPE_ARP, ETHERTYPE_IPV4 } from '../src/wire/ethernet.js';
import { R_OK, R_SHORT_FRAME } from '../assembly/layout.js';
import { fixtureFrames } from './support/frames.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

describe('ethernet', () => {
  it('parses the fixture ARP request header', () => {
    const f = fixtureFrames()[3];
    const p = new EthernetPacket(f);
    expect(p.check()).toBe(R_OK);
    const r = parseEthernet(p);
    expect(r).toEqual({ dst: hex('ffffffffffff'), src: hex('525400123456'), ethertype: ETHERTYPE_ARP });
    expect(p.headerLen).toBe(14);
    expect(p.payload.length).toBe(28);
  });

  it('skips exactly one 802.1Q tag', () => {
    const f = hex('ffffffffffff 525400123456 8100 a07b 0800 4500');
    const p = new EthernetPacket(f);
    expect(p.check()).toBe(R_OK);
    expect(p.hasVlan).toBe(true);
    expect(p.vlanTci).toBe(0xa07b);
    expect(p.ethertype).toBe(ETHERTYPE_IPV4);
    expect(p.headerLen).toBe(18);
    expect(Array.from(p.payload)).toEqual([0x45, 0]);
    // QinQ: the inner 0x8100 is the payload's type, not skipped again.
    expect(new EthernetPacket(hex('ffffffffffff 525400123456 8100 0001 8100 0002')).ethertype).toBe(0x8100);
  });

  it('rejects short frames with a code, never throws', () => {
    expect(new EthernetPacket(new Uint8Array(13)).check()).toBe(R_SHORT_FRAME);
    expect(parseEthernet(new EthernetPacket(hex('ffffffffffff 525400123456 8100 00')))).toBe(R_SHORT_FRAME);
    expect(new EthernetPacket(hex('ffffffffffff 525400123456 0800'), 0, 14).check()).toBe(R_OK);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
      const r = parseEthernet(new EthernetPacket(b));
      return typeof r === 'number' ? r === R_SHORT_FRAME : true;
    }));
  });

  it('emits what it parses, tagged and untagged', () => {
    fc.assert(fc.property(
      fc.uint8Array({ minLength: 6, maxLength: 6 }), fc.uint8Array({ minLength: 6, maxLength: 6 }),
      fc.integer({ min: 0, max: 0xffff }).filter((t) => t !== 0x8100), fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
      (dst, src, ethertype, vlanTci) => {
        const repr = vlanTci === undefined ? { dst, src, ethertype } : { dst, src, ethertype, vlanTci };
        const buf = new Uint8Array(30);
        const n = emitEthernet(repr, buf, 3);
        expect(n).toBe(ethernetHeaderLen(repr));
        expect(parseEthernet(new EthernetPacket(buf, 3, n))).toEqual(repr);
      }));
  });

  it('setters write in network order', () => {
    const b = new Uint8Array(14);
    const p = new EthernetPacket(b);
    p.dst = hex('0102030405 06');
    p.src = hex('0a0b0c0d0e0f');
    p.ethertype = 0x86dd;
    expect(b).toEqual(hex('010203040506 0a0b0c0d0e0f 86dd'));
  });
});
