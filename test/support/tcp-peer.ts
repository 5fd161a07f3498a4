/**
 * Test side of the engine's TCP: an engine-like harness (RX batch → classify
 * → TcpStack.input, flush → one buildFrames per turn), a simulated link with
 * seeded loss / duplication / reordering, and a guest TCP endpoint that
 * speaks raw Ethernet/IPv4/TCP frames.
 *
 * The guest endpoint is deliberately simple and independent of the stack
 * under test: go-back-N on RTO, fast retransmit on three duplicate ACKs, an
 * out-of-order map on receive, an ACK for every data segment, zero-window
 * probes. It validates the IPv4 and TCP checksums of every frame it gets.
 */
import { rng } from './rng.js';
import { createHash, type Hash } from 'node:crypto';
import { createKernels, type Kernels, type BackendName } from '../../src/kernels/index.js';
import { RxBatch } from '../../src/engine/rx-batch.js';
import { TxBatch, type TxSink } from '../../src/engine/tx-batch.js';
import { TcpStack, type TcpOptions, type TcpPort } from '../../src/engine/tcp/index.js';
import type { TcpLimits } from '../../src/engine/tcp/stack.js';
import type { Quota } from '../../src/engine/quota.js';
import { CF_INSERT_TCP_SYN, D_KIND, KIND_TCP, D_REASON } from '../../assembly/layout.js';
import { nullLogger } from '../../src/log.js';
import { FrameDecoder, HDR_BE32 } from '../../src/transport/decoder.js';
import { StreamReader } from '../../src/transport/stream-reader.js';
import { readerBytes } from '../../src/transport/link.js';
import { sumBytes, pseudoHeader, finish, fold } from '../../src/wire/checksum.js';

export const FIN = 1;
export const SYN = 2;
export const RST = 4;
export const PSH = 8;
export const ACK = 16;

export const GW_MAC = new Uint8Array([0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6]);
export const GUEST_MAC = new Uint8Array([0x02, 0x00, 0x00, 0x00, 0x00, 0x05]);
export const GUEST_IP = 0xc0a84103; // 192.168.65.3
export const HOST_ALIAS = 0xc0a84102; // 192.168.65.2

export { rng };

