/**
 * IPv4 headers (RFC 791), options carried opaquely. Also home of the
 * big-endian byte helpers the other wire files share.
 */
import {
  R_OK, R_SHORT_IPV4, R_BAD_IP_VERSION, R_BAD_IHL, R_BAD_TOTAL_LENGTH, R_BAD_IP_CHECKSUM,
} from '../../assembly/layout.js';
import { sumBytes, finish } from './checksum.js';

export const IPV4_HEADER_LEN = 20;
export const IPV4_MAX_HEADER_LEN = 60;
export const IP_PROTO_ICMP = 1;
export const IP_PROTO_TCP = 6;
export const IP_PROTO_UDP = 17;
const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;

export const be16 = (b: Uint8Array, o: number): number => (b[o] << 8) | b[o + 1];
export const be32 = (b: Uint8Array, o: number): number => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
export function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
export function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

/** A view over an IPv4 datagram at [off, off + len); `len` may include link-layer padding. */
export class Ipv4Packet {
  constructor(readonly buf: Uint8Array, readonly off = 0, readonly len = buf.length - off) {}

  /**
   * Structure only, in the order classify() checks it: R_SHORT_IPV4,
   * R_BAD_IP_VERSION, R_BAD_IHL (IHL < 5 or header past the buffer),
   * R_BAD_TOTAL_LENGTH (total length < header or past the buffer).
   * The checksum is separate (verifyChecksum) so a caller can skip it.
   */
  check(): number {
    if (this.len < IPV4_HEADER_LEN) return R_SHORT_IPV4;
    if (this.version !== 4) return R_BAD_IP_VERSION;
    const hl = this.headerLen;
    if (hl < IPV4_HEADER_LEN || hl > this.len) return R_BAD_IHL;
    const tl = this.totalLength;
    if (tl < hl || tl > this.len) return R_BAD_TOTAL_LENGTH;
    return R_OK;
  }

  get version(): number { return this.buf[this.off] >>> 4; }
  set version(v: number) { this.buf[this.off] = ((v & 0xf) << 4) | (this.buf[this.off] & 0xf); }
  /** IHL in 32-bit words. */
  get ihl(): number { return this.buf[this.off] & 0xf; }
  set ihl(v: number) { this.buf[this.off] = (this.buf[this.off] & 0xf0) | (v & 0xf); }
  get headerLen(): number { return (this.buf[this.off] & 0xf) * 4; }
  get dscp(): number { return this.buf[this.off + 1] >>> 2; }
  set dscp(v: number) { this.buf[this.off + 1] = ((v & 0x3f) << 2) | (this.buf[this.off + 1] & 3); }
  get ecn(): number { return this.buf[this.off + 1] & 3; }
  set ecn(v: number) { this.buf[this.off + 1] = (this.buf[this.off + 1] & 0xfc) | (v & 3); }
  get totalLength(): number { return be16(this.buf, this.off + 2); }
  set totalLength(v: number) { put16(this.buf, this.off + 2, v); }
  get ident(): number { return be16(this.buf, this.off + 4); }
  set ident(v: number) { put16(this.buf, this.off + 4, v); }
  get dontFrag(): boolean { return (be16(this.buf, this.off + 6) & FLAG_DF) !== 0; }
  set dontFrag(v: boolean) { this.setFlag(FLAG_DF, v); }
  get moreFrags(): boolean { return (be16(this.buf, this.off + 6) & FLAG_MF) !== 0; }
  set moreFrags(v: boolean) { this.setFlag(FLAG_MF, v); }
  /** Fragment offset in bytes (the field counts 8-byte units). */
  get fragOffset(): number { return (be16(this.buf, this.off + 6) & 0x1fff) * 8; }
  set fragOffset(bytes: number) {
    put16(this.buf, this.off + 6, (be16(this.buf, this.off + 6) & 0xe000) | ((bytes >>> 3) & 0x1fff));
  }
  get isFragment(): boolean { return (be16(this.buf, this.off + 6) & 0x3fff) !== 0; }
  get ttl(): number { return this.buf[this.off + 8]; }
  set ttl(v: number) { this.buf[this.off + 8] = v; }
  get protocol(): number { return this.buf[this.off + 9]; }
  set protocol(v: number) { this.buf[this.off + 9] = v; }
  get checksum(): number { return be16(this.buf, this.off + 10); }
  set checksum(v: number) { put16(this.buf, this.off + 10, v); }
  get src(): number { return be32(this.buf, this.off + 12); }
  set src(v: number) { put32(this.buf, this.off + 12, v); }
  get dst(): number { return be32(this.buf, this.off + 16); }
  set dst(v: number) { put32(this.buf, this.off + 16, v); }
  get options(): Uint8Array { return this.buf.subarray(this.off + IPV4_HEADER_LEN, this.off + this.headerLen); }
  /** The L4 payload: from the header's end to the total length (padding excluded). Only meaningful after check(). */
  get payload(): Uint8Array { return this.buf.subarray(this.off + this.headerLen, this.off + this.totalLength); }

