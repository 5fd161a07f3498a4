// JS twin of assembly/classify.ts: same checks in the same order, same
// fields written at the same points, so descriptors match byte for byte (see
// the header comment there for the contract). Reads go through the u8 view
// and a big-endian DataView, descriptor writes through little-endian
// DataView calls; nothing is allocated per frame.
import type { JsMem } from './mem.js';
import {
  FRAME_ENTRY_SIZE, FE_PTR, FE_LEN, DESC_SIZE,
  D_KIND, D_REASON, D_PROTO, D_TCP_FLAGS, D_FLOW_STATUS, D_OPT_FLAGS, D_WSCALE, D_SACK_COUNT,
  D_L3_OFF, D_L4_OFF, D_PAYLOAD_OFF, D_PAYLOAD_LEN, D_SRC_IP, D_DST_IP, D_SRC_PORT, D_DST_PORT,
  D_SEQ, D_ACK, D_WINDOW, D_MSS, D_TS_VAL, D_TS_ECR, D_FLOW_ID, D_ETHERTYPE, D_ICMP_TYPE, D_ICMP_CODE,
  KIND_ARP, KIND_ICMP, KIND_UDP, KIND_TCP, KIND_FRAGMENT, KIND_IPV6, KIND_OTHER,
  R_SHORT_FRAME, R_SHORT_ARP, R_BAD_ARP, R_SHORT_IPV4, R_BAD_IP_VERSION, R_BAD_IHL, R_BAD_TOTAL_LENGTH,
  R_BAD_IP_CHECKSUM, R_SHORT_L4, R_BAD_TCP_OFFSET, R_BAD_L4_CHECKSUM, R_BAD_UDP_LENGTH, R_BAD_TCP_OPTIONS,
  R_BAD_TCP_FLAGS,
  FLOW_FOUND, FLOW_NEW, FLOW_FULL, FLOW_MISS, CF_INSERT_TCP_SYN, CF_INSERT_UDP,
  OPT_MSS, OPT_WSCALE, OPT_SACK_PERM, OPT_TS, OPT_SACK,
} from '../../../assembly/layout.js';
import { csumPartial } from './checksum.js';
import { flowTouch, flowInsert } from './flow.js';

const ETH_IPV4 = 0x0800;
const ETH_ARP = 0x0806;
const ETH_VLAN = 0x8100;
const ETH_IPV6 = 0x86dd;
const TCP_FIN = 1;
const TCP_SYN = 2;
const TCP_RST = 4;
const TCP_ACK = 16;
const MAX_WSCALE = 14;