export function seededBytes(n: number, seed: number): Buffer {
  const r = rng(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

// ---- the engine side ---------------------------------------------------------

export interface HarnessOptions {
  backend?: BackendName;
  mtu?: number;
  tcp?: TcpOptions;
  flowCapacity?: number;
  /** Where the guest's connections go (default: everything to 127.0.0.1). */
  resolve?: (ip: number, port: number) => string | null;
  /** Clock (default: the harness's fake `now`). */
  now?: () => number;
  /** Run flushes on setImmediate when asked (for real-time use like the bench). */
  autoFlush?: boolean;
  /**
   * Guest frames arrive as a link's socket reads would: framed (qemu), in reads of
   * 1..maxRead bytes (seeded), into a read area with buffers of `bufBytes` that the RX
   * batch takes them from in place. Default: each frame is pushed (copied) on its own.
   */
  reads?: { bufBytes: number; maxRead: number; seed?: number };
  /** The stack's bounds (TcpHost.limits) and host-socket quota. */
  limits?: Partial<TcpLimits>;
  hostSockets?: Quota;
}

type HarnessLink = TxSink & { congested: boolean; backlog?: number; highWater?: number };

/** The engine's TCP wiring, minus everything else the engine does. */
export class TcpHarness {
  readonly k: Kernels;
  readonly flowTable: number;
  readonly stack: TcpStack;
  readonly rx: RxBatch;
  readonly tx: TxBatch;
  readonly port: TcpPort;
  /** The fake VM link: set `congested` to act like a transport above its high-water mark, `highWater` to give it one. */
  readonly link: HarnessLink;
  readonly mtu: number;
  /** More VMs (addPort): a guest frame goes to the port its source IP was given to, else to `port`. */
  private readonly ports = new Map<number, TcpPort>();
  private readonly portByIp = new Map<number, TcpPort>();
  now = 0;
  /** Frames the engine sent toward the guest since the last take. */
  out: Uint8Array[] = [];
  dropped = 0;
  private txWanted = false;
  private flushScheduled = false;
  private readonly autoFlush: boolean;
  private readonly reader?: StreamReader;
  private readonly readSize?: () => number;

  constructor(o: HarnessOptions = {}) {
    this.mtu = o.mtu ?? 1500;
    this.autoFlush = o.autoFlush ?? false;
    this.k = createKernels({ backend: o.backend, memoryBytes: 64 * 1024 * 1024 });
    const cap = o.flowCapacity ?? 1024;
    this.flowTable = this.k.alloc(this.k.k.flowTableBytes(cap), 64);
    this.k.k.flowInit(this.flowTable, cap, 12345);
    const clock = o.now ?? (() => this.now);
    const sink: TxSink & { congested: boolean; backlog?: number; highWater?: number } = {
      send: (buf: Uint8Array, off: number, len: number) => {
        this.out.push(buf.slice(off, off + len));
      },
      congested: false,
    };
    this.link = sink;
    this.port = { id: 1, link: sink };
    this.tx = new TxBatch(this.k, 1024, 4 * 1024 * 1024, GW_MAC);
    this.rx = new RxBatch(this.k, { maxFrames: 256, arenaBytes: 2 * 1024 * 1024 },
      (table, n, descs) => {
        this.k.k.classify(table, n, descs, this.flowTable, clock() >>> 0, CF_INSERT_TCP_SYN);
      },
      (_i, portId, ptr, len, d) => {
        if (this.k.u8[d + D_KIND] === KIND_TCP) this.stack.input(this.ports.get(portId) ?? this.port, ptr, len, d);
        else this.dropped++;
      },
      () => this.flushTx(),
      clock);
    this.stack = new TcpStack({
      kernels: this.k,
      flowTable: this.flowTable,
      tx: this.tx,
      arena: this.rx,
      scheduleTx: () => this.scheduleTx(),
      now: clock,
      log: nullLogger,
      mtu: this.mtu,
      resolveDestination: o.resolve ?? (() => '127.0.0.1'),
      limits: o.limits,
      hostSockets: o.hostSockets,
      flowCapacity: cap,
    }, o.tcp);
    if (o.reads !== undefined) {
      this.rx.addReadAreas(1, o.reads.bufBytes);
      const reader = new StreamReader(readerBytes(65550));
      const dec = new FrameDecoder(HDR_BE32, 65550, (buf, off, len) => {
        if (!this.rx.push(this.port.id, buf, off, len)) this.dropped++;
      });
      reader.consume = (b, st, e) => dec.decode(b, st, e);
      reader.use(this.rx.takeReadArea()!);
      const r = rng(o.reads.seed ?? 7);
      const max = o.reads.maxRead;
      this.readSize = () => 1 + Math.floor(r() * max);
      this.reader = reader;
    }
  }

  scheduleTx(): void {
    this.txWanted = true;
    if (this.autoFlush && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.turn();
      });
    }
  }

  /** Another VM, whose guest frames are those with source address `ip`; its frames out land in `out` too. */
  addPort(id: number, ip: number): TcpPort {
    const link: HarnessLink = {
      send: (buf: Uint8Array, off: number, len: number) => {
        this.out.push(buf.slice(off, off + len));
      },
      congested: false,
    };
    const port = { id, link };
    this.ports.set(id, port);
    this.portByIp.set(ip, port);
    return port;
  }

  fromGuest(frame: Uint8Array): void {
    const reader = this.reader;
    if (reader === undefined) {
      const src = this.portByIp.size > 0 && frame.length >= 34
        ? this.portByIp.get(((frame[26] << 24) | (frame[27] << 16) | (frame[28] << 8) | frame[29]) >>> 0) : undefined;
      this.rx.push((src ?? this.port).id, frame, 0, frame.length);
      return;
    }
    const bytes = new Uint8Array(4 + frame.length);
    new DataView(bytes.buffer).setUint32(0, frame.length);
    bytes.set(frame, 4);
    for (let off = 0; off < bytes.length;) {
      const v = reader.next();
      const k = Math.min(v.length, bytes.length - off, this.readSize!());
      v.set(bytes.subarray(off, off + k));
      off += k;
      reader.filled(k);
    }
  }

  /** One engine turn: classify and handle queued frames, then flush owed output. */
  turn(): void {
    // Like the engine: an RX batch ends with a flush; work asked for during
    // that flush (a flow's burst carry-over) waits for the next turn.
    if (this.rx.pending > 0) this.rx.flush();
    else if (this.txWanted) this.flushTx();
  }

  flushTx(): void {
    this.txWanted = false;
    this.stack.flush();
    const built = this.tx.pending;
    this.tx.flush();
    if (built > 0) this.stack.prepareSpare();
  }

  take(): Uint8Array[] {
    const o = this.out;
    this.out = [];
    return o;
  }

  flowCount(): number {
    return this.k.k.flowCount(this.flowTable);
  }

  reasonOf(d: number): number {
    return this.k.u8[d + D_REASON];
  }
}

