/**
 * ICMPv4 (RFC 792): echo request/reply, which the gateway answers, and
 * destination unreachable, which the engine sends for refused ports and
 * receives quoting the guest's own datagrams. Other types are kept raw.
 */
import { R_OK, R_SHORT_L4, R_BAD_L4_CHECKSUM } from '../../assembly/layout.js';
import { sumBytes, finish } from './checksum.js';
import { be16, be32, put16, put32, IPV4_HEADER_LEN, type ParseOptions } from './ipv4.js';

export const ICMP_HEADER_LEN = 8;
export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACHABLE = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const UNREACH_NET = 0;
export const UNREACH_HOST = 1;
export const UNREACH_PROTOCOL = 2;
export const UNREACH_PORT = 3;
export const UNREACH_FRAG_NEEDED = 4;
/** RFC 792 quotes the original IP header plus the first 8 bytes of its payload. */
export const ICMP_QUOTE_DATA_LEN = 8;

/** A view over an ICMP message; `len` is the IP payload length. */
export class IcmpPacket {
  constructor(readonly buf: Uint8Array, readonly off = 0, readonly len = buf.length - off) {}

  check(): number {
    return this.len < ICMP_HEADER_LEN ? R_SHORT_L4 : R_OK;
  }

  get type(): number { return this.buf[this.off]; }
  set type(v: number) { this.buf[this.off] = v; }
  get code(): number { return this.buf[this.off + 1]; }
  set code(v: number) { this.buf[this.off + 1] = v; }
  get checksum(): number { return be16(this.buf, this.off + 2); }
  set checksum(v: number) { put16(this.buf, this.off + 2, v); }
  /** Echo identifier (bytes 4-5). */
  get ident(): number { return be16(this.buf, this.off + 4); }
  set ident(v: number) { put16(this.buf, this.off + 4, v); }
  /** Echo sequence number (bytes 6-7). */
  get seq(): number { return be16(this.buf, this.off + 6); }
  set seq(v: number) { put16(this.buf, this.off + 6, v); }
  /** Next-hop MTU of a "fragmentation needed" unreachable (RFC 1191; bytes 6-7). */
  get nextHopMtu(): number { return be16(this.buf, this.off + 6); }
  set nextHopMtu(v: number) { put16(this.buf, this.off + 6, v); }
  /** Bytes 4-7 whatever the type. */
  get restOfHeader(): number { return be32(this.buf, this.off + 4); }
  set restOfHeader(v: number) { put32(this.buf, this.off + 4, v); }
  get data(): Uint8Array { return this.buf.subarray(this.off + ICMP_HEADER_LEN, this.off + this.len); }

  verifyChecksum(): boolean {
    return sumBytes(this.buf, this.off, this.off + this.len) === 0xffff;
  }

  fillChecksum(): void {
    this.checksum = 0;
    this.checksum = finish(sumBytes(this.buf, this.off, this.off + this.len));
  }
}

/** The parts of a quoted datagram a NAT needs to find the flow it belongs to. */
export interface IcmpQuote {
  protocol: number;
  src: number;
  dst: number;
  /** First two 16-bit words of the quoted L4 header: ports for TCP/UDP. */
  srcPort: number;
  dstPort: number;
}

export type IcmpRepr =
  | { kind: 'echoRequest' | 'echoReply'; ident: number; seq: number; data: Uint8Array }
  | {
      kind: 'destUnreachable';
      code: number;
      /** Only for code 4 (fragmentation needed); 0 otherwise. */
      nextHopMtu: number;
      /** The original IP header and the start of its payload, as carried. */
      quoted: Uint8Array;
      /** Parsed from `quoted`; null when too short or not an IPv4 header. */
      original: IcmpQuote | null;
    }
  | { kind: 'other'; type: number; code: number; rest: number; data: Uint8Array };

/** Read the quoted header leniently: its total length names the original datagram, not what is quoted. */
export function parseQuote(q: Uint8Array): IcmpQuote | null {
  if (q.length < IPV4_HEADER_LEN || q[0] >>> 4 !== 4) return null;
  const hl = (q[0] & 0xf) * 4;
  if (hl < IPV4_HEADER_LEN || q.length < hl + 4) return null;
  return { protocol: q[9], src: be32(q, 12), dst: be32(q, 16), srcPort: be16(q, hl), dstPort: be16(q, hl + 2) };
}

/**
 * What to quote from `ipDatagram` (which starts at its IPv4 header) in an
 * error message: the header and up to 8 bytes after it.
 */
export function quoteDatagram(ipDatagram: Uint8Array): Uint8Array {
  const hl = ipDatagram.length > 0 ? Math.max(IPV4_HEADER_LEN, (ipDatagram[0] & 0xf) * 4) : 0;
  return ipDatagram.subarray(0, Math.min(ipDatagram.length, hl + ICMP_QUOTE_DATA_LEN));
}

export function parseIcmp(p: IcmpPacket, opts: ParseOptions = {}): IcmpRepr | number {
  const r = p.check();
  if (r !== R_OK) return r;
  if (opts.checksum !== false && !p.verifyChecksum()) return R_BAD_L4_CHECKSUM;
  switch (p.type) {
    case ICMP_ECHO_REQUEST:
    case ICMP_ECHO_REPLY:
      return { kind: p.type === ICMP_ECHO_REQUEST ? 'echoRequest' : 'echoReply', ident: p.ident, seq: p.seq, data: p.data };
    case ICMP_DEST_UNREACHABLE: {
      const quoted = p.data;
      return {
        kind: 'destUnreachable', code: p.code, nextHopMtu: p.code === UNREACH_FRAG_NEEDED ? p.nextHopMtu : 0,
        quoted, original: parseQuote(quoted),
      };
    }
    default:
      return { kind: 'other', type: p.type, code: p.code, rest: p.restOfHeader, data: p.data };
  }
}

export function icmpHeaderLen(_repr?: IcmpRepr): number {
  return ICMP_HEADER_LEN;
}

/** Length of the whole message `emitIcmp` writes. */
export function icmpLen(repr: IcmpRepr): number {
  return ICMP_HEADER_LEN + (repr.kind === 'destUnreachable' ? repr.quoted.length : repr.data.length);
}

/** Write the whole message (header, data, checksum) at `off`; returns its length. */
export function emitIcmp(repr: IcmpRepr, buf: Uint8Array, off = 0): number {
  const len = icmpLen(repr);
  const p = new IcmpPacket(buf, off, len);
  switch (repr.kind) {
    case 'echoRequest':
    case 'echoReply':
      p.type = repr.kind === 'echoRequest' ? ICMP_ECHO_REQUEST : ICMP_ECHO_REPLY;
      p.code = 0;
      p.ident = repr.ident;
      p.seq = repr.seq;
      buf.set(repr.data, off + ICMP_HEADER_LEN);
      break;
    case 'destUnreachable':
      p.type = ICMP_DEST_UNREACHABLE;
      p.code = repr.code;
      p.restOfHeader = repr.code === UNREACH_FRAG_NEEDED ? repr.nextHopMtu & 0xffff : 0;
      buf.set(repr.quoted, off + ICMP_HEADER_LEN);
      break;
    case 'other':
      p.type = repr.type;
      p.code = repr.code;
      p.restOfHeader = repr.rest;
      buf.set(repr.data, off + ICMP_HEADER_LEN);
      break;
  }
  p.fillChecksum();
  return len;
}
