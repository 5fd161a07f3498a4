// IPv4 fragment reassembly (RFC 791, hole bookkeeping in the spirit of RFC 815).
//
// Table layout (u32 little-endian fields; mirrored in src/kernels/js/frag.ts):
//   0  slots       (clamped to FT_MAX_SLOTS)
//   4  maxDatagram bytes of IP payload per datagram (clamped to FT_MAX_DATAGRAM)
//   8  timeout     ms
//   12 pending     slots in use
//   16 slotSize
//   32 slot 0, slot 1, … each slotSize bytes:
//      0  state     FS_FREE / FS_OPEN / FS_DONE
//      4  src       8 dst   12 key = id << 8 | proto
//      16 first     arrival time of the first fragment received
//      20 total     payload length once the last fragment (MF = 0) is seen, else FT_UNKNOWN
//      24 ihl       header bytes of the offset-0 fragment, 0 until it arrives
//      28 nPieces   32 dgramLen (ihl + total, once complete)
//      64 pieces    FT_MAX_PIECES × (start u32, end u32): received payload
//                   ranges, sorted, disjoint, adjacent ones merged
//      576 buffer   FT_MAX_IHL header room, then the payload at FT_PAYLOAD
//
// The payload always lands at a fixed place and the offset-0 fragment's
// header is copied just in front of it, so the finished datagram is
// contiguous without moving any payload, whatever its IHL.
//
// Any overlap between fragments, even an exact duplicate, drops the whole
// datagram (FR_OVERLAP). RFC 5722 mandates this for IPv6; for IPv4 it is the
// only policy that cannot be steered by an attacker choosing which copy of a
// byte wins (the Teardrop / overlapping-fragment evasion family), and honest
// senders don't overlap: a duplicate only means the datagram is retransmitted
// at a higher layer anyway.

import { FR_PENDING, FR_OVERLAP, FR_TOO_BIG, FR_FULL, FR_BAD, FR_TOO_MANY_PIECES } from './layout';

const FT_SLOTS: usize = 0;
const FT_MAXD: usize = 4;
const FT_TIMEOUT: usize = 8;
const FT_PENDING: usize = 12;
const FT_SLOTSIZE: usize = 16;
const FT_HDR: usize = 32;

const S_STATE: usize = 0;
const S_SRC: usize = 4;
const S_DST: usize = 8;
const S_KEY: usize = 12;
const S_FIRST: usize = 16;
const S_TOTAL: usize = 20;
const S_IHL: usize = 24;
const S_NPIECES: usize = 28;
const S_DLEN: usize = 32;
const S_PIECES: usize = 64;
const PIECE_SIZE: usize = 8;
const FT_MAX_PIECES: u32 = 64;
const FT_MAX_IHL: usize = 60;
const S_BUF: usize = S_PIECES + <usize>FT_MAX_PIECES * PIECE_SIZE;
const S_PAYLOAD: usize = S_BUF + FT_MAX_IHL;

const FS_FREE: u32 = 0;
const FS_OPEN: u32 = 1;
const FS_DONE: u32 = 2;
const FT_UNKNOWN: u32 = 0xffffffff;
// 65535 - 20: the largest payload a minimal header can carry. The cap also
// keeps slots × slotSize inside u32.
const FT_MAX_DATAGRAM: u32 = 65515;
const FT_MAX_SLOTS: u32 = 4096;

@inline function clampSlots(s: u32): u32 {
  return s > FT_MAX_SLOTS ? FT_MAX_SLOTS : s;
}
@inline function clampMaxD(d: u32): u32 {
  return d > FT_MAX_DATAGRAM ? FT_MAX_DATAGRAM : d;
}
@inline function slotSizeFor(maxDatagram: u32): u32 {
  return (<u32>S_PAYLOAD + clampMaxD(maxDatagram) + 7) & ~7;
}
@inline function slotPtr(t: usize, slot: u32): usize {
  return t + FT_HDR + <usize>slot * <usize>load<u32>(t, FT_SLOTSIZE);
}
@inline function dropSlot(t: usize, sp: usize): void {
  store<u32>(sp, FS_FREE, S_STATE);
  store<u32>(t, load<u32>(t, FT_PENDING) - 1, FT_PENDING);
}

export function fragBytes(slots: u32, maxDatagram: u32): u32 {
  return <u32>FT_HDR + clampSlots(slots) * slotSizeFor(maxDatagram);
}