// ---- the simulated link -------------------------------------------------------

export interface Impairments {
  loss?: number;
  dup?: number;
  reorder?: number;
}

/** One direction of a lossy link: frames pushed in one step come out at the next take(). */
export class LossyPipe {
  private q: Uint8Array[] = [];
  private held: Uint8Array[] = [];
  lost = 0;
  duplicated = 0;
  reordered = 0;

  constructor(private readonly r: () => number, public imp: Impairments = {}) {}

  push(f: Uint8Array): void {
    const { loss = 0, dup = 0, reorder = 0 } = this.imp;
    if (loss > 0 && this.r() < loss) {
      this.lost++;
      return;
    }
    if (reorder > 0 && this.r() < reorder) {
      // Held back one step: frames pushed after it overtake it.
      this.reordered++;
      this.held.push(f);
      return;
    }
    this.q.push(f);
    if (dup > 0 && this.r() < dup) {
      this.duplicated++;
      this.q.push(f);
    }
  }

  take(): Uint8Array[] {
    const out = this.q;
    this.q = this.held;
    this.held = [];
    return out;
  }

  get size(): number {
    return this.q.length + this.held.length;
  }
}

// ---- the guest endpoint ---------------------------------------------------------

export interface ParsedSegment {
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  mss?: number;
  wscale?: number;
  sackPerm: boolean;
  ts: boolean;
  payload: Uint8Array;
}

/** Parse and verify an engine frame; returns a reason string on any defect. */
export function parseFrame(f: Uint8Array): ParsedSegment | string {
  if (f.length < 54) return 'short';
  if (f[12] !== 0x08 || f[13] !== 0x00) return 'ethertype';
  const ip = 14;
  const ihl = (f[ip] & 0x0f) * 4;
  if (f[ip] >> 4 !== 4 || ihl < 20) return 'ip-header';
  const total = (f[ip + 2] << 8) | f[ip + 3];
  if (ip + total > f.length) return 'ip-length';
  if (finish(sumBytes(f, ip, ip + ihl)) !== 0) return 'ip-checksum';
  if (f[ip + 9] !== 6) return 'not-tcp';
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  const srcIp = dv.getUint32(ip + 12);
  const dstIp = dv.getUint32(ip + 16);
  const t = ip + ihl;
  const tcpLen = total - ihl;
  const doff = (f[t + 12] >> 4) * 4;
  if (doff < 20 || doff > tcpLen) return 'tcp-offset';
  const ps = pseudoHeader(srcIp, dstIp, 6, tcpLen);
  if (finish(sumBytes(f, t, t + tcpLen, ps)) !== 0) return 'tcp-checksum';
  const seg: ParsedSegment = {
    srcIp, dstIp, srcPort: dv.getUint16(t), dstPort: dv.getUint16(t + 2),
    seq: dv.getUint32(t + 4), ack: dv.getUint32(t + 8), flags: f[t + 13], window: dv.getUint16(t + 14),
    sackPerm: false, ts: false, payload: f.subarray(t + doff, t + tcpLen),
  };
  let o = t + 20;
  const end = t + doff;
  while (o < end) {
    const kind = f[o];
    if (kind === 0) break;
    if (kind === 1) {
      o++;
      continue;
    }
    if (o + 1 >= end) return 'tcp-options';
    const l = f[o + 1];
    if (l < 2 || o + l > end) return 'tcp-options';
    if (kind === 2 && l === 4) seg.mss = dv.getUint16(o + 2);
    else if (kind === 3 && l === 3) seg.wscale = f[o + 2];
    else if (kind === 4) seg.sackPerm = true;
    else if (kind === 8) seg.ts = true;
    o += l;
  }
  return seg;
}

