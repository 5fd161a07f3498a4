// Batch classifier: one pass per frame that validates Ethernet/ARP/IPv4 and
// TCP/UDP/ICMP (checksums included) and writes a fixed-size descriptor, so the
// engine's JS touches each frame's bytes only through that descriptor.
//
// The order of checks, and which fields are already written when a check
// fails, is part of the contract: src/kernels/js/classify.ts follows it line
// for line and the tests compare the two byte for byte. Fields are written as
// soon as the layer that carries them is valid: ethertype and L3 offset after
// Ethernet, proto/addresses after the whole IPv4 header (checksum included),
// L4 offset for unfragmented datagrams, and the L4 fields only once the L4
// header, checksum, options and flags all pass.
//
// Every read is guarded by the frame's own length, so nothing outside
// [ptr, ptr + len) is touched whatever the bytes say.
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
} from './layout';
import { csumPartial } from './checksum';
import { flowTouch, flowInsert } from './flow';

const ETH_IPV4: u32 = 0x0800;
const ETH_ARP: u32 = 0x0806;
const ETH_VLAN: u32 = 0x8100;
const ETH_IPV6: u32 = 0x86dd;
const TCP_FIN: u32 = 1;
const TCP_SYN: u32 = 2;
const TCP_RST: u32 = 4;
const TCP_ACK: u32 = 16;
const MAX_WSCALE: u32 = 14;

// @ts-ignore: decorator
@inline function be16(p: usize): u32 {
  return <u32>bswap<u16>(load<u16>(p));
}

// @ts-ignore: decorator
@inline function be32(p: usize): u32 {
  return bswap<u32>(load<u32>(p));
}

// @ts-ignore: decorator
@inline function clearDesc(d: usize): void {
  if (ASC_FEATURE_SIMD) {
    const z = i64x2.splat(0);
    v128.store(d, z, 0);
    v128.store(d, z, 16);
    v128.store(d, z, 32);
    v128.store(d, z, 48);
  } else {
    store<u64>(d, 0, 0);
    store<u64>(d, 0, 8);
    store<u64>(d, 0, 16);
    store<u64>(d, 0, 24);
    store<u64>(d, 0, 32);
    store<u64>(d, 0, 40);
    store<u64>(d, 0, 48);
    store<u64>(d, 0, 56);
  }
  store<i32>(d, -1, D_FLOW_ID);
}

// @ts-ignore: decorator
@inline function fail(d: usize, reason: u32): void {
  store<u8>(d, <u8>reason, D_REASON);
}

/** Folded partial of the IPv4 pseudo-header. */
// @ts-ignore: decorator
@inline function pseudo(src: u32, dst: u32, proto: u32, len: u32): u32 {
  let s = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
  s = (s & 0xffff) + (s >> 16);
  return (s & 0xffff) + (s >> 16);
}

function lookupFlow(d: usize, ft: usize, proto: u32, src: u32, sport: u32, dst: u32, dport: u32, now: u32, insert: bool): void {
  let id = flowTouch(ft, proto, src, sport, dst, dport, now);
  if (id >= 0) {
    store<u8>(d, <u8>FLOW_FOUND, D_FLOW_STATUS);
    store<i32>(d, id, D_FLOW_ID);
  } else if (insert) {
    id = flowInsert(ft, proto, src, sport, dst, dport, now);
    if (id >= 0) {
      store<u8>(d, <u8>FLOW_NEW, D_FLOW_STATUS);
      store<i32>(d, id, D_FLOW_ID);
    } else {
      // Only FT_FULL can come back after a miss; anything else is reported the same way.
      store<u8>(d, <u8>FLOW_FULL, D_FLOW_STATUS);
    }
  } else {
    store<u8>(d, <u8>FLOW_MISS, D_FLOW_STATUS);
  }
}