  verifyChecksum(): boolean {
    return sumBytes(this.buf, this.off, this.off + this.headerLen) === 0xffff;
  }

  fillChecksum(): void {
    this.checksum = 0;
    this.checksum = finish(sumBytes(this.buf, this.off, this.off + this.headerLen));
  }

  private setFlag(bit: number, on: boolean): void {
    const v = be16(this.buf, this.off + 6);
    put16(this.buf, this.off + 6, on ? v | bit : v & ~bit);
  }
}

export interface Ipv4Repr {
  src: number;
  dst: number;
  protocol: number;
  /** L4 payload length (total length minus header). */
  payloadLen: number;
  ttl: number;
  ident?: number;
  dscp?: number;
  ecn?: number;
  dontFrag?: boolean;
  moreFrags?: boolean;
  /** In bytes, a multiple of 8. */
  fragOffset?: number;
  /** Raw option bytes, padded by emit to a multiple of 4 with EOL. At most 40. */
  options?: Uint8Array;
}

export interface ParseOptions {
  /** Verify checksums (default true). */
  checksum?: boolean;
}

export function parseIpv4(p: Ipv4Packet, opts: ParseOptions = {}): Ipv4Repr | number {
  const r = p.check();
  if (r !== R_OK) return r;
  if (opts.checksum !== false && !p.verifyChecksum()) return R_BAD_IP_CHECKSUM;
  const repr: Ipv4Repr = {
    src: p.src, dst: p.dst, protocol: p.protocol, payloadLen: p.totalLength - p.headerLen, ttl: p.ttl,
    ident: p.ident, dscp: p.dscp, ecn: p.ecn, dontFrag: p.dontFrag, moreFrags: p.moreFrags, fragOffset: p.fragOffset,
  };
  if (p.headerLen > IPV4_HEADER_LEN) repr.options = p.options.slice();
  return repr;
}

export function ipv4HeaderLen(repr: Ipv4Repr): number {
  const o = repr.options ? Math.min(40, repr.options.length) : 0;
  return IPV4_HEADER_LEN + ((o + 3) & ~3);
}

/** Write the header (checksum filled) at `off`; returns its length. The payload is not touched. */
export function emitIpv4(repr: Ipv4Repr, buf: Uint8Array, off = 0): number {
  const hl = ipv4HeaderLen(repr);
  const p = new Ipv4Packet(buf, off, hl);
  buf[off] = 0x40 | (hl >>> 2);
  buf[off + 1] = (((repr.dscp ?? 0) & 0x3f) << 2) | ((repr.ecn ?? 0) & 3);
  p.totalLength = hl + repr.payloadLen;
  p.ident = repr.ident ?? 0;
  put16(buf, off + 6, (repr.dontFrag ? FLAG_DF : 0) | (repr.moreFrags ? FLAG_MF : 0) | (((repr.fragOffset ?? 0) >>> 3) & 0x1fff));
  p.ttl = repr.ttl;
  p.protocol = repr.protocol;
  p.src = repr.src;
  p.dst = repr.dst;
  if (hl > IPV4_HEADER_LEN) {
    buf.fill(0, off + IPV4_HEADER_LEN, off + hl);
    buf.set(repr.options!.subarray(0, hl - IPV4_HEADER_LEN), off + IPV4_HEADER_LEN);
  }
  p.fillChecksum();
  return hl;
}