export interface FrameSpec {
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  mss?: number;
  wscale?: number;
  sackPerm?: boolean;
  ts?: [number, number];
  /** Raw option bytes instead of the above (for malformed-option tests). */
  rawOptions?: Uint8Array;
  payload?: Uint8Array;
  srcMac?: Uint8Array;
  dstMac?: Uint8Array;
  /** Corrupt the TCP checksum. */
  badChecksum?: boolean;
}

/** Build an Ethernet/IPv4/TCP frame with valid checksums (unless asked otherwise). */
export function buildFrame(s: FrameSpec): Uint8Array {
  let opts: number[] = [];
  if (s.rawOptions) opts = [...s.rawOptions];
  else {
    if (s.mss !== undefined) opts.push(2, 4, s.mss >> 8, s.mss & 0xff);
    if (s.sackPerm) opts.push(4, 2);
    if (s.ts) {
      const [v, e] = s.ts;
      opts.push(1, 1, 8, 10, v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255, e >>> 24, (e >>> 16) & 255, (e >>> 8) & 255, e & 255);
    }
    if (s.wscale !== undefined) opts.push(1, 3, 3, s.wscale);
  }
  while (opts.length % 4) opts.push(0);
  const payload = s.payload ?? new Uint8Array(0);
  const tcpLen = 20 + opts.length + payload.length;
  const f = new Uint8Array(14 + 20 + tcpLen);
  const dv = new DataView(f.buffer);
  f.set(s.dstMac ?? GW_MAC, 0);
  f.set(s.srcMac ?? GUEST_MAC, 6);
  dv.setUint16(12, 0x0800);
  const ip = 14;
  f[ip] = 0x45;
  dv.setUint16(ip + 2, 20 + tcpLen);
  dv.setUint16(ip + 6, 0x4000);
  f[ip + 8] = 64;
  f[ip + 9] = 6;
  dv.setUint32(ip + 12, s.srcIp);
  dv.setUint32(ip + 16, s.dstIp);
  dv.setUint16(ip + 10, finish(sumBytes(f, ip, ip + 20)));
  const t = 34;
  dv.setUint16(t, s.srcPort);
  dv.setUint16(t + 2, s.dstPort);
  dv.setUint32(t + 4, s.seq >>> 0);
  dv.setUint32(t + 8, s.ack >>> 0);
  f[t + 12] = ((20 + opts.length) / 4) << 4;
  f[t + 13] = s.flags;
  dv.setUint16(t + 14, s.window);
  f.set(opts, t + 20);
  f.set(payload, t + 20 + opts.length);
  let ck = finish(sumBytes(f, t, t + tcpLen, pseudoHeader(s.srcIp, s.dstIp, 6, tcpLen)));
  if (s.badChecksum) ck = (ck + 1) & 0xffff;
  dv.setUint16(t + 16, ck);
  return f;
}

void fold;

const sLt = (a: number, b: number) => ((a - b) | 0) < 0;
const sLe = (a: number, b: number) => ((a - b) | 0) <= 0;
const sDiff = (a: number, b: number) => (a - b) | 0;
const sAdd = (a: number, n: number) => (a + n) >>> 0;

export interface PeerOptions {
  ip?: number;
  port: number;
  mss?: number;
  /** Our window scale shift; null = do not offer window scaling. */
  wscale?: number | null;
  /** Receive buffer (the window we advertise when the app reads promptly). */
  rcvBuf?: number;
  rtoMs?: number;
  /** Offer SACK-permitted and timestamps in the SYN (the engine must decline them). */
  offerSackTs?: boolean;
  /** Keep received data (default: only hash it). */
  keep?: boolean;
}

type PeerState = 'closed' | 'syn-sent' | 'listen' | 'syn-rcvd' | 'established' | 'reset';

/** A minimal, correct guest TCP endpoint over raw frames. */
export class TcpPeer {
  state: PeerState = 'closed';
  readonly ip: number;
  readonly lport: number;
  remoteIp = 0;
  remotePort = 0;
  readonly mss: number;
  readonly shift: number | null;
  readonly rcvBuf: number;
  private readonly rtoBase: number;

