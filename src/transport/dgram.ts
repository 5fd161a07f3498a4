/**
 * 'dgram' framing: one Ethernet frame per UDP datagram (qemu -netdev dgram
 * with inet addresses, or the legacy -netdev socket,udp=…).
 *
 * One UDP socket serves every VM; each remote address:port becomes its own
 * VmLink, learned from its first datagram, and replies go to that address.
 * UDP gives no close signal, so a link that has been silent for idleTimeoutMs
 * is closed. The number of links is capped so stray datagrams cannot grow
 * memory.
 */
import dgram from 'node:dgram';
import { VnetkitError } from '../errors.js';
import { nullLogger, type Logger } from '../log.js';
import { TransportErrorCodes as E, transportError } from './errors.js';
import { DEFAULT_MAX_FRAME, DEFAULT_MTU, DEFAULT_TX_QUEUE_LIMIT, ETH_HLEN, allocLinkId } from './link.js';
import { SEG_SIZE, takeSegment, type Segment } from './segments.js';
import { ACCEPT, SendGate } from './send-gate.js';
import type { LinkOptions, LinkStats, VmLink } from './types.js';

const noop = (): void => {};

/** Largest UDP payload over IPv4. */
const MAX_DATAGRAM = 65507;

export interface DgramOptions extends LinkOptions {
  /** Close a link after this long without a datagram from it (default 120 000 ms). */
  idleTimeoutMs?: number;
  /** Most simultaneous remote peers (default 64); datagrams from more are dropped. */
  maxLinks?: number;
  /**
   * True for a source that is one of the embedder's own sockets (the engine's
   * UDP NAT, which guests drive through the host alias): datagrams from it
   * never become a VM link; they are dropped and counted (`ownSocketDrops`).
   */
  isOwnSocket?: (address: string, port: number) => boolean;
}

export class DgramLink implements VmLink {
  readonly id = allocLinkId();
  readonly framing = 'dgram' as const;
  readonly peer: string;
  readonly maxFrameIn: number;
  readonly maxFrameOut: number;
  onFrame: (buf: Uint8Array, off: number, len: number) => void = noop;
  onClose: (err?: VnetkitError) => void = noop;
  onDrain: () => void = noop;
  /** Last receive time (ms, Date.now) for idle expiry. */
  lastRx = Date.now();

  private isClosed = false;
  private paused = false;
  private cur: Segment | null = null;
  /** Frames queued this turn: segment, offset and length triples (reused arrays). */
  private readonly qSeg: Segment[] = [];
  private readonly qOff: number[] = [];
  private readonly qLen: number[] = [];
  private queuedBytes = 0;
  private inflightBytes = 0;
  private readonly gate: SendGate;

  private rxFrames = 0;
  private rxBytes = 0;
  /** Datagrams from the VM that were dropped (empty, too large, or sent while paused). */
  private rxDropped = 0;

  constructor(
    private readonly sock: dgram.Socket,
    readonly remoteAddress: string,
    readonly remotePort: number,
    opts: LinkOptions,
    private readonly log: Logger,
    private readonly detach: (link: DgramLink) => void,
  ) {
    this.peer = `${remoteAddress}:${remotePort}`;
    this.maxFrameIn = Math.min(opts.maxFrame ?? DEFAULT_MAX_FRAME, MAX_DATAGRAM);
    this.maxFrameOut = Math.max(ETH_HLEN, Math.min(MAX_DATAGRAM, Math.floor(opts.mtu ?? DEFAULT_MTU) + ETH_HLEN));
    this.gate = new SendGate(Math.max(SEG_SIZE, opts.txQueueLimit ?? DEFAULT_TX_QUEUE_LIMIT), log, () => this.flush());
  }

  /** UDP drops rather than blocks: a dgram link is never congested. */
  get congested(): boolean {
    return false;
  }

  get backlog(): number {
    return this.queuedBytes + this.inflightBytes;
  }

  /** Never reached: past txQueueLimit datagrams are dropped, not held. */
  get txQueueLimit(): number {
    return this.gate.limit;
  }

