/**
 * A VM link over a byte stream (unix/TCP socket, stdio pipes): the 'qemu',
 * 'le16' and 'vpnkit' framings.
 *
 * Receive: a StreamReader holds what arrived (sockets read straight into it,
 * other streams' chunks are copied in) and FrameDecoder hands whole frames to
 * onFrame as views into it. pause() stops after the current frame; the rest
 * stays in the reader (at most one read, so bounded) and is replayed on
 * resume() before the socket reads again, so frame order is kept.
 *
 * Send: send() copies the framed frame into the current output segment;
 * sendInPlace() takes a frame where the engine built it, with room for the
 * length prefix in front, and adjacent frames become one run (a view, no
 * copy). One flush per turn writes every filled segment and run in order
 * (cork/uncork → one writev when there is more than one). Bytes queued by us
 * plus the socket's own buffer are capped at txQueueLimit: past it frames are
 * dropped and counted, so a VM that stops reading costs bounded memory.
 */
import type { Duplex, Readable, Writable } from 'node:stream';
import { VnetkitError } from '../errors.js';
import { nullLogger, type Logger } from '../log.js';
import { DEC_EMPTY, DEC_OK, FrameDecoder, HDR_BE32, HDR_LE16 } from './decoder.js';
import { TransportErrorCodes as E, transportError } from './errors.js';
import { SEG_SIZE, releaseSegment, takeSegment, type Segment } from './segments.js';
import { ACCEPT, SendGate } from './send-gate.js';
import { READ_CHUNK, StreamReader } from './stream-reader.js';
import type { FrameHold, Framing, LinkOptions, LinkStats, ReadSpace, VmLink, VpnkitNegotiator } from './types.js';
import {
  VPNKIT_COMMAND_LEN,
  VPNKIT_INIT_LEN,
  VPNKIT_MAX_MTU,
  VPNKIT_VERSION,
  VpnkitReasons,
  createSimpleNegotiator,
  encodeDisconnect,
  encodeInit,
  encodeVif,
  parseCommand,
  parseInit,
} from './vpnkit.js';

export const DEFAULT_MAX_FRAME = 65550;
export const DEFAULT_MTU = 1500;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_TX_QUEUE_LIMIT = 4 * 1024 * 1024;
/** Ethernet header without FCS or VLAN tag: the engine's frames are at most MTU + 14. */
export const ETH_HLEN = 14;

let nextLinkId = 1;
export function allocLinkId(): number {
  return nextLinkId++;
}

const noop = (): void => {};

/** Largest frame send() accepts for an MTU, bounded by what a segment and the header can carry. */
export function maxFrameOutFor(mtu: number, hdrLen: number): number {
  const cap = hdrLen === HDR_LE16 ? 0xffff : SEG_SIZE - hdrLen;
  return Math.max(ETH_HLEN, Math.min(cap, Math.floor(mtu) + ETH_HLEN));
}

const PH_INIT = 0;
const PH_COMMAND = 1;
const PH_DATA = 2;
const PH_CLOSED = 3;

/** The frame header of the stream framings: 4 bytes big-endian (qemu) or 2 bytes little-endian. */
function writeLengthPrefix(b: Uint8Array, p: number, hdrLen: number, len: number): void {
  if (hdrLen === HDR_BE32) {
    b[p] = len >>> 24;
    b[p + 1] = (len >>> 16) & 255;
    b[p + 2] = (len >>> 8) & 255;
    b[p + 3] = len & 255;
  } else {
    b[p] = len & 255;
    b[p + 1] = len >>> 8;
  }
}

/** Frames queued in place (sendInPlace): mem[start, end), prefixes included, written as one view. */
class InPlaceRun {
  constructor(
    readonly mem: Uint8Array,
    readonly start: number,
    public end: number,
    readonly hold: FrameHold,
    private readonly written: () => void,
  ) {}
  /** Write completion (or the run dropped unwritten): unpin, then let the link check its backlog. */
  readonly done = (): void => {
    this.hold.release();
    this.written();
  };
}

export interface StreamPair {
  readable: Readable;
  writable: Writable;
}

export class StreamLink implements VmLink {
  readonly id = allocLinkId();
  readonly framing: Framing;
  readonly peer: string;
  vpnkit?: { uuid: string; mac: Uint8Array; ip?: number };
  readonly maxFrameIn: number;
  maxFrameOut: number;
  onFrame: (buf: Uint8Array, off: number, len: number) => void = noop;
  onClose: (err?: VnetkitError) => void = noop;
  onDrain: () => void = noop;