function classifyTcp(d: usize, l4: usize, l4off: u32, l4len: u32, src: u32, dst: u32, ft: usize, now: u32, flags: u32): void {
  if (l4len < 20) return fail(d, R_SHORT_L4);
  const doff = (<u32>load<u8>(l4, 12) >> 4) << 2;
  if (doff < 20 || doff > l4len) return fail(d, R_BAD_TCP_OFFSET);
  if (csumPartial(l4, l4len, pseudo(src, dst, 6, l4len)) != 0xffff) return fail(d, R_BAD_L4_CHECKSUM);

  // Options, Linux's rules: known kinds with a wrong length are skipped, later duplicates win.
  let opt: u32 = 0, mss: u32 = 0, ws: u32 = 0, sackN: u32 = 0, tsv: u32 = 0, tse: u32 = 0;
  let i = l4 + 20;
  const end = l4 + <usize>doff;
  while (i < end) {
    const kind = <u32>load<u8>(i);
    if (kind == 0) break;
    if (kind == 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) return fail(d, R_BAD_TCP_OPTIONS);
    const olen = <u32>load<u8>(i, 1);
    if (olen < 2 || i + <usize>olen > end) return fail(d, R_BAD_TCP_OPTIONS);
    if (kind == 2) {
      if (olen == 4) {
        mss = be16(i + 2);
        opt |= OPT_MSS;
      }
    } else if (kind == 3) {
      if (olen == 3) {
        ws = min<u32>(<u32>load<u8>(i, 2), MAX_WSCALE);
        opt |= OPT_WSCALE;
      }
    } else if (kind == 4) {
      if (olen == 2) opt |= OPT_SACK_PERM;
    } else if (kind == 5) {
      if (olen >= 10 && ((olen - 2) & 7) == 0) {
        sackN = (olen - 2) >> 3;
        opt |= OPT_SACK;
      }
    } else if (kind == 8) {
      if (olen == 10) {
        tsv = be32(i + 2);
        tse = be32(i + 6);
        opt |= OPT_TS;
      }
    }
    i += <usize>olen;
  }
  const tf = <u32>load<u8>(l4, 13);
  if (tf == 0 || ((tf & TCP_SYN) != 0 && (tf & (TCP_FIN | TCP_RST)) != 0)) return fail(d, R_BAD_TCP_FLAGS);

  const sport = be16(l4);
  const dport = be16(l4 + 2);
  store<u8>(d, <u8>tf, D_TCP_FLAGS);
  store<u8>(d, <u8>opt, D_OPT_FLAGS);
  store<u8>(d, <u8>ws, D_WSCALE);
  store<u8>(d, <u8>sackN, D_SACK_COUNT);
  store<u32>(d, l4off + doff, D_PAYLOAD_OFF);
  store<u32>(d, l4len - doff, D_PAYLOAD_LEN);
  store<u16>(d, <u16>sport, D_SRC_PORT);
  store<u16>(d, <u16>dport, D_DST_PORT);
  store<u32>(d, be32(l4 + 4), D_SEQ);
  store<u32>(d, be32(l4 + 8), D_ACK);
  store<u16>(d, <u16>be16(l4 + 14), D_WINDOW);
  store<u16>(d, <u16>mss, D_MSS);
  store<u32>(d, tsv, D_TS_VAL);
  store<u32>(d, tse, D_TS_ECR);
  store<u8>(d, <u8>KIND_TCP, D_KIND);
  if (ft != 0) {
    const bareSyn = (tf & (TCP_SYN | TCP_ACK)) == TCP_SYN;
    lookupFlow(d, ft, 6, src, sport, dst, dport, now, bareSyn && (flags & CF_INSERT_TCP_SYN) != 0);
  }
}

function classifyUdp(d: usize, l4: usize, l4off: u32, l4len: u32, src: u32, dst: u32, ft: usize, now: u32, flags: u32): void {
  if (l4len < 8) return fail(d, R_SHORT_L4);
  const ulen = be16(l4 + 4);
  // The UDP length governs: IP payload beyond it is padding.
  if (ulen < 8 || ulen > l4len) return fail(d, R_BAD_UDP_LENGTH);
  if (load<u16>(l4, 6) != 0 && csumPartial(l4, ulen, pseudo(src, dst, 17, ulen)) != 0xffff) return fail(d, R_BAD_L4_CHECKSUM);
  const sport = be16(l4);
  const dport = be16(l4 + 2);
  store<u16>(d, <u16>sport, D_SRC_PORT);
  store<u16>(d, <u16>dport, D_DST_PORT);
  store<u32>(d, l4off + 8, D_PAYLOAD_OFF);
  store<u32>(d, ulen - 8, D_PAYLOAD_LEN);
  store<u8>(d, <u8>KIND_UDP, D_KIND);
  if (ft != 0) lookupFlow(d, ft, 17, src, sport, dst, dport, now, (flags & CF_INSERT_UDP) != 0);
}