export function fragInit(ptr: usize, slots: u32, maxDatagram: u32, timeout: u32): void {
  const n = clampSlots(slots);
  store<u32>(ptr, n, FT_SLOTS);
  store<u32>(ptr, clampMaxD(maxDatagram), FT_MAXD);
  store<u32>(ptr, timeout, FT_TIMEOUT);
  store<u32>(ptr, 0, FT_PENDING);
  store<u32>(ptr, slotSizeFor(maxDatagram), FT_SLOTSIZE);
  for (let i: u32 = 0; i < n; i++) store<u32>(slotPtr(ptr, i), FS_FREE, S_STATE);
}

export function fragInsert(t: usize, ip: usize, len: u32, now: u32): i32 {
  // Per-fragment sanity first, before any state is touched.
  if (len < 20) return FR_BAD;
  const b0 = <u32>load<u8>(ip);
  if (b0 >> 4 != 4) return FR_BAD;
  const ihl = (b0 & 15) << 2;
  if (ihl < 20 || ihl > len) return FR_BAD;
  const total = <u32>bswap<u16>(load<u16>(ip, 2));
  if (total < ihl || total > len) return FR_BAD;
  const fo = <u32>bswap<u16>(load<u16>(ip, 6));
  const mf = (fo & 0x2000) != 0;
  const s = (fo & 0x1fff) << 3;
  if (!mf && s == 0) return FR_BAD; // a whole datagram, not a fragment
  const plen = total - ihl;
  // Every fragment but the last carries a multiple of 8 bytes (RFC 791);
  // an empty one carries nothing to place.
  if (plen == 0 || (mf && (plen & 7) != 0)) return FR_BAD;
  const e = s + plen;
  const src = bswap<u32>(load<u32>(ip, 12));
  const dst = bswap<u32>(load<u32>(ip, 16));
  const key = (<u32>bswap<u16>(load<u16>(ip, 4)) << 8) | <u32>load<u8>(ip, 9);

  // Finished datagrams waiting for fragRelease are not matched: a fragment
  // with their key belongs to a new datagram (IP id reuse).
  const slots = load<u32>(t, FT_SLOTS);
  let slot: i32 = -1;
  let free: i32 = -1;
  for (let k: u32 = 0; k < slots; k++) {
    const sp = slotPtr(t, k);
    const st = load<u32>(sp, S_STATE);
    if (st == FS_OPEN) {
      if (load<u32>(sp, S_KEY) == key && load<u32>(sp, S_SRC) == src && load<u32>(sp, S_DST) == dst) {
        slot = <i32>k;
        break;
      }
    } else if (st == FS_FREE && free < 0) {
      free = <i32>k;
    }
  }
  if (e > load<u32>(t, FT_MAXD)) {
    if (slot >= 0) dropSlot(t, slotPtr(t, <u32>slot));
    return FR_TOO_BIG;
  }
  let sp: usize;
  if (slot < 0) {
    if (free < 0) return FR_FULL;
    slot = free;
    sp = slotPtr(t, <u32>slot);
    store<u32>(sp, FS_OPEN, S_STATE);
    store<u32>(sp, src, S_SRC);
    store<u32>(sp, dst, S_DST);
    store<u32>(sp, key, S_KEY);
    store<u32>(sp, now, S_FIRST);
    store<u32>(sp, FT_UNKNOWN, S_TOTAL);
    store<u32>(sp, 0, S_IHL);
    store<u32>(sp, 0, S_NPIECES);
    store<u32>(sp, 0, S_DLEN);
    store<u32>(t, load<u32>(t, FT_PENDING) + 1, FT_PENDING);
  } else {
    sp = slotPtr(t, <u32>slot);
  }

  const n = load<u32>(sp, S_NPIECES);
  const pieces = sp + S_PIECES;
  let dtotal = load<u32>(sp, S_TOTAL);
  // Conflicting claims about where the datagram ends can't be resolved
  // without trusting one sender over another: drop it all.
  if (dtotal != FT_UNKNOWN) {
    if (e > dtotal || (!mf && e != dtotal)) {
      dropSlot(t, sp);
      return FR_BAD;
    }
  } else if (!mf) {
    if (n > 0 && load<u32>(pieces + <usize>(n - 1) * PIECE_SIZE, 4) > e) {
      dropSlot(t, sp);
      return FR_BAD;
    }
    dtotal = e;
  }

  // p = first piece ending after s; every earlier piece ends at or before s.
  let p: u32 = 0;
  while (p < n && load<u32>(pieces + <usize>p * PIECE_SIZE, 4) <= s) p++;
  if (p < n && load<u32>(pieces + <usize>p * PIECE_SIZE) < e) {
    dropSlot(t, sp);
    return FR_OVERLAP;
  }
  const joinL = p > 0 && load<u32>(pieces + <usize>(p - 1) * PIECE_SIZE, 4) == s;
  const joinR = p < n && load<u32>(pieces + <usize>p * PIECE_SIZE) == e;
  const newN = n + 1 - (joinL ? 1 : 0) - (joinR ? 1 : 0);
  if (newN > FT_MAX_PIECES) {
    dropSlot(t, sp);
    return FR_TOO_MANY_PIECES;
  }

  memory.copy(sp + S_PAYLOAD + <usize>s, ip + <usize>ihl, <usize>plen);
  if (s == 0) {
    memory.copy(sp + S_PAYLOAD - <usize>ihl, ip, <usize>ihl);
    store<u32>(sp, ihl, S_IHL);
  }
  const pp = pieces + <usize>p * PIECE_SIZE;
  if (joinL && joinR) {
    store<u32>(pp - PIECE_SIZE, load<u32>(pp, 4), 4);
    memory.copy(pp, pp + PIECE_SIZE, <usize>(n - p - 1) * PIECE_SIZE);
  } else if (joinL) {
    store<u32>(pp - PIECE_SIZE, e, 4);
  } else if (joinR) {
    store<u32>(pp, s);
  } else {
    memory.copy(pp + PIECE_SIZE, pp, <usize>(n - p) * PIECE_SIZE);
    store<u32>(pp, s);
    store<u32>(pp, e, 4);
  }
  store<u32>(sp, newN, S_NPIECES);
  store<u32>(sp, dtotal, S_TOTAL);

  if (dtotal == FT_UNKNOWN || newN != 1 || load<u32>(pieces) != 0 || load<u32>(pieces, 4) != dtotal) {
    return FR_PENDING;
  }
  const hlen = load<u32>(sp, S_IHL);
  const dlen = hlen + dtotal;
  if (dlen > 0xffff) {
    // Ping-of-death shape: fragments that add up past the 16-bit total length.
    dropSlot(t, sp);
    return FR_TOO_BIG;
  }
  const h = sp + S_PAYLOAD - <usize>hlen;
  store<u16>(h, bswap<u16>(<u16>dlen), 2);
  store<u16>(h, 0, 6);
  store<u16>(h, 0, 10);
  let sum: u32 = 0;
  for (let o: usize = 0; o < <usize>hlen; o += 2) sum += <u32>bswap<u16>(load<u16>(h + o));
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  store<u16>(h, bswap<u16>(<u16>(~sum & 0xffff)), 10);
  store<u32>(sp, dlen, S_DLEN);
  store<u32>(sp, FS_DONE, S_STATE);
  return slot;
}