  // send side
  private sendData: Buffer = Buffer.alloc(0);
  private sendLen = 0;
  iss = 0;
  sndUna = 0;
  sndNxt = 0;
  sndMax = 0;
  peerWnd = 0;
  peerShift = 0;
  peerMss = 536;
  peerOffered: ParsedSegment | null = null;
  private finQueued = false;
  finSent = false;
  finAcked = false;
  private dupAcks = 0;
  private rto: number;
  private rtoAt = -1;
  private persistAt = -1;
  retransmits = 0;

  // receive side
  irs = 0;
  rcvNxt = 0;
  private ooo = new Map<number, Uint8Array>();
  private readonly hash: Hash = createHash('sha256');
  received = 0;
  keep: Buffer[] = [];
  private readonly keepData: boolean;
  finRcvd = false;
  /** Application not reading: received bytes stay unread and the window shrinks. */
  readPaused = false;
  unread = 0;
  private ackOwed = false;
  /** Every segment seen (for assertions). */
  readonly log: ParsedSegment[] = [];
  badFrames: string[] = [];
  rstSeen = 0;

  constructor(private readonly emit: (f: Uint8Array) => void, private now: () => number, o: PeerOptions) {
    this.ip = o.ip ?? GUEST_IP;
    this.lport = o.port;
    this.mss = o.mss ?? 1460;
    this.shift = o.wscale === undefined ? 7 : o.wscale;
    this.rcvBuf = o.rcvBuf ?? 4 * 1024 * 1024;
    this.rtoBase = o.rtoMs ?? 300;
    this.rto = this.rtoBase;
    this.keepData = o.keep ?? false;
    this.offerSackTs = o.offerSackTs ?? false;
  }
  private readonly offerSackTs: boolean;

  get digest(): string {
    return this.hash.copy().digest('hex');
  }

  get outstanding(): number {
    return sDiff(this.sndMax, this.sndUna);
  }

  /** Bytes written by the app not yet acknowledged. */
  get unacked(): number {
    return this.sendLen - Math.max(0, sDiff(this.sndUna, sAdd(this.iss, 1)));
  }

  connect(remoteIp: number, remotePort: number, iss = 0x10000000): void {
    this.remoteIp = remoteIp;
    this.remotePort = remotePort;
    this.iss = iss >>> 0;
    this.sndUna = this.iss;
    this.sndNxt = sAdd(this.iss, 1);
    this.sndMax = this.sndNxt;
    this.state = 'syn-sent';
    this.sendSyn();
    this.rtoAt = this.now() + this.rto;
  }

  listen(): void {
    this.state = 'listen';
  }

  private sendSyn(): void {
    const synack = this.state === 'syn-rcvd';
    this.emit(buildFrame({
      srcIp: this.ip, dstIp: this.remoteIp, srcPort: this.lport, dstPort: this.remotePort,
      seq: this.iss, ack: synack ? this.rcvNxt : 0, flags: synack ? SYN | ACK : SYN,
      window: Math.min(65535, this.rcvBuf), mss: this.mss, wscale: this.shift ?? undefined,
      sackPerm: this.offerSackTs, ts: this.offerSackTs ? [1, 0] : undefined,
    }));
  }

  write(data: Uint8Array): void {
    if (this.sendLen === 0 && Buffer.isBuffer(data) && data.length > this.sendData.length) {
      // First big write: adopt the caller's buffer instead of copying it (bench inputs are hundreds of MiB).
      this.sendData = data;
      this.sendLen = data.length;
      this.pump();
      return;
    }
    const need = this.sendLen + data.length;
    if (need > this.sendData.length) {
      const nb = Buffer.allocUnsafe(Math.max(need, this.sendData.length * 2, 65536));
      this.sendData.copy(nb, 0, 0, this.sendLen);
      this.sendData = nb;
    }
    this.sendData.set(data, this.sendLen);
    this.sendLen = need;
    this.pump();
  }

  end(): void {
    this.finQueued = true;
    this.pump();
  }

