/**
 * DNS over TCP on the gateway, as an in-process stream the TCP stack treats
 * like a host socket: the guest's connection to gateway:53 ends here instead
 * of at a host listener, so nothing extra listens on the host.
 *
 * The stack writes the guest's bytes in with write() and sizes the window it
 * offers the guest from writableLength; it reads answers through 'data' and
 * pause()s the stream while the guest has not acknowledged enough of them.
 * So the session applies backpressure the way a socket does: while answers
 * back up (push() said the readable side is at its high water, a quarter of
 * sessionBytes, or MAX_INFLIGHT queries are being resolved) it splits no more
 * queries out of the chunk in hand and holds that write's callback. The bytes
 * the guest sent then stay in writableLength, the window the guest sees
 * closes, and what the session holds is bounded by the options
 * (DnsTcpOptions), not by what the guest sends.
 *
 * Counters (in the DNS server's stats): tcp_sessions (opened), tcp_open and
 * tcp_held_bytes (now), tcp_backpressured (times a session stopped taking
 * queries), tcp_idle_closed, tcp_oversize (length prefix over maxQueryBytes:
 * reset), tcp_over_budget (answer past sessionBytes replaced by SERVFAIL),
 * tcp_evicted (reset to keep all sessions within totalBytes), tcp_late_input
 * (bytes after our side closed, dropped).
 */
import { Duplex } from 'node:stream';
import type net from 'node:net';
import { DnsTcpDeframer, frameTcp } from '../services/dns-wire.js';
import { servfailFor, type DnsServer, type DnsTcpHolder, type ResolvedDnsTcpOptions } from '../services/dns.js';

/** Queries resolved at once per session; the guest's further bytes wait, unread, in its TCP window. */
export const MAX_INFLIGHT = 16;