export function fragDatagramPtr(t: usize, slot: u32): usize {
  if (slot >= load<u32>(t, FT_SLOTS)) return 0;
  const sp = slotPtr(t, slot);
  if (load<u32>(sp, S_STATE) != FS_DONE) return 0;
  return sp + S_PAYLOAD - <usize>load<u32>(sp, S_IHL);
}

export function fragDatagramLen(t: usize, slot: u32): u32 {
  if (slot >= load<u32>(t, FT_SLOTS)) return 0;
  const sp = slotPtr(t, slot);
  if (load<u32>(sp, S_STATE) != FS_DONE) return 0;
  return load<u32>(sp, S_DLEN);
}

export function fragRelease(t: usize, slot: u32): void {
  if (slot >= load<u32>(t, FT_SLOTS)) return;
  const sp = slotPtr(t, slot);
  if (load<u32>(sp, S_STATE) != FS_FREE) dropSlot(t, sp);
}

// Finished datagrams are left alone: the caller holds their pointer until it
// calls fragRelease, and expiring one would hand its memory to a new datagram.
export function fragExpire(t: usize, now: u32): u32 {
  const slots = load<u32>(t, FT_SLOTS);
  const timeout = load<u32>(t, FT_TIMEOUT);
  let dropped: u32 = 0;
  for (let k: u32 = 0; k < slots; k++) {
    const sp = slotPtr(t, k);
    if (load<u32>(sp, S_STATE) == FS_OPEN && now - load<u32>(sp, S_FIRST) > timeout) {
      dropSlot(t, sp);
      dropped++;
    }
  }
  return dropped;
}

export function fragPending(t: usize): u32 {
  return load<u32>(t, FT_PENDING);
}
