/** UDP (RFC 768): the length field bounds the datagram; a zero checksum means "none". */
import { R_OK, R_SHORT_L4, R_BAD_UDP_LENGTH, R_BAD_L4_CHECKSUM } from '../../assembly/layout.js';
import { sumBytes, pseudoHeader, finish } from './checksum.js';
import { be16, put16, IP_PROTO_UDP, type ParseOptions } from './ipv4.js';

export const UDP_HEADER_LEN = 8;

/** A view over a UDP datagram; `len` is the IP payload length (which may exceed the UDP length). */
export class UdpPacket {
  constructor(readonly buf: Uint8Array, readonly off = 0, readonly len = buf.length - off) {}

  /** R_SHORT_L4 under 8 bytes; R_BAD_UDP_LENGTH when the length field is < 8 or past the IP payload. */
  check(): number {
    if (this.len < UDP_HEADER_LEN) return R_SHORT_L4;
    const l = this.length;
    if (l < UDP_HEADER_LEN || l > this.len) return R_BAD_UDP_LENGTH;
    return R_OK;
  }

  get srcPort(): number { return be16(this.buf, this.off); }
  set srcPort(v: number) { put16(this.buf, this.off, v); }
  get dstPort(): number { return be16(this.buf, this.off + 2); }
  set dstPort(v: number) { put16(this.buf, this.off + 2, v); }
  get length(): number { return be16(this.buf, this.off + 4); }
  set length(v: number) { put16(this.buf, this.off + 4, v); }
  get checksum(): number { return be16(this.buf, this.off + 6); }
  set checksum(v: number) { put16(this.buf, this.off + 6, v); }
  get payload(): Uint8Array { return this.buf.subarray(this.off + UDP_HEADER_LEN, this.off + this.length); }

  /** True for a zero (absent) checksum, else whether the pseudo-header sum checks out. */
  verifyChecksum(src: number, dst: number): boolean {
    if (this.checksum === 0) return true;
    const l = this.length;
    return sumBytes(this.buf, this.off, this.off + l, pseudoHeader(src, dst, IP_PROTO_UDP, l)) === 0xffff;
  }

  /** A computed 0 is sent as 0xffff, since 0 on the wire means "no checksum". */
  fillChecksum(src: number, dst: number): void {
    this.checksum = 0;
    const l = this.length;
    const c = finish(sumBytes(this.buf, this.off, this.off + l, pseudoHeader(src, dst, IP_PROTO_UDP, l)));
    this.checksum = c === 0 ? 0xffff : c;
  }
}

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
}

/** Parse, verifying the checksum against the IPv4 pseudo-header of src/dst unless opts.checksum is false. */
export function parseUdp(p: UdpPacket, src: number, dst: number, opts: ParseOptions = {}): UdpRepr | number {
  const r = p.check();
  if (r !== R_OK) return r;
  if (opts.checksum !== false && !p.verifyChecksum(src, dst)) return R_BAD_L4_CHECKSUM;
  return { srcPort: p.srcPort, dstPort: p.dstPort, payload: p.payload };
}

export function udpHeaderLen(_repr?: UdpRepr): number {
  return UDP_HEADER_LEN;
}

/** Write header and payload at `off` with the checksum filled; returns the datagram length. */
export function emitUdp(repr: UdpRepr, buf: Uint8Array, off: number, src: number, dst: number): number {
  const len = UDP_HEADER_LEN + repr.payload.length;
  const p = new UdpPacket(buf, off, len);
  p.srcPort = repr.srcPort;
  p.dstPort = repr.dstPort;
  p.length = len;
  buf.set(repr.payload, off + UDP_HEADER_LEN);
  p.fillChecksum(src, dst);
  return len;
}
