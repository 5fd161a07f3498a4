import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { parseIPv4, formatIPv4, parseMac, formatMac, parseCidr, inSubnet, prefixMask } from '../src/wire/addr.js';

const BAD = expect.objectContaining({ code: 'ERR_VNETKIT_BAD_OPTION' });

describe('addr', () => {
  it('parses and formats dotted quads', () => {
    expect(parseIPv4('192.168.65.1')).toBe(0xc0a84101);
    expect(parseIPv4('255.255.255.255')).toBe(0xffffffff);
    expect(parseIPv4('0.0.0.0')).toBe(0);
    expect(formatIPv4(0xc0a84101)).toBe('192.168.65.1');
    expect(formatIPv4(-1)).toBe('255.255.255.255');
  });

  it.each(['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', ' 1.2.3.4', '1.2.3.4 ', 'a.b.c.d', '1..2.3', '1.2.3.-4', '1e2.1.1.1'])(
    'rejects %j with a code', (s) => {
      expect(() => parseIPv4(s)).toThrow(BAD);
    });

  it('round-trips every u32', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (n) => parseIPv4(formatIPv4(n)) === n));
  });

  it('parses and formats MACs', () => {
    expect(Array.from(parseMac('02:50:00:AB:cd:ff'))).toEqual([2, 0x50, 0, 0xab, 0xcd, 0xff]);
    expect(Array.from(parseMac('02-50-00-ab-cd-ff'))).toEqual([2, 0x50, 0, 0xab, 0xcd, 0xff]);
    expect(formatMac(new Uint8Array([9, 2, 0x50, 0, 0xab, 0xcd, 0xff]), 1)).toBe('02:50:00:ab:cd:ff');
    for (const s of ['02:50:00:ab:cd', '02:50:00:ab:cd:ff:00', '02:50-00:ab:cd:ff', 'g2:50:00:ab:cd:ff', '2:50:00:ab:cd:ff']) {
      expect(() => parseMac(s)).toThrow(BAD);
    }
    expect(() => formatMac(new Uint8Array(6), 1)).toThrow(BAD);
  });

  it('parses CIDRs and tests membership', () => {
    expect(parseCidr('192.168.65.0/24')).toEqual({ network: 0xc0a84100, prefix: 24, mask: 0xffffff00 });
    expect(parseCidr('192.168.65.7/24').network).toBe(0xc0a84100);
    expect(parseCidr('0.0.0.0/0')).toEqual({ network: 0, prefix: 0, mask: 0 });
    expect(parseCidr('10.0.0.1/32')).toEqual({ network: 0x0a000001, prefix: 32, mask: 0xffffffff });
    for (const s of ['192.168.65.0', '192.168.65.0/33', '192.168.65.0/', '192.168.65.0/024', 'x/24', '1.2.3/8']) {
      expect(() => parseCidr(s)).toThrow(BAD);
    }
    expect(inSubnet(0xc0a84163, 0xc0a84100, 24)).toBe(true);
    expect(inSubnet(0xc0a84263, 0xc0a84100, 24)).toBe(false);
    expect(inSubnet(0x01020304, 0, 0)).toBe(true);
    expect(inSubnet(0xffffffff, 0xffffffff, 32)).toBe(true);
    expect(prefixMask(1)).toBe(0x80000000);
  });
});