function pseudo(src: number, dst: number, proto: number, len: number): number {
  let s = (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + len;
  s = (s & 0xffff) + (s >>> 16);
  return (s & 0xffff) + (s >>> 16);
}

function lookupFlow(m: JsMem, d: number, ft: number, proto: number, src: number, sport: number, dst: number, dport: number, now: number, insert: boolean): void {
  const dv = m.dv;
  let id = flowTouch(m, ft, proto, src, sport, dst, dport, now);
  if (id >= 0) {
    m.u8[d + D_FLOW_STATUS] = FLOW_FOUND;
    dv.setInt32(d + D_FLOW_ID, id, true);
  } else if (insert) {
    id = flowInsert(m, ft, proto, src, sport, dst, dport, now);
    if (id >= 0) {
      m.u8[d + D_FLOW_STATUS] = FLOW_NEW;
      dv.setInt32(d + D_FLOW_ID, id, true);
    } else {
      m.u8[d + D_FLOW_STATUS] = FLOW_FULL;
    }
  } else {
    m.u8[d + D_FLOW_STATUS] = FLOW_MISS;
  }
}

function classifyTcp(m: JsMem, d: number, l4: number, l4off: number, l4len: number, src: number, dst: number, ft: number, now: number, flags: number): void {
  const u8 = m.u8;
  const dv = m.dv;
  if (l4len < 20) { u8[d + D_REASON] = R_SHORT_L4; return; }
  const doff = (u8[l4 + 12] >>> 4) << 2;
  if (doff < 20 || doff > l4len) { u8[d + D_REASON] = R_BAD_TCP_OFFSET; return; }
  if (csumPartial(m, l4, l4len, pseudo(src, dst, 6, l4len)) !== 0xffff) { u8[d + D_REASON] = R_BAD_L4_CHECKSUM; return; }

  let opt = 0, mss = 0, ws = 0, sackN = 0, tsv = 0, tse = 0;
  let i = l4 + 20;
  const end = l4 + doff;
  while (i < end) {
    const kind = u8[i];
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) { u8[d + D_REASON] = R_BAD_TCP_OPTIONS; return; }
    const olen = u8[i + 1];
    if (olen < 2 || i + olen > end) { u8[d + D_REASON] = R_BAD_TCP_OPTIONS; return; }
    if (kind === 2) {
      if (olen === 4) {
        mss = dv.getUint16(i + 2);
        opt |= OPT_MSS;
      }
    } else if (kind === 3) {
      if (olen === 3) {
        ws = u8[i + 2] < MAX_WSCALE ? u8[i + 2] : MAX_WSCALE;
        opt |= OPT_WSCALE;
      }
    } else if (kind === 4) {
      if (olen === 2) opt |= OPT_SACK_PERM;
    } else if (kind === 5) {
      if (olen >= 10 && ((olen - 2) & 7) === 0) {
        sackN = (olen - 2) >>> 3;
        opt |= OPT_SACK;
      }
    } else if (kind === 8) {
      if (olen === 10) {
        tsv = dv.getUint32(i + 2);
        tse = dv.getUint32(i + 6);
        opt |= OPT_TS;
      }
    }
    i += olen;
  }
  const tf = u8[l4 + 13];
  if (tf === 0 || ((tf & TCP_SYN) !== 0 && (tf & (TCP_FIN | TCP_RST)) !== 0)) { u8[d + D_REASON] = R_BAD_TCP_FLAGS; return; }

  const sport = dv.getUint16(l4);
  const dport = dv.getUint16(l4 + 2);
  u8[d + D_TCP_FLAGS] = tf;
  u8[d + D_OPT_FLAGS] = opt;
  u8[d + D_WSCALE] = ws;
  u8[d + D_SACK_COUNT] = sackN;
  dv.setUint32(d + D_PAYLOAD_OFF, l4off + doff, true);
  dv.setUint32(d + D_PAYLOAD_LEN, l4len - doff, true);
  dv.setUint16(d + D_SRC_PORT, sport, true);
  dv.setUint16(d + D_DST_PORT, dport, true);
  dv.setUint32(d + D_SEQ, dv.getUint32(l4 + 4), true);
  dv.setUint32(d + D_ACK, dv.getUint32(l4 + 8), true);
  dv.setUint16(d + D_WINDOW, dv.getUint16(l4 + 14), true);
  dv.setUint16(d + D_MSS, mss, true);
  dv.setUint32(d + D_TS_VAL, tsv, true);
  dv.setUint32(d + D_TS_ECR, tse, true);
  u8[d + D_KIND] = KIND_TCP;
  if (ft !== 0) {
    const bareSyn = (tf & (TCP_SYN | TCP_ACK)) === TCP_SYN;
    lookupFlow(m, d, ft, 6, src, sport, dst, dport, now, bareSyn && (flags & CF_INSERT_TCP_SYN) !== 0);
  }
}

function classifyUdp(m: JsMem, d: number, l4: number, l4off: number, l4len: number, src: number, dst: number, ft: number, now: number, flags: number): void {
  const u8 = m.u8;
  const dv = m.dv;
  if (l4len < 8) { u8[d + D_REASON] = R_SHORT_L4; return; }
  const ulen = dv.getUint16(l4 + 4);
  if (ulen < 8 || ulen > l4len) { u8[d + D_REASON] = R_BAD_UDP_LENGTH; return; }
  if (dv.getUint16(l4 + 6) !== 0 && csumPartial(m, l4, ulen, pseudo(src, dst, 17, ulen)) !== 0xffff) {
    u8[d + D_REASON] = R_BAD_L4_CHECKSUM;
    return;
  }
  const sport = dv.getUint16(l4);
  const dport = dv.getUint16(l4 + 2);
  dv.setUint16(d + D_SRC_PORT, sport, true);
  dv.setUint16(d + D_DST_PORT, dport, true);
  dv.setUint32(d + D_PAYLOAD_OFF, l4off + 8, true);
  dv.setUint32(d + D_PAYLOAD_LEN, ulen - 8, true);
  u8[d + D_KIND] = KIND_UDP;
  if (ft !== 0) lookupFlow(m, d, ft, 17, src, sport, dst, dport, now, (flags & CF_INSERT_UDP) !== 0);
}

function classifyIcmp(m: JsMem, d: number, l4: number, l4off: number, l4len: number): void {
  const u8 = m.u8;
  const dv = m.dv;
  if (l4len < 8) { u8[d + D_REASON] = R_SHORT_L4; return; }
  if (csumPartial(m, l4, l4len, 0) !== 0xffff) { u8[d + D_REASON] = R_BAD_L4_CHECKSUM; return; }
  const type = u8[l4];
  u8[d + D_ICMP_TYPE] = type;
  u8[d + D_ICMP_CODE] = u8[l4 + 1];
  if (type === 0 || type === 8) {
    dv.setUint16(d + D_SRC_PORT, dv.getUint16(l4 + 4), true);
    dv.setUint16(d + D_DST_PORT, dv.getUint16(l4 + 6), true);
  }
  dv.setUint32(d + D_PAYLOAD_OFF, l4off + 8, true);
  dv.setUint32(d + D_PAYLOAD_LEN, l4len - 8, true);
  u8[d + D_KIND] = KIND_ICMP;
}

