/**
 * Byte-level DNS message helpers used by the DNS server: a bounds-checked
 * walker (so neither queries nor upstream answers are trusted), byte-exact
 * truncation for UDP, and TCP stream framing.
 *
 * The forwarder passes upstream answers through as bytes; decoding and
 * re-encoding them would lose whatever a generic codec does not model
 * (unknown types, compression choices, DNSSEC data), so these helpers only
 * walk structure and never rebuild records.
 */

export const HEADER_LEN = 12;
export const TYPE_A = 1;
export const TYPE_OPT = 41;
export const TYPE_ANY = 255;
export const CLASS_IN = 1;
export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;
export const FLAG_QR = 0x8000;
export const FLAG_AA = 0x0400;
export const FLAG_TC = 0x0200;
export const FLAG_RD = 0x0100;
export const FLAG_RA = 0x0080;
/** Classic UDP limit without EDNS0 (RFC 1035 §4.2.1). */
export const UDP_CLASSIC = 512;

/** Structure of one message as found by walkMessage. */
export interface MsgLayout {
  qdcount: number;
  /** Offset just past the question section. */
  questionEnd: number;
  /** Offset just past the last record of each section (an, ns, ar). */
  anEnd: number;
  nsEnd: number;
  arEnd: number;
  /** Offset of the OPT record in the additional section, -1 if none; its length. */
  optOff: number;
  optLen: number;
  /** Requestor's UDP payload size from OPT (0 without OPT). */
  udpSize: number;
  /** First question (when qdcount >= 1): name as text (original case), type, class. */
  qname: string;
  /** false when a label holds bytes that make `qname` ambiguous as text (dots, spaces, non-ASCII). */
  qnamePlain: boolean;
  qtype: number;
  qclass: number;
}

export function be16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

export function putBe16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}

/** Offset just past the (possibly compressed) name at `off`, or -1 when it runs off the end. */
export function skipName(b: Uint8Array, off: number, end: number): number {
  let o = off;
  // 128 labels of at least 2 bytes already exceed the 255-byte name limit.
  for (let n = 0; n < 128; n++) {
    if (o >= end) return -1;
    const len = b[o];
    if (len === 0) return o + 1;
    const kind = len & 0xc0;
    if (kind === 0xc0) return o + 2 <= end ? o + 2 : -1;
    if (kind !== 0) return -1; // 0x40/0x80 label types are obsolete (RFC 6891 §5)
    o += 1 + len;
  }
  return -1;
}

const nameScratch = { plain: true };

/**
 * Read the name at `off` as dotted text, following compression pointers
 * (which must point backwards, so loops cannot happen). Returns null when
 * malformed. Sets nameScratch.plain.
 */
export function readName(b: Uint8Array, off: number, end: number): string | null {
  let o = off;
  let s = '';
  let total = 0;
  let plain = true;
  let limitBelow = off; // a pointer must land strictly before where it was read
  for (let n = 0; n < 256; n++) {
    if (o >= end) return null;
    const len = b[o];
    if (len === 0) {
      nameScratch.plain = plain;
      return s === '' ? '.' : s;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (o + 2 > end) return null;
      const target = ((len & 0x3f) << 8) | b[o + 1];
      if (target >= limitBelow) return null;
      limitBelow = target;
      o = target;
      continue;
    }
    if (kind !== 0) return null;
    if (o + 1 + len > end) return null;
    total += len + 1;
    if (total > 255) return null;
    if (s !== '') s += '.';
    for (let k = o + 1; k <= o + len; k++) {
      const c = b[k];
      // Letters, digits, '-', '_' and '*' read back unambiguously; anything else
      // (a '.' inside a label, spaces, binary) makes the text form lossy.
      if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f || c === 0x2a)) plain = false;
      s += String.fromCharCode(c);
    }
    o += 1 + len;
  }
  return null;
}

/** Skip `count` resource records from `off`; returns the end offset or -1. Reports the OPT record if seen. */
function skipRecords(b: Uint8Array, off: number, end: number, count: number, layout: MsgLayout | null): number {
  let o = off;
  for (let i = 0; i < count; i++) {
    const start = o;
    o = skipName(b, o, end);
    if (o < 0 || o + 10 > end) return -1;
    const type = be16(b, o);
    const rdlen = be16(b, o + 8);
    const next = o + 10 + rdlen;
    if (next > end) return -1;
    if (layout !== null && type === TYPE_OPT && layout.optOff < 0) {
      layout.optOff = start;
      layout.optLen = next - start;
      layout.udpSize = be16(b, o + 2);
    }
    o = next;
  }
  return o;
}

/**
 * Check that every section of the message lies inside `b` and fill `out`.
 * Returns false for anything malformed. Bytes after the last record are
 * tolerated (some stacks pad) but not part of the layout.
 */
export function walkMessage(b: Uint8Array, out: MsgLayout): boolean {
  const end = b.length;
  if (end < HEADER_LEN) return false;
  const qd = be16(b, 4);
  const an = be16(b, 6);
  const ns = be16(b, 8);
  const ar = be16(b, 10);
  out.qdcount = qd;
  out.optOff = -1;
  out.optLen = 0;
  out.udpSize = 0;
  out.qname = '';
  out.qnamePlain = false;
  out.qtype = 0;
  out.qclass = 0;
  let o = HEADER_LEN;
  for (let i = 0; i < qd; i++) {
    if (i === 0) {
      const name = readName(b, o, end);
      if (name === null) return false;
      out.qname = name;
      out.qnamePlain = nameScratch.plain;
    }
    o = skipName(b, o, end);
    if (o < 0 || o + 4 > end) return false;
    if (i === 0) {
      out.qtype = be16(b, o);
      out.qclass = be16(b, o + 2);
    }
    o += 4;
  }
  out.questionEnd = o;
  o = skipRecords(b, o, end, an, null);
  if (o < 0) return false;
  out.anEnd = o;
  o = skipRecords(b, o, end, ns, null);
  if (o < 0) return false;
  out.nsEnd = o;
  o = skipRecords(b, o, end, ar, out);
  if (o < 0) return false;
  out.arEnd = o;
  return true;
}

