/**
 * Pure-JS twin of assembly/frag.ts: IPv4 fragment reassembly over the same
 * table layout, producing the same results and the same bytes in memory.
 * Layout and policy (overlaps drop the datagram, finished datagrams never
 * expire) are explained in the AssemblyScript file; offsets must match it.
 */
import type { JsMem } from './mem.js';
import { FR_PENDING, FR_OVERLAP, FR_TOO_BIG, FR_FULL, FR_BAD, FR_TOO_MANY_PIECES } from '../../../assembly/layout.js';

const FT_SLOTS = 0;
const FT_MAXD = 4;
const FT_TIMEOUT = 8;
const FT_PENDING = 12;
const FT_SLOTSIZE = 16;
const FT_HDR = 32;

const S_STATE = 0;
const S_SRC = 4;
const S_DST = 8;
const S_KEY = 12;
const S_FIRST = 16;
const S_TOTAL = 20;
const S_IHL = 24;
const S_NPIECES = 28;
const S_DLEN = 32;
const S_PIECES = 64;
const PIECE_SIZE = 8;
const FT_MAX_PIECES = 64;
const FT_MAX_IHL = 60;
const S_BUF = S_PIECES + FT_MAX_PIECES * PIECE_SIZE;
const S_PAYLOAD = S_BUF + FT_MAX_IHL;

const FS_FREE = 0;
const FS_OPEN = 1;
const FS_DONE = 2;
const FT_UNKNOWN = 0xffffffff;
const FT_MAX_DATAGRAM = 65515;
const FT_MAX_SLOTS = 4096;

function clampSlots(s: number): number {
  s >>>= 0;
  return s > FT_MAX_SLOTS ? FT_MAX_SLOTS : s;
}
function clampMaxD(d: number): number {
  d >>>= 0;
  return d > FT_MAX_DATAGRAM ? FT_MAX_DATAGRAM : d;
}
function slotSizeFor(maxDatagram: number): number {
  return (S_PAYLOAD + clampMaxD(maxDatagram) + 7) & ~7;
}
function slotPtr(dv: DataView, t: number, slot: number): number {
  return t + FT_HDR + slot * dv.getUint32(t + FT_SLOTSIZE, true);
}
function dropSlot(dv: DataView, t: number, sp: number): void {
  dv.setUint32(sp + S_STATE, FS_FREE, true);
  dv.setUint32(t + FT_PENDING, dv.getUint32(t + FT_PENDING, true) - 1, true);
}

export function fragBytes(m: JsMem, slots: number, maxDatagram: number): number {
  return FT_HDR + clampSlots(slots) * slotSizeFor(maxDatagram);
}

export function fragInit(m: JsMem, ptr: number, slots: number, maxDatagram: number, timeout: number): void {
  const dv = m.dv;
  ptr >>>= 0;
  const n = clampSlots(slots);
  dv.setUint32(ptr + FT_SLOTS, n, true);
  dv.setUint32(ptr + FT_MAXD, clampMaxD(maxDatagram), true);
  dv.setUint32(ptr + FT_TIMEOUT, timeout >>> 0, true);
  dv.setUint32(ptr + FT_PENDING, 0, true);
  dv.setUint32(ptr + FT_SLOTSIZE, slotSizeFor(maxDatagram), true);
  for (let i = 0; i < n; i++) dv.setUint32(slotPtr(dv, ptr, i) + S_STATE, FS_FREE, true);
}

