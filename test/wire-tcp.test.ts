import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { TcpPacket, parseTcp, emitTcp, tcpHeaderLen, parseTcpOptions, checkTcpFlags, TCP_SYN, TCP_ACK, TCP_FIN, TCP_RST, type TcpRepr } from '../src/wire/tcp.js';
import { R_OK, R_SHORT_L4, R_BAD_TCP_OFFSET, R_BAD_L4_CHECKSUM, R_BAD_TCP_OPTIONS, R_BAD_TCP_FLAGS } from '../assembly/layout.js';
import { fixtureFrames, arbTcpRepr } from './support/frames.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const GUEST = 0xc0a84103;
const GW = 0xc0a84101;

/** A bare 20-byte header + `opts`, checksum not filled (parse with checksum: false). */
function seg(opts: string, flags = TCP_SYN) {
  const o = hex(opts);
  const b = new Uint8Array(20 + o.length);
  b[12] = ((20 + o.length) / 4) << 4;
  b[13] = flags;
  b.set(o, 20);
  return new TcpPacket(b);
}
const NOCK = { checksum: false };

describe('tcp', () => {
  it('parses the guest SYN: MSS 1460, SACK-perm, timestamps, NOP, window scale 5', () => {
    const f = fixtureFrames()[15];
    expect(f.subarray(34)).toEqual(hex('a9cc 1f90 117a57f0 00000000 a002 faf0 b7ab 0000 020405b4 0402 080a c1939db5 00000000 01 030305'));
    const p = new TcpPacket(f, 34, 40);
    expect(p.check()).toBe(R_OK);
    expect(p.verifyChecksum(GUEST, GW)).toBe(true);
    expect(parseTcp(p, GUEST, GW)).toEqual({
      srcPort: 43468, dstPort: 8080, seq: 0x117a57f0, ack: 0, flags: TCP_SYN, window: 64240, urgent: 0,
      mss: 1460, wscale: 5, sackPermitted: true, sackBlocks: [], tsVal: 0xc1939db5, tsEcr: 0, payload: new Uint8Array(0),
    });
  });

  it('emits Linux\'s SYN option layout byte for byte', () => {
    const f = fixtureFrames()[15];
    const repr = parseTcp(new TcpPacket(f, 34, 40), GUEST, GW) as TcpRepr;
    const out = new Uint8Array(40);
    // Linux puts the NOP before WS rather than after TS; ours is MSS, SACK-perm+TS, NOP+WS: the same bytes.
    expect(emitTcp(repr, out, 0, GUEST, GW)).toBe(40);
    expect(out).toEqual(f.subarray(34));
  });

  it('parses SACK blocks (1..4) and skips unknown options by length', () => {
    const blocks = '00000001 00000002 00000003 00000004 00000005 00000006 00000007 00000008';
    const r = parseTcp(seg(`0101 0522 ${blocks} 0000`, TCP_ACK), 0, 0, NOCK) as TcpRepr;
    expect(r.sackBlocks).toEqual([[1, 2], [3, 4], [5, 6], [7, 8]]);
    const u = parseTcp(seg('fe06 aabbccdd 0204 0218 0000', TCP_SYN), 0, 0, NOCK) as TcpRepr;
    expect(u.mss).toBe(0x218);
    // EOL ends the list: what follows is not read.
    expect((parseTcp(seg('00 020405b4 000000'), 0, 0, NOCK) as TcpRepr).mss).toBeUndefined();
    // A known option with the wrong length is skipped, as Linux does.
    const w = parseTcp(seg('0305 0e0000 0303 0f 000000'), 0, 0, NOCK) as TcpRepr;
    expect(w.wscale).toBe(14); // 15 clamps to 14 (RFC 7323)
  });

  it('lying option lengths are R_BAD_TCP_OPTIONS', () => {
    expect(parseTcp(seg('0201 0000'), 0, 0, NOCK)).toBe(R_BAD_TCP_OPTIONS); // length < 2
    expect(parseTcp(seg('0101 0106'), 0, 0, NOCK)).toBe(R_BAD_TCP_OPTIONS); // runs past the header
    expect(parseTcp(seg('010101 08'), 0, 0, NOCK)).toBe(R_BAD_TCP_OPTIONS); // no room for a length byte
    expect(parseTcp(seg('080a 00000000 0000 0000'), 0, 0, NOCK)).toBe(R_BAD_TCP_OPTIONS); // TS cut by the header end
    const o = { sackPermitted: false, sackBlocks: [] };
    expect(parseTcpOptions(hex('020405b4'), 0, 4, o)).toBe(R_OK);
  });

  it('bad offsets, flags and checksums by code', () => {
    expect(parseTcp(new TcpPacket(new Uint8Array(19)), 0, 0)).toBe(R_SHORT_L4);
    const p = seg('');
    p.buf[12] = 4 << 4;
    expect(parseTcp(p, 0, 0, NOCK)).toBe(R_BAD_TCP_OFFSET);
    p.buf[12] = 6 << 4;
    expect(parseTcp(p, 0, 0, NOCK)).toBe(R_BAD_TCP_OFFSET);
    for (const f of [0, TCP_SYN | TCP_FIN, TCP_SYN | TCP_RST, TCP_SYN | TCP_RST | TCP_ACK]) {
      expect(parseTcp(seg('', f), 0, 0, NOCK)).toBe(R_BAD_TCP_FLAGS);
      expect(checkTcpFlags(f)).toBe(R_BAD_TCP_FLAGS);
    }
    for (const f of [TCP_SYN, TCP_SYN | TCP_ACK, TCP_FIN | TCP_ACK, TCP_RST, 0x80]) expect(checkTcpFlags(f)).toBe(R_OK);
    const b = fixtureFrames()[15].slice(34);
    b[5] ^= 1;
    expect(parseTcp(new TcpPacket(b), GUEST, GW)).toBe(R_BAD_L4_CHECKSUM);
  });

  it('round-trips random segments, and never throws on junk', () => {
    fc.assert(fc.property(arbTcpRepr, fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), (r, src, dst) => {
      const out = new Uint8Array(tcpHeaderLen(r) + r.payload.length);
      emitTcp(r, out, 0, src, dst);
      const back = parseTcp(new TcpPacket(out), src, dst) as TcpRepr;
      expect(typeof back).toBe('object');
      // SACK blocks beyond what fits in 40 option bytes are dropped by emit (trailing ones first).
      const used = (r.mss !== undefined ? 4 : 0) + (r.tsVal !== undefined ? 12 : r.sackPermitted ? 4 : 0) + (r.wscale !== undefined ? 4 : 0);
      const kept = Math.max(0, Math.min(r.sackBlocks.length, Math.floor((40 - used - 4) / 8)));
      expect(back).toEqual({ ...r, sackBlocks: r.sackBlocks.slice(0, kept) });
      expect(tcpHeaderLen(r)).toBeLessThanOrEqual(60);
    }));
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
      const r = parseTcp(new TcpPacket(b), 1, 2);
      return typeof r === 'object' || (r >= R_SHORT_L4 && r <= R_BAD_TCP_FLAGS);
    }));
  });
});
