// Batch TX frame builder: one call per engine turn turns TX descriptors
// (layout.ts T_*) into complete Ethernet/IPv4/TCP|UDP frames.
//
// Output contract (mirrored exactly by src/kernels/js/emit.ts):
// - Each frame starts at the next 4-byte-aligned address at or after the end
//   of the previous one (the first at or after `out`). 4-byte starts keep the
//   u32 header stores and the payload copy from splitting words needlessly;
//   pad bytes between frames are left as they were.
// - Except a frame whose payload pointer lies inside the output region, at
//   least its headers' length past the end of the previous frame (and not
//   before `out`): that frame is built around its payload, starting at
//   payloadPtr - headers, and the payload is summed where it lies, not
//   copied. The engine copies host data straight there, saving a pass over
//   every byte it sends. This holds for an empty payload too (a bare ACK), so
//   the caller decides where every frame lands: it lays frames out back to
//   back with room for the VM link's framing header in front of each, and
//   the link writes them from this memory without copying them again.
// - T_COPY_FROM, when not 0, is where the payload's bytes are: they are
//   copied to the frame (placed by T_PAYLOAD_PTR as above) in the same pass
//   that sums them. Host data already in linear memory (a send-queue piece
//   read there) costs one pass instead of a copy and then a sum.
// - A descriptor that cannot become a frame (T_PROTO not 6/17, IPv4 total
//   length over 65535, or a payload or copy-from range outside memory) still consumes its
//   slot: T_FRAME_LEN = 0 and a (ptr, 0) table entry, ptr being where the
//   frame would have started. It counts in the return value, so "returned <
//   count" keeps meaning only "the output region is full".
// - Building stops at the first frame that does not fit in [out, out+outCap);
//   that descriptor and the rest are untouched.
// - Descriptor or table ranges that run past the end of memory shorten the
//   batch to the descriptors that fit instead of trapping; an output region
//   past the end of memory is clamped to memory.
// - TCP options follow Linux's tcp_options_write layouts: MSS; then
//   SACK-permitted+timestamps as one 12-byte block (or NOP NOP TS, or NOP NOP
//   SACK-perm); then NOP WS. OPT_SACK is ignored: the descriptor has no SACK
//   blocks to send.

import {
  TX_SIZE, T_PROTO, T_TCP_FLAGS, T_OPT_FLAGS, T_WSCALE, T_SRC_IP, T_DST_IP, T_SRC_PORT, T_DST_PORT,
  T_SEQ, T_ACK, T_WINDOW, T_MSS, T_TS_VAL, T_TS_ECR, T_PAYLOAD_PTR, T_PAYLOAD_LEN, T_IP_ID, T_TTL,
  T_DST_MAC, T_SRC_MAC, T_FRAME_LEN, T_COPY_FROM, FRAME_ENTRY_SIZE, FE_PTR, FE_LEN,
  OPT_MSS, OPT_WSCALE, OPT_SACK_PERM, OPT_TS,
} from './layout';
import { memBytes, fold64, sumLE, copySumLE } from './checksum';

const ETH_HDR: u32 = 14;
const IP_HDR: u32 = 20;
const L4_OFF: u32 = ETH_HDR + IP_HDR;
const UDP_HDR: u32 = 8;
const TCP_HDR: u32 = 20;
const IP_MAX_TOTAL: u32 = 65535;
const DEFAULT_TTL: u32 = 64;

// @ts-ignore: decorator
@inline function swap16(x: u32): u32 {
  return ((x & 0xff) << 8) | (x >> 8);
}

// @ts-ignore: decorator
@inline function fold32(s: u32): u32 {
  s = (s & 0xffff) + (s >> 16);
  return (s & 0xffff) + (s >> 16);
}

// @ts-ignore: decorator
@inline function store16be(p: usize, v: u32): void {
  store<u16>(p, bswap<u16>(<u16>v));
}

// @ts-ignore: decorator
@inline function store32be(p: usize, v: u32): void {
  store<u32>(p, bswap<u32>(v));
}

