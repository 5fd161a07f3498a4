/**
 * Classic libpcap files (not pcapng): the reader loads test fixtures and user
 * captures; the writer is what the daemon's --pcap option streams to disk.
 *
 * Layout: a 24-byte global header (magic, version 2.4, thiszone, sigfigs,
 * snaplen, linktype) then records of {ts_sec, ts_frac, incl_len, orig_len}
 * and incl_len bytes. The magic's byte order gives the file's byte order, and
 * its value says whether ts_frac counts microseconds or nanoseconds.
 */

export const LINKTYPE_ETHERNET = 1;
export const PCAP_MAGIC_US = 0xa1b2c3d4;
export const PCAP_MAGIC_NS = 0xa1b23c4d;
export const PCAP_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;
/** Default snaplen: large enough for any frame the stream transports carry (~69 KB). */
export const PCAP_DEFAULT_SNAPLEN = 262144;

export interface PcapRecord {
  /** Seconds since the epoch, with the fraction (precision below 1 µs may round). */
  ts: number;
  tsSec: number;
  /** Sub-second part in nanoseconds (exact, whatever the file's resolution). */
  tsNsec: number;
  /** The captured bytes: a plain Uint8Array view into the input (even when it is a Buffer), not a copy. */
  data: Uint8Array;
  /** Length of the frame on the wire (> data.length when the snaplen cut it). */
  origLen: number;
}

export interface PcapFile {
  /** Empty when the file was read; otherwise why reading stopped. */
  error: '' | 'short-header' | 'bad-magic' | 'truncated-record';
  littleEndian: boolean;
  nanos: boolean;
  versionMajor: number;
  versionMinor: number;
  snaplen: number;
  linkType: number;
  /** Every complete record before any error. */
  records: PcapRecord[];
}

/**
 * Parse a classic pcap file. Never throws: a bad header yields no records
 * and an error string; a record cut off at the end (a capture killed
 * mid-write) keeps the records before it and reports 'truncated-record'.
 */
export function readPcap(buf: Uint8Array): PcapFile {
  const out: PcapFile = {
    error: '', littleEndian: true, nanos: false, versionMajor: 0, versionMinor: 0,
    snaplen: 0, linkType: 0, records: [],
  };
  if (buf.length < PCAP_HEADER_LEN) {
    out.error = 'short-header';
    return out;
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const mLe = dv.getUint32(0, true);
  const mBe = dv.getUint32(0, false);
  let le: boolean;
  if (mLe === PCAP_MAGIC_US || mLe === PCAP_MAGIC_NS) le = true;
  else if (mBe === PCAP_MAGIC_US || mBe === PCAP_MAGIC_NS) le = false;
  else {
    out.error = 'bad-magic';
    return out;
  }
  const magic = dv.getUint32(0, le);
  out.littleEndian = le;
  out.nanos = magic === PCAP_MAGIC_NS;
  out.versionMajor = dv.getUint16(4, le);
  out.versionMinor = dv.getUint16(6, le);
  out.snaplen = dv.getUint32(16, le);
  // The upper bits of the linktype field carry FCS flags in newer writers.
  out.linkType = dv.getUint32(20, le) & 0x0fffffff;
  let off = PCAP_HEADER_LEN;
  while (off < buf.length) {
    if (off + PCAP_RECORD_HEADER_LEN > buf.length) {
      out.error = 'truncated-record';
      break;
    }
    const tsSec = dv.getUint32(off, le);
    const frac = dv.getUint32(off + 4, le);
    const incl = dv.getUint32(off + 8, le);
    const orig = dv.getUint32(off + 12, le);
    const start = off + PCAP_RECORD_HEADER_LEN;
    if (incl > buf.length - start) {
      out.error = 'truncated-record';
      break;
    }
    const tsNsec = out.nanos ? frac : frac * 1000;
    out.records.push({ ts: tsSec + tsNsec / 1e9, tsSec, tsNsec, data: new Uint8Array(buf.buffer, buf.byteOffset + start, incl), origLen: orig });
    off = start + incl;
  }
  return out;
}

/** The 24-byte global header of a little-endian, microsecond, Ethernet pcap. */
export function pcapHeader(snaplen = PCAP_DEFAULT_SNAPLEN, linkType = LINKTYPE_ETHERNET): Uint8Array {
  const h = new Uint8Array(PCAP_HEADER_LEN);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, PCAP_MAGIC_US, true);
  dv.setUint16(4, 2, true);
  dv.setUint16(6, 4, true);
  dv.setInt32(8, 0, true); // thiszone: timestamps are UTC
  dv.setUint32(12, 0, true); // sigfigs: always 0 in practice
  dv.setUint32(16, snaplen >>> 0, true);
  dv.setUint32(20, linkType >>> 0, true);
  return h;
}

/**
 * One record (header + data, cut to `snaplen`) for a frame captured at
 * `timeMs` milliseconds since the epoch (fractional ms keep µs precision).
 */
export function pcapRecord(frame: Uint8Array, timeMs: number, snaplen = PCAP_DEFAULT_SNAPLEN): Uint8Array {
  const incl = Math.min(frame.length, snaplen);
  const rec = new Uint8Array(PCAP_RECORD_HEADER_LEN + incl);
  const dv = new DataView(rec.buffer);
  const totalUs = Math.max(0, Math.round(timeMs * 1000));
  dv.setUint32(0, Math.floor(totalUs / 1e6) >>> 0, true);
  dv.setUint32(4, totalUs % 1e6, true);
  dv.setUint32(8, incl, true);
  dv.setUint32(12, frame.length, true);
  rec.set(incl === frame.length ? frame : frame.subarray(0, incl), PCAP_RECORD_HEADER_LEN);
  return rec;
}

export interface PcapWriterOptions {
  snaplen?: number;
  /** Milliseconds since the epoch; defaults to Date.now (tests pass a fake clock). */
  now?: () => number;
}

/**
 * Streams a capture through `sink` (e.g. a fs.WriteStream's write): the global
 * header on construction, then one chunk per frame. Holds no frames itself,
 * so its memory stays bounded however long the capture runs.
 */
export class PcapWriter {
  readonly snaplen: number;
  private readonly now: () => number;
  private readonly sink: (chunk: Uint8Array) => void;
  frames = 0;
  bytes = PCAP_HEADER_LEN;

  constructor(sink: (chunk: Uint8Array) => void, options: PcapWriterOptions = {}) {
    this.snaplen = options.snaplen ?? PCAP_DEFAULT_SNAPLEN;
    this.now = options.now ?? Date.now;
    this.sink = sink;
    sink(pcapHeader(this.snaplen));
  }

  /** Record a frame (copied: the caller may reuse its buffer right away). */
  write(frame: Uint8Array, timeMs = this.now()): void {
    const rec = pcapRecord(frame, timeMs, this.snaplen);
    this.frames++;
    this.bytes += rec.length;
    this.sink(rec);
  }
}

/** A whole capture in memory (tests and small fixtures). */
export function writePcap(frames: readonly { data: Uint8Array; timeMs: number }[], snaplen = PCAP_DEFAULT_SNAPLEN): Uint8Array {
  const parts: Uint8Array[] = [];
  const w = new PcapWriter((c) => parts.push(c), { snaplen });
  for (const f of frames) w.write(f.data, f.timeMs);
  const out = new Uint8Array(w.bytes);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
