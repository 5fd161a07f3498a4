import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { IcmpPacket, parseIcmp, emitIcmp, icmpLen, quoteDatagram, type IcmpRepr } from '../src/wire/icmp.js';
import { R_SHORT_L4, R_BAD_L4_CHECKSUM } from '../assembly/layout.js';
import { fixtureFrames, udpFrame } from './support/frames.js';

describe('icmp', () => {
  it('parses the guest echo request and the reply it got', () => {
    const frames = fixtureFrames();
    const req = parseIcmp(new IcmpPacket(frames[5], 34, 64)) as IcmpRepr & { kind: 'echoRequest' };
    expect(req.kind).toBe('echoRequest');
    expect(req.ident).toBe(0x0077);
    expect(req.seq).toBe(0);
    expect(req.data.length).toBe(56);
    const rep = parseIcmp(new IcmpPacket(frames[6], 34, 64)) as IcmpRepr & { kind: 'echoReply' };
    expect(rep.kind).toBe('echoReply');
    expect(rep.ident).toBe(0x0077);
    expect(parseIcmp(new IcmpPacket(frames[8], 34, 64))).toMatchObject({ kind: 'echoRequest', seq: 1 });
  });

  it('emits an echo reply identical to the responder\'s', () => {
    const frames = fixtureFrames();
    const req = parseIcmp(new IcmpPacket(frames[5], 34, 64)) as IcmpRepr & { kind: 'echoRequest' };
    const out = new Uint8Array(64);
    expect(emitIcmp({ kind: 'echoReply', ident: req.ident, seq: req.seq, data: req.data }, out)).toBe(64);
    expect(out).toEqual(frames[6].subarray(34));
  });

  it('port unreachable quotes the original header and 8 bytes, and parses back', () => {
    const dgram = udpFrame(40000, 9, new Uint8Array(100), { src: 0x0a000002, dst: 0x0a000001 }).subarray(14);
    const quoted = quoteDatagram(dgram);
    expect(quoted.length).toBe(28);
    const repr: IcmpRepr = { kind: 'destUnreachable', code: 3, nextHopMtu: 0, quoted, original: null };
    const out = new Uint8Array(icmpLen(repr));
    emitIcmp(repr, out);
    expect(Array.from(out.subarray(0, 8))).toEqual([3, 3, out[2], out[3], 0, 0, 0, 0]);
    expect(new IcmpPacket(out).verifyChecksum()).toBe(true);
    expect(parseIcmp(new IcmpPacket(out))).toEqual({
      kind: 'destUnreachable', code: 3, nextHopMtu: 0, quoted,
      original: { protocol: 17, src: 0x0a000002, dst: 0x0a000001, srcPort: 40000, dstPort: 9 },
    });
    const frag: IcmpRepr = { kind: 'destUnreachable', code: 4, nextHopMtu: 1400, quoted, original: null };
    emitIcmp(frag, out);
    expect((parseIcmp(new IcmpPacket(out)) as { nextHopMtu: number }).nextHopMtu).toBe(1400);
    // A quote too short to hold ports parses with original = null.
    const short: IcmpRepr = { kind: 'destUnreachable', code: 1, nextHopMtu: 0, quoted: quoted.subarray(0, 22), original: null };
    const o2 = new Uint8Array(icmpLen(short));
    emitIcmp(short, o2);
    expect((parseIcmp(new IcmpPacket(o2)) as { original: unknown }).original).toBeNull();
  });

  it('reports short and corrupt messages; never throws', () => {
    expect(parseIcmp(new IcmpPacket(new Uint8Array(7)))).toBe(R_SHORT_L4);
    const b = fixtureFrames()[5].slice(34);
    b[10] ^= 0x40;
    expect(parseIcmp(new IcmpPacket(b))).toBe(R_BAD_L4_CHECKSUM);
    expect(parseIcmp(new IcmpPacket(b), { checksum: false })).toMatchObject({ kind: 'echoRequest' });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 60 }), (x) => {
      const r = parseIcmp(new IcmpPacket(x));
      return typeof r === 'object' || r === R_SHORT_L4 || r === R_BAD_L4_CHECKSUM;
    }));
  });

  it('round-trips other types raw', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 255 }).filter((t) => ![0, 3, 8].includes(t)), fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ maxLength: 40 }), (type, code, rest, data) => {
        const repr: IcmpRepr = { kind: 'other', type, code, rest, data };
        const out = new Uint8Array(icmpLen(repr));
        emitIcmp(repr, out);
        expect(parseIcmp(new IcmpPacket(out))).toEqual(repr);
      }));
  });
});