  private readonly r: Readable;
  private readonly w: Writable;
  private readonly log: Logger;
  private readonly hdrLen: number;
  private readonly decoder: FrameDecoder;
  private readonly reader: StreamReader;
  private readonly gate: SendGate;
  private readonly negotiator?: VpnkitNegotiator;

  private phase: number;
  private hs?: Buffer;
  private hsHave = 0;
  private hsTimer?: NodeJS.Timeout;
  /** Called once when the data phase starts (listener uses it to defer onLink until after the vpnkit handshake). */
  private readyCbs: Array<(link: StreamLink) => void> = [];
  private failCbs: Array<(err: VnetkitError) => void> = [];

  private paused = false;
  private replayScheduled = false;

  private cur: Segment | null = null;
  /** What flush() writes, in order: filled segments and in-place runs. */
  private readonly sealed: (Segment | InPlaceRun)[] = [];
  private queuedBytes = 0;
  private congestedFlag = false;
  /** Set by whoever made the socket, before any I/O (VmLink.sendBuffer). */
  sendBuffer?: number;

  /** `reader`: the one a socket already reads into (read-buffer.ts); streams that emit 'data' get their own. */
  constructor(r: Readable, w: Writable, peer: string, opts: LinkOptions, reader?: StreamReader) {
    if (opts.framing === 'dgram') throw new VnetkitError('ERR_VNETKIT_BAD_OPTION', "framing 'dgram' needs a datagram socket: use listen('udp://…')");
    this.r = r;
    this.w = w;
    this.peer = peer;
    this.framing = opts.framing;
    this.hdrLen = opts.framing === 'qemu' ? HDR_BE32 : HDR_LE16;
    this.log = (opts.log ?? nullLogger).child({ link: this.id, framing: opts.framing, peer });
    this.gate = new SendGate(Math.max(SEG_SIZE, opts.txQueueLimit ?? DEFAULT_TX_QUEUE_LIMIT), this.log, () => this.flush());
    this.decoder = new FrameDecoder(this.hdrLen as 4 | 2, opts.maxFrame ?? DEFAULT_MAX_FRAME, this.deliver);
    this.maxFrameIn = maxFrameInFor(opts);
    this.maxFrameOut = maxFrameOutFor(opts.mtu ?? DEFAULT_MTU, this.hdrLen);
    this.reader = reader ?? new StreamReader(readerBytes(this.maxFrameIn));
    this.reader.consume = this.consume;

    if (opts.framing === 'vpnkit') {
      this.phase = PH_INIT;
      this.negotiator = opts.vpnkit ?? createSimpleNegotiator({ mtu: opts.mtu ?? DEFAULT_MTU });
      this.hs = Buffer.alloc(VPNKIT_INIT_LEN);
      const ms = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
      this.hsTimer = setTimeout(this.onHandshakeTimeout, ms);
      this.hsTimer.unref?.();
    } else {
      this.phase = PH_DATA;
    }

    r.on('data', this.onData);
    r.on('end', this.onEnd);
    r.on('error', this.onError);
    r.on('close', this.onStreamClose);
    if (w !== (r as unknown)) {
      w.on('error', this.onError);
      w.on('close', this.onStreamClose);
    }
    w.on('drain', this.onWritableDrain);
  }

  get congested(): boolean {
    return this.congestedFlag;
  }

  get framePrefix(): number {
    return this.hdrLen;
  }

  get backlog(): number {
    return this.queuedBytes + this.w.writableLength;
  }

  get txQueueLimit(): number {
    return this.gate.limit;
  }

  get highWater(): number {
    return this.gate.limit >> 1;
  }

  get closed(): boolean {
    return this.phase === PH_CLOSED;
  }

  /** True once frames flow (immediately for framings without a handshake). */
  get ready(): boolean {
    return this.phase === PH_DATA;
  }

  whenReady(ready: (link: StreamLink) => void, fail?: (err: VnetkitError) => void): void {
    if (this.phase === PH_DATA) {
      ready(this);
      return;
    }
    if (this.phase === PH_CLOSED) {
      fail?.(transportError(E.HANDSHAKE_EOF, 'link closed before it was ready'));
      return;
    }
    this.readyCbs.push(ready);
    if (fail !== undefined) this.failCbs.push(fail);
  }

