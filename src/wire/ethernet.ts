/**
 * Ethernet II frames, with at most one 802.1Q tag (a second tag, QinQ, is
 * left as the ethertype 0x8100 so it classifies as "other" and is dropped).
 * No FCS: the VM transports carry frames without it.
 */
import { R_OK, R_SHORT_FRAME } from '../../assembly/layout.js';

export const ETH_HEADER_LEN = 14;
export const VLAN_TAG_LEN = 4;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_IPV6 = 0x86dd;

export const BROADCAST_MAC: Readonly<Uint8Array> = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/** A view over an Ethernet frame in `buf` at [off, off + len). */
export class EthernetPacket {
  constructor(readonly buf: Uint8Array, readonly off = 0, readonly len = buf.length - off) {}

  /** R_OK, or R_SHORT_FRAME when the header (and VLAN tag, if any) does not fit. */
  check(): number {
    if (this.len < ETH_HEADER_LEN) return R_SHORT_FRAME;
    if (this.outerEthertype === ETHERTYPE_VLAN && this.len < ETH_HEADER_LEN + VLAN_TAG_LEN) return R_SHORT_FRAME;
    return R_OK;
  }

  get dst(): Uint8Array { return this.buf.subarray(this.off, this.off + 6); }
  set dst(mac: Uint8Array) { this.buf.set(mac.subarray(0, 6), this.off); }
  get src(): Uint8Array { return this.buf.subarray(this.off + 6, this.off + 12); }
  set src(mac: Uint8Array) { this.buf.set(mac.subarray(0, 6), this.off + 6); }

  /** The type field right after the MACs (0x8100 for a tagged frame). */
  get outerEthertype(): number { return (this.buf[this.off + 12] << 8) | this.buf[this.off + 13]; }
  set outerEthertype(v: number) { this.buf[this.off + 12] = v >>> 8; this.buf[this.off + 13] = v; }

  get hasVlan(): boolean { return this.outerEthertype === ETHERTYPE_VLAN; }
  /** The tag control information (PCP, DEI, VID) or -1 when untagged. */
  get vlanTci(): number { return this.hasVlan ? (this.buf[this.off + 14] << 8) | this.buf[this.off + 15] : -1; }

  /** The payload's ethertype, after the tag if there is one. */
  get ethertype(): number {
    const o = this.off + (this.hasVlan ? 16 : 12);
    return (this.buf[o] << 8) | this.buf[o + 1];
  }
  set ethertype(v: number) {
    const o = this.off + (this.hasVlan ? 16 : 12);
    this.buf[o] = v >>> 8;
    this.buf[o + 1] = v;
  }

  get headerLen(): number { return this.hasVlan ? ETH_HEADER_LEN + VLAN_TAG_LEN : ETH_HEADER_LEN; }
  get payload(): Uint8Array { return this.buf.subarray(this.off + this.headerLen, this.off + this.len); }
}

export interface EthernetRepr {
  dst: Uint8Array;
  src: Uint8Array;
  ethertype: number;
  /** 802.1Q tag control information when the frame is tagged. */
  vlanTci?: number;
}

export function parseEthernet(p: EthernetPacket): EthernetRepr | number {
  const r = p.check();
  if (r !== R_OK) return r;
  const repr: EthernetRepr = { dst: p.dst.slice(), src: p.src.slice(), ethertype: p.ethertype };
  if (p.hasVlan) repr.vlanTci = p.vlanTci;
  return repr;
}

export function ethernetHeaderLen(repr: EthernetRepr): number {
  return repr.vlanTci === undefined ? ETH_HEADER_LEN : ETH_HEADER_LEN + VLAN_TAG_LEN;
}

/** Write the header at `off`; returns its length (the payload goes right after). */
export function emitEthernet(repr: EthernetRepr, buf: Uint8Array, off = 0): number {
  buf.set(repr.dst.subarray(0, 6), off);
  buf.set(repr.src.subarray(0, 6), off + 6);
  let o = off + 12;
  if (repr.vlanTci !== undefined) {
    buf[o] = ETHERTYPE_VLAN >>> 8;
    buf[o + 1] = ETHERTYPE_VLAN & 0xff;
    buf[o + 2] = (repr.vlanTci >>> 8) & 0xff;
    buf[o + 3] = repr.vlanTci & 0xff;
    o += 4;
  }
  buf[o] = (repr.ethertype >>> 8) & 0xff;
  buf[o + 1] = repr.ethertype & 0xff;
  return o + 2 - off;
}