  /** Send a raw segment on this connection (for hostile-input tests). */
  raw(s: Partial<FrameSpec>): void {
    this.emit(buildFrame({
      srcIp: this.ip, dstIp: this.remoteIp, srcPort: this.lport, dstPort: this.remotePort,
      seq: this.sndNxt, ack: this.rcvNxt, flags: ACK, window: this.windowField(), ...s,
    }));
  }

  abort(): void {
    this.raw({ flags: RST | ACK });
    this.state = 'reset';
  }

  setReadPaused(p: boolean): void {
    this.readPaused = p;
    if (!p) {
      this.unread = 0;
      this.ackOwed = true;
      this.flushAck();
    }
  }

  private windowField(): number {
    const free = Math.max(0, this.rcvBuf - this.unread);
    if (this.shift === null || this.noScale) return Math.min(65535, free);
    return Math.min(65535, free >>> this.shift);
  }

  private dataStart(): number {
    return sAdd(this.iss, 1);
  }

  /** Send what the window allows. */
  pump(): void {
    if (this.state !== 'established') return;
    const wnd = this.peerWnd;
    for (;;) {
      const off = sDiff(this.sndNxt, this.dataStart());
      const avail = this.sendLen - off;
      const inflight = sDiff(this.sndNxt, this.sndUna);
      const room = wnd - inflight;
      if (avail <= 0 || room <= 0) break;
      const len = Math.min(this.peerMss, avail, room);
      this.emit(buildFrame({
        srcIp: this.ip, dstIp: this.remoteIp, srcPort: this.lport, dstPort: this.remotePort,
        seq: this.sndNxt, ack: this.rcvNxt, flags: ACK | (len === avail ? PSH : 0), window: this.windowField(),
        payload: this.sendData.subarray(off, off + len),
      }));
      this.ackOwed = false;
      this.sndNxt = sAdd(this.sndNxt, len);
      if (sLt(this.sndMax, this.sndNxt)) this.sndMax = this.sndNxt;
      if (this.rtoAt < 0) this.rtoAt = this.now() + this.rto;
    }
    const dataEnd = sAdd(this.dataStart(), this.sendLen);
    if (this.finQueued && !this.finAcked && this.sndNxt === dataEnd) {
      this.emit(buildFrame({
        srcIp: this.ip, dstIp: this.remoteIp, srcPort: this.lport, dstPort: this.remotePort,
        seq: this.sndNxt, ack: this.rcvNxt, flags: FIN | ACK, window: this.windowField(),
      }));
      this.ackOwed = false;
      this.finSent = true;
      this.sndNxt = sAdd(this.sndNxt, 1);
      if (sLt(this.sndMax, this.sndNxt)) this.sndMax = this.sndNxt;
      if (this.rtoAt < 0) this.rtoAt = this.now() + this.rto;
    }
    if (this.sndMax === this.sndUna) this.rtoAt = -1;
    if (this.peerWnd === 0 && this.sendLen - sDiff(this.sndUna, this.dataStart()) > 0 && this.sndMax === this.sndUna) {
      if (this.persistAt < 0) this.persistAt = this.now() + this.rto;
    }
  }