export function newLayout(): MsgLayout {
  return {
    qdcount: 0, questionEnd: 0, anEnd: 0, nsEnd: 0, arEnd: 0, optOff: -1, optLen: 0, udpSize: 0,
    qname: '', qnamePlain: false, qtype: 0, qclass: 0,
  };
}

/**
 * Cut a well-formed message (already walked into `l`) down to at most
 * `limit` bytes at a record boundary and set TC (RFC 2181 §9). Compression
 * pointers only point backwards, so dropping records from the tail leaves
 * the rest valid. The OPT record, if any, is kept (RFC 6891 §7). When not
 * even the question fits, the result is header + question only.
 */
export function truncateMessage(b: Uint8Array, l: MsgLayout, limit: number): Uint8Array {
  const optLen = l.optOff >= 0 ? l.optLen : 0;
  let size = l.questionEnd + optLen;
  const counts = [be16(b, 6), be16(b, 8), be16(b, 10)];
  const kept = [0, 0, 0];
  const ranges: number[] = [];
  let full = false;
  let o = l.questionEnd;
  for (let sec = 0; sec < 3; sec++) {
    for (let i = 0; i < counts[sec]; i++) {
      const start = o;
      const n = skipName(b, o, l.arEnd);
      if (n < 0 || n + 10 > l.arEnd) break; // cannot happen after walkMessage
      o = n + 10 + be16(b, n + 8);
      if (start === l.optOff || full) continue;
      // Only a prefix of the records is kept: once one does not fit, stop.
      if (size + (o - start) > limit) {
        full = true;
        continue;
      }
      size += o - start;
      ranges.push(start, o);
      kept[sec]++;
    }
  }
  const out = new Uint8Array(size);
  out.set(b.subarray(0, l.questionEnd), 0);
  let w = l.questionEnd;
  for (let k = 0; k < ranges.length; k += 2) {
    out.set(b.subarray(ranges[k], ranges[k + 1]), w);
    w += ranges[k + 1] - ranges[k];
  }
  if (optLen > 0) out.set(b.subarray(l.optOff, l.optOff + optLen), w);
  putBe16(out, 6, kept[0]);
  putBe16(out, 8, kept[1]);
  putBe16(out, 10, kept[2] + (optLen > 0 ? 1 : 0));
  putBe16(out, 2, be16(b, 2) | FLAG_TC);
  return out;
}

/** Prefix a DNS message with its 2-byte length for TCP (RFC 1035 §4.2.2, RFC 7766). */
export function frameTcp(msg: Uint8Array): Uint8Array {
  const out = new Uint8Array(msg.length + 2);
  putBe16(out, 0, msg.length);
  out.set(msg, 2);
  return out;
}

/**
 * Splits a TCP byte stream into DNS messages. Holds at most one partial
 * message (≤ maxLen + 2 bytes), so memory stays bounded whatever the peer sends.
 */
export class DnsTcpDeframer {
  private readonly hdr = new Uint8Array(2);
  private hdrHave = 0;
  private msg: Uint8Array | null = null;
  private got = 0;
  private ready: Uint8Array | null = null;

  /** maxLen: the largest message taken; a longer length prefix makes feed() throw (65535, the framing's own limit, takes all). */
  constructor(private readonly maxLen = 65535) {}

  /**
   * Take bytes from `chunk` until one message completes (then take() has it)
   * or the chunk is used up; returns how many bytes were taken. Lets a
   * reader split one message at a time, leaving the rest of the chunk where
   * it lies until it wants more. Throws RangeError on a length prefix above
   * maxLen: the stream cannot be resynchronised after one.
   */
  feed(chunk: Uint8Array): number {
    let i = 0;
    while (i < chunk.length && this.ready === null) {
      if (this.msg === null) {
        this.hdr[this.hdrHave++] = chunk[i++];
        if (this.hdrHave === 2) {
          this.hdrHave = 0;
          const len = be16(this.hdr, 0);
          if (len > this.maxLen) throw new RangeError(`DNS message of ${len} bytes over TCP (at most ${this.maxLen})`);
          if (len > 0) {
            this.msg = new Uint8Array(len);
            this.got = 0;
          }
        }
        continue;
      }
      const take = Math.min(this.msg.length - this.got, chunk.length - i);
      this.msg.set(chunk.subarray(i, i + take), this.got);
      this.got += take;
      i += take;
      if (this.got === this.msg.length) {
        this.ready = this.msg;
        this.msg = null;
      }
    }
    return i;
  }

  /** The message feed() completed, once; null when none is. */
  take(): Uint8Array | null {
    const m = this.ready;
    this.ready = null;
    return m;
  }

  /** Feed bytes; returns the complete messages now available (zero-length ones are skipped). */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let c = chunk; ;) {
      const used = this.feed(c);
      const m = this.take();
      if (m !== null) out.push(m);
      if (used === c.length) return out;
      c = c.subarray(used);
    }
  }

  /** Bytes of a partial message (length prefix included) held. */
  pending(): number {
    return this.msg === null ? this.hdrHave : 2 + this.got;
  }
}