  stats(): LinkStats {
    const g = this.gate;
    return { rxFrames: this.decoder.frames, rxBytes: this.decoder.bytes, txFrames: g.frames, txBytes: g.bytes, dropped: g.dropped };
  }

  // ---- send path ------------------------------------------------------------

  send(buf: Uint8Array, off: number, len: number): void {
    const need = this.hdrLen + len;
    if (this.gate.admit(this.phase === PH_CLOSED, buf, off, len, this.maxFrameOut, this.backlog, need) !== ACCEPT) return;
    let seg = this.cur;
    if (seg === null || SEG_SIZE - seg.used < need) {
      if (seg !== null) this.sealed.push(seg);
      seg = takeSegment();
      this.cur = seg;
    }
    const b = seg.buf;
    const p = seg.used + this.hdrLen;
    writeLengthPrefix(b, seg.used, this.hdrLen, len);
    b.set(off === 0 && len === buf.length ? buf : buf.subarray(off, off + len), p);
    seg.used = p + len;
    this.queuedBytes += need;
    this.gate.queued(len);
  }

  sendInPlace(buf: Uint8Array, off: number, len: number, hold: FrameHold): void {
    const h = this.hdrLen;
    const need = h + len;
    if (this.gate.admit(this.phase === PH_CLOSED || off < h, buf, off, len, this.maxFrameOut, this.backlog, need) !== ACCEPT) return;
    const p = off - h;
    writeLengthPrefix(buf, p, h, len);
    const q = this.sealed;
    const last = q.length > 0 ? q[q.length - 1] : undefined;
    if (this.cur === null && last instanceof InPlaceRun && last.hold === hold && last.mem === buf && last.end === p) {
      last.end = off + len;
    } else {
      // A copied frame queued before this one must leave first.
      if (this.cur !== null) {
        if (this.cur.used > 0) q.push(this.cur);
        else releaseSegment(this.cur);
        this.cur = null;
      }
      hold.retain();
      q.push(new InPlaceRun(buf, p, off + len, hold, this.onSegmentWritten));
    }
    this.queuedBytes += need;
    this.gate.queued(len);
  }

  flush(): void {
    // Before the vpnkit Vif response is out, frames must wait: the client
    // reads a fixed 258-byte response first.
    if (this.phase !== PH_DATA) return;
    const q = this.sealed;
    const seg = this.cur;
    if (seg !== null && seg.used > 0) {
      q.push(seg);
      this.cur = null;
    }
    if (q.length === 0) return;
    const w = this.w;
    // Congestion follows our own watermarks, not write()'s return value: the
    // socket's 16 KiB high-water mark would report every large write as full,
    // and 'drain' comes only once the buffer is empty, so the VM's side would
    // run dry before senders were woken.
    const many = q.length > 1;
    if (many) w.cork();
    for (let i = 0; i < q.length; i++) {
      const c = q[i];
      if (c instanceof InPlaceRun) {
        w.write(Buffer.from(c.mem.buffer, c.mem.byteOffset + c.start, c.end - c.start), c.done);
      } else {
        c.inflight = 1;
        c.onWritten = this.onSegmentWritten;
        w.write(c.buf.subarray(0, c.used), c.done);
      }
    }
    q.length = 0;
    if (many) w.uncork();
    this.queuedBytes = 0;
    if (w.writableLength >= this.highWater) this.congestedFlag = true;
  }

  /** A segment left: once the backlog is down to half the high-water mark, senders may refill it. */
  private readonly onSegmentWritten = (): void => {
    if (!this.congestedFlag || this.phase === PH_CLOSED) return;
    if (this.backlog > this.highWater >> 1) return;
    this.congestedFlag = false;
    this.onDrain();
  };

  private readonly onWritableDrain = (): void => {
    if (!this.congestedFlag || this.phase === PH_CLOSED) return;
    this.congestedFlag = false;
    this.onDrain();
  };

  // ---- receive path ---------------------------------------------------------

  private readonly deliver = (buf: Uint8Array, off: number, len: number): void => {
    this.onFrame(buf, off, len);
  };