  input(f: Uint8Array): void {
    const s = parseFrame(f);
    if (typeof s === 'string') {
      this.badFrames.push(s);
      return;
    }
    if (s.dstPort !== this.lport || s.dstIp !== this.ip) return;
    this.log.push(s);
    if (s.flags & RST) {
      this.rstSeen++;
      if (this.state === 'syn-sent') {
        if ((s.flags & ACK) && s.ack === this.sndNxt) this.state = 'reset';
        return;
      }
      if (s.seq === this.rcvNxt || this.state === 'listen') this.state = 'reset';
      return;
    }
    if (this.state === 'syn-sent') {
      if ((s.flags & (SYN | ACK)) === (SYN | ACK) && s.ack === this.sndNxt) {
        this.peerOffered = s;
        this.irs = s.seq;
        this.rcvNxt = sAdd(s.seq, 1);
        this.sndUna = s.ack;
        this.peerShift = s.wscale !== undefined && this.shift !== null ? s.wscale : 0;
        if (s.wscale === undefined || this.shift === null) this.noScale = true;
        this.peerWnd = s.window;
        this.peerMss = Math.min(s.mss ?? 536, this.mss);
        this.state = 'established';
        this.rtoAt = -1;
        this.rto = this.rtoBase;
        this.ackOwed = true;
        this.flushAck();
        this.pump();
      }
      return;
    }
    if (this.state === 'listen' || this.state === 'syn-rcvd') {
      if ((s.flags & (SYN | ACK)) === SYN) {
        this.peerOffered = s;
        this.remoteIp = s.srcIp;
        this.remotePort = s.srcPort;
        this.irs = s.seq;
        this.rcvNxt = sAdd(s.seq, 1);
        this.iss = 0x20000000;
        this.sndUna = this.iss;
        this.sndNxt = sAdd(this.iss, 1);
        this.sndMax = this.sndNxt;
        this.peerShift = s.wscale !== undefined && this.shift !== null ? s.wscale : 0;
        if (s.wscale === undefined || this.shift === null) this.noScale = true;
        this.peerWnd = s.window;
        this.peerMss = Math.min(s.mss ?? 536, this.mss);
        this.state = 'syn-rcvd';
        this.sendSyn();
        return;
      }
      if (this.state === 'syn-rcvd' && (s.flags & ACK) && s.ack === this.sndNxt) {
        this.state = 'established';
        this.sndUna = s.ack;
      } else return;
    }
    if (this.state !== 'established') return;
    // ACK processing
    if (s.flags & ACK) {
      const w = s.window << (this.noScale ? 0 : this.peerShift);
      if (sLt(this.sndUna, s.ack) && sLe(s.ack, this.sndMax)) {
        this.sndUna = s.ack;
        this.dupAcks = 0;
        this.rto = this.rtoBase;
        this.rtoAt = this.sndUna === this.sndMax ? -1 : this.now() + this.rto;
        if (this.finSent && s.ack === this.sndMax) this.finAcked = true;
      } else if (s.ack === this.sndUna && s.payload.length === 0 && !(s.flags & FIN) && this.sndMax !== this.sndUna && w === this.peerWnd) {
        if (++this.dupAcks === 3) this.retransmitFirst();
      }
      this.peerWnd = w;
      if (w > 0) this.persistAt = -1;
    }
    // data
    const len = s.payload.length;
    if (len > 0) {
      const off = sDiff(s.seq, this.rcvNxt);
      if (off > 0) {
        if (!this.ooo.has(s.seq) && this.unread + off + len <= this.rcvBuf) this.ooo.set(s.seq, s.payload.slice());
        // Immediate duplicate ACK per out-of-order segment, as Linux does.
        this.ackOwed = true;
        this.flushAck();
      } else if (off + len > 0) {
        this.accept(s.payload.subarray(-off));
        // drain out-of-order segments that are now in order
        let progressed = true;
        while (progressed && this.ooo.size > 0) {
          progressed = false;
          for (const [q, p] of this.ooo) {
            const o2 = sDiff(q, this.rcvNxt);
            if (o2 <= 0) {
              this.ooo.delete(q);
              if (o2 + p.length > 0) this.accept(p.subarray(-o2));
              progressed = true;
            }
          }
        }
      }
      this.ackOwed = true;
    }
    if ((s.flags & FIN) && !this.finRcvd) {
      if (sAdd(s.seq, len) === this.rcvNxt) {
        this.finRcvd = true;
        this.rcvNxt = sAdd(this.rcvNxt, 1);
      }
      this.ackOwed = true;
    } else if (s.flags & FIN) this.ackOwed = true;
    // a probe or keepalive below rcv.nxt asks for an ACK
    if (len === 0 && !(s.flags & FIN) && sLt(s.seq, this.rcvNxt)) this.ackOwed = true;
    this.pump();
  }

  private noScale = false;

  private accept(p: Uint8Array): void {
    const free = this.rcvBuf - this.unread;
    const take = Math.min(free, p.length);
    if (take <= 0) return;
    const d = take === p.length ? p : p.subarray(0, take);
    this.hash.update(d);
    if (this.keepData) this.keep.push(Buffer.from(d));
    this.received += take;
    if (this.readPaused) this.unread += take;
    this.rcvNxt = sAdd(this.rcvNxt, take);
  }