export function fragInsert(m: JsMem, t: number, ip: number, len: number, now: number): number {
  const dv = m.dv;
  const u8 = m.u8;
  t >>>= 0;
  ip >>>= 0;
  len >>>= 0;
  now >>>= 0;
  if (len < 20) return FR_BAD;
  const b0 = u8[ip];
  if (b0 >> 4 !== 4) return FR_BAD;
  const ihl = (b0 & 15) << 2;
  if (ihl < 20 || ihl > len) return FR_BAD;
  const total = dv.getUint16(ip + 2);
  if (total < ihl || total > len) return FR_BAD;
  const fo = dv.getUint16(ip + 6);
  const mf = (fo & 0x2000) !== 0;
  const s = (fo & 0x1fff) << 3;
  if (!mf && s === 0) return FR_BAD;
  const plen = total - ihl;
  if (plen === 0 || (mf && (plen & 7) !== 0)) return FR_BAD;
  const e = s + plen;
  const src = dv.getUint32(ip + 12);
  const dst = dv.getUint32(ip + 16);
  const key = ((dv.getUint16(ip + 4) << 8) | u8[ip + 9]) >>> 0;

  const slots = dv.getUint32(t + FT_SLOTS, true);
  let slot = -1;
  let free = -1;
  for (let k = 0; k < slots; k++) {
    const sp = slotPtr(dv, t, k);
    const st = dv.getUint32(sp + S_STATE, true);
    if (st === FS_OPEN) {
      if (dv.getUint32(sp + S_KEY, true) === key && dv.getUint32(sp + S_SRC, true) === src && dv.getUint32(sp + S_DST, true) === dst) {
        slot = k;
        break;
      }
    } else if (st === FS_FREE && free < 0) {
      free = k;
    }
  }
  if (e > dv.getUint32(t + FT_MAXD, true)) {
    if (slot >= 0) dropSlot(dv, t, slotPtr(dv, t, slot));
    return FR_TOO_BIG;
  }
  let sp: number;
  if (slot < 0) {
    if (free < 0) return FR_FULL;
    slot = free;
    sp = slotPtr(dv, t, slot);
    dv.setUint32(sp + S_STATE, FS_OPEN, true);
    dv.setUint32(sp + S_SRC, src, true);
    dv.setUint32(sp + S_DST, dst, true);
    dv.setUint32(sp + S_KEY, key, true);
    dv.setUint32(sp + S_FIRST, now, true);
    dv.setUint32(sp + S_TOTAL, FT_UNKNOWN, true);
    dv.setUint32(sp + S_IHL, 0, true);
    dv.setUint32(sp + S_NPIECES, 0, true);
    dv.setUint32(sp + S_DLEN, 0, true);
    dv.setUint32(t + FT_PENDING, dv.getUint32(t + FT_PENDING, true) + 1, true);
  } else {
    sp = slotPtr(dv, t, slot);
  }

  const n = dv.getUint32(sp + S_NPIECES, true);
  const pieces = sp + S_PIECES;
  let dtotal = dv.getUint32(sp + S_TOTAL, true);
  if (dtotal !== FT_UNKNOWN) {
    if (e > dtotal || (!mf && e !== dtotal)) {
      dropSlot(dv, t, sp);
      return FR_BAD;
    }
  } else if (!mf) {
    if (n > 0 && dv.getUint32(pieces + (n - 1) * PIECE_SIZE + 4, true) > e) {
      dropSlot(dv, t, sp);
      return FR_BAD;
    }
    dtotal = e;
  }

  let p = 0;
  while (p < n && dv.getUint32(pieces + p * PIECE_SIZE + 4, true) <= s) p++;
  if (p < n && dv.getUint32(pieces + p * PIECE_SIZE, true) < e) {
    dropSlot(dv, t, sp);
    return FR_OVERLAP;
  }
  const joinL = p > 0 && dv.getUint32(pieces + (p - 1) * PIECE_SIZE + 4, true) === s;
  const joinR = p < n && dv.getUint32(pieces + p * PIECE_SIZE, true) === e;
  const newN = n + 1 - (joinL ? 1 : 0) - (joinR ? 1 : 0);
  if (newN > FT_MAX_PIECES) {
    dropSlot(dv, t, sp);
    return FR_TOO_MANY_PIECES;
  }

  u8.copyWithin(sp + S_PAYLOAD + s, ip + ihl, ip + ihl + plen);
  if (s === 0) {
    u8.copyWithin(sp + S_PAYLOAD - ihl, ip, ip + ihl);
    dv.setUint32(sp + S_IHL, ihl, true);
  }
  const pp = pieces + p * PIECE_SIZE;
  if (joinL && joinR) {
    dv.setUint32(pp - PIECE_SIZE + 4, dv.getUint32(pp + 4, true), true);
    u8.copyWithin(pp, pp + PIECE_SIZE, pieces + n * PIECE_SIZE);
  } else if (joinL) {
    dv.setUint32(pp - PIECE_SIZE + 4, e, true);
  } else if (joinR) {
    dv.setUint32(pp, s, true);
  } else {
    u8.copyWithin(pp + PIECE_SIZE, pp, pieces + n * PIECE_SIZE);
    dv.setUint32(pp, s, true);
    dv.setUint32(pp + 4, e, true);
  }
  dv.setUint32(sp + S_NPIECES, newN, true);
  dv.setUint32(sp + S_TOTAL, dtotal, true);

  if (dtotal === FT_UNKNOWN || newN !== 1 || dv.getUint32(pieces, true) !== 0 || dv.getUint32(pieces + 4, true) !== dtotal) {
    return FR_PENDING;
  }
  const hlen = dv.getUint32(sp + S_IHL, true);
  const dlen = hlen + dtotal;
  if (dlen > 0xffff) {
    dropSlot(dv, t, sp);
    return FR_TOO_BIG;
  }
  const h = sp + S_PAYLOAD - hlen;
  dv.setUint16(h + 2, dlen);
  dv.setUint16(h + 6, 0);
  dv.setUint16(h + 10, 0);
  let sum = 0;
  for (let o = 0; o < hlen; o += 2) sum += dv.getUint16(h + o);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  dv.setUint16(h + 10, ~sum & 0xffff);
  dv.setUint32(sp + S_DLEN, dlen, true);
  dv.setUint32(sp + S_STATE, FS_DONE, true);
  return slot;
}