  private readonly onData = (chunk: Buffer | string): void => {
    if (typeof chunk === 'string') {
      if (this.phase !== PH_CLOSED) this.fail(transportError(E.BAD_CHUNK, 'VM stream delivered text, not bytes (setEncoding was called on it)'));
      return;
    }
    this.reader.append(chunk);
  };

  useReadSpace(space: ReadSpace): void {
    this.reader.use(space);
  }

  /**
   * Consume received bytes buf[start, end): the vpnkit handshake, then whole
   * frames. Returns where the held bytes start (an incomplete frame, or frames
   * left by a pause).
   */
  private readonly consume = (buf: Uint8Array, start: number, end: number): number => {
    let p = start;
    if (this.phase !== PH_DATA) {
      if (this.phase === PH_CLOSED) return end;
      p = this.handshake(buf, p, end);
      // Frames pipelined behind the Command fall through to the decoder: the
      // ready callback has already run synchronously, so onFrame is installed.
      if (this.phase !== PH_DATA) return end;
    }
    p = this.decoder.decode(buf, p, end);
    if (this.decoder.error !== DEC_OK) {
      this.onBadHeader();
      return end;
    }
    return p;
  };

  private scheduleReplay(): void {
    if (this.replayScheduled) return;
    this.replayScheduled = true;
    setImmediate(this.replay);
  }

  private readonly replay = (): void => {
    this.replayScheduled = false;
    if (this.phase === PH_CLOSED || this.paused) return;
    this.reader.replay();
    if (this.paused || this.phase === PH_CLOSED) return;
    this.r.resume();
  };

  pause(): void {
    if (this.phase === PH_CLOSED) return;
    this.paused = true;
    this.decoder.stop = true;
    this.r.pause();
  }

  resume(): void {
    if (this.phase === PH_CLOSED || !this.paused) return;
    this.paused = false;
    this.decoder.stop = false;
    // Replay held bytes on a later tick (not inside resume(), which the engine
    // may call from its own callbacks) and only then let the socket read, so
    // frames stay in order.
    this.scheduleReplay();
  }

  private onBadHeader(): void {
    const d = this.decoder;
    const err =
      d.error === DEC_EMPTY
        ? transportError(E.FRAME_EMPTY, `VM sent a frame header with length 0 (stream out of sync?) on link ${this.id}`)
        : transportError(E.FRAME_TOO_LARGE, `VM sent a frame of ${d.badLength} bytes, above the limit of ${this.maxFrameIn}, on link ${this.id}`);
    this.log.limited('bad-frame-length', 'warn', 'closing VM link: bad frame length', { length: d.badLength, max: this.maxFrameIn, code: err.code });
    this.fail(err);
  }

  // ---- vpnkit handshake -----------------------------------------------------

  /** Consumes handshake bytes from `chunk`; returns the offset of the first byte after them. */
  private handshake(chunk: Uint8Array, start: number, end: number): number {
    let p = start;
    while (p < end && (this.phase === PH_INIT || this.phase === PH_COMMAND)) {
      const hs = this.hs!;
      const want = (this.phase === PH_INIT ? VPNKIT_INIT_LEN : VPNKIT_COMMAND_LEN) - this.hsHave;
      const take = Math.min(want, end - p);
      hs.set(chunk.subarray(p, p + take), this.hsHave);
      this.hsHave += take;
      p += take;
      if (take < want) break;
      this.hsHave = 0;
      if (this.phase === PH_INIT) this.onInit(hs);
      else this.onCommand(hs);
    }
    return p;
  }

  private onInit(hs: Buffer): void {
    const init = parseInit(hs);
    if (init.version !== VPNKIT_VERSION) {
      // vpnkit answers with its own Init so the client can report both
      // versions, then closes without a Disconnect.
      this.log.limited('vpnkit-version', 'warn', 'closing vpnkit link: unsupported protocol version', { version: init.version, want: VPNKIT_VERSION });
      this.fail(transportError(E.HANDSHAKE_VERSION, `vpnkit client protocol version ${init.version}, expected ${VPNKIT_VERSION}`), encodeInit());
      return;
    }
    if (!init.magicOk) this.log.debug('vpnkit Init without the VMN3T magic (accepted, like vpnkit)');
    this.w.write(encodeInit());
    this.phase = PH_COMMAND;
  }

