/**
 * TCP segments (RFC 9293) with the options a Linux guest sends: MSS, window
 * scale, SACK-permitted, SACK blocks, timestamps, NOP/EOL. Unknown options
 * are skipped by their length; a length that is < 2 or runs past the header
 * is R_BAD_TCP_OPTIONS. Known options with the wrong length are ignored, as
 * Linux's tcp_parse_options does. classify() applies the same rules.
 */
import {
  R_OK, R_SHORT_L4, R_BAD_TCP_OFFSET, R_BAD_L4_CHECKSUM, R_BAD_TCP_OPTIONS, R_BAD_TCP_FLAGS,
} from '../../assembly/layout.js';
import { sumBytes, pseudoHeader, finish } from './checksum.js';
import { be16, be32, put16, put32, IP_PROTO_TCP, type ParseOptions } from './ipv4.js';

export const TCP_HEADER_LEN = 20;
export const TCP_MAX_HEADER_LEN = 60;
export const TCP_FIN = 1;
export const TCP_SYN = 2;
export const TCP_RST = 4;
export const TCP_PSH = 8;
export const TCP_ACK = 16;
export const TCP_URG = 32;
export const TCP_ECE = 64;
export const TCP_CWR = 128;

export const TCPOPT_EOL = 0;
export const TCPOPT_NOP = 1;
export const TCPOPT_MSS = 2;
export const TCPOPT_WSCALE = 3;
export const TCPOPT_SACK_PERM = 4;
export const TCPOPT_SACK = 5;
export const TCPOPT_TIMESTAMP = 8;
/** RFC 7323 §2.3: a larger shift is treated as 14. */
export const TCP_MAX_WSCALE = 14;
export const TCP_MAX_SACK_BLOCKS = 4;

/** R_BAD_TCP_FLAGS for SYN+FIN, SYN+RST or no flag at all (scans and garbage, never a real stack). */
export function checkTcpFlags(flags: number): number {
  if ((flags & 0xff) === 0) return R_BAD_TCP_FLAGS;
  if ((flags & TCP_SYN) !== 0 && (flags & (TCP_FIN | TCP_RST)) !== 0) return R_BAD_TCP_FLAGS;
  return R_OK;
}

export interface TcpOptions {
  mss?: number;
  wscale?: number;
  sackPermitted: boolean;
  /** [left, right) sequence edges, at most 4. */
  sackBlocks: Array<[number, number]>;
  tsVal?: number;
  tsEcr?: number;
}

/**
 * Walk the option bytes [start, end) of `buf` into `out` (later duplicates
 * win). Returns R_OK or R_BAD_TCP_OPTIONS; `out` may be partly filled then.
 */