export function fragDatagramPtr(m: JsMem, t: number, slot: number): number {
  const dv = m.dv;
  t >>>= 0;
  slot >>>= 0;
  if (slot >= dv.getUint32(t + FT_SLOTS, true)) return 0;
  const sp = slotPtr(dv, t, slot);
  if (dv.getUint32(sp + S_STATE, true) !== FS_DONE) return 0;
  return sp + S_PAYLOAD - dv.getUint32(sp + S_IHL, true);
}

export function fragDatagramLen(m: JsMem, t: number, slot: number): number {
  const dv = m.dv;
  t >>>= 0;
  slot >>>= 0;
  if (slot >= dv.getUint32(t + FT_SLOTS, true)) return 0;
  const sp = slotPtr(dv, t, slot);
  if (dv.getUint32(sp + S_STATE, true) !== FS_DONE) return 0;
  return dv.getUint32(sp + S_DLEN, true);
}

export function fragRelease(m: JsMem, t: number, slot: number): void {
  const dv = m.dv;
  t >>>= 0;
  slot >>>= 0;
  if (slot >= dv.getUint32(t + FT_SLOTS, true)) return;
  const sp = slotPtr(dv, t, slot);
  if (dv.getUint32(sp + S_STATE, true) !== FS_FREE) dropSlot(dv, t, sp);
}

export function fragExpire(m: JsMem, t: number, now: number): number {
  const dv = m.dv;
  t >>>= 0;
  now >>>= 0;
  const slots = dv.getUint32(t + FT_SLOTS, true);
  const timeout = dv.getUint32(t + FT_TIMEOUT, true);
  let dropped = 0;
  for (let k = 0; k < slots; k++) {
    const sp = slotPtr(dv, t, k);
    if (dv.getUint32(sp + S_STATE, true) === FS_OPEN && ((now - dv.getUint32(sp + S_FIRST, true)) >>> 0) > timeout) {
      dropSlot(dv, t, sp);
      dropped++;
    }
  }
  return dropped;
}

export function fragPending(m: JsMem, t: number): number {
  return m.dv.getUint32((t >>> 0) + FT_PENDING, true);
}
