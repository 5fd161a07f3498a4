/** ARP for Ethernet/IPv4 only (RFC 826): the one kind a VM gateway answers. */
import { R_OK, R_SHORT_ARP, R_BAD_ARP } from '../../assembly/layout.js';
import { be16, be32, put16, put32 } from './ipv4.js';

export const ARP_LEN = 28;
export const ARP_OP_REQUEST = 1;
export const ARP_OP_REPLY = 2;

export class ArpPacket {
  constructor(readonly buf: Uint8Array, readonly off = 0, readonly len = buf.length - off) {}

  /** R_SHORT_ARP when fewer than 28 bytes; R_BAD_ARP unless hardware Ethernet (1, len 6) and protocol IPv4 (0x0800, len 4). */
  check(): number {
    if (this.len < ARP_LEN) return R_SHORT_ARP;
    if (this.htype !== 1 || this.ptype !== 0x0800 || this.hlen !== 6 || this.plen !== 4) return R_BAD_ARP;
    return R_OK;
  }

  get htype(): number { return be16(this.buf, this.off); }
  set htype(v: number) { put16(this.buf, this.off, v); }
  get ptype(): number { return be16(this.buf, this.off + 2); }
  set ptype(v: number) { put16(this.buf, this.off + 2, v); }
  get hlen(): number { return this.buf[this.off + 4]; }
  set hlen(v: number) { this.buf[this.off + 4] = v; }
  get plen(): number { return this.buf[this.off + 5]; }
  set plen(v: number) { this.buf[this.off + 5] = v; }
  get op(): number { return be16(this.buf, this.off + 6); }
  set op(v: number) { put16(this.buf, this.off + 6, v); }
  get senderMac(): Uint8Array { return this.buf.subarray(this.off + 8, this.off + 14); }
  set senderMac(m: Uint8Array) { this.buf.set(m.subarray(0, 6), this.off + 8); }
  get senderIp(): number { return be32(this.buf, this.off + 14); }
  set senderIp(v: number) { put32(this.buf, this.off + 14, v); }
  get targetMac(): Uint8Array { return this.buf.subarray(this.off + 18, this.off + 24); }
  set targetMac(m: Uint8Array) { this.buf.set(m.subarray(0, 6), this.off + 18); }
  get targetIp(): number { return be32(this.buf, this.off + 24); }
  set targetIp(v: number) { put32(this.buf, this.off + 24, v); }
}

export interface ArpRepr {
  op: number;
  senderMac: Uint8Array;
  senderIp: number;
  targetMac: Uint8Array;
  targetIp: number;
}

export function parseArp(p: ArpPacket): ArpRepr | number {
  const r = p.check();
  if (r !== R_OK) return r;
  return { op: p.op, senderMac: p.senderMac.slice(), senderIp: p.senderIp, targetMac: p.targetMac.slice(), targetIp: p.targetIp };
}

export function arpHeaderLen(_repr?: ArpRepr): number {
  return ARP_LEN;
}

export function emitArp(repr: ArpRepr, buf: Uint8Array, off = 0): number {
  const p = new ArpPacket(buf, off, ARP_LEN);
  p.htype = 1;
  p.ptype = 0x0800;
  p.hlen = 6;
  p.plen = 4;
  p.op = repr.op;
  p.senderMac = repr.senderMac;
  p.senderIp = repr.senderIp;
  p.targetMac = repr.targetMac;
  p.targetIp = repr.targetIp;
  return ARP_LEN;
}