/** Bytes of TCP options for `opt` (OPT_* bits), already a multiple of 4. */
// @ts-ignore: decorator
@inline function tcpOptionsLen(opt: u32): u32 {
  let n: u32 = 0;
  if (opt & OPT_MSS) n += 4;
  if (opt & (OPT_TS | OPT_SACK_PERM)) n += (opt & OPT_TS) ? 12 : 4;
  if (opt & OPT_WSCALE) n += 4;
  return n;
}

/** Write the options for `opt` at `p`; returns the byte after them. */
// @ts-ignore: decorator
@inline function writeTcpOptions(p: usize, t: usize, opt: u32): usize {
  if (opt & OPT_MSS) {
    store32be(p, 0x02040000 | <u32>load<u16>(t + T_MSS));
    p += 4;
  }
  if (opt & OPT_TS) {
    // SACK-permitted rides in the two bytes that would otherwise be NOP NOP.
    store32be(p, (opt & OPT_SACK_PERM) ? 0x0402080a : 0x0101080a);
    store32be(p + 4, load<u32>(t + T_TS_VAL));
    store32be(p + 8, load<u32>(t + T_TS_ECR));
    p += 12;
  } else if (opt & OPT_SACK_PERM) {
    store32be(p, 0x01010402);
    p += 4;
  }
  if (opt & OPT_WSCALE) {
    store32be(p, 0x01030300 | <u32>load<u8>(t + T_WSCALE));
    p += 4;
  }
  return p;
}

