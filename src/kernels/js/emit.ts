import type { JsMem } from './mem.js';
import { csumPartial } from './checksum.js';
import {
  TX_SIZE, T_PROTO, T_TCP_FLAGS, T_OPT_FLAGS, T_WSCALE, T_SRC_IP, T_DST_IP, T_SRC_PORT, T_DST_PORT,
  T_SEQ, T_ACK, T_WINDOW, T_MSS, T_TS_VAL, T_TS_ECR, T_PAYLOAD_PTR, T_PAYLOAD_LEN, T_IP_ID, T_TTL,
  T_DST_MAC, T_SRC_MAC, T_FRAME_LEN, T_COPY_FROM, FRAME_ENTRY_SIZE, FE_PTR, FE_LEN,
  OPT_MSS, OPT_WSCALE, OPT_SACK_PERM, OPT_TS,
} from '../../../assembly/layout.js';

// The JS twin of assembly/emit.ts; see the output contract at the top of that
// file (4-byte frame starts, zero-length entries for unbuildable descriptors,
// stop at the first frame that does not fit, Linux option layouts). Descriptor
// and table fields are little-endian, packet fields big-endian.

const ETH_HDR = 14;
const IP_HDR = 20;
const L4_OFF = ETH_HDR + IP_HDR;
const UDP_HDR = 8;
const TCP_HDR = 20;
const IP_MAX_TOTAL = 65535;
const DEFAULT_TTL = 64;

function fold32(s: number): number {
  s = (s & 0xffff) + (s >>> 16);
  return (s & 0xffff) + (s >>> 16);
}

/** TCP option bytes for OPT_* bits (the TX batch lays frames out with it too). */
export function tcpOptionsLen(opt: number): number {
  let n = 0;
  if (opt & OPT_MSS) n += 4;
  if (opt & (OPT_TS | OPT_SACK_PERM)) n += opt & OPT_TS ? 12 : 4;
  if (opt & OPT_WSCALE) n += 4;
  return n;
}

function writeTcpOptions(dv: DataView, p: number, t: number, opt: number): void {
  if (opt & OPT_MSS) {
    dv.setUint32(p, (0x02040000 | dv.getUint16(t + T_MSS, true)) >>> 0);
    p += 4;
  }
  if (opt & OPT_TS) {
    dv.setUint32(p, opt & OPT_SACK_PERM ? 0x0402080a : 0x0101080a);
    dv.setUint32(p + 4, dv.getUint32(t + T_TS_VAL, true));
    dv.setUint32(p + 8, dv.getUint32(t + T_TS_ECR, true));
    p += 12;
  } else if (opt & OPT_SACK_PERM) {
    dv.setUint32(p, 0x01010402);
    p += 4;
  }
  if (opt & OPT_WSCALE) {
    dv.setUint32(p, (0x01030300 | dv.getUint8(t + T_WSCALE)) >>> 0);
  }
}

