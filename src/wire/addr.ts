/**
 * Address strings at the API/config edge. Inside vnetkit an IPv4 address is a
 * u32 in host order (192.168.65.1 = 0xc0a84101) and a MAC is 6 bytes; these
 * helpers are the only place strings are turned into those and back.
 * Config errors are the caller's mistake, so these throw (with a stable code)
 * rather than returning reason codes like the packet parsers do.
 */
import { VnetkitError, ErrorCodes } from '../errors.js';

function bad(what: string, s: unknown): never {
  throw new VnetkitError(ErrorCodes.BAD_OPTION, `invalid ${what}: ${JSON.stringify(s)}`);
}

// Strict dotted quad: exactly four decimal octets, no leading zeros (which
// some resolvers read as octal), no whitespace, no shorthand like "10.1".
const OCTET = /^(0|[1-9][0-9]{0,2})$/;

/** "192.168.65.1" → 0xc0a84101. Throws ERR_VNETKIT_BAD_OPTION on anything else. */
export function parseIPv4(s: string): number {
  if (typeof s !== 'string') bad('IPv4 address', s);
  const parts = s.split('.');
  if (parts.length !== 4) bad('IPv4 address', s);
  let n = 0;
  for (const p of parts) {
    if (!OCTET.test(p)) bad('IPv4 address', s);
    const v = Number(p);
    if (v > 255) bad('IPv4 address', s);
    n = n * 256 + v;
  }
  return n >>> 0;
}

/** 0xc0a84101 → "192.168.65.1" (the number is taken modulo 2^32). */
export function formatIPv4(n: number): string {
  const v = n >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

const MAC = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/;

/** "02:50:00:00:00:01" (or with '-') → 6 bytes. Throws ERR_VNETKIT_BAD_OPTION otherwise. */
export function parseMac(s: string): Uint8Array {
  if (typeof s !== 'string' || !MAC.test(s)) bad('MAC address', s);
  const out = new Uint8Array(6);
  for (let i = 0; i < 6; i++) out[i] = parseInt(s.substr(i * 3, 2), 16);
  return out;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** 6 bytes at `off` → "02:50:00:00:00:01" (lower-case). */
export function formatMac(b: Uint8Array, off = 0): string {
  if (off < 0 || off + 6 > b.length) bad('MAC buffer offset', off);
  return `${HEX[b[off]]}:${HEX[b[off + 1]]}:${HEX[b[off + 2]]}:${HEX[b[off + 3]]}:${HEX[b[off + 4]]}:${HEX[b[off + 5]]}`;
}

/** The netmask of a prefix length as a u32 (0 → 0, 32 → 0xffffffff). */
export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export interface Cidr {
  /** The address with host bits cleared. */
  network: number;
  prefix: number;
  mask: number;
}

/**
 * "192.168.65.0/24" → {network: 0xc0a84100, prefix: 24, mask: 0xffffff00}.
 * Host bits in the address are cleared rather than rejected, so
 * "192.168.65.1/24" names the same subnet (as `ip addr` accepts it).
 */
export function parseCidr(s: string): Cidr {
  if (typeof s !== 'string') bad('CIDR', s);
  const slash = s.indexOf('/');
  if (slash < 0) bad('CIDR', s);
  const ps = s.slice(slash + 1);
  if (!/^(0|[1-9][0-9]?)$/.test(ps)) bad('CIDR', s);
  const prefix = Number(ps);
  if (prefix > 32) bad('CIDR', s);
  let addr: number;
  try {
    addr = parseIPv4(s.slice(0, slash));
  } catch {
    bad('CIDR', s);
  }
  const mask = prefixMask(prefix);
  return { network: (addr & mask) >>> 0, prefix, mask };
}

/** Whether `ip` lies in network/prefix. */
export function inSubnet(ip: number, network: number, prefix: number): boolean {
  const mask = prefixMask(prefix);
  return ((ip & mask) >>> 0) === ((network & mask) >>> 0);
}