export function parseTcpOptions(buf: Uint8Array, start: number, end: number, out: TcpOptions): number {
  let i = start;
  while (i < end) {
    const kind = buf[i];
    if (kind === TCPOPT_EOL) break;
    if (kind === TCPOPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return R_BAD_TCP_OPTIONS;
    const len = buf[i + 1];
    if (len < 2 || i + len > end) return R_BAD_TCP_OPTIONS;
    switch (kind) {
      case TCPOPT_MSS:
        if (len === 4) out.mss = be16(buf, i + 2);
        break;
      case TCPOPT_WSCALE:
        if (len === 3) out.wscale = Math.min(buf[i + 2], TCP_MAX_WSCALE);
        break;
      case TCPOPT_SACK_PERM:
        if (len === 2) out.sackPermitted = true;
        break;
      case TCPOPT_SACK:
        if (len >= 10 && (len - 2) % 8 === 0) {
          out.sackBlocks = [];
          for (let o = i + 2; o < i + len; o += 8) out.sackBlocks.push([be32(buf, o), be32(buf, o + 4)]);
        }
        break;
      case TCPOPT_TIMESTAMP:
        if (len === 10) {
          out.tsVal = be32(buf, i + 2);
          out.tsEcr = be32(buf, i + 6);
        }
        break;
    }
    i += len;
  }
  return R_OK;
}

/** A view over a TCP segment; `len` is the IP payload length. */
export class TcpPacket {
  constructor(readonly buf: Uint8Array, readonly off = 0, readonly len = buf.length - off) {}

  /** R_SHORT_L4 under 20 bytes; R_BAD_TCP_OFFSET when the data offset is < 5 words or past the segment. */
  check(): number {
    if (this.len < TCP_HEADER_LEN) return R_SHORT_L4;
    const hl = this.headerLen;
    if (hl < TCP_HEADER_LEN || hl > this.len) return R_BAD_TCP_OFFSET;
    return R_OK;
  }

  get srcPort(): number { return be16(this.buf, this.off); }
  set srcPort(v: number) { put16(this.buf, this.off, v); }
  get dstPort(): number { return be16(this.buf, this.off + 2); }
  set dstPort(v: number) { put16(this.buf, this.off + 2, v); }
  get seq(): number { return be32(this.buf, this.off + 4); }
  set seq(v: number) { put32(this.buf, this.off + 4, v); }
  get ack(): number { return be32(this.buf, this.off + 8); }
  set ack(v: number) { put32(this.buf, this.off + 8, v); }
  /** Header length in bytes (data offset × 4). */
  get headerLen(): number { return (this.buf[this.off + 12] >>> 4) * 4; }
  set headerLen(bytes: number) { this.buf[this.off + 12] = (((bytes >>> 2) & 0xf) << 4) | (this.buf[this.off + 12] & 0xf); }
  /** The flags byte (CWR..FIN); the NS bit in the byte before is not included. */
  get flags(): number { return this.buf[this.off + 13]; }
  set flags(v: number) { this.buf[this.off + 13] = v; }
  get window(): number { return be16(this.buf, this.off + 14); }
  set window(v: number) { put16(this.buf, this.off + 14, v); }
  get checksum(): number { return be16(this.buf, this.off + 16); }
  set checksum(v: number) { put16(this.buf, this.off + 16, v); }
  get urgent(): number { return be16(this.buf, this.off + 18); }
  set urgent(v: number) { put16(this.buf, this.off + 18, v); }
  get options(): Uint8Array { return this.buf.subarray(this.off + TCP_HEADER_LEN, this.off + this.headerLen); }
  get payload(): Uint8Array { return this.buf.subarray(this.off + this.headerLen, this.off + this.len); }

  get syn(): boolean { return (this.flags & TCP_SYN) !== 0; }
  get ackFlag(): boolean { return (this.flags & TCP_ACK) !== 0; }
  get fin(): boolean { return (this.flags & TCP_FIN) !== 0; }
  get rst(): boolean { return (this.flags & TCP_RST) !== 0; }

  verifyChecksum(src: number, dst: number): boolean {
    return sumBytes(this.buf, this.off, this.off + this.len, pseudoHeader(src, dst, IP_PROTO_TCP, this.len)) === 0xffff;
  }

  fillChecksum(src: number, dst: number): void {
    this.checksum = 0;
    this.checksum = finish(sumBytes(this.buf, this.off, this.off + this.len, pseudoHeader(src, dst, IP_PROTO_TCP, this.len)));
  }
}

export interface TcpRepr extends TcpOptions {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  /** As on the wire (not scaled). */
  window: number;
  urgent?: number;
  payload: Uint8Array;
}

/**
 * Checks in classify()'s order: length, data offset, checksum (against the
 * pseudo-header of src/dst, unless opts.checksum is false), options, flags.
 */
export function parseTcp(p: TcpPacket, src: number, dst: number, opts: ParseOptions = {}): TcpRepr | number {
  let r = p.check();
  if (r !== R_OK) return r;
  if (opts.checksum !== false && !p.verifyChecksum(src, dst)) return R_BAD_L4_CHECKSUM;
  const repr: TcpRepr = {
    srcPort: p.srcPort, dstPort: p.dstPort, seq: p.seq, ack: p.ack, flags: p.flags, window: p.window,
    urgent: p.urgent, sackPermitted: false, sackBlocks: [], payload: p.payload,
  };
  r = parseTcpOptions(p.buf, p.off + TCP_HEADER_LEN, p.off + p.headerLen, repr);
  if (r !== R_OK) return r;
  r = checkTcpFlags(p.flags);
  if (r !== R_OK) return r;
  return repr;
}

/** Option bytes emitTcp writes, before the SACK blocks that fit are counted. */
function optionLayout(repr: TcpRepr): { len: number; sack: number } {
  let len = 0;
  if (repr.mss !== undefined) len += 4;
  if (repr.tsVal !== undefined || repr.sackPermitted) len += repr.tsVal !== undefined ? 12 : 4;
  if (repr.wscale !== undefined) len += 4;
  let sack = Math.min(repr.sackBlocks.length, TCP_MAX_SACK_BLOCKS);
  // NOP NOP kind len + 8 per block, within the 40 option bytes.
  while (sack > 0 && len + 4 + 8 * sack > 40) sack--;
  if (sack > 0) len += 4 + 8 * sack;
  return { len, sack };
}

export function tcpHeaderLen(repr: TcpRepr): number {
  return TCP_HEADER_LEN + optionLayout(repr).len;
}

/**
 * Write header, options (Linux's layout: MSS, SACK-perm+TS, NOP+WS, then
 * NOP NOP SACK; trailing SACK blocks that do not fit in 40 bytes are
 * dropped, so list the most recent first as RFC 2018 asks) and payload at `off`, checksum filled. Returns the segment length.
 */
export function emitTcp(repr: TcpRepr, buf: Uint8Array, off: number, src: number, dst: number): number {
  const { len: optLen, sack } = optionLayout(repr);
  const hl = TCP_HEADER_LEN + optLen;
  const total = hl + repr.payload.length;
  const p = new TcpPacket(buf, off, total);
  p.srcPort = repr.srcPort;
  p.dstPort = repr.dstPort;
  p.seq = repr.seq;
  p.ack = repr.ack;
  buf[off + 12] = (hl >>> 2) << 4;
  p.flags = repr.flags;
  p.window = repr.window;
  p.urgent = repr.urgent ?? 0;
  let o = off + TCP_HEADER_LEN;
  if (repr.mss !== undefined) {
    buf[o] = TCPOPT_MSS; buf[o + 1] = 4; put16(buf, o + 2, repr.mss); o += 4;
  }
  const ts = repr.tsVal !== undefined;
  if (ts || repr.sackPermitted) {
    if (repr.sackPermitted) { buf[o] = TCPOPT_SACK_PERM; buf[o + 1] = 2; }
    else { buf[o] = TCPOPT_NOP; buf[o + 1] = TCPOPT_NOP; }
    o += 2;
    if (ts) {
      buf[o] = TCPOPT_TIMESTAMP; buf[o + 1] = 10; put32(buf, o + 2, repr.tsVal!); put32(buf, o + 6, repr.tsEcr ?? 0); o += 10;
    } else {
      buf[o] = TCPOPT_NOP; buf[o + 1] = TCPOPT_NOP; o += 2;
    }
  }
  if (repr.wscale !== undefined) {
    buf[o] = TCPOPT_NOP; buf[o + 1] = TCPOPT_WSCALE; buf[o + 2] = 3; buf[o + 3] = repr.wscale; o += 4;
  }
  if (sack > 0) {
    buf[o] = TCPOPT_NOP; buf[o + 1] = TCPOPT_NOP; buf[o + 2] = TCPOPT_SACK; buf[o + 3] = 2 + 8 * sack; o += 4;
    for (let i = 0; i < sack; i++) {
      put32(buf, o, repr.sackBlocks[i][0]); put32(buf, o + 4, repr.sackBlocks[i][1]); o += 8;
    }
  }
  buf.set(repr.payload, off + hl);
  p.fillChecksum(src, dst);
  return total;
}