  private retransmitFirst(): void {
    this.retransmits++;
    const off = sDiff(this.sndUna, this.dataStart());
    const avail = this.sendLen - off;
    if (avail > 0) {
      const len = Math.min(this.peerMss, avail);
      this.emit(buildFrame({
        srcIp: this.ip, dstIp: this.remoteIp, srcPort: this.lport, dstPort: this.remotePort,
        seq: this.sndUna, ack: this.rcvNxt, flags: ACK, window: this.windowField(),
        payload: this.sendData.subarray(off, off + len),
      }));
    } else if (this.finSent && !this.finAcked) {
      this.emit(buildFrame({
        srcIp: this.ip, dstIp: this.remoteIp, srcPort: this.lport, dstPort: this.remotePort,
        seq: this.sndUna, ack: this.rcvNxt, flags: FIN | ACK, window: this.windowField(),
      }));
    }
  }

  /** Send an owed ACK (called once per step, so a burst gets fewer ACKs). */
  flushAck(): void {
    if (!this.ackOwed) return;
    this.ackOwed = false;
    if (this.state !== 'established' && this.state !== 'syn-rcvd') return;
    this.emit(buildFrame({
      srcIp: this.ip, dstIp: this.remoteIp, srcPort: this.lport, dstPort: this.remotePort,
      seq: this.sndNxt, ack: this.rcvNxt, flags: ACK, window: this.windowField(),
    }));
  }

  tick(now: number): void {
    if (this.rtoAt >= 0 && now >= this.rtoAt) {
      this.retransmits++;
      this.rto = Math.min(this.rto * 2, 10_000);
      this.rtoAt = now + this.rto;
      if (this.state === 'syn-sent') {
        this.sendSyn();
        return;
      }
      if (this.state !== 'established') return;
      this.sndNxt = this.sndUna; // go back N
      this.pump();
      if (this.sndNxt === this.sndUna) this.retransmitFirst();
    }
    if (this.persistAt >= 0 && now >= this.persistAt && this.state === 'established') {
      this.persistAt = now + this.rto;
      // Linux-style probe: an ACK one below snd.una that the receiver must answer.
      this.raw({ seq: sAdd(this.sndUna, -1), flags: ACK });
    }
  }
}

// ---- a driver that runs harness + link + peers in fake time -----------------------

export class Sim {
  readonly up: LossyPipe;
  readonly down: LossyPipe;
  readonly peers: TcpPeer[] = [];
  readonly h: TcpHarness;
  idleStepMs = 10;
  steps = 0;

  constructor(h: TcpHarness, seed = 1, imp: Impairments = {}) {
    this.h = h;
    const r = rng(seed);
    this.up = new LossyPipe(r, imp);
    this.down = new LossyPipe(r, imp);
  }

  peer(o: PeerOptions): TcpPeer {
    const p = new TcpPeer((f) => this.up.push(f), () => this.h.now, o);
    this.peers.push(p);
    return p;
  }

  /** Inject a frame from the guest that bypasses the impairments. */
  inject(f: Uint8Array): void {
    this.h.fromGuest(f);
  }

  /** One step; returns whether any frame moved. */
  step(): boolean {
    this.steps++;
    const upF = this.up.take();
    for (const f of upF) this.h.fromGuest(f);
    this.h.turn();
    for (const f of this.h.take()) this.down.push(f);
    const downF = this.down.take();
    for (const f of downF) for (const p of this.peers) p.input(f);
    for (const p of this.peers) p.flushAck();
    return upF.length + downF.length > 0;
  }

  advance(ms: number): void {
    this.h.now += ms;
    this.h.stack.tick(this.h.now);
    for (const p of this.peers) p.tick(this.h.now);
  }

  /** Run until `done()` or `maxSimMs` of fake time; yields to the event loop so host sockets make progress. */
  async run(done: () => boolean, maxSimMs = 120_000): Promise<boolean> {
    const deadline = this.h.now + maxSimMs;
    let idle = 0;
    while (!done()) {
      if (this.h.now > deadline) return false;
      const moved = this.step();
      if (moved) {
        idle = 0;
        this.advance(1);
        await new Promise((r) => setImmediate(r));
      } else {
        idle++;
        // Give host sockets real time to answer before fake time runs ahead.
        await new Promise((r) => setTimeout(r, idle < 3 ? 0 : 1));
        if (idle >= 3) this.advance(this.idleStepMs);
      }
    }
    return true;
  }
}