export class DnsTcpSession extends Duplex implements DnsTcpHolder {
  private readonly o: ResolvedDnsTcpOptions;
  private readonly deframer: DnsTcpDeframer;
  /** The rest of the chunk being split into queries, and that write's callback: held while answers back up. */
  private input: Uint8Array | null = null;
  private inputDone: ((err?: Error | null) => void) | null = null;
  private resolving = 0;
  /**
   * Whether answers may be added: what the last push() said (false at the
   * readable high water); set again by _read. Node calls _read before it
   * takes the buffered answers out, so readableLength cannot be asked there.
   */
  private room = true;
  /** Answer bytes booked in the server's total: readableLength as last seen. */
  private booked = 0;
  private guestEnded = false;
  /** Our side pushed EOF: no more answers. */
  private ending = false;
  private stalled = false;
  private lastActive = Date.now();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly dns: DnsServer) {
    const o = dns.tcpOptions;
    // At a quarter of the session's budget push() says stop: answers already being resolved may still land.
    super({ allowHalfOpen: true, readableHighWaterMark: o.sessionBytes >> 2 });
    this.o = o;
    this.deframer = new DnsTcpDeframer(o.maxQueryBytes);
    dns.tcpSessionOpened(this);
    this.arm(o.idleMs);
    // The stack waits for 'connect' like on a real socket.
    queueMicrotask(() => {
      if (!this.destroyed) this.emit('connect');
    });
  }

  /** Queries being resolved now. */
  get inflight(): number {
    return this.resolving;
  }

  get heldBytes(): number {
    return this.booked;
  }

  evict(): void {
    this.destroy(new Error('DNS over TCP: reset to keep the answers all sessions hold within totalBytes'));
  }

  setNoDelay(): this {
    return this;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.input = chunk;
    this.inputDone = cb;
    this.pump();
  }

  override _read(): void {
    // The reader takes answers: room for more queries.
    this.room = true;
    this.touch();
    this.pump();
    // Once they are taken, the book shows it (an honest reader must not look like a big holder).
    queueMicrotask(this.rebook);
  }

  private readonly rebook = (): void => {
    if (!this.destroyed) this.book();
  };

  override _final(cb: (err?: Error | null) => void): void {
    // The guest closed its side: answer what was asked, then close ours.
    this.guestEnded = true;
    this.maybeEnd();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.input = null;
    this.dns.tcpHold(-this.booked);
    this.booked = 0;
    this.dns.tcpSessionClosed(this);
    // The stack's write callbacks give back the buffers it wrote from: they must run even though nothing more is read.
    const done = this.inputDone;
    this.inputDone = null;
    done?.();
    cb(err);
  }

  /** Split queries out of the input while answers have room; release the input's write once it is all taken. */
  private pump(): void {
    while (this.input !== null) {
      if (this.ending) {
        this.dns.countTcp('tcp_late_input');
        this.input = null;
        break;
      }
      if (this.resolving >= MAX_INFLIGHT || !this.room) {
        if (!this.stalled) {
          this.stalled = true;
          this.dns.countTcp('tcp_backpressured');
        }
        return;
      }
      let used: number;
      try {
        used = this.deframer.feed(this.input);
      } catch (err) {
        // A length prefix past maxQueryBytes: the rest of the stream cannot be trusted to be framed.
        this.dns.countTcp('tcp_oversize');
        this.destroy(err as Error);
        return;
      }
      this.input = used === this.input.length ? null : this.input.subarray(used);
      const q = this.deframer.take();
      if (q !== null) this.answer(q);
    }
    this.stalled = false;
    const done = this.inputDone;
    this.inputDone = null;
    done?.();
  }

  private answer(q: Uint8Array): void {
    this.resolving++;
    this.touch();
    // query() never rejects; the second handler only keeps the count right if it ever did.
    this.dns.query(q, 'tcp').then((r) => this.answered(q, r), () => this.answered(q, null));
  }

  private answered(q: Uint8Array, reply: Uint8Array | null): void {
    this.resolving--;
    if (this.destroyed) return;
    if (reply !== null && !this.ending) this.send(q, reply);
    this.touch();
    this.pump();
    this.maybeEnd();
  }

  private send(q: Uint8Array, reply: Uint8Array): void {
    this.book();
    let framed = frameTcp(reply);
    // Answers already being resolved when the guest stopped reading can overshoot the high water;
    // past the session's budget they shrink to a SERVFAIL the client may retry.
    if (this.readableLength + framed.length > this.o.sessionBytes) {
      const fail = servfailFor(q);
      if (fail !== null) framed = frameTcp(fail);
      this.dns.countTcp('tcp_over_budget');
    }
    // Past everyone's budget, the sessions holding the most (maybe this one) are reset first.
    this.dns.tcpMakeRoom(framed.length);
    if (this.destroyed) return;
    this.room = this.push(Buffer.from(framed.buffer, framed.byteOffset, framed.length));
    this.book();
  }

  /** Bring the server's total of held answer bytes up to date with this session's readable buffer. */
  private book(): void {
    const d = this.readableLength - this.booked;
    if (d === 0) return;
    this.booked += d;
    this.dns.tcpHold(d);
  }

  private maybeEnd(): void {
    if (this.guestEnded && !this.ending && this.resolving === 0 && this.input === null) {
      this.ending = true;
      this.push(null);
    }
  }

  private touch(): void {
    this.lastActive = Date.now();
  }

  private arm(ms: number): void {
    this.timer = setTimeout(this.onTimer, ms);
    this.timer.unref();
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    if (this.destroyed) return;
    const idle = Date.now() - this.lastActive;
    if (this.resolving > 0 || idle < this.o.idleMs) {
      // A query being resolved ends by its own timeout.
      this.arm(Math.max(1, this.o.idleMs - idle));
      return;
    }
    if (this.ending) {
      // Our FIN went (or waits behind answers the guest does not read), and for idleMs the guest neither read nor closed.
      this.destroy(new Error('DNS over TCP: session not closed by the guest'));
      return;
    }
    this.dns.countTcp('tcp_idle_closed');
    if (this.readableLength === 0 && this.input === null) {
      // Nothing left to say: a FIN, and a reset later if the guest keeps its side open.
      this.ending = true;
      this.push(null);
      this.touch();
      this.arm(this.o.idleMs);
    } else {
      this.destroy(new Error('DNS over TCP: session idle with answers unread'));
    }
  };
}

export function openDnsTcpSession(dns: DnsServer): net.Socket {
  return new DnsTcpSession(dns) as unknown as net.Socket;
}
