/**
 * Frames the engine answers with on its slow paths (ARP, ICMP echo, UDP
 * datagrams too large for one frame), built with the src/wire emitters.
 * The bulk TCP/UDP path goes through the buildFrames kernel instead.
 */
import { ArpPacket, parseArp, emitArp, ARP_LEN, ARP_OP_REPLY, type ArpRepr } from '../wire/arp.js';
import { emitEthernet, EthernetPacket, ETHERTYPE_ARP, ETHERTYPE_IPV4 } from '../wire/ethernet.js';
import { emitIpv4, Ipv4Packet, IP_PROTO_ICMP, IP_PROTO_UDP, put16 } from '../wire/ipv4.js';
import { update16 } from '../wire/checksum.js';
import { emitUdp } from '../wire/udp.js';
import { emitIcmp, quoteDatagram, ICMP_DEST_UNREACHABLE, UNREACH_PORT } from '../wire/icmp.js';

/** The ARP message of a frame, or null when it is not a well-formed Ethernet/IPv4 ARP. */
export function readArp(buf: Uint8Array, ptr: number, len: number): ArpRepr | null {
  const eth = new EthernetPacket(buf, ptr, len);
  if (eth.check() !== 0) return null;
  const a = parseArp(new ArpPacket(buf, ptr + eth.headerLen, len - eth.headerLen));
  return typeof a === 'number' ? null : a;
}

/** "targetIp is at ourMac", unicast to the asker. */
export function buildArpReply(ourMac: Uint8Array, ourIp: number, toMac: Uint8Array, toIp: number): Uint8Array {
  const f = new Uint8Array(14 + ARP_LEN);
  const o = emitEthernet({ dst: toMac, src: ourMac, ethertype: ETHERTYPE_ARP }, f, 0);
  emitArp({ op: ARP_OP_REPLY, senderMac: ourMac, senderIp: ourIp, targetMac: toMac, targetIp: toIp }, f, o);
  return f;
}

let ipIdent = 0x4000;

/**
 * Echo reply for the echo request in `buf[ptr, ptr+len)` whose IPv4 header is
 * at `l3Off`: same identifier, sequence and data; addresses swapped; the ICMP
 * checksum updated incrementally (only the type changed). Null when the
 * request is malformed (the classifier has validated it, so this is a guard).
 */
export function buildIcmpEchoReply(buf: Uint8Array, ptr: number, len: number, l3Off: number, ourMac: Uint8Array): Uint8Array | null {
  const ip = new Ipv4Packet(buf, ptr + l3Off, len - l3Off);
  if (ip.check() !== 0 || ip.protocol !== IP_PROTO_ICMP) return null;
  const icmpStart = ptr + l3Off + ip.headerLen;
  const icmpLen = ip.totalLength - ip.headerLen;
  if (icmpLen < 8) return null;
  const f = new Uint8Array(14 + 20 + icmpLen);
  let o = emitEthernet({ dst: buf.subarray(ptr + 6, ptr + 12), src: ourMac, ethertype: ETHERTYPE_IPV4 }, f, 0);
  o += emitIpv4({ src: ip.dst, dst: ip.src, protocol: IP_PROTO_ICMP, payloadLen: icmpLen, ttl: 64, ident: ipIdent++ & 0xffff }, f, o);
  f.set(buf.subarray(icmpStart, icmpStart + icmpLen), o);
  const oldWord = (f[o] << 8) | f[o + 1];
  f[o] = 0; // echo reply
  const ck = (f[o + 2] << 8) | f[o + 3];
  put16(f, o + 2, update16(ck, oldWord, (f[o] << 8) | f[o + 1]));
  return f;
}

/**
 * A UDP datagram larger than one frame, as IPv4 fragments of at most `mtu`
 * bytes each (RFC 791: every fragment but the last carries a multiple of 8).
 */
export function buildUdpFragments(srcMac: Uint8Array, dstMac: Uint8Array, srcIp: number, srcPort: number,
  dstIp: number, dstPort: number, data: Uint8Array, mtu: number): Uint8Array[] {
  const udpLen = 8 + data.length;
  const dgram = new Uint8Array(udpLen);
  emitUdp({ srcPort, dstPort, payload: data }, dgram, 0, srcIp, dstIp);
  const per = (mtu - 20) & ~7;
  const ident = ipIdent++ & 0xffff;
  const frames: Uint8Array[] = [];
  for (let off = 0; off < udpLen; off += per) {
    const n = Math.min(per, udpLen - off);
    const f = new Uint8Array(14 + 20 + n);
    let o = emitEthernet({ dst: dstMac, src: srcMac, ethertype: ETHERTYPE_IPV4 }, f, 0);
    o += emitIpv4({ src: srcIp, dst: dstIp, protocol: IP_PROTO_UDP, payloadLen: n, ttl: 64, ident, moreFrags: off + n < udpLen, fragOffset: off }, f, o);
    f.set(dgram.subarray(off, off + n), o);
    frames.push(f);
  }
  return frames;
}

/**
 * ICMP port unreachable for the IPv4 datagram whose header is at `buf[l3]`,
 * sent from `fromIp` (the address the guest tried to reach) to `toMac`.
 */
export function buildPortUnreachable(buf: Uint8Array, l3: number, toMac: Uint8Array, ourMac: Uint8Array, fromIp: number): Uint8Array | null {
  const ip = new Ipv4Packet(buf, l3, Math.min(buf.length - l3, 65535));
  if (ip.check() !== 0) return null;
  return unreachableFrame(quoteDatagram(buf.subarray(l3, l3 + ip.totalLength)), ip.src, toMac, ourMac, fromIp);
}

function unreachableFrame(quoted: Uint8Array, toIp: number, toMac: Uint8Array, ourMac: Uint8Array, fromIp: number): Uint8Array {
  const repr = { kind: 'destUnreachable' as const, code: UNREACH_PORT, nextHopMtu: 0, quoted, original: null };
  const icmpLen = 8 + quoted.length;
  const f = new Uint8Array(14 + 20 + icmpLen);
  let o = emitEthernet({ dst: toMac, src: ourMac, ethertype: ETHERTYPE_IPV4 }, f, 0);
  o += emitIpv4({ src: fromIp, dst: toIp, protocol: IP_PROTO_ICMP, payloadLen: icmpLen, ttl: 64, ident: ipIdent++ & 0xffff }, f, o);
  emitIcmp(repr, f, o);
  return f;
}

/**
 * Port unreachable for a guest datagram the host refused after it left the
 * engine: the quoted header is rebuilt from what the NAT binding remembers
 * (addresses, ports, length), which is all a guest's stack matches on.
 */
export function buildUdpPortUnreachable(ourMac: Uint8Array, guestMac: Uint8Array, guestIp: number, guestPort: number,
  remoteIp: number, remotePort: number, payloadLen: number): Uint8Array {
  const orig = new Uint8Array(28);
  emitIpv4({ src: guestIp, dst: remoteIp, protocol: IP_PROTO_UDP, payloadLen: 8 + payloadLen, ttl: 64, ident: 0 }, orig, 0);
  put16(orig, 20, guestPort);
  put16(orig, 22, remotePort);
  put16(orig, 24, 8 + payloadLen);
  return unreachableFrame(orig, guestIp, guestMac, ourMac, remoteIp);
}
