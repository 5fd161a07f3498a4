/**
 * TCP stack tunables and their defaults. Every per-flow bound lives here so
 * memory per flow is a known function of the configuration:
 *   guest→host bytes buffered ≤ rcvBufBytes (Node socket's writable buffer)
 *   host→guest bytes buffered ≤ the flow's send buffer (sndBufBytes), its next read included
 *   out-of-order bytes held: only in the shared reasm pool (reasmSlots × reasmBufBytes of kernel memory).
 * and for the whole stack: slab memory held by read reservations ≤ readReservations × 1 MiB.
 * Across flows, the engine's limits bound both directions together per VM and
 * in all (tcpBufferBytesPerVm / tcpBufferBytes, see TcpStack): beyond a floor
 * of two segments per flow and direction, a flow's windows and reads shrink
 * to its fair share as its VM or everyone nears the bound.
 */
import type net from 'node:net';

export interface TcpOptions {
  /** A SYN's host connect() that has not completed by then is answered with RST (default 10 000 ms, like a short Linux connect timeout; vpnkit waits indefinitely). */
  connectTimeoutMs?: number;
  /** Host connects in progress at once; SYNs beyond are answered with RST and counted (default 1024). */
  maxPendingConnects?: number;
  /** Receive window per flow and the cap on guest bytes queued toward the host socket (default 2 MiB: the window stays ≥ 1 MiB while half of it is queued). */
  rcvBufBytes?: number;
  /**
   * Receive window one VM's flows share while they are sending, in segments
   * of our MSS (default 512: 748 KiB at MTU 1500, 32 MiB at 65520, so there
   * each flow keeps its full rcvBufBytes). Each flow that sent data in the
   * last 100-200 ms gets an equal share, never less than 8 segments. Windows
   * beyond what the VM's path can queue (its NIC ring, its qdisc, the
   * transport socket) buy no speed here, where the RTT is well under a
   * millisecond; they only let several flows overrun that queue together
   * and lose frames.
   */
  vmWindowSegments?: number;
  /**
   * Host bytes read but not yet acknowledged by the guest, per flow; the host
   * socket is paused above it. Default: 64 segments of the flow's MSS, at
   * least 1 MiB (1 MiB at MTU 1500, 4 MiB at 65520). At MTU 65520 a fixed
   * 1 MiB was 16 segments: the host sender kept hitting a zero window (200
   * times a second per flow) and sent tail-loss probes into it.
   */
  sndBufBytes?: number;
  /**
   * Host sockets whose next read may land straight in send-queue memory
   * (default 16; 0 copies every read out of one shared buffer; at most 1024).
   * A socket whose last read was at least 32 KiB gets a 256 KiB reservation,
   * held until it reads again, however long that takes; it keeps the 1 MiB
   * slab it was cut from from being reused, so this caps that memory. Sockets
   * beyond the cap, idle ones and paused ones read through the shared buffer
   * and pay one more copy. Reservations come first from a pool of 1 MiB slabs
   * in kernel memory, one per reservation up to 32 (kernelSlabsFor; the
   * engine's default memoryBytes includes them): bytes read there are copied
   * into their frames in the pass that sums them.
   */
  readReservations?: number;
  /** Reassembly buffers (reasmBufBytes each, in kernel memory) shared by all flows; a flow takes one on its first out-of-order segment (default 8). */
  reasmSlots?: number;
  /** Bytes per reassembly buffer: out-of-order data further than this past rcv.nxt is dropped and later retransmitted (default: the receive window, so nothing the guest may send is dropped). */
  reasmBufBytes?: number;
  /** Holes tracked per reassembly buffer (default 32; the kernel's maximum is 64). */
  reasmMaxHoles?: number;
  /** RFC 6298 bounds. The RFC's 1 s minimum is for the Internet; a VM link has sub-ms RTT, so the default is Linux's 200 ms. */
  minRtoMs?: number;
  maxRtoMs?: number;
  initialRtoMs?: number;
  /** Retransmissions of the same data without progress before the flow is reset (default 15, like Linux tcp_retries2). A flow that is merely idle never times out. */
  maxRetries?: number;
  /** SYN-ACK / SYN retransmissions before a half-open flow is dropped (default 6). */
  maxSynRetries?: number;
  /**
   * A handshake not completed this long after our SYN-ACK (or SYN, for a
   * forwarded connection) drops the flow and closes its host connection
   * (default 10 000 ms). Without it a guest that never answers holds a host
   * connection for the ~127 s of SYN-ACK retransmissions.
   */
  handshakeTimeoutMs?: number;
  /** Bytes one flow may send per event-loop turn before yielding to the others (default 1 MiB). */
  burstBytes?: number;
  /**
   * How long an ACK for a little in-order data or a FIN may wait for a host
   * answer to ride on (default 1 ms; 0 sends it at the end of the turn).
   * Request/response traffic then costs the guest one frame per exchange
   * instead of two. Two full segments unacknowledged, out-of-order data,
   * duplicates and window updates are always acknowledged at once, and the
   * wait is far below Linux's 40 ms minimum, so a guest's Nagle and RTO
   * never notice it.
   */
  delayedAckMs?: number;
  /** RFC 5961 challenge ACKs per second across the stack (default 1000). */
  challengeAcksPerSecond?: number;
  /** Period of the shared timer that runs only while some flow has a deadline (default 10 ms). */
  tickMs?: number;
  /** Tests: no interval timer; the caller drives tick(now). */
  manualTimers?: boolean;
  /** Tests: our initial sequence numbers (default: random per flow). */
  initialSequence?: () => number;
  /** Tests: how to open the host socket (default net.connect with allowHalfOpen). */
  connect?: (host: string, port: number) => net.Socket;
}