function classifyOne(m: JsMem, p: number, len: number, d: number, ft: number, now: number, flags: number): void {
  const u8 = m.u8;
  const dv = m.dv;
  // Descriptors are 64-byte aligned by convention but need not be; fill() handles either.
  u8.fill(0, d, d + DESC_SIZE);
  dv.setInt32(d + D_FLOW_ID, -1, true);
  if (len < 14) { u8[d + D_REASON] = R_SHORT_FRAME; return; }
  let et = dv.getUint16(p + 12);
  let l3 = 14;
  if (et === ETH_VLAN) {
    if (len < 18) { u8[d + D_REASON] = R_SHORT_FRAME; return; }
    et = dv.getUint16(p + 16);
    l3 = 18;
  }
  dv.setUint16(d + D_ETHERTYPE, et, true);
  dv.setUint16(d + D_L3_OFF, l3, true);
  const ip = p + l3;
  const avail = len - l3;

  if (et === ETH_ARP) {
    if (avail < 28) { u8[d + D_REASON] = R_SHORT_ARP; return; }
    if (dv.getUint16(ip) !== 1 || dv.getUint16(ip + 2) !== 0x0800 || u8[ip + 4] !== 6 || u8[ip + 5] !== 4) {
      u8[d + D_REASON] = R_BAD_ARP;
      return;
    }
    dv.setUint32(d + D_SRC_IP, dv.getUint32(ip + 14), true);
    dv.setUint32(d + D_DST_IP, dv.getUint32(ip + 24), true);
    dv.setUint16(d + D_SRC_PORT, dv.getUint16(ip + 6), true);
    u8[d + D_KIND] = KIND_ARP;
    return;
  }
  if (et === ETH_IPV6) { u8[d + D_KIND] = KIND_IPV6; return; }
  if (et !== ETH_IPV4) { u8[d + D_KIND] = KIND_OTHER; return; }

  if (avail < 20) { u8[d + D_REASON] = R_SHORT_IPV4; return; }
  const vihl = u8[ip];
  if (vihl >>> 4 !== 4) { u8[d + D_REASON] = R_BAD_IP_VERSION; return; }
  const ihl = (vihl & 15) << 2;
  if (ihl < 20 || ihl > avail) { u8[d + D_REASON] = R_BAD_IHL; return; }
  const total = dv.getUint16(ip + 2);
  if (total < ihl || total > avail) { u8[d + D_REASON] = R_BAD_TOTAL_LENGTH; return; }
  if (csumPartial(m, ip, ihl, 0) !== 0xffff) { u8[d + D_REASON] = R_BAD_IP_CHECKSUM; return; }
  const proto = u8[ip + 9];
  const src = dv.getUint32(ip + 12);
  const dst = dv.getUint32(ip + 16);
  u8[d + D_PROTO] = proto;
  dv.setUint32(d + D_SRC_IP, src, true);
  dv.setUint32(d + D_DST_IP, dst, true);
  if ((dv.getUint16(ip + 6) & 0x3fff) !== 0) { u8[d + D_KIND] = KIND_FRAGMENT; return; }
  const l4off = l3 + ihl;
  const l4 = p + l4off;
  const l4len = total - ihl;
  dv.setUint16(d + D_L4_OFF, l4off, true);
  if (proto === 6) classifyTcp(m, d, l4, l4off, l4len, src, dst, ft, now, flags);
  else if (proto === 17) classifyUdp(m, d, l4, l4off, l4len, src, dst, ft, now, flags);
  else if (proto === 1) classifyIcmp(m, d, l4, l4off, l4len);
  else {
    dv.setUint32(d + D_PAYLOAD_OFF, l4off, true);
    dv.setUint32(d + D_PAYLOAD_LEN, l4len, true);
    u8[d + D_KIND] = KIND_OTHER;
  }
}

export function classify(m: JsMem, table: number, count: number, descs: number, flowTable: number, now: number, flags: number): number {
  const dv = m.dv;
  for (let i = 0; i < count; i++) {
    const e = table + i * FRAME_ENTRY_SIZE;
    classifyOne(m, dv.getUint32(e + FE_PTR, true), dv.getUint32(e + FE_LEN, true), descs + i * DESC_SIZE, flowTable, now, flags);
  }
  return count;
}