  private onCommand(hs: Buffer): void {
    const cmd = parseCommand(hs);
    if (!cmd.ok) {
      this.log.limited('vpnkit-command', 'warn', `closing vpnkit link: ${cmd.error}`);
      this.fail(transportError(E.HANDSHAKE, `vpnkit handshake: ${cmd.error}`));
      return;
    }
    if (cmd.command === 'bind-ipv4') {
      this.log.limited('vpnkit-command', 'warn', `closing vpnkit link: ${VpnkitReasons.BIND_UNSUPPORTED}`);
      this.fail(transportError(E.HANDSHAKE, `vpnkit handshake: ${VpnkitReasons.BIND_UNSUPPORTED}`));
      return;
    }
    if (cmd.generated) this.log.info('Generated UUID on behalf of client', { uuid: cmd.uuid });
    let decision;
    try {
      decision = this.negotiator!.negotiate({ uuid: cmd.uuid, preferredIp: cmd.preferredIp, command: cmd.command, generated: cmd.generated });
    } catch (e) {
      // A throwing negotiator is a bug in the embedder; it must not take the
      // process down from a socket callback.
      this.log.error('vpnkit negotiator threw', { error: e as Error });
      this.fail(transportError(E.HANDSHAKE, 'vpnkit negotiator failed', e), encodeDisconnect(VpnkitReasons.NO_ADDRESSES));
      return;
    }
    if ('reason' in decision) {
      this.log.limited('vpnkit-refused', 'warn', 'vpnkit client refused', { uuid: cmd.uuid, reason: decision.reason });
      this.fail(transportError(E.HANDSHAKE, `vpnkit client refused: ${decision.reason}`), encodeDisconnect(decision.reason));
      return;
    }
    const mtu = Math.floor(decision.mtu);
    if (!(mtu >= 68 && mtu <= VPNKIT_MAX_MTU) || decision.mac.length < 6) {
      this.log.error('vpnkit negotiator returned an invalid MTU or MAC', { mtu: decision.mtu });
      this.fail(transportError(E.HANDSHAKE, `vpnkit negotiator returned MTU ${decision.mtu}`), encodeDisconnect(VpnkitReasons.NO_ADDRESSES));
      return;
    }
    const mac = Uint8Array.from(decision.mac.subarray(0, 6));
    this.w.write(encodeVif(mtu, mac));
    this.vpnkit = decision.ip === undefined ? { uuid: cmd.uuid, mac } : { uuid: cmd.uuid, mac, ip: decision.ip >>> 0 };
    this.maxFrameOut = maxFrameOutFor(mtu, HDR_LE16);
    this.hs = undefined;
    clearTimeout(this.hsTimer);
    this.hsTimer = undefined;
    this.phase = PH_DATA;
    this.log.debug('vpnkit handshake done', { uuid: cmd.uuid, mtu });
    const cbs = this.readyCbs;
    this.readyCbs = [];
    this.failCbs = [];
    for (const cb of cbs) cb(this);
    // Frames the engine queued during the handshake can go now.
    this.flush();
  }

  private readonly onHandshakeTimeout = (): void => {
    this.hsTimer = undefined;
    if (this.phase !== PH_INIT && this.phase !== PH_COMMAND) return;
    this.log.limited('vpnkit-timeout', 'warn', 'closing vpnkit link: handshake timed out', { phase: this.phase === PH_INIT ? 'init' : 'command' });
    this.fail(transportError(E.HANDSHAKE_TIMEOUT, `vpnkit handshake did not complete in time on link ${this.id}`));
  };

  // ---- teardown -------------------------------------------------------------

  private readonly onEnd = (): void => {
    if (this.phase === PH_INIT || this.phase === PH_COMMAND) {
      this.fail(transportError(E.HANDSHAKE_EOF, 'VM stream ended during the vpnkit handshake'));
      return;
    }
    if (this.reader.held > 0) this.log.debug('VM stream ended with bytes not yet consumed', { held: this.reader.held });
    this.close('peer closed');
  };

  private readonly onError = (e: Error): void => {
    if (this.phase === PH_CLOSED) return;
    this.log.limited('transport-error', 'warn', 'closing VM link: transport error', { error: e.message, errno: (e as NodeJS.ErrnoException).code });
    this.fail(transportError(E.TRANSPORT, `VM transport error: ${e.message}`, e));
  };