export function buildFrames(m: JsMem, txs: number, count: number, out: number, outCap: number, table: number): number {
  txs >>>= 0;
  count >>>= 0;
  out >>>= 0;
  outCap >>>= 0;
  table >>>= 0;
  const { u8, dv } = m;
  const mem = u8.length;
  let n = count;
  if (txs + n * TX_SIZE > mem) n = txs >= mem ? 0 : Math.floor((mem - txs) / TX_SIZE);
  if (table + n * FRAME_ENTRY_SIZE > mem) n = table >= mem ? 0 : Math.floor((mem - table) / FRAME_ENTRY_SIZE);
  const outEnd = Math.min(out + outCap, mem);
  let cursor = out;

  let i = 0;
  for (; i < n; i++) {
    const t = txs + i * TX_SIZE;
    const e = table + i * FRAME_ENTRY_SIZE;
    // Like the WASM side's u64 arithmetic: no 32-bit wrap before the fit check.
    const start = Math.ceil(cursor / 4) * 4;
    const proto = u8[t + T_PROTO];
    const opt = u8[t + T_OPT_FLAGS];
    const payloadPtr = dv.getUint32(t + T_PAYLOAD_PTR, true);
    const payloadLen = dv.getUint32(t + T_PAYLOAD_LEN, true);
    const copyFrom = dv.getUint32(t + T_COPY_FROM, true);

    let l4Hdr = 0;
    if (proto === 6) l4Hdr = TCP_HDR + tcpOptionsLen(opt);
    else if (proto === 17) l4Hdr = UDP_HDR;
    if (l4Hdr === 0 || payloadLen > IP_MAX_TOTAL - IP_HDR - l4Hdr || payloadPtr + payloadLen > mem || copyFrom + payloadLen > mem) {
      dv.setUint32(e + FE_PTR, start >>> 0, true);
      dv.setUint32(e + FE_LEN, 0, true);
      dv.setUint32(t + T_FRAME_LEN, 0, true);
      continue;
    }

    const l4Len = l4Hdr + payloadLen;
    const ipTotal = IP_HDR + l4Len;
    const frameLen = ETH_HDR + ipTotal;
    const hdrs = frameLen - payloadLen;
    // A payload (even an empty one) placed inside the output region is built around, not copied (see assembly/emit.ts).
    const at = payloadPtr >= out + hdrs && payloadPtr - hdrs >= cursor ? payloadPtr - hdrs : start;
    if (at + frameLen > outEnd) break;
    const f = at;

    for (let j = 0; j < 6; j++) {
      u8[f + j] = u8[t + T_DST_MAC + j];
      u8[f + 6 + j] = u8[t + T_SRC_MAC + j];
    }
    dv.setUint16(f + 12, 0x0800);

    const srcIp = dv.getUint32(t + T_SRC_IP, true);
    const dstIp = dv.getUint32(t + T_DST_IP, true);
    const ipId = dv.getUint16(t + T_IP_ID, true);
    let ttl = u8[t + T_TTL];
    if (ttl === 0) ttl = DEFAULT_TTL;
    const addrSum = (srcIp >>> 16) + (srcIp & 0xffff) + (dstIp >>> 16) + (dstIp & 0xffff);
    const ipSum = fold32(0x4500 + ipTotal + ipId + 0x4000 + ((ttl << 8) | proto) + addrSum);
    const ip = f + ETH_HDR;
    dv.setUint16(ip, 0x4500);
    dv.setUint16(ip + 2, ipTotal);
    dv.setUint16(ip + 4, ipId);
    dv.setUint16(ip + 6, 0x4000);
    dv.setUint16(ip + 8, (ttl << 8) | proto);
    dv.setUint16(ip + 10, ~ipSum & 0xffff);
    dv.setUint32(ip + 12, srcIp);
    dv.setUint32(ip + 16, dstIp);

    const l4 = f + L4_OFF;
    dv.setUint16(l4, dv.getUint16(t + T_SRC_PORT, true));
    dv.setUint16(l4 + 2, dv.getUint16(t + T_DST_PORT, true));
    let csumOff: number;
    if (proto === 6) {
      dv.setUint32(l4 + 4, dv.getUint32(t + T_SEQ, true));
      dv.setUint32(l4 + 8, dv.getUint32(t + T_ACK, true));
      dv.setUint16(l4 + 12, ((l4Hdr >>> 2) << 12) | u8[t + T_TCP_FLAGS]);
      dv.setUint16(l4 + 14, dv.getUint16(t + T_WINDOW, true));
      dv.setUint32(l4 + 16, 0);
      writeTcpOptions(dv, l4 + TCP_HDR, t, opt);
      csumOff = 16;
    } else {
      dv.setUint16(l4 + 4, l4Len);
      dv.setUint16(l4 + 6, 0);
      csumOff = 6;
    }

    // copyWithin is a memmove, like memory.copy, so overlapping sources agree.
    const src = copyFrom !== 0 ? copyFrom : payloadPtr;
    if (src !== l4 + l4Hdr) u8.copyWithin(l4 + l4Hdr, src, src + payloadLen);

    const pseudo = fold32(addrSum + proto + l4Len);
    let ck = ~csumPartial(m, l4, l4Len, pseudo) & 0xffff;
    if (proto === 17 && ck === 0) ck = 0xffff;
    dv.setUint16(l4 + csumOff, ck);

    dv.setUint32(e + FE_PTR, at, true);
    dv.setUint32(e + FE_LEN, frameLen, true);
    dv.setUint32(t + T_FRAME_LEN, frameLen, true);
    cursor = at + frameLen;
  }
  return i;
}