export const SND_BUF_SEGMENTS = 64;
export const SND_BUF_MIN = 1 << 20;

/** A flow's send buffer: the configured size, or 64 segments of its MSS and at least 1 MiB. */
export function sndBufFor(o: ResolvedTcpOptions, mss: number): number {
  return o.sndBufBytes > 0 ? o.sndBufBytes : Math.max(SND_BUF_MIN, SND_BUF_SEGMENTS * mss);
}

/** Kernel-memory slabs the stack pools for read reservations (each SLAB_BYTES): one per reservation, at most 32. */
export function kernelSlabsFor(o: TcpOptions = {}): number {
  return Math.min(resolveTcpOptions(o).readReservations, 32);
}

export type ResolvedTcpOptions = Required<Omit<TcpOptions, 'connect' | 'initialSequence'>> & Pick<TcpOptions, 'connect' | 'initialSequence'>;

export function resolveTcpOptions(o: TcpOptions = {}): ResolvedTcpOptions {
  const pos = (v: number | undefined, def: number, min = 1) => (v === undefined || !(v >= min) ? def : Math.floor(v));
  const rcvBufBytes = Math.min(pos(o.rcvBufBytes, 2 << 20, 4096), 1 << 24);
  return {
    connectTimeoutMs: pos(o.connectTimeoutMs, 10_000),
    maxPendingConnects: pos(o.maxPendingConnects, 1024),
    rcvBufBytes,
    // Smaller than the window, a loss anywhere in its far half made every later segment be dropped too.
    reasmBufBytes: Math.min(pos(o.reasmBufBytes, rcvBufBytes, 4096), 16 << 20),
    // 0: per flow, from its MSS (see sndBufFor).
    sndBufBytes: pos(o.sndBufBytes, 0, 4096),
    vmWindowSegments: pos(o.vmWindowSegments, 512, 8),
    reasmSlots: pos(o.reasmSlots, 8, 0),
    readReservations: Math.min(pos(o.readReservations, 16, 0), 1024),
    reasmMaxHoles: pos(o.reasmMaxHoles, 32),
    minRtoMs: pos(o.minRtoMs, 200),
    maxRtoMs: pos(o.maxRtoMs, 60_000),
    initialRtoMs: pos(o.initialRtoMs, 1000),
    maxRetries: pos(o.maxRetries, 15),
    maxSynRetries: pos(o.maxSynRetries, 6),
    handshakeTimeoutMs: pos(o.handshakeTimeoutMs, 10_000),
    burstBytes: pos(o.burstBytes, 1 << 20, 1),
    challengeAcksPerSecond: pos(o.challengeAcksPerSecond, 1000, 0),
    delayedAckMs: Math.min(pos(o.delayedAckMs, 1, 0), 200),
    tickMs: pos(o.tickMs, 10),
    manualTimers: o.manualTimers ?? false,
    connect: o.connect,
    initialSequence: o.initialSequence,
  };
}