  private readonly onStreamClose = (): void => {
    if (this.phase === PH_CLOSED) return;
    if (this.phase === PH_INIT || this.phase === PH_COMMAND) {
      this.fail(transportError(E.HANDSHAKE_EOF, 'VM stream closed during the vpnkit handshake'));
      return;
    }
    this.close('stream closed');
  };

  close(reason?: string): void {
    if (this.phase === PH_CLOSED) return;
    const wasData = this.phase === PH_DATA;
    if (wasData) this.flush();
    this.log.debug('VM link closed', { reason: reason ?? 'closed' });
    this.teardown(undefined);
    endGracefully(this.r, this.w);
    this.emitClose(undefined);
  }

  /** Close on bad input or transport failure, optionally writing `last` first. */
  private fail(err: VnetkitError, last?: Buffer): void {
    if (this.phase === PH_CLOSED) return;
    this.teardown(err);
    if (last !== undefined) endGracefully(this.r, this.w, last);
    else destroyBoth(this.r, this.w);
    this.emitClose(err);
  }

  private teardown(err: VnetkitError | undefined): void {
    this.phase = PH_CLOSED;
    this.decoder.stop = true;
    // No read may land in the reader's space once it is released (the engine
    // lends that space to the next link): pause stops the socket's reads now.
    this.r.pause();
    this.reader.close();
    this.cur = null;
    // Runs never written still pin the engine's memory: let go of it.
    for (const c of this.sealed) if (c instanceof InPlaceRun) c.hold.release();
    this.sealed.length = 0;
    this.queuedBytes = 0;
    if (this.hsTimer !== undefined) clearTimeout(this.hsTimer);
    this.hsTimer = undefined;
    this.r.off('data', this.onData);
    const fcbs = this.failCbs;
    this.readyCbs = [];
    this.failCbs = [];
    if (fcbs.length > 0) {
      const e = err ?? transportError(E.HANDSHAKE_EOF, 'link closed during the vpnkit handshake');
      for (const cb of fcbs) cb(e);
    }
  }

  /** @internal Owner bookkeeping (the listener's link set); runs before onClose. */
  closeHook?: () => void;

  private emitClose(err: VnetkitError | undefined): void {
    const hook = this.closeHook;
    this.closeHook = undefined;
    if (hook !== undefined) hook();
    const cb = this.onClose;
    this.onClose = noop;
    cb(err);
  }
}

function endGracefully(r: Readable, w: Writable, last?: Buffer): void {
  // Ending our side flushes what is queued; once the socket has finished
  // writing there is nothing left to wait for, so release it fully.
  const done = (): void => destroyBoth(r, w);
  try {
    if (w.writableEnded || w.destroyed) {
      destroyBoth(r, w);
    } else if (last !== undefined) {
      w.end(last, done);
    } else {
      w.end(done);
    }
  } catch {
    destroyBoth(r, w);
  }
}

function destroyBoth(r: Readable, w: Writable): void {
  if (!r.destroyed) r.destroy();
  if ((w as unknown) !== r && !w.destroyed) w.destroy();
}

/** Largest frame a link with these options accepts from the VM. */
export function maxFrameInFor(opts: LinkOptions): number {
  const max = opts.maxFrame ?? DEFAULT_MAX_FRAME;
  return opts.framing === 'qemu' ? max : Math.min(max, 0xffff);
}

/** Bytes of a link's own read buffer: one read plus the largest frame and its header. */
export function readerBytes(maxFrameIn: number): number {
  return READ_CHUNK + maxFrameIn + HDR_BE32;
}

export function attachStreamLink(stream: Duplex | StreamPair, opts: LinkOptions, peer?: string, reader?: StreamReader): StreamLink {
  const r: Readable = 'readable' in stream && typeof (stream as StreamPair).readable === 'object' ? (stream as StreamPair).readable : (stream as Duplex);
  const w: Writable = 'writable' in stream && typeof (stream as StreamPair).writable === 'object' ? (stream as StreamPair).writable : (stream as Duplex);
  return new StreamLink(r, w, peer ?? describePeer(stream), opts, reader);
}

function describePeer(stream: unknown): string {
  const s = stream as { remoteAddress?: string; remotePort?: number; localAddress?: string; _pipeName?: string };
  if (s.remoteAddress) return s.remotePort !== undefined ? `${s.remoteAddress}:${s.remotePort}` : s.remoteAddress;
  if (s._pipeName) return s._pipeName;
  return 'stream';
}