export function buildFrames(txs: usize, count: u32, out: usize, outCap: u32, table: usize): u32 {
  const mem = memBytes();
  let n = <u64>count;
  if (<u64>txs + n * TX_SIZE > mem) n = <u64>txs >= mem ? 0 : (mem - <u64>txs) / TX_SIZE;
  if (<u64>table + n * FRAME_ENTRY_SIZE > mem) n = <u64>table >= mem ? 0 : (mem - <u64>table) / FRAME_ENTRY_SIZE;
  let outEnd = <u64>out + <u64>outCap;
  if (outEnd > mem) outEnd = mem;
  let cursor = <u64>out;

  let i: u32 = 0;
  for (; <u64>i < n; i++) {
    const t = txs + <usize>i * TX_SIZE;
    const e = table + <usize>i * FRAME_ENTRY_SIZE;
    const start = (cursor + 3) & ~(<u64>3);
    const proto = <u32>load<u8>(t + T_PROTO);
    const opt = <u32>load<u8>(t + T_OPT_FLAGS);
    const payloadPtr = load<u32>(t + T_PAYLOAD_PTR);
    const payloadLen = load<u32>(t + T_PAYLOAD_LEN);
    const copyFrom = load<u32>(t + T_COPY_FROM);

    let l4Hdr: u32 = 0;
    if (proto == 6) l4Hdr = TCP_HDR + tcpOptionsLen(opt);
    else if (proto == 17) l4Hdr = UDP_HDR;
    if (
      l4Hdr == 0 ||
      payloadLen > IP_MAX_TOTAL - IP_HDR - l4Hdr ||
      <u64>payloadPtr + <u64>payloadLen > mem ||
      <u64>copyFrom + <u64>payloadLen > mem
    ) {
      store<u32>(e + FE_PTR, <u32>start);
      store<u32>(e + FE_LEN, 0);
      store<u32>(t + T_FRAME_LEN, 0);
      continue;
    }

    const l4Len = l4Hdr + payloadLen;
    const ipTotal = IP_HDR + l4Len;
    const frameLen = ETH_HDR + ipTotal;
    const hdrs = <u64>(frameLen - payloadLen);
    let at = start;
    if (<u64>payloadPtr >= <u64>out + hdrs && <u64>payloadPtr - hdrs >= cursor) at = <u64>payloadPtr - hdrs;
    if (at + <u64>frameLen > outEnd) break;
    const f = <usize>at;

    // Ethernet II: the MACs are copied as stored (already in wire order).
    store<u32>(f, load<u32>(t + T_DST_MAC));
    store<u16>(f + 4, load<u16>(t + T_DST_MAC + 4));
    store<u32>(f + 6, load<u32>(t + T_SRC_MAC));
    store<u16>(f + 10, load<u16>(t + T_SRC_MAC + 4));
    store16be(f + 12, 0x0800);

    // IPv4, IHL 5, DF. The header checksum comes from the field values, so
    // the header bytes are never re-read.
    const srcIp = load<u32>(t + T_SRC_IP);
    const dstIp = load<u32>(t + T_DST_IP);
    const ipId = <u32>load<u16>(t + T_IP_ID);
    let ttl = <u32>load<u8>(t + T_TTL);
    if (ttl == 0) ttl = DEFAULT_TTL;
    const addrSum = (srcIp >> 16) + (srcIp & 0xffff) + (dstIp >> 16) + (dstIp & 0xffff);
    const ipSum = fold32(0x4500 + ipTotal + ipId + 0x4000 + ((ttl << 8) | proto) + addrSum);
    const ip = f + ETH_HDR;
    store16be(ip, 0x4500);
    store16be(ip + 2, ipTotal);
    store16be(ip + 4, ipId);
    store16be(ip + 6, 0x4000);
    store16be(ip + 8, (ttl << 8) | proto);
    store16be(ip + 10, ~ipSum & 0xffff);
    store32be(ip + 12, srcIp);
    store32be(ip + 16, dstIp);

    const l4 = f + L4_OFF;
    store16be(l4, <u32>load<u16>(t + T_SRC_PORT));
    store16be(l4 + 2, <u32>load<u16>(t + T_DST_PORT));
    let csumOff: usize;
    if (proto == 6) {
      store32be(l4 + 4, load<u32>(t + T_SEQ));
      store32be(l4 + 8, load<u32>(t + T_ACK));
      store16be(l4 + 12, ((l4Hdr >> 2) << 12) | <u32>load<u8>(t + T_TCP_FLAGS));
      store16be(l4 + 14, <u32>load<u16>(t + T_WINDOW));
      store<u32>(l4 + 16, 0); // checksum (filled below) and urgent pointer
      writeTcpOptions(l4 + TCP_HDR, t, opt);
      csumOff = 16;
    } else {
      store16be(l4 + 4, l4Len);
      store<u16>(l4 + 6, 0);
      csumOff = 6;
    }

    // L4 checksum over pseudo-header + header + payload, in the
    // little-endian domain like csumPartial. The header is even-sized, so the
    // payload's words line up with the segment's.
    const pseudo = fold32(addrSum + proto + l4Len);
    let acc = sumLE(l4, <usize>l4Hdr, <u64>swap16(pseudo));
    const dst = l4 + <usize>l4Hdr;
    const src = <usize>(copyFrom != 0 ? copyFrom : payloadPtr);
    if (src == dst) {
      acc = sumLE(dst, <usize>payloadLen, acc);
    } else if (<u64>src + <u64>payloadLen <= <u64>dst || <u64>dst + <u64>payloadLen <= <u64>src) {
      // The common case: read each payload byte once, copying and summing.
      acc = copySumLE(dst, src, <usize>payloadLen, acc);
    } else {
      // Overlapping source: memmove semantics first, then sum what landed,
      // so the result matches the JS twin's copyWithin + csumPartial.
      memory.copy(dst, src, <usize>payloadLen);
      acc = sumLE(dst, <usize>payloadLen, acc);
    }
    const s = swap16(fold64(acc));
    let ck = ~s & 0xffff;
    // UDP reserves 0 for "no checksum"; 0xffff is the same value in one's complement.
    if (proto == 17 && ck == 0) ck = 0xffff;
    store16be(l4 + csumOff, ck);

    store<u32>(e + FE_PTR, <u32>at);
    store<u32>(e + FE_LEN, frameLen);
    store<u32>(t + T_FRAME_LEN, frameLen);
    cursor = at + <u64>frameLen;
  }
  return i;
}