  get highWater(): number {
    return Infinity;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** No handshake: ready from the first datagram. */
  get ready(): boolean {
    return !this.isClosed;
  }

  whenReady(ready: (link: VmLink) => void, fail?: (err: VnetkitError) => void): void {
    if (this.isClosed) fail?.(transportError(E.TRANSPORT, 'link closed'));
    else ready(this);
  }

  stats(): LinkStats {
    const g = this.gate;
    return { rxFrames: this.rxFrames, rxBytes: this.rxBytes, txFrames: g.frames, txBytes: g.bytes, dropped: g.dropped + this.rxDropped };
  }

  /** @internal Called by the listener for each datagram from this peer. */
  receive(msg: Buffer, now: number): void {
    this.lastRx = now;
    const len = msg.length;
    // No stream to resynchronise: a bad datagram is dropped, the link lives on.
    if (this.paused || len === 0 || len > this.maxFrameIn) {
      this.rxDropped++;
      return;
    }
    this.rxFrames++;
    this.rxBytes += len;
    this.onFrame(msg, 0, len);
  }

  send(buf: Uint8Array, off: number, len: number): void {
    if (this.gate.admit(this.isClosed, buf, off, len, this.maxFrameOut, this.backlog, len) !== ACCEPT) return;
    let seg = this.cur;
    if (seg === null || SEG_SIZE - seg.used < len) {
      seg = takeSegment();
      this.cur = seg;
    }
    const p = seg.used;
    seg.buf.set(off === 0 && len === buf.length ? buf : buf.subarray(off, off + len), p);
    seg.used = p + len;
    this.qSeg.push(seg);
    this.qOff.push(p);
    this.qLen.push(len);
    this.queuedBytes += len;
    this.gate.queued(len);
  }

  flush(): void {
    const n = this.qSeg.length;
    if (n === 0 || this.isClosed) return;
    // A segment is recycled only after the callback of every datagram cut
    // from it, so count them all before the first send can complete.
    for (let i = 0; i < n; i++) this.qSeg[i].inflight++;
    for (let i = 0; i < n; i++) {
      const seg = this.qSeg[i];
      const len = this.qLen[i];
      this.inflightBytes += len;
      try {
        this.sock.send(seg.buf, this.qOff[i], len, this.remotePort, this.remoteAddress, (err) => {
          this.inflightBytes -= len;
          if (err) this.gate.dropped++;
          seg.done();
        });
      } catch (e) {
        // The shared socket was closed under us.
        this.inflightBytes -= len;
        this.gate.dropped++;
        seg.done();
      }
    }
    this.qSeg.length = 0;
    this.qOff.length = 0;
    this.qLen.length = 0;
    this.queuedBytes = 0;
    // Start a fresh segment next turn: this one now belongs to the sends.
    this.cur = null;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  close(reason?: string): void {
    if (this.isClosed) return;
    this.flush();
    this.isClosed = true;
    this.log.debug('VM link closed', { reason: reason ?? 'closed' });
    this.detach(this);
    const cb = this.onClose;
    this.onClose = noop;
    cb();
  }
}

export interface DgramListenerHandle {
  readonly address: string;
  readonly port: number;
  /** Datagrams dropped because isOwnSocket said their source is the embedder's own socket. */
  readonly ownSocketDrops: number;
  /** Datagrams dropped because maxLinks peers were already linked. */
  readonly maxLinkDrops: number;
  close(): Promise<void>;
}

export function listenDgram(
  host: string,
  port: number,
  opts: DgramOptions,
  onLink: (link: VmLink) => void,
): Promise<DgramListenerHandle> {
  const log = (opts.log ?? nullLogger).child({ framing: 'dgram' });
  const idleMs = Math.max(1, opts.idleTimeoutMs ?? 120_000);
  const maxLinks = Math.max(1, opts.maxLinks ?? 64);
  const type = host.includes(':') ? 'udp6' : 'udp4';
  const sock = dgram.createSocket({ type });
  const links = new Map<string, DgramLink>();
  const isOwnSocket = opts.isOwnSocket;
  let ownSocketDrops = 0;
  let maxLinkDrops = 0;
  let closed = false;

  const detach = (l: DgramLink): void => {
    if (links.get(`${l.remoteAddress}|${l.remotePort}`) === l) links.delete(`${l.remoteAddress}|${l.remotePort}`);
  };

  sock.on('message', (msg, rinfo) => {
    if (closed) return;
    const key = `${rinfo.address}|${rinfo.port}`;
    let link = links.get(key);
    if (link === undefined) {
      // Checked before the link cap so a guest looping datagrams back here cannot use up the links.
      if (isOwnSocket !== undefined && isOwnSocket(rinfo.address, rinfo.port)) {
        ownSocketDrops++;
        log.limited('dgram-own-socket', 'warn', 'dropping datagram from one of our own NAT sockets: a guest, not a VM', { peer: `${rinfo.address}:${rinfo.port}` });
        return;
      }
      if (links.size >= maxLinks) {
        maxLinkDrops++;
        log.limited('dgram-max-links', 'warn', 'dropping datagram: too many VM peers', { peer: `${rinfo.address}:${rinfo.port}`, maxLinks });
        return;
      }
      link = new DgramLink(sock, rinfo.address, rinfo.port, opts, log.child({ peer: `${rinfo.address}:${rinfo.port}` }), detach);
      links.set(key, link);
      log.debug('new VM peer', { peer: link.peer, link: link.id });
      onLink(link);
    }
    link.receive(msg, Date.now());
  });

  const sweep = setInterval(
    () => {
      const now = Date.now();
      for (const l of links.values()) {
        if (now - l.lastRx >= idleMs) {
          log.info('closing idle VM peer', { peer: l.peer, link: l.id, idleMs });
          l.close('idle');
        }
      }
    },
    Math.max(50, Math.min(idleMs / 4, 30_000)),
  );
  sweep.unref();

  return new Promise((resolve, reject) => {
    const onStartError = (e: Error): void => {
      clearInterval(sweep);
      sock.close();
      const code = (e as NodeJS.ErrnoException).code;
      reject(transportError(code === 'EADDRINUSE' ? E.ADDRESS_IN_USE : E.TRANSPORT, `cannot bind udp://${host}:${port}: ${e.message}`, e));
    };
    sock.once('error', onStartError);
    sock.bind(port, host, () => {
      sock.off('error', onStartError);
      sock.on('error', (e) => log.limited('dgram-error', 'warn', 'UDP socket error', { error: e.message }));
      const a = sock.address();
      resolve({
        address: a.address,
        port: a.port,
        get ownSocketDrops() {
          return ownSocketDrops;
        },
        get maxLinkDrops() {
          return maxLinkDrops;
        },
        close: () => {
          if (closed) return Promise.resolve();
          closed = true;
          clearInterval(sweep);
          for (const l of [...links.values()]) l.close('listener closed');
          return new Promise<void>((res) => sock.close(() => res()));
        },
      });
    });
  });
}