function classifyIcmp(d: usize, l4: usize, l4off: u32, l4len: u32): void {
  if (l4len < 8) return fail(d, R_SHORT_L4);
  if (csumPartial(l4, l4len, 0) != 0xffff) return fail(d, R_BAD_L4_CHECKSUM);
  const type = <u32>load<u8>(l4);
  store<u8>(d, <u8>type, D_ICMP_TYPE);
  store<u8>(d, load<u8>(l4, 1), D_ICMP_CODE);
  if (type == 0 || type == 8) {
    store<u16>(d, <u16>be16(l4 + 4), D_SRC_PORT);
    store<u16>(d, <u16>be16(l4 + 6), D_DST_PORT);
  }
  store<u32>(d, l4off + 8, D_PAYLOAD_OFF);
  store<u32>(d, l4len - 8, D_PAYLOAD_LEN);
  store<u8>(d, <u8>KIND_ICMP, D_KIND);
}

function classifyOne(p: usize, len: u32, d: usize, ft: usize, now: u32, flags: u32): void {
  clearDesc(d);
  if (len < 14) return fail(d, R_SHORT_FRAME);
  let et = be16(p + 12);
  let l3: u32 = 14;
  if (et == ETH_VLAN) {
    if (len < 18) return fail(d, R_SHORT_FRAME);
    et = be16(p + 16);
    l3 = 18;
  }
  store<u16>(d, <u16>et, D_ETHERTYPE);
  store<u16>(d, <u16>l3, D_L3_OFF);
  const ip = p + <usize>l3;
  const avail = len - l3;

  if (et == ETH_ARP) {
    if (avail < 28) return fail(d, R_SHORT_ARP);
    if (be16(ip) != 1 || be16(ip + 2) != 0x0800 || load<u8>(ip, 4) != 6 || load<u8>(ip, 5) != 4) return fail(d, R_BAD_ARP);
    store<u32>(d, be32(ip + 14), D_SRC_IP);
    store<u32>(d, be32(ip + 24), D_DST_IP);
    store<u16>(d, <u16>be16(ip + 6), D_SRC_PORT);
    store<u8>(d, <u8>KIND_ARP, D_KIND);
    return;
  }
  if (et == ETH_IPV6) {
    store<u8>(d, <u8>KIND_IPV6, D_KIND);
    return;
  }
  if (et != ETH_IPV4) {
    store<u8>(d, <u8>KIND_OTHER, D_KIND);
    return;
  }

  if (avail < 20) return fail(d, R_SHORT_IPV4);
  const vihl = <u32>load<u8>(ip);
  if ((vihl >> 4) != 4) return fail(d, R_BAD_IP_VERSION);
  const ihl = (vihl & 15) << 2;
  if (ihl < 20 || ihl > avail) return fail(d, R_BAD_IHL);
  const total = be16(ip + 2);
  if (total < ihl || total > avail) return fail(d, R_BAD_TOTAL_LENGTH);
  if (csumPartial(ip, ihl, 0) != 0xffff) return fail(d, R_BAD_IP_CHECKSUM);
  const proto = <u32>load<u8>(ip, 9);
  const src = be32(ip + 12);
  const dst = be32(ip + 16);
  store<u8>(d, <u8>proto, D_PROTO);
  store<u32>(d, src, D_SRC_IP);
  store<u32>(d, dst, D_DST_IP);
  // MF or a non-zero offset: the L4 header is not here (or not whole); the fragment kernel reassembles first.
  if ((be16(ip + 6) & 0x3fff) != 0) {
    store<u8>(d, <u8>KIND_FRAGMENT, D_KIND);
    return;
  }
  const l4off = l3 + ihl;
  const l4 = p + <usize>l4off;
  const l4len = total - ihl;
  store<u16>(d, <u16>l4off, D_L4_OFF);
  if (proto == 6) classifyTcp(d, l4, l4off, l4len, src, dst, ft, now, flags);
  else if (proto == 17) classifyUdp(d, l4, l4off, l4len, src, dst, ft, now, flags);
  else if (proto == 1) classifyIcmp(d, l4, l4off, l4len);
  else {
    store<u32>(d, l4off, D_PAYLOAD_OFF);
    store<u32>(d, l4len, D_PAYLOAD_LEN);
    store<u8>(d, <u8>KIND_OTHER, D_KIND);
  }
}

export function classify(table: usize, count: u32, descs: usize, flowTable: usize, now: u32, flags: u32): u32 {
  for (let i: u32 = 0; i < count; i++) {
    const e = table + <usize>i * FRAME_ENTRY_SIZE;
    classifyOne(<usize>load<u32>(e, FE_PTR), load<u32>(e, FE_LEN), descs + <usize>i * DESC_SIZE, flowTable, now, flags);
  }
  return count;
}
