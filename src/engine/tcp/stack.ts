/**
 * The engine's TCP: guest connections terminate here and continue as host
 * sockets (like vpnkit's slirp Endpoint and gvisor-tap-vsock's forwarder).
 *
 * - Setup: a guest SYN first connect()s the host socket; success → SYN-ACK,
 *   refusal or timeout → RST, so the guest sees ECONNREFUSED / a timeout as
 *   it would against the real destination.
 * - Guest → host: each flow's in-order payload goes to its socket once per
 *   RX batch: jumbo segments written from the RX arena where they arrived
 *   (lent until the write completes), small ones gathered into one slab piece
 *   (one copy, one write per flow instead of one per segment).
 *   Out-of-order segments go to a reassembly buffer from a shared pool in
 *   kernel memory. The advertised window is what the socket's buffer can
 *   still take (rcvBufBytes − writableLength), so a slow host socket shrinks
 *   the guest's window instead of growing memory.
 * - Host → guest: socket reads are queued by reference (a bulk sender's land
 *   in kernel slabs, from which buildFrames copies each segment into its frame
 *   in the pass that checksums it); segments are sent
 *   within the guest's window and a Reno congestion window, retransmitted on
 *   RTO (RFC 6298) and on three duplicate ACKs (NewReno recovery). A queue
 *   above the flow's send buffer (sndBufFor) pauses the socket.
 * - All segments go through the engine's TxBatch; ACKs are sent once per
 *   flow per turn from flush() (the engine calls it before building frames),
 *   so a batch of N guest segments costs one ACK, not N/2. An ACK for less
 *   than two segments of in-order data, or for a FIN, waits up to
 *   delayedAckMs for the host's answer to carry it: a request/response or a
 *   close then costs the guest one frame instead of two.
 * - Timers: one deadline per flow, checked by a single shared interval that
 *   exists only while some flow has a deadline. No idle timer exists: an idle
 *   established flow has no deadline at all.
 * - We decline SACK and timestamps (never offered in our SYN/SYN-ACK), so the
 *   guest sends neither; window scaling is used both ways when the guest offers it.
 * - Bounds per VM and in all (the engine's limits), each with its policy when
 *   full: flows (half-open included) and handshakes in progress: the SYN gets
 *   RST; a handshake unfinished after handshakeTimeoutMs: dropped, host
 *   connection reset; host sockets (the engine's quota, shared with UDP): RST
 *   to the guest, a forwarded connection refused; reassembly slots: the
 *   out-of-order segment is dropped (the guest sends it again); buffered bytes
 *   both ways: windows and host reads shrink toward a fair share, host sockets
 *   pause, and guest bytes that still do not fit are dropped. Each flow keeps
 *   a floor of two segments per direction so it always progresses.
 */
import net from 'node:net';
import { randomFillSync } from 'node:crypto';
import type { Kernels } from '../../kernels/index.js';
import type { Logger } from '../../log.js';
import type { TxBatch, TcpSegment, TxSink } from '../tx-batch.js';
import type { FrameArena } from '../rx-batch.js';
import { LentBuffers } from '../lent-buffers.js';
import {
  D_TCP_FLAGS, D_FLOW_STATUS, D_FLOW_ID, D_OPT_FLAGS, D_WSCALE, D_PAYLOAD_OFF, D_PAYLOAD_LEN,
  D_SRC_IP, D_DST_IP, D_SRC_PORT, D_DST_PORT, D_SEQ, D_ACK, D_WINDOW, D_MSS,
  FLOW_FOUND, FLOW_NEW, FLOW_FULL, OPT_MSS, OPT_WSCALE, FT_FULL, FT_EXISTS,
} from '../../../assembly/layout.js';
import { formatIPv4 } from '../../wire/addr.js';
import { Quota, takeEach, type QuotaStats } from '../quota.js';
import type { ResolvedLimits } from '../config.js';
import { Conn, St, Timer, type TcpPort } from './conn.js';
import { kernelSlabsFor, resolveTcpOptions, sndBufFor, type ResolvedTcpOptions, type TcpOptions } from './options.js';
import { Slabs, SLAB_BYTES } from './slabs.js';
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt } from './seq.js';

export type { TcpOptions } from './options.js';
export type { TcpPort } from './conn.js';

const FIN = 1;
const SYN = 2;
const RST = 4;
const PSH = 8;
const ACK = 16;
const PROTO_TCP = 6;
/** RFC 1122 default when the guest sends no MSS option. */
const DEFAULT_MSS = 536;
/** Floor for a guest-announced MSS, so a lying tiny MSS cannot make us send 1-byte segments (Linux: tcp_min_snd_mss). */
const MIN_MSS = 88;
const MAX_CWND = 64 << 20;
/** Ethernet + IPv4 + TCP headers of a data segment we send (no options). */
const HEADERS_BYTES = 14 + 20 + 20;
/** Staging for guest→host bytes that cannot stay where they arrived (reassembled ones), in two halves. */
const STAGE_BYTES = 4 << 20;
const STAGE_HALF = STAGE_BYTES >> 1;
/** Part regions (the third of each stageParts triple): stage half 0 or 1, or RX arena handle h (REGION_ARENA + h; see FrameArena). */
const REGION_ARENA = 2;
/**
 * A flow whose parts average this much or more is written to its host socket
 * straight from kernel memory (no copy into a slab). Smaller parts would cost
 * a Buffer object each; they are gathered and copied instead.
 */
const LEND_MIN_PART = 8 * 1024;
/**
 * Most one host read takes. 256 KiB, not 64: at MTU 65520 a 64 KiB read left
 * nearly every 65480-byte segment straddling two pieces, to be gathered with a
 * second copy.
 */
const READ_BYTES = 256 * 1024;
/** A read this big marks a bulk sender: its next read gets a reservation (see TcpOptions.readReservations). */
const HOT_READ_BYTES = 32 * 1024;
/**
 * Copied host reads at least this big go into shared slabs; smaller ones get memory of their
 * own. A piece in a slab keeps the whole slab alive, so this bounds the slab memory a flow
 * that never drains keeps alive to 16 times its own bytes (see onHostRead).
 */
const SLAB_COPY_MIN = 64 * 1024;

/**
 * Abort a host socket: an RST where it is TCP. Node refuses resetAndDestroy
 * for other handles (an embedder's connect may return a unix socket) and for
 * a socket still connecting; those are just destroyed.
 */
function resetSocket(s: net.Socket): void {
  if (s.readyState !== 'opening' && typeof s.resetAndDestroy === 'function') {
    try {
      s.resetAndDestroy();
      return;
    } catch {
      // ERR_INVALID_HANDLE_TYPE: not a TCP socket.
    }
  }
  s.destroy();
}

/** A host socket made before its flow exists; its read callbacks find the flow through `conn`. */
interface SpareSocket {
  socket: net.Socket;
  conn: Conn | null;
}

export interface TcpHost {
  kernels: Kernels;
  flowTable: number;
  tx: TxBatch;
  /** Where RX frames lie during their batch: in-order payload is written to host sockets from there. */
  arena: FrameArena;
  /** Ask for flush() + a TX build at the end of this turn (for work that starts outside an RX batch). */
  scheduleTx(): void;
  now(): number;
  log: Logger;
  mtu: number;
  /**
   * Policy-checked destination: the host address to connect to (127.0.0.1
   * for the host alias), an in-process service to open instead of a socket
   * (the gateway's own services), or null to refuse (RST).
   */
  resolveDestination(dstIp: number, dstPort: number): string | { open(): net.Socket } | null;
  /**
   * Host sockets for all guests (the engine's, shared with the UDP NAT): each
   * host socket the stack holds for a VM's flow takes one unit until it
   * closes. Default: unbounded.
   */
  hostSockets?: Quota;
  /** The TCP bounds of the engine's limits (defaults for any left out). */
  limits?: Partial<TcpLimits>;
  /** Flows the flow table holds (default 16384): the global bound on flows. */
  flowCapacity?: number;
}

export type TcpLimits = Pick<ResolvedLimits, 'tcpFlowsPerVm' | 'tcpHalfOpenPerVm' | 'tcpBufferBytes' | 'tcpBufferBytesPerVm' | 'tcpReasmSlotsPerVm'>;

const MIB = 1024 * 1024;
const DEFAULT_LIMITS: TcpLimits = {
  tcpFlowsPerVm: 4096, tcpHalfOpenPerVm: 256, tcpBufferBytes: 256 * MIB, tcpBufferBytesPerVm: 64 * MIB, tcpReasmSlotsPerVm: 0,
};

export interface TcpFlowInfo {
  proto: 'tcp';
  guest: string;
  remote: string;
  state: string;
  bytesIn: number;
  bytesOut: number;
  ageMs: number;
  /** Host bytes held for the guest (unsent + unacknowledged). */
  sndQueued: number;
  /** Guest bytes queued toward the host socket, plus out-of-order bytes held. */
  rcvQueued: number;
}

const COUNTER_NAMES = [
  'synReceived', 'established', 'refused', 'policyRefused', 'connectTimeouts', 'synOverCap', 'flowTableFull',
  'dupSyn', 'rstSent', 'rstReceived', 'challengeAcks', 'challengeAcksSuppressed', 'outOfWindow', 'badFlags',
  'badOptions', 'noFlow', 'retransmits', 'fastRetransmits', 'rtoTimeouts', 'oooSegments', 'oooNoBuffer',
  'oooTooManyHoles', 'dupSegments', 'zeroWindowProbesSent', 'windowUpdates', 'hostErrors', 'closed',
  'aborted', 'guestFins', 'hostFins', 'forwardsOpened', 'forwardsRefused', 'gaveUp', 'segmentsIn', 'segmentsOut',
  'hostReadsInPlace', 'hostReadsCopied', 'hostWritesInPlace', 'hostWritesFromKernelSlabs', 'hostSocketsMadeAhead', 'segmentsFromKernelSlabs',
  'refusedVmFlows', 'refusedHalfOpen', 'refusedHostSockets', 'refusedReasmSlots', 'handshakeTimeouts', 'rcvBudgetDrops', 'sndBudgetPauses',
] as const;
type CounterName = (typeof COUNTER_NAMES)[number];

export class TcpStack {
  readonly o: ResolvedTcpOptions;
  private readonly conns: (Conn | undefined)[] = [];
  private readonly all = new Set<Conn>();
  private readonly dirty = new Set<Conn>();
  private readonly timed = new Set<Conn>();
  /** Flows whose advertised window is below half: re-checked each tick for a window update. */
  private readonly starved = new Set<Conn>();
  /** Per VM port: flows that sent data in the current and the previous activity epoch. */
  private readonly portSenders = new Map<number, { cur: number; prev: number }>();
  private rxEpoch = 0;
  private rxEpochAt = 0;
  /** Bytes of data frames built for each VM port during the current flush() (its link sees them only after). */
  private readonly portTurnBytes = new Map<number, number>();
  /** Flows holding an owed ACK until ackDueAt (delayedAckMs). */
  private readonly delayedAcks = new Set<Conn>();
  private delayedAckTimer: NodeJS.Timeout | null = null;
  /**
   * Reassembled guest payload staged during a batch (in-order payload stays in
   * the RX arena), written per flow in flush(); reused every batch.
   * It lives in kernel memory beside the RX arena so staging and gathering are
   * copyWithin() calls: a subarray per segment was a fifth of the engine's
   * allocations, and at gigabits per second that garbage made V8 collect
   * dozens of times a second.
   */
  private readonly stageBase: number;
  /** The half of the stage being filled this batch. */
  private stagePtr: number;
  private stageUsed = 0;
  /** Which half is filled, and the host writes still holding a view of each (libuv keeps the bytes until the write's callback). */
  private readonly stageHalves = new LentBuffers();
  /** The write in hand's releases, one per part (lendAll). */
  private readonly partReleases: (() => void)[] = [];
  /** One slab's worth of a flow's staged parts, gathered contiguously (kernel memory). */
  private readonly gatherPtr: number;
  private readonly staged: Conn[] = [];
  private readonly slabs = new Slabs();
  /**
   * Slabs in kernel memory (one per read reservation, as far as memoryBytes
   * allows) for reservations first: a segment whose bytes were read there is
   * built from where they lie, copied into its frame in the pass that sums
   * it. At MTU 65520 the copy into the TX slot was a fifth of the engine's
   * time host→guest. When the pool is used up, reads land in heap slabs and
   * are copied as before.
   */
  private readonly kslabs: Slabs;
  /** Kernel memory's ArrayBuffer, to tell kernel slab pieces from heap ones. */
  private readonly kmem: ArrayBufferLike;
  /** Set while timers run: payload queued then waits for the turn's end, and may be released before it (a flow reset in between), so it is copied at once. */
  private copyPayloads = false;
  /**
   * Host socket reads land here (one buffer shared by every socket: each read is
   * handled before the next), then are copied into a slab piece, unless the
   * socket holds a read reservation (see readTarget).
   */
  private readonly readBuf = Buffer.allocUnsafeSlow(READ_BYTES);
  /** Sockets whose next read lands in a slab piece of their own (at most o.readReservations). */
  private readReservations = 0;
  /** Flows to serve first next turn: stopped by the link's limits before sending anything this turn. */
  private readonly carry: Conn[] = [];
  /** Flows to serve after those: they sent this turn and were stopped by the burst cap or the link. */
  private readonly carryLast: Conn[] = [];
  /**
   * Per VM port: flows that found its link congested with new data to send, in the order
   * they were stopped. A drain serves them first, oldest first: marking flows in creation
   * order let the first two of four bulk flows take the link after every drain while the
   * other two stalled for seconds (their host senders backed off into zero-window probes).
   */
  private readonly waiting = new Map<number, Set<Conn>>();
  private readonly reasmPtrs: number[] = [];
  private readonly reasmFree: number[] = [];
  private readonly seg: Required<TcpSegment>;
  private readonly ourMss: number;
  private readonly ourShift: number;
  /** The receive window one VM's sending flows share (vmWindowSegments × our MSS), and each one's floor. */
  private readonly vmWindowBytes: number;
  private readonly minShareBytes: number;
  private pending = 0;
  private interval: NodeJS.Timeout | null = null;
  private challengeTokens: number;
  private challengeRefillAt = 0;
  private closedDown = false;
  /** The next host socket, made ahead of time (see hostSocket). */
  private spare: SpareSocket | null = null;
  private spareWanted = false;
  readonly counters: Record<CounterName, number>;
  /** Flows per VM, half-open and forwarded ones included; the global bound is the flow table. */
  private readonly flowQuota: Quota;
  /** Flows per VM in the handshake (host connect in progress or SYN-ACK unanswered). */
  private readonly halfOpenQuota: Quota;
  /**
   * Bytes held for the guests, per VM and in all: host→guest bytes read and not
   * yet acknowledged plus the buffer each socket's next read may fill, and
   * guest→host bytes staged or queued in the host socket. Each flow holds up
   * to floorBytes per direction outside it (its guarantee of progress);
   * everything beyond is taken from this quota before it can arrive (a read's
   * buffer is sized to what was taken), or, for guest data, dropped when it
   * does not fit (the guest retransmits). Windows and reads shrink toward
   * each flow's fair share as a VM or everyone nears the bound, so it is
   * rarely met head-on.
   */
  private readonly bytes: Quota;
  /** Reassembly slots per VM (the pool is reasmSlots). */
  private readonly reasmQuota: Quota;
  private readonly hostSockets: Quota;
  /**
   * Bytes a flow may hold per direction without the byte budget: two segments,
   * and no more than a quarter of a VM's budget spread over its flow bound (or
   * of the global budget over the flow table), so floors never hold more than
   * half of either budget's size on top of it.
   */
  readonly floorBytes: number;
  /** Per VM: flows holding byte-budget units (VMs with none are absent); fair shares divide the budgets among them. */
  private readonly activeByVm = new Map<number, number>();
  /** Flows holding receive budget: re-checked each tick, since a socket's backlog drains with no event below its high-water mark. */
  private readonly rcvHolders = new Set<Conn>();
  /** The shared read buffer cut to floorBytes: a cold or paused socket's next read. */
  private readonly floorView: Buffer;

  constructor(private readonly host: TcpHost, opts?: TcpOptions) {
    this.o = resolveTcpOptions(opts);
    this.counters = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as Record<CounterName, number>;
    this.ourMss = Math.max(MIN_MSS, Math.min(65535, host.mtu - 40));
    this.vmWindowBytes = this.o.vmWindowSegments * this.ourMss;
    this.minShareBytes = 8 * this.ourMss;
    let shift = 0;
    while (this.o.rcvBufBytes >> shift > 65535 && shift < 14) shift++;
    this.ourShift = shift;
    this.seg = {
      srcIp: 0, srcPort: 0, dstIp: 0, dstPort: 0, seq: 0, ack: 0, flags: 0, window: 0,
      optFlags: 0, mss: 0, wscale: 0, tsVal: 0, tsEcr: 0,
    };
    const k = host.kernels;
    this.kmem = k.u8.buffer;
    this.stageBase = k.alloc(STAGE_BYTES, 64);
    this.stagePtr = this.stageBase;
    this.gatherPtr = k.alloc(SLAB_BYTES, 64);
    if (this.o.reasmSlots > 0) {
      const each = k.k.reasmBytes(this.o.reasmBufBytes, this.o.reasmMaxHoles);
      const base = k.alloc(each * this.o.reasmSlots, 64);
      for (let i = 0; i < this.o.reasmSlots; i++) {
        this.reasmPtrs.push(base + i * each);
        this.reasmFree.push(i);
      }
    }
    // Last, and as many as fit: an embedder's smaller memoryBytes shrinks the pool instead of failing the engine.
    const poolSlabs = Math.max(0, Math.min(kernelSlabsFor(opts), Math.floor(k.available() / SLAB_BYTES) - 1));
    const pool: Buffer[] = [];
    for (let i = 0; i < poolSlabs; i++) pool.push(Buffer.from(k.u8.buffer, k.u8.byteOffset + k.alloc(SLAB_BYTES, 64), SLAB_BYTES));
    this.kslabs = new Slabs(pool);
    this.challengeTokens = this.o.challengeAcksPerSecond;
    const lim: TcpLimits = { ...DEFAULT_LIMITS, ...host.limits };
    const flowCap = host.flowCapacity ?? 16384;
    this.flowQuota = new Quota('tcpFlows', flowCap, Math.min(lim.tcpFlowsPerVm, flowCap));
    this.halfOpenQuota = new Quota('tcpHalfOpen', flowCap, Math.min(lim.tcpHalfOpenPerVm, flowCap));
    this.bytes = new Quota('tcpBufferBytes', lim.tcpBufferBytes, Math.min(lim.tcpBufferBytesPerVm, lim.tcpBufferBytes));
    const reasmPerVm = lim.tcpReasmSlotsPerVm > 0 ? lim.tcpReasmSlotsPerVm : Math.max(1, this.o.reasmSlots >> 1);
    this.reasmQuota = new Quota('tcpReasmSlots', this.o.reasmSlots, Math.min(reasmPerVm, this.o.reasmSlots));
    this.hostSockets = host.hostSockets ?? new Quota('hostSockets', 1 << 30, 1 << 30);
    this.floorBytes = Math.max(256, Math.min(2 * this.ourMss,
      Math.floor(this.bytes.perVm / (4 * this.flowQuota.perVm)), Math.floor(this.bytes.total / (4 * flowCap))));
    this.floorView = this.readBuf.subarray(0, this.floorBytes);
  }

  /** Initial sequence numbers are unpredictable (RFC 6528's goal) so a third party cannot guess a flow's window. */
  private newIss(): number {
    if (this.o.initialSequence) return this.o.initialSequence() >>> 0;
    if (this.issNext >= this.issPool.length) {
      randomFillSync(this.issPool);
      this.issNext = 0;
    }
    return this.issPool[this.issNext++];
  }
  private readonly issPool = new Uint32Array(64);
  private issNext = 64;

  get size(): number {
    return this.all.size;
  }

  // ---- input: one guest segment --------------------------------------------

  /**
   * A classified TCP frame from the guest on `port` (the descriptor at `d`
   * says KIND_TCP and carries the flow-table outcome). Never throws.
   */
  input(port: TcpPort, ptr: number, len: number, d: number): void {
    const k = this.host.kernels;
    const u8 = k.u8;
    const dv = k.dv;
    this.counters.segmentsIn++;
    const flags = u8[d + D_TCP_FLAGS];
    const status = u8[d + D_FLOW_STATUS];
    if ((flags & SYN) !== 0 && (flags & (FIN | RST)) !== 0) {
      // classify already refuses these; counted here too in case a frame takes another path.
      this.counters.badFlags++;
      return;
    }
    if (status === FLOW_NEW) {
      this.newFromGuest(port, ptr, d, dv.getInt32(d + D_FLOW_ID, true));
      return;
    }
    if (status === FLOW_FOUND) {
      const id = dv.getInt32(d + D_FLOW_ID, true);
      const c = id >= 0 ? this.conns[id] : undefined;
      if (c !== undefined && c.port.id === port.id) {
        this.segment(c, ptr, d, flags);
        return;
      }
      if (c === undefined && id >= 0) {
        // A table entry with no connection (its SYN was dropped before reaching us):
        // a bare SYN adopts it, anything else removes it.
        if ((flags & (SYN | ACK)) === SYN) {
          this.newFromGuest(port, ptr, d, id);
          return;
        }
        this.discard(d);
      }
    }
    if (status === FLOW_FULL) this.counters.flowTableFull++;
    else this.counters.noFlow++;
    if ((flags & RST) === 0) this.rstForSegment(port, ptr, d, flags);
  }

  /**
   * The engine dropped this TCP frame before input() (policy, spoofing, a
   * gone port): if classify inserted a flow for it, take the entry back so
   * the table does not fill with flows nobody owns.
   */
  discard(d: number): void {
    const k = this.host.kernels;
    const status = k.u8[d + D_FLOW_STATUS];
    if (status !== FLOW_NEW && status !== FLOW_FOUND) return;
    const id = k.dv.getInt32(d + D_FLOW_ID, true);
    if (status === FLOW_FOUND && id >= 0 && this.conns[id] !== undefined) return;
    const dv = k.dv;
    k.k.flowRemove(this.host.flowTable, PROTO_TCP, dv.getUint32(d + D_SRC_IP, true), dv.getUint16(d + D_SRC_PORT, true),
      dv.getUint32(d + D_DST_IP, true), dv.getUint16(d + D_DST_PORT, true));
  }

  private newFromGuest(port: TcpPort, ptr: number, d: number, id: number): void {
    const k = this.host.kernels;
    const dv = k.dv;
    const guestIp = dv.getUint32(d + D_SRC_IP, true);
    const guestPort = dv.getUint16(d + D_SRC_PORT, true);
    const dstIp = dv.getUint32(d + D_DST_IP, true);
    const dstPort = dv.getUint16(d + D_DST_PORT, true);
    this.counters.synReceived++;
    if (this.closedDown) {
      k.k.flowRemove(this.host.flowTable, PROTO_TCP, guestIp, guestPort, dstIp, dstPort);
      return;
    }
    if (this.pending >= this.o.maxPendingConnects) {
      this.counters.synOverCap++;
      k.k.flowRemove(this.host.flowTable, PROTO_TCP, guestIp, guestPort, dstIp, dstPort);
      this.rstForSegment(port, ptr, d, SYN);
      this.host.log.limited('tcp-syn-cap', 'warn', 'too many TCP connects in progress: SYN refused', { max: this.o.maxPendingConnects });
      return;
    }
    const target = this.host.resolveDestination(dstIp, dstPort);
    if (target === null) {
      this.counters.policyRefused++;
      k.k.flowRemove(this.host.flowTable, PROTO_TCP, guestIp, guestPort, dstIp, dstPort);
      this.rstForSegment(port, ptr, d, SYN);
      return;
    }
    // The VM's bounds, cheapest give-back first: every refusal returns the table entry classify made.
    const vm = port.id;
    const hostSocket = typeof target !== 'object';
    const refused = takeEach(vm, hostSocket ? [this.flowQuota, this.halfOpenQuota, this.hostSockets] : [this.flowQuota, this.halfOpenQuota]);
    if (refused !== null) {
      k.k.flowRemove(this.host.flowTable, PROTO_TCP, guestIp, guestPort, dstIp, dstPort);
      this.rstForSegment(port, ptr, d, SYN);
      this.refusedBy(refused, vm, 'tcp', 'TCP SYN refused');
      return;
    }
    const now = this.host.now();
    const c = new Conn(id, port, k.u8.slice(ptr + 6, ptr + 12), guestIp, guestPort, dstIp, dstPort, now);
    c.flowCounted = true;
    c.halfOpen = true;
    c.socketCounted = hostSocket;
    this.readSynOptions(c, d);
    c.irs = dv.getUint32(d + D_SEQ, true);
    c.rcvNxt = seqAdd(c.irs, 1);
    c.iss = this.newIss();
    c.sndUna = c.iss;
    c.sndNxt = c.iss;
    c.sndMax = c.iss;
    c.rto = this.o.initialRtoMs;
    c.state = St.Connecting;
    this.conns[id] = c;
    this.all.add(c);
    this.pending++;
    this.arm(c, Timer.Connect, now + this.o.connectTimeoutMs);
    const socket = typeof target === 'object'
      ? target.open()
      : this.o.connect ? this.o.connect(target, dstPort) : this.hostSocket(c).connect({ host: target, port: dstPort });
    c.socket = socket;
    // Our own host sockets are made with noDelay; an embedder's or a gateway service's still need it.
    if (typeof target === 'object' || this.o.connect) socket.once('connect', () => socket.setNoDelay(true));
    socket.once('connect', () => this.onConnected(c));
    this.attachSocket(c, socket);
  }

  /**
   * An unconnected host socket bound to c: the spare made ahead of time if
   * there is one. Constructing a net.Socket costs about 30 µs, and made here
   * it sat between the guest's SYN and our SYN-ACK; the spare is made after a
   * turn's frames are written (prepareSpare), while the guest is busy.
   */
  private hostSocket(c: Conn): net.Socket {
    this.spareWanted = true;
    let sp = this.spare;
    if (sp === null) sp = this.newSpare();
    else {
      this.spare = null;
      this.counters.hostSocketsMadeAhead++;
    }
    sp.conn = c;
    return sp.socket;
  }

  private newSpare(): SpareSocket {
    const sp: SpareSocket = { socket: null!, conn: null };
    // Node takes both in the constructor (@types/node 20 lists them only for connect); noDelay is applied before 'connect'.
    const opts: net.SocketConstructorOpts & { noDelay: boolean; onread: net.OnReadOpts } = {
      allowHalfOpen: true,
      noDelay: true,
      // Reads go into a buffer we choose instead of a fresh Buffer per read (no GC churn at high rates).
      onread: { buffer: () => this.readTarget(sp.conn!), callback: (n: number, buf: Uint8Array) => this.onHostRead(sp.conn!, n, buf) },
    };
    sp.socket = new net.Socket(opts);
    return sp;
  }

  /**
   * Makes the next host socket ahead of time, once one was used. The engine
   * calls this after a turn that wrote frames to a VM: the guest has work to
   * do before its next segment, so the construction costs no latency.
   */
  prepareSpare(): void {
    if (!this.spareWanted || this.spare !== null || this.closedDown) return;
    this.spareWanted = false;
    this.spare = this.newSpare();
  }

  private readSynOptions(c: Conn, d: number): void {
    const u8 = this.host.kernels.u8;
    const dv = this.host.kernels.dv;
    const opt = u8[d + D_OPT_FLAGS];
    let mss = DEFAULT_MSS;
    if (opt & OPT_MSS) {
      mss = dv.getUint16(d + D_MSS, true);
      if (mss < MIN_MSS) {
        this.counters.badOptions++;
        mss = MIN_MSS;
      }
    }
    c.mss = Math.min(mss, this.ourMss);
    c.wsOk = (opt & OPT_WSCALE) !== 0;
    if (c.wsOk) {
      let ws = u8[d + D_WSCALE];
      if (ws > 14) {
        // RFC 7323 §2.3: treat a larger shift as 14.
        this.counters.badOptions++;
        ws = 14;
      }
      c.sndShift = ws;
      c.rcvShift = this.ourShift;
    } else {
      c.sndShift = 0;
      c.rcvShift = 0;
    }
    c.sndWnd = dv.getUint16(d + D_WINDOW, true); // a SYN's window is never scaled
    c.cwnd = Math.min(10 * c.mss, MAX_CWND);
  }

  private attachSocket(c: Conn, socket: net.Socket): void {
    socket.on('data', (b: Buffer) => this.onHostData(c, b));
    socket.on('end', () => this.onHostEnd(c));
    socket.on('drain', () => this.onHostDrain(c));
    socket.on('error', (err: Error) => this.onHostError(c, err));
    socket.on('close', () => this.onHostClose(c));
  }

  private onConnected(c: Conn): void {
    if (c.state !== St.Connecting) return;
    this.pending--;
    c.state = St.SynRcvd;
    c.retries = 0;
    this.sendSynAck(c);
    const now = this.host.now();
    c.handshakeBy = now + this.o.handshakeTimeoutMs;
    this.arm(c, Timer.Rto, Math.min(now + c.rto, c.handshakeBy));
    this.host.scheduleTx();
  }

  /** The handshake is over (or the flow is): its half-open unit goes back. */
  private leaveHalfOpen(c: Conn): void {
    if (!c.halfOpen) return;
    c.halfOpen = false;
    this.halfOpenQuota.give(c.port.id);
  }

  private sendSynAck(c: Conn): void {
    const s = this.seg;
    this.fill(c, SYN | ACK, c.iss);
    s.window = Math.min(this.o.rcvBufBytes, 65535);
    s.optFlags = OPT_MSS | (c.wsOk ? OPT_WSCALE : 0);
    s.mss = this.ourMss;
    s.wscale = c.rcvShift;
    c.rcvAdv = seqAdd(c.rcvNxt, s.window);
    this.out(c, undefined, 0, 0);
    c.sndNxt = seqAdd(c.iss, 1);
    c.sndMax = c.sndNxt;
  }

  // ---- input: established and half-open flows ----------------------------

  private segment(c: Conn, ptr: number, d: number, flags: number): void {
    const k = this.host.kernels;
    const dv = k.dv;
    const seq = dv.getUint32(d + D_SEQ, true);
    const ack = dv.getUint32(d + D_ACK, true);
    const win = dv.getUint16(d + D_WINDOW, true);
    const pLen = dv.getUint32(d + D_PAYLOAD_LEN, true);

    if (c.state === St.Connecting) {
      // Only a retransmitted SYN can arrive before we answered; absorb it.
      if ((flags & SYN) !== 0 && seq === c.irs) this.counters.dupSyn++;
      else if ((flags & RST) !== 0 && seq === c.rcvNxt) this.abort(c, 'guest reset while connecting');
      else this.counters.badFlags++;
      return;
    }
    if (c.state === St.SynSent) return this.synSentInput(c, d, flags, seq, ack);
    if (c.state === St.SynRcvd && (flags & (SYN | ACK)) === SYN) {
      if (seq === c.irs) {
        this.counters.dupSyn++;
        this.sendSynAck(c);
      } else this.counters.badFlags++;
      return;
    }

    if ((flags & SYN) !== 0) {
      // RFC 5961 §4.2: a SYN on a synchronized flow, whatever its sequence number, gets a challenge ACK.
      this.challengeAck(c);
      return;
    }
    // RFC 793 §3.9 "SEGMENT ARRIVES", synchronized states.
    const segLen = pLen + (flags & SYN ? 1 : 0) + (flags & FIN ? 1 : 0);
    const wnd = this.acceptWindow(c);
    let acceptable: boolean;
    if (segLen === 0) {
      acceptable = wnd === 0 ? seq === c.rcvNxt : seqGe(seq, c.rcvNxt) && seqLt(seq, seqAdd(c.rcvNxt, wnd));
    } else if (wnd === 0) {
      // A FIN (or the first byte) exactly at rcv.nxt is taken even with a closed window, like Linux.
      acceptable = seq === c.rcvNxt && pLen === 0;
    } else {
      acceptable = seqLt(seq, seqAdd(c.rcvNxt, wnd)) && seqGt(seqAdd(seq, segLen), c.rcvNxt);
    }
    if (!acceptable) {
      if (flags & RST) {
        this.counters.outOfWindow++;
        return;
      }
      // Old duplicates, keepalive probes (seq = rcv.nxt − 1) and zero-window
      // probes all land here: the answer is an ACK with the current state.
      if (seqLe(seqAdd(seq, segLen), c.rcvNxt)) this.counters.dupSegments++;
      else this.counters.outOfWindow++;
      this.queueAck(c);
      return;
    }
    if (flags & RST) {
      // RFC 5961 §3.2: only an RST exactly at rcv.nxt resets; others in the window get a challenge ACK.
      if (seq === c.rcvNxt) {
        this.counters.rstReceived++;
        this.abort(c, 'guest reset');
      } else this.challengeAck(c);
      return;
    }
    if ((flags & ACK) === 0) {
      this.counters.badFlags++;
      return;
    }
    if (c.state === St.SynRcvd) {
      if (ack !== c.sndNxt) {
        this.rstFromConn(c, ack);
        return;
      }
      c.state = St.Established;
      this.counters.established++;
      c.handshakeBy = Infinity;
      this.leaveHalfOpen(c);
      c.sndUna = ack;
      c.sndWnd = win << c.sndShift;
      c.sndWl1 = seq;
      c.sndWl2 = ack;
      c.retries = 0;
      this.disarm(c);
      if (c.q.length > 0 || c.hostEnded) this.markDirty(c);
    } else if (!this.processAck(c, seq, ack, win, pLen, flags)) {
      return;
    }

    if (pLen > 0) this.receiveData(c, ptr + dv.getUint32(d + D_PAYLOAD_OFF, true), seq, pLen);
    if (flags & FIN) {
      const finSeq = seqAdd(seq, pLen);
      if (finSeq === c.rcvNxt) this.guestFin(c);
      else if (seqGt(finSeq, c.rcvNxt)) c.finPending = finSeq;
    }
    if (c.state !== St.Closed) this.maybeFinished(c);
  }

  /** Window within which guest segments are accepted: what we advertised, or more if buffer space opened since. */
  private acceptWindow(c: Conn): number {
    if (c.finRcvd) return 0;
    const adv = seqDiff(c.rcvAdv, c.rcvNxt);
    const budget = this.rcvBudget(c);
    return Math.max(adv, budget, 0);
  }

  private rcvBudget(c: Conn): number {
    const queued = this.rcvQueued(c);
    let held = 0;
    if (c.reasmSlot >= 0) {
      const r = this.reasmPtrs[c.reasmSlot];
      held = this.host.kernels.k.reasmHeld(r) + this.host.kernels.k.reasmReadable(r);
    }
    return Math.max(0, Math.min(this.rcvLimit(c) - queued - held, this.rcvRoom(c, queued)));
  }

  /** Guest bytes staged for c's host socket or waiting in its write queue. */
  private rcvQueued(c: Conn): number {
    return (c.socket !== null ? c.socket.writableLength : 0) + c.stageBytes;
  }

  /** Per-flow receive cap: rcvBufBytes, this flow's share of its VM's window, and 64 KiB without window scaling. */
  private rcvLimit(c: Conn): number {
    const senders = this.portSenders.get(c.port.id);
    const active = senders === undefined ? 1 : Math.max(1, senders.cur, senders.prev);
    const share = Math.max(this.minShareBytes, Math.floor(this.vmWindowBytes / active));
    const cap = Math.min(this.o.rcvBufBytes, share);
    return c.rcvShift === 0 ? Math.min(cap, 65535) : cap;
  }

  /** Count this flow among its VM's senders for the current activity epoch. */
  private markSender(c: Conn): void {
    if (c.rxEpoch === this.rxEpoch) return;
    c.rxEpoch = this.rxEpoch;
    let s = this.portSenders.get(c.port.id);
    if (s === undefined) {
      s = { cur: 0, prev: 0 };
      this.portSenders.set(c.port.id, s);
    }
    s.cur++;
  }

  /** Epochs of 100 ms: a flow counts as a sender for one to two epochs after its last data. */
  private rollSenderEpoch(now: number): void {
    const elapsed = now - this.rxEpochAt;
    if (elapsed < 100) return;
    this.rxEpochAt = now;
    this.rxEpoch++;
    for (const [id, s] of this.portSenders) {
      // A quiet stretch of two epochs or more leaves nobody counted.
      if ((s.cur === 0 && s.prev === 0) || elapsed >= 200) this.portSenders.delete(id);
      s.prev = s.cur;
      s.cur = 0;
    }
  }

  /** RFC 793 ACK processing. Returns false when the segment must be dropped. */
  private processAck(c: Conn, seq: number, ack: number, win: number, pLen: number, flags: number): boolean {
    if (seqGt(ack, c.sndMax)) {
      // Acknowledges something never sent: answer with an ACK and drop (RFC 793; RFC 5961 §5).
      this.counters.outOfWindow++;
      this.queueAck(c);
      return false;
    }
    const now = this.host.now();
    if (seqGt(ack, c.sndUna)) {
      const acked = seqDiff(ack, c.sndUna);
      const dataAcked = Math.min(acked, c.q.length);
      c.q.consume(dataAcked);
      c.sndUna = ack;
      if (seqLt(c.sndNxt, ack)) c.sndNxt = ack;
      if (c.finSent && ack === c.sndMax) c.finAcked = true;
      c.retries = 0;
      c.dupAcks = 0;
      if (c.rttSeq !== -1 && seqGe(ack, c.rttSeq)) {
        this.rttSample(c, now - c.rttTime);
        c.rttSeq = -1;
      }
      if (c.inRecovery) {
        if (seqGe(ack, c.recover)) {
          c.inRecovery = false;
          c.cwnd = c.ssthresh;
        } else {
          // NewReno partial ACK: the next hole is at the new snd.una.
          this.retransmitOne(c);
          c.cwnd = Math.max(c.mss, c.cwnd - dataAcked + c.mss);
        }
      } else if (c.cwnd < c.ssthresh) {
        c.cwnd = Math.min(c.cwnd + dataAcked, MAX_CWND);
      } else {
        c.cwnd = Math.min(c.cwnd + Math.max(1, Math.floor((c.mss * dataAcked) / c.cwnd)), MAX_CWND);
      }
      if (c.sndUna === c.sndMax) this.disarm(c);
      else this.arm(c, Timer.Rto, now + c.rto);
      this.reconcileSnd(c);
      if (c.paused && !c.hostEnded && c.q.length <= this.sndAllowance(c) >> 1) {
        c.paused = false;
        // The paused socket's next read lands in the buffer it was given (its floor's size).
        this.reconcileSnd(c);
        c.socket?.resume();
      }
      this.markDirty(c);
    } else if (ack === c.sndUna && pLen === 0 && (flags & FIN) === 0 && c.sndMax !== c.sndUna &&
      (win << c.sndShift) === c.sndWnd) {
      c.dupAcks++;
      if (c.dupAcks === 3 && !c.inRecovery) {
        this.counters.fastRetransmits++;
        const flight = seqDiff(c.sndMax, c.sndUna);
        c.ssthresh = Math.max(flight >> 1, 2 * c.mss);
        c.cwnd = c.ssthresh + 3 * c.mss;
        c.inRecovery = true;
        c.recover = c.sndMax;
        c.rttSeq = -1;
        this.retransmitOne(c);
      } else if (c.dupAcks > 3 && c.inRecovery) {
        c.cwnd = Math.min(c.cwnd + c.mss, MAX_CWND);
        this.markDirty(c);
      }
    }
    // RFC 793 window update rule: only a segment newer than the last update moves the window.
    if (seqLt(c.sndWl1, seq) || (c.sndWl1 === seq && seqLe(c.sndWl2, ack))) {
      const w = win << c.sndShift;
      if (w !== c.sndWnd) {
        const opened = w > c.sndWnd;
        c.sndWnd = w;
        if (opened) {
          if (c.timer === Timer.Persist) this.disarm(c);
          this.markDirty(c);
        }
      }
      c.sndWl1 = seq;
      c.sndWl2 = ack;
    }
    return true;
  }

  private rttSample(c: Conn, r: number): void {
    if (r < 0) return;
    if (c.srtt < 0) {
      c.srtt = r;
      c.rttvar = r / 2;
    } else {
      c.rttvar = 0.75 * c.rttvar + 0.25 * Math.abs(c.srtt - r);
      c.srtt = 0.875 * c.srtt + 0.125 * r;
    }
    c.rto = Math.min(this.o.maxRtoMs, Math.max(this.o.minRtoMs, c.srtt + Math.max(this.o.tickMs, 4 * c.rttvar)));
  }

  private receiveData(c: Conn, p: number, seq: number, len: number): void {
    if (c.finRcvd) return;
    this.markSender(c);
    const k = this.host.kernels;
    let off = seqDiff(seq, c.rcvNxt);
    if (off > 0 || c.reasmSlot >= 0) {
      this.receiveOutOfOrder(c, p, off, len);
      return;
    }
    // In order (possibly overlapping bytes we already have).
    if (off < 0) {
      p -= off;
      len += off;
      this.counters.dupSegments++;
    }
    const wnd = this.acceptWindow(c);
    if (len > wnd) len = wnd;
    if (len <= 0) return;
    // Within the window but beyond the byte budget (windows advertised before the VM neared
    // it): the rest is dropped, and the guest sends it again once the host has taken some.
    const room = this.rcvRoom(c, this.rcvQueued(c));
    if (len > room) {
      this.counters.rcvBudgetDrops++;
      len = room;
      if (len <= 0) {
        this.queueAck(c);
        return;
      }
    }
    this.deliver(c, k.u8, p, len);
    this.reconcileRcv(c);
    c.rcvNxt = seqAdd(c.rcvNxt, len);
    // RFC 1122 §4.2.3.2 / RFC 5681: at least every second full-sized segment is acknowledged at once.
    c.rcvUnacked += len;
    if (c.rcvUnacked >= 2 * c.mss) this.queueAck(c);
    else this.delayAck(c);
    if (c.finPending !== -1 && c.finPending === c.rcvNxt) this.guestFin(c);
  }

  private receiveOutOfOrder(c: Conn, p: number, off: number, len: number): void {
    const k = this.host.kernels;
    if (c.reasmSlot < 0) {
      this.counters.oooSegments++;
      // A VM at its share of the pool gets no more slots, so one VM cannot hold them all.
      // The segment is dropped and the duplicate ACK makes the guest send it again.
      const vm = c.port.id;
      // Counted as the VM's bound only while the pool still has slots for others.
      const atShare = this.reasmFree.length > 0 && this.reasmQuota.usedBy(vm) >= this.reasmQuota.perVm;
      const took = this.reasmQuota.take(vm);
      const slot = took ? this.reasmFree.pop() : undefined;
      if (slot === undefined) {
        if (took) this.reasmQuota.give(vm);
        if (atShare) {
          this.counters.refusedReasmSlots++;
          this.host.log.limited('tcp-reasm-vm', 'debug', 'reassembly slot refused: VM at its share of the pool', { vm, perVm: this.reasmQuota.perVm });
        } else this.counters.oooNoBuffer++;
        this.sendAck(c);
        return;
      }
      c.reasmSlot = slot;
      k.k.reasmInit(this.reasmPtrs[slot], this.o.reasmBufBytes, this.o.reasmMaxHoles);
    } else if (off > 0) {
      this.counters.oooSegments++;
    }
    const r = this.reasmPtrs[c.reasmSlot];
    // Bytes beyond the receive window are not ours to hold.
    const wnd = this.acceptWindow(c);
    if (off + len > wnd) len = wnd - off;
    if (len <= 0) {
      this.queueAck(c);
      return;
    }
    // The buffer counts offsets from the end of what it holds readable (bytes left there
    // while the byte budget was full), which may lie past rcv.nxt.
    const res = k.k.reasmWrite(r, off - k.k.reasmReadable(r), p, len);
    if (res < 0) {
      if (res === -2) this.counters.oooTooManyHoles++;
      else this.counters.outOfWindow++;
    }
    // Reassembled bytes are taken in as far as the byte budget allows; the rest stays in the
    // buffer (acknowledged later, when an arrival or retransmission finds room).
    let readable = Math.min(k.k.reasmReadable(r), Math.max(0, this.rcvRoom(c, this.rcvQueued(c))));
    while (readable > 0) {
      const rp = k.k.reasmReadPtr(r) >>> 0;
      const n = Math.min(k.k.reasmReadChunk(r), readable);
      this.deliver(c, k.u8, rp, n);
      k.k.reasmConsume(r, n);
      c.rcvNxt = seqAdd(c.rcvNxt, n);
      readable -= n;
    }
    this.reconcileRcv(c);
    // An out-of-order arrival is acknowledged at once, one duplicate ACK per
    // segment (RFC 5681 §4.2), or the guest's fast retransmit never sees three.
    if (off > 0) this.sendAck(c);
    else this.queueAck(c);
    if (k.k.reasmHeld(r) === 0 && k.k.reasmReadable(r) === 0) this.releaseReasm(c);
    if (c.finPending !== -1 && c.finPending === c.rcvNxt) this.guestFin(c);
  }

  private releaseReasm(c: Conn): void {
    if (c.reasmSlot < 0) return;
    this.reasmFree.push(c.reasmSlot);
    this.reasmQuota.give(c.port.id);
    c.reasmSlot = -1;
  }

  /**
   * Queue n in-order guest bytes at kernel address p for c's host socket; they
   * are written (or copied into slab pieces) when the batch ends. Bytes in the
   * RX arena are referred to where they lie: at MTU 65520 copying them out was
   * 7 % of the engine's time guest→host. Bytes from a reassembly buffer are
   * copied into the stage, because that buffer is consumed at once.
   */
  private deliver(c: Conn, u8: Uint8Array, p: number, n: number): void {
    const s = c.socket;
    c.bytesIn += n;
    if (s === null || s.destroyed || s.writableEnded) return;
    const h = this.host.arena.arenaOf(p);
    if (h >= 0) c.stageParts.push(p, n, REGION_ARENA + h);
    else {
      if (this.stageUsed + n > STAGE_HALF) this.writeStaged();
      const at = this.stagePtr + this.stageUsed;
      u8.copyWithin(at, p, p + n);
      c.stageParts.push(at, n, this.stageHalves.current);
      this.stageUsed += n;
    }
    if (c.stageBytes === 0) this.staged.push(c);
    c.stageBytes += n;
  }

  /** Hand every flow's queued bytes to its socket: before the batch ends, while the RX arena still holds them. */
  private writeStaged(): void {
    for (const c of this.staged) this.writeConnStage(c);
    this.staged.length = 0;
    this.stageUsed = 0;
    this.stagePtr = this.stageBase + this.stageHalves.next() * STAGE_HALF;
  }

  private writeConnStage(c: Conn): void {
    const n = c.stageBytes;
    if (n === 0) return;
    const parts = c.stageParts;
    const s = c.socket;
    if (s !== null && !s.destroyed && !s.writableEnded) {
      const lend = n * 3 >= LEND_MIN_PART * parts.length && s.writableLength === 0 && this.lendAll(parts);
      if (lend) this.writeInPlace(s, parts, n);
      else this.writeCopied(s, parts, n);
    }
    parts.length = 0;
    c.stageBytes = 0;
    this.reconcileRcv(c);
  }

  /** Write a flow's parts through slab pieces: the path for small parts and for sockets with a backlog. */
  private writeCopied(s: net.Socket, parts: number[], n: number): void {
    // At MTU 65520 one flow can queue more than a slab in a batch: it goes out as slab-sized
    // pieces in one writev rather than as a fresh Buffer the GC must reclaim.
    const many = n > SLAB_BYTES;
    if (many) s.cork();
    const u8 = this.host.kernels.u8;
    // A socket without a backlog may take a piece of a kernel slab (released when its write
    // completes, so soon): the parts are copied straight into it. A socket that stopped
    // reading gets heap pieces, and holds none of the pool that host reads want.
    const idle = s.writableLength === 0;
    let part = 0;
    let partOff = 0;
    for (let left = n; left > 0;) {
      const take = Math.min(left, SLAB_BYTES);
      const kpiece = idle ? this.kslabs.tryTake(take) : null;
      const kdone = this.kslabs.lastDone;
      // Into a heap piece: parts that lie back to back (staged ones of a flow alone in the
      // batch) are copied out as they lie; others (segments in the RX arena have headers
      // between them) are first gathered inside kernel memory, with no allocation per part,
      // and one view copies the piece out.
      const direct = kpiece === null && this.contiguous(parts, part, partOff, take);
      const dst = kpiece !== null ? kpiece.byteOffset - u8.byteOffset : this.gatherPtr;
      const src = direct ? parts[part] + partOff : dst;
      for (let o = 0; o < take;) {
        const k = Math.min(parts[part + 1] - partOff, take - o);
        if (!direct) {
          const from = parts[part] + partOff;
          u8.copyWithin(dst + o, from, from + k);
        }
        o += k;
        partOff += k;
        if (partOff === parts[part + 1]) {
          part += 3;
          partOff = 0;
        }
      }
      if (kpiece !== null) {
        this.counters.hostWritesFromKernelSlabs++;
        s.write(kpiece, kdone);
      } else {
        const buf = this.slabs.take(take);
        buf.set(u8.subarray(src, src + take));
        s.write(buf, this.slabs.lastDone);
      }
      left -= take;
    }
    if (many) s.uncork();
  }

  /**
   * Write a flow's parts from kernel memory where they lie: one view when they
   * lie back to back, else one per part in a single writev, holding the
   * regions lendAll took (RX arena, read-area buffer or stage half) until each
   * write's callback. Only sockets without a backlog get this, so a host that
   * stopped reading does not hold a region for long.
   */
  private writeInPlace(s: net.Socket, parts: number[], n: number): void {
    const u8 = this.host.kernels.u8;
    const base = u8.byteOffset;
    this.counters.hostWritesInPlace++;
    const rel = this.partReleases;
    if (this.contiguous(parts, 0, 0, n)) {
      // One write, one region: one hold is enough.
      for (let i = 1; i < rel.length; i++) rel[i]();
      s.write(Buffer.from(u8.buffer, base + parts[0], n), rel[0]);
      return;
    }
    s.cork();
    for (let i = 0; i < parts.length; i += 3) s.write(Buffer.from(u8.buffer, base + parts[i], parts[i + 1]), rel[i / 3]);
    s.uncork();
  }

  /**
   * One hold on the region of each part, or none (false): each lend is
   * checked against the ones before it, because a batch's frames may lie in
   * several buffers of one set (a read area's) and every set must keep a
   * buffer nobody holds. The releases are left in partReleases.
   */
  private lendAll(parts: number[]): boolean {
    const rel = this.partReleases;
    rel.length = 0;
    for (let i = 2; i < parts.length; i += 3) {
      const r = parts[i];
      const set = r < REGION_ARENA ? this.stageHalves : this.host.arena;
      const h = r < REGION_ARENA ? r : r - REGION_ARENA;
      if (!set.canLend(h)) {
        for (const f of rel) f();
        rel.length = 0;
        return false;
      }
      rel.push(set.lend(h));
    }
    return true;
  }

  /** Whether `take` bytes from (part, partOff) on lie in one run of one region. */
  private contiguous(parts: number[], part: number, partOff: number, take: number): boolean {
    let end = parts[part] + parts[part + 1];
    let have = parts[part + 1] - partOff;
    for (let i = part + 3; have < take; i += 3) {
      if (parts[i] !== end || parts[i + 2] !== parts[part + 2]) return false;
      end += parts[i + 1];
      have += parts[i + 1];
    }
    return true;
  }

  private guestFin(c: Conn): void {
    if (c.finRcvd) return;
    c.finRcvd = true;
    c.finPending = -1;
    c.rcvNxt = seqAdd(c.rcvNxt, 1);
    this.counters.guestFins++;
    this.releaseReasm(c);
    this.starved.delete(c);
    // The host's FIN usually follows within the delay and then carries this ACK.
    this.delayAck(c);
    const s = c.socket;
    this.writeConnStage(c);
    if (s !== null && !s.destroyed && !s.writableEnded) s.end();
  }

  private synSentInput(c: Conn, d: number, flags: number, seq: number, ack: number): void {
    const dv = this.host.kernels.dv;
    if ((flags & ACK) !== 0 && ack !== c.sndNxt) {
      if ((flags & RST) === 0) this.rstFromConn(c, ack);
      return;
    }
    if (flags & RST) {
      if (flags & ACK) {
        this.counters.forwardsRefused++;
        this.abort(c, 'guest refused forwarded connection');
      }
      return;
    }
    if ((flags & (SYN | ACK)) !== (SYN | ACK)) {
      this.counters.badFlags++;
      return;
    }
    this.readSynOptions(c, d);
    c.irs = seq;
    c.rcvNxt = seqAdd(seq, 1);
    c.sndUna = ack;
    c.sndWnd = dv.getUint16(d + D_WINDOW, true);
    c.sndWl1 = seq;
    c.sndWl2 = ack;
    c.state = St.Established;
    c.handshakeBy = Infinity;
    c.retries = 0;
    this.counters.established++;
    this.counters.forwardsOpened++;
    this.disarm(c);
    c.rcvAdv = c.rcvNxt;
    this.queueAck(c);
    this.markDirty(c);
  }

  // ---- host socket events ---------------------------------------------------

  /**
   * Where c's socket reads next (Node asks once at connect, then after every read).
   * A bulk sender's reads land straight in a slab piece that the send queue then
   * holds: the copy out of the shared buffer was a fifth of the engine's time at
   * MTU 65520. Everyone else shares one buffer and is copied out of it, so an
   * idle or paused socket pins no memory.
   */
  private readTarget(c: Conn): Uint8Array {
    if (c.readRes !== null) return c.readRes;
    if (c.state === St.Closed) {
      c.readSize = 0;
      return this.readBuf;
    }
    // The read may fill what this buffer holds, so that much is taken from the byte budget
    // first: a socket that has not been reading in bulk (or is paused) gets its floor only,
    // so idle flows hold nothing of the budget.
    let size = this.floorBytes;
    if (!c.paused) {
      const room = this.sndAllowance(c) - c.q.length;
      size = Math.min(c.hotReads ? READ_BYTES : this.floorBytes, room);
      if (size <= 0) {
        this.pauseForBudget(c);
        size = this.floorBytes;
      }
    }
    c.readSize = size;
    this.reconcileSnd(c);
    if (!c.hotReads || c.paused || this.readReservations >= this.o.readReservations) {
      return size >= READ_BYTES ? this.readBuf : size === this.floorBytes ? this.floorView : this.readBuf.subarray(0, size);
    }
    let from = this.kslabs;
    let piece = from.tryTake(size);
    if (piece === null) {
      from = this.slabs;
      piece = from.take(size);
    }
    c.readRes = piece;
    c.readResDone = from.lastDone;
    this.readReservations++;
    return piece;
  }

  /** c's socket stops reading: its queue is at what c may hold. */
  private pauseForBudget(c: Conn): void {
    if (c.paused) return;
    c.paused = true;
    if (c.q.length < sndBufFor(this.o, c.mss)) this.counters.sndBudgetPauses++;
    c.socket?.pause();
  }

  /** Gives back c's read reservation; only once its socket can no longer read into it. */
  private dropReadReservation(c: Conn): Buffer | null {
    const piece = c.readRes;
    if (piece === null) return null;
    c.readRes = null;
    this.readReservations--;
    return piece;
  }

  /** Drops c's read reservation and returns its piece to the slab (nothing else holds it). */
  private releaseReadReservation(c: Conn): void {
    const done = c.readResDone;
    if (this.dropReadReservation(c) !== null) done();
  }

  private onHostRead(c: Conn, n: number, buf: Uint8Array): boolean {
    // A read that filled its buffer (the floor, for a socket just woken) left more behind. A
    // small one ends the bulk reads: the next buffer, held while the socket idles, is the floor.
    c.hotReads = n >= HOT_READ_BYTES || n >= c.readSize;
    // What arrived now sits in the queue; readTarget sizes (and takes) the next read.
    c.readSize = 0;
    if (buf === c.readRes) {
      this.counters.hostReadsInPlace++;
      if (c.state === St.Closed) {
        this.releaseReadReservation(c);
        return true;
      }
      const done = c.readResDone;
      const piece = this.dropReadReservation(c)!;
      (piece.buffer === this.kmem ? this.kslabs : this.slabs).trim(piece, n);
      this.onHostData(c, piece.subarray(0, n), done);
      return !c.paused;
    }
    if (c.state === St.Closed) return true;
    this.counters.hostReadsCopied++;
    if (n < SLAB_COPY_MIN) {
      // A small piece gets memory of its own: cut from a shared slab, it would keep the whole
      // slab alive for as long as its flow keeps it (a guest that never acknowledges), and a
      // few such pieces among other flows' would hold many slabs for a few KiB each.
      const own = Buffer.allocUnsafeSlow(n);
      own.set(buf.subarray(0, n));
      this.onHostData(c, own);
      return !c.paused;
    }
    const piece = this.slabs.take(n);
    const done = this.slabs.lastDone;
    piece.set(buf.subarray(0, n));
    this.onHostData(c, piece, done);
    return !c.paused;
  }

  private onHostData(c: Conn, b: Buffer, release?: () => void): void {
    if (c.state === St.Closed) {
      release?.();
      return;
    }
    c.q.push(b, release);
    c.bytesOut += b.length;
    // Within what the read's buffer took; a socket without onread (an embedder's, a gateway
    // service) delivers what it has, counted as far as the budget allows.
    this.reconcileSnd(c);
    if (!c.paused && c.q.length >= this.sndAllowance(c)) this.pauseForBudget(c);
    if (c.state === St.Established) {
      this.markDirty(c);
      this.host.scheduleTx();
    }
  }

  private onHostEnd(c: Conn): void {
    if (c.state === St.Closed) return;
    c.hostEnded = true;
    // No read follows the end: its buffer's share goes back.
    this.reconcileSnd(c);
    this.counters.hostFins++;
    if (c.state === St.Established) {
      this.markDirty(c);
      this.host.scheduleTx();
    }
  }

  private onHostDrain(c: Conn): void {
    if (c.state === St.Closed) return;
    this.reconcileRcv(c);
    if (this.starved.has(c)) this.windowUpdate(c);
  }

  private onHostError(c: Conn, err: Error): void {
    if (c.state === St.Closed) return;
    if (c.state === St.Connecting) {
      this.counters.refused++;
      this.host.log.limited('tcp-connect', 'debug', 'host connect failed', {
        dst: `${formatIPv4(c.remoteIp)}:${c.remotePort}`, error: err.message,
      });
    } else {
      this.counters.hostErrors++;
      this.host.log.limited('tcp-host-error', 'debug', 'host socket error', { error: err.message });
    }
    this.resetGuest(c);
  }

  private onHostClose(c: Conn): void {
    // The handle is closed: nothing reads into the reservation any more.
    this.releaseReadReservation(c);
    // Every path that ends a host socket (reset, end, error, never connected) ends here, once.
    if (c.socketCounted) {
      c.socketCounted = false;
      this.hostSockets.give(c.port.id);
    }
    // Without an error a close follows both FINs; the guest side finishes on its own.
    // A socket closed before it ever connected (destroyed by a test, an agent) is a refusal.
    if (c.state === St.Connecting || c.state === St.SynSent) this.resetGuest(c);
  }

  // ---- byte budget -------------------------------------------------------------

  /**
   * Budget units c may still take: what its VM and everyone have left, and no
   * more than its fair share less what it holds. The global budget is split
   * among the VMs holding some, then each VM's part (never above its own
   * bound) among its flows holding some: a VM opening many flows thins only
   * its own flows' shares, never another VM's. A flow past its share keeps
   * what it has and takes nothing more until it drains.
   */
  private headroom(c: Conn): number {
    const vm = c.port.id;
    const mine = c.sndTaken + c.rcvTaken;
    const flows = this.activeByVm.get(vm) ?? 0;
    const vms = this.activeByVm.size + (flows > 0 ? 0 : 1);
    const vmPart = Math.min(this.bytes.perVm, Math.floor(this.bytes.total / vms));
    const share = Math.floor(vmPart / (flows + (mine > 0 ? 0 : 1)));
    return Math.max(0, Math.min(this.bytes.room(vm), share - mine));
  }

  /** Host→guest bytes c may hold (queue plus next read): its send buffer, or less as the budget nears its bound. */
  private sndAllowance(c: Conn): number {
    return Math.min(sndBufFor(this.o, c.mss), this.floorBytes + c.sndTaken + this.headroom(c));
  }

  /** Guest→host bytes c may still take in, given `queued` already queued. */
  private rcvRoom(c: Conn, queued: number): number {
    return this.floorBytes + c.rcvTaken + this.headroom(c) - queued;
  }

  /** Hold `want` units for one direction of c: gives back at once; takes as far as the budget allows. */
  private setTaken(c: Conn, snd: boolean, want: number): void {
    const had = snd ? c.sndTaken : c.rcvTaken;
    if (want === had) return;
    const vm = c.port.id;
    const before = c.sndTaken + c.rcvTaken;
    let now = want;
    if (want > had) {
      const t = Math.min(want - had, this.bytes.room(vm));
      now = had;
      if (t > 0 && this.bytes.take(vm, t)) now += t;
    } else this.bytes.give(vm, had - want);
    if (snd) c.sndTaken = now;
    else c.rcvTaken = now;
    const after = c.sndTaken + c.rcvTaken;
    if ((before > 0) !== (after > 0)) {
      const d = after > 0 ? 1 : -1;
      const n = (this.activeByVm.get(vm) ?? 0) + d;
      if (n > 0) this.activeByVm.set(vm, n);
      else this.activeByVm.delete(vm);
    }
  }

  /** c's host→guest holding: its queue, and the buffer its socket reads into next while it reads. */
  private reconcileSnd(c: Conn): void {
    const reading = !c.paused && !c.hostEnded && c.state !== St.Closed && c.socket !== null;
    const held = c.state === St.Closed ? 0 : c.q.length + (reading ? c.readSize : 0);
    this.setTaken(c, true, Math.max(0, held - this.floorBytes));
  }

  /** c's guest→host holding, sampled: a socket's backlog shrinks as its writes complete. */
  private reconcileRcv(c: Conn): void {
    const want = c.state === St.Closed ? 0 : Math.max(0, this.rcvQueued(c) - this.floorBytes);
    this.setTaken(c, false, want);
    if (c.rcvTaken > 0) {
      if (!this.rcvHolders.has(c)) {
        this.rcvHolders.add(c);
        this.ensureInterval();
      }
    } else this.rcvHolders.delete(c);
  }

  // ---- output ----------------------------------------------------------------

  private markDirty(c: Conn): void {
    this.dirty.add(c);
  }

  /** An ACK that may wait briefly for a segment to carry it (see delayedAckMs). */
  private delayAck(c: Conn): void {
    if (this.o.delayedAckMs === 0) {
      this.queueAck(c);
      return;
    }
    c.ackOwed = true;
    this.dirty.add(c);
  }

  /** Nothing carried the owed ACK this turn: it goes out by itself when due. */
  private holdAck(c: Conn): void {
    if (this.delayedAcks.has(c)) return;
    c.ackDueAt = this.host.now() + this.o.delayedAckMs;
    this.delayedAcks.add(c);
    this.armDelayedAcks(this.o.delayedAckMs);
  }

  private armDelayedAcks(ms: number): void {
    if (this.delayedAckTimer !== null || this.o.manualTimers || this.closedDown) return;
    this.delayedAckTimer = setTimeout(this.onDelayedAckTimer, ms);
    this.delayedAckTimer.unref();
  }

  private readonly onDelayedAckTimer = (): void => {
    this.delayedAckTimer = null;
    // Node's timers count whole milliseconds of loop time and can fire early against the
    // stack's clock: ACKs not yet due wait for another round rather than go early.
    const next = this.releaseHeldAcks(this.host.now());
    if (next !== Infinity) this.armDelayedAcks(Math.max(1, Math.ceil(next - this.host.now())));
  };

  /** Queue every held ACK due by `now`; returns the earliest deadline still held. */
  private releaseHeldAcks(now: number): number {
    let any = false;
    let next = Infinity;
    for (const c of this.delayedAcks) {
      if (c.ackDueAt > now) {
        if (c.ackDueAt < next) next = c.ackDueAt;
        continue;
      }
      this.delayedAcks.delete(c);
      if (c.ackOwed && c.state !== St.Closed) {
        this.queueAck(c);
        any = true;
      }
    }
    if (any) this.host.scheduleTx();
    return next;
  }

  private queueAck(c: Conn): void {
    c.ackNow = true;
    this.dirty.add(c);
  }

  /**
   * Emit everything owed this turn: data within the windows, FINs and one ACK
   * per flow that needs one. The engine calls this right before TxBatch.flush().
   */
  flush(): void {
    // Staged bytes go out first, so the windows computed below see them in writableLength.
    if (this.staged.length > 0) this.writeStaged();
    this.portTurnBytes.clear();
    if (this.portSenders.size > 0) this.rollSenderEpoch(this.host.now());
    if (this.dirty.size > 0) {
      for (const c of this.dirty) {
        this.dirty.delete(c);
        if (c.state === St.Closed) continue;
        this.output(c);
        if (c.ackNow) this.sendAck(c);
        else if (c.ackOwed) this.holdAck(c);
        this.maybeFinished(c);
      }
    }
    if (this.carry.length > 0) {
      for (const c of this.carry) this.dirty.add(c);
      this.carry.length = 0;
    }
    if (this.carryLast.length > 0) {
      for (const c of this.carryLast) this.dirty.add(c);
      this.carryLast.length = 0;
    }
  }

  private output(c: Conn): void {
    if (c.state !== St.Established) return;
    const now = this.host.now();
    let sent = 0;
    for (;;) {
      const off = seqDiff(c.sndNxt, c.sndUna);
      const avail = c.q.length - off;
      if (avail <= 0) break;
      const inflight = seqDiff(c.sndNxt, c.sndUna);
      const room = Math.min(c.sndWnd, c.cwnd) - inflight;
      if (room <= 0) break;
      let len = Math.min(c.mss, avail, room);
      // Sender-side silly-window avoidance (RFC 1122 §4.2.3.4): a window-limited tiny segment waits while data is in flight.
      if (len < c.mss && len < avail && inflight > 0) break;
      if (sent >= this.o.burstBytes) {
        // Fairness: the rest waits for the next turn (not this flush, which is iterating `dirty`),
        // behind flows that have not sent yet.
        this.carryLast.push(c);
        this.host.scheduleTx();
        break;
      }
      const isNew = c.sndNxt === c.sndMax;
      if (isNew) {
        const link = c.port.link;
        // The VM's transport is backed up: new data waits for its drain (portDrained) rather than
        // piling into the link's queue, where it would be dropped and retransmitted.
        if (link.congested === true) {
          this.wait(c, sent > 0);
          break;
        }
        // Frames built this turn reach the link only after flush(), so the link cannot see them
        // yet: count them here, or several flows bursting in one turn overrun its queue cap.
        if (link.highWater !== undefined && (link.backlog ?? 0) + this.turnBytes(c.port.id) >= link.highWater) {
          (sent > 0 ? this.carryLast : this.carry).push(c);
          this.host.scheduleTx();
          break;
        }
      }
      this.sendData(c, off, len, len === avail ? PSH : 0);
      this.addTurnBytes(c.port.id, len + HEADERS_BYTES);
      if (isNew && c.rttSeq === -1) {
        c.rttSeq = c.sndNxt;
        c.rttTime = now;
      }
      if (!isNew) this.counters.retransmits++;
      sent += len;
    }
    // The FIN follows the last byte; after a go-back-N it is resent when the data before it has been.
    if (c.hostEnded && !c.finAcked && c.sndNxt === seqAdd(c.sndUna, c.q.length)) {
      this.fill(c, FIN | ACK, c.sndNxt);
      this.out(c, undefined, 0, 0);
      if (c.finSent) this.counters.retransmits++;
      c.finSent = true;
      c.sndNxt = seqAdd(c.sndNxt, 1);
      if (seqGt(c.sndNxt, c.sndMax)) c.sndMax = c.sndNxt;
    }
    if (c.sndMax !== c.sndUna) {
      if (c.timer !== Timer.Rto) this.arm(c, Timer.Rto, now + c.rto);
    } else if (c.sndWnd === 0 && c.q.length > 0) {
      if (c.timer !== Timer.Persist) this.arm(c, Timer.Persist, now + c.rto);
    }
  }

  private turnBytes(portId: number): number {
    return this.portTurnBytes.get(portId) ?? 0;
  }

  private addTurnBytes(portId: number, n: number): void {
    this.portTurnBytes.set(portId, this.turnBytes(portId) + n);
  }

  private sendData(c: Conn, off: number, len: number, extra: number): void {
    this.fill(c, ACK | extra, c.sndNxt);
    this.outQueued(c, off, len);
    c.sndNxt = seqAdd(c.sndNxt, len);
    if (seqGt(c.sndNxt, c.sndMax)) c.sndMax = c.sndNxt;
  }

  /** Resend the segment at snd.una (fast retransmit, NewReno partial ACK). */
  private retransmitOne(c: Conn): void {
    const len = Math.min(c.mss, c.q.length);
    this.counters.retransmits++;
    if (len > 0) {
      this.fill(c, ACK, c.sndUna);
      this.outQueued(c, 0, len);
    } else if (c.finSent && !c.finAcked) {
      this.fill(c, FIN | ACK, c.sndUna);
      this.out(c, undefined, 0, 0);
    }
  }

  private sendAck(c: Conn): void {
    this.fill(c, ACK, c.sndNxt);
    this.out(c, undefined, 0, 0);
  }

  /** Window field for an outgoing segment, moving the advertised right edge (never left; RFC 1122 receiver SWS avoidance). */
  private windowField(c: Conn): number {
    if (c.finRcvd) {
      c.rcvAdv = c.rcvNxt;
      this.starved.delete(c);
      return 0;
    }
    const limit = this.rcvLimit(c);
    const budget = this.rcvBudget(c);
    const edge = seqAdd(c.rcvNxt, (budget >>> c.rcvShift) << c.rcvShift);
    const grow = seqDiff(edge, c.rcvAdv);
    if (grow > 0 && (grow >= Math.min(limit >> 1, this.ourMss) || budget === limit)) c.rcvAdv = edge;
    const wnd = Math.max(0, seqDiff(c.rcvAdv, c.rcvNxt));
    if (wnd < limit >> 1 && c.state === St.Established) {
      this.starved.add(c);
      this.ensureInterval();
    } else this.starved.delete(c);
    return Math.min(65535, wnd >>> c.rcvShift);
  }

  private fill(c: Conn, flags: number, seq: number): void {
    const s = this.seg;
    s.srcIp = c.remoteIp;
    s.srcPort = c.remotePort;
    s.dstIp = c.guestIp;
    s.dstPort = c.guestPort;
    s.seq = seq;
    s.flags = flags;
    s.ack = flags & ACK ? c.rcvNxt : 0;
    s.window = this.windowField(c);
    s.optFlags = 0;
    s.mss = 0;
    s.wscale = 0;
  }

  private out(c: Conn, data: Uint8Array | undefined, off: number, len: number): void {
    this.sent(c);
    this.host.tx.tcp(c.port.link, c.mac, this.seg, data, off, len);
  }

  /**
   * Send this.seg with bytes [off, off+len) of the send queue, copied once:
   * by buildFrames in the pass that sums them when they lie in a kernel slab,
   * else into the segment's TX slot here.
   */
  private outQueued(c: Conn, off: number, len: number): void {
    this.sent(c);
    const tx = this.host.tx;
    if (!this.copyPayloads) {
      const at = c.q.runIn(off, len, this.kmem);
      if (at > 0) {
        this.counters.segmentsFromKernelSlabs++;
        tx.tcpFrom(c.port.link, c.mac, this.seg, at - this.host.kernels.u8.byteOffset, len);
        return;
      }
    }
    const ptr = tx.tcpSlot(c.port.link, c.mac, this.seg, len);
    c.q.copyOut(off, len, this.host.kernels.u8, ptr);
  }

  /** Bookkeeping for this.seg going out: an ACK settles whatever ACK was owed. */
  private sent(c: Conn): void {
    if (this.seg.flags & ACK) {
      c.ackNow = false;
      c.rcvUnacked = 0;
      if (c.ackOwed) {
        c.ackOwed = false;
        this.delayedAcks.delete(c);
      }
    }
    this.counters.segmentsOut++;
  }

  private windowUpdate(c: Conn): void {
    const before = Math.max(0, seqDiff(c.rcvAdv, c.rcvNxt));
    const limit = this.rcvLimit(c);
    const budget = this.rcvBudget(c);
    if (budget - before >= Math.min(limit >> 1, 2 * this.ourMss) || (before === 0 && budget >= Math.min(this.ourMss, limit >> 1))) {
      this.counters.windowUpdates++;
      this.queueAck(c);
      this.host.scheduleTx();
    }
  }

  private challengeAck(c: Conn): void {
    const now = this.host.now();
    if (now >= this.challengeRefillAt) {
      this.challengeTokens = this.o.challengeAcksPerSecond;
      this.challengeRefillAt = now + 1000;
    }
    if (this.challengeTokens <= 0) {
      this.counters.challengeAcksSuppressed++;
      return;
    }
    this.challengeTokens--;
    this.counters.challengeAcks++;
    this.queueAck(c);
  }

  /** RST for a segment that belongs to no connection (RFC 793 "reset generation"). */
  private rstForSegment(port: TcpPort, ptr: number, d: number, flags: number): void {
    const k = this.host.kernels;
    const dv = k.dv;
    const s = this.seg;
    s.srcIp = dv.getUint32(d + D_DST_IP, true);
    s.srcPort = dv.getUint16(d + D_DST_PORT, true);
    s.dstIp = dv.getUint32(d + D_SRC_IP, true);
    s.dstPort = dv.getUint16(d + D_SRC_PORT, true);
    s.window = 0;
    s.optFlags = 0;
    if (flags & ACK) {
      s.seq = dv.getUint32(d + D_ACK, true);
      s.ack = 0;
      s.flags = RST;
    } else {
      const len = dv.getUint32(d + D_PAYLOAD_LEN, true) + (flags & SYN ? 1 : 0) + (flags & FIN ? 1 : 0);
      s.seq = 0;
      s.ack = seqAdd(dv.getUint32(d + D_SEQ, true), len);
      s.flags = RST | ACK;
    }
    this.counters.rstSent++;
    this.counters.segmentsOut++;
    this.host.tx.tcp(port.link, k.u8.subarray(ptr + 6, ptr + 12), s);
    this.host.scheduleTx();
  }

  private rstFromConn(c: Conn, seq: number): void {
    const s = this.seg;
    this.fill(c, RST, seq);
    s.window = 0;
    this.counters.rstSent++;
    this.out(c, undefined, 0, 0);
    this.host.scheduleTx();
  }

  /** Tell the guest the connection is gone (refused, timed out, host reset) and forget it. */
  private resetGuest(c: Conn): void {
    if (c.state === St.Closed) return;
    if (c.state === St.Connecting) {
      // No SYN-ACK was sent: the guest's SYN is answered as if by a closed port.
      const s = this.seg;
      this.fill(c, RST | ACK, 0);
      s.window = 0;
      this.counters.rstSent++;
      this.out(c, undefined, 0, 0);
      this.host.scheduleTx();
    } else if (c.state !== St.SynSent) {
      this.fill(c, RST | ACK, c.sndNxt);
      this.seg.window = 0;
      this.counters.rstSent++;
      this.out(c, undefined, 0, 0);
      this.host.scheduleTx();
    }
    this.remove(c, true);
  }

  /** The guest reset the flow: reset the host side too. */
  private abort(c: Conn, why: string): void {
    this.counters.aborted++;
    this.remove(c, true);
  }

  private maybeFinished(c: Conn): void {
    if (c.state === St.Established && c.finRcvd && c.finAcked) {
      if (c.ackNow || c.ackOwed) this.sendAck(c);
      this.counters.closed++;
      this.remove(c, false);
    }
  }

  private remove(c: Conn, reset: boolean): void {
    if (c.state === St.Closed) return;
    if (c.state === St.Connecting) this.pending--;
    c.state = St.Closed;
    this.leaveHalfOpen(c);
    if (c.flowCounted) {
      c.flowCounted = false;
      this.flowQuota.give(c.port.id);
    }
    this.rcvHolders.delete(c);
    this.host.kernels.k.flowRemove(this.host.flowTable, PROTO_TCP, c.guestIp, c.guestPort, c.remoteIp, c.remotePort);
    if (this.conns[c.id] === c) this.conns[c.id] = undefined;
    this.all.delete(c);
    this.dirty.delete(c);
    this.waiting.get(c.port.id)?.delete(c);
    this.timed.delete(c);
    this.starved.delete(c);
    this.delayedAcks.delete(c);
    this.releaseReasm(c);
    c.q.consume(c.q.length);
    this.setTaken(c, true, 0);
    this.setTaken(c, false, 0);
    const s = c.socket;
    if (s !== null && !s.destroyed) {
      if (reset) resetSocket(s);
      else if (s.writableEnded) {
        // Both FINs done: let the socket finish flushing; it closes itself.
      } else s.end();
    }
  }

  // ---- timers -------------------------------------------------------------

  private arm(c: Conn, kind: Timer, at: number): void {
    c.timer = kind;
    c.timerAt = at;
    this.timed.add(c);
    this.ensureInterval();
  }

  private disarm(c: Conn): void {
    c.timer = Timer.None;
    this.timed.delete(c);
  }

  private ensureInterval(): void {
    if (this.interval !== null || this.o.manualTimers || this.closedDown) return;
    this.interval = setInterval(() => {
      this.tick(this.host.now());
      if (this.timed.size === 0 && this.starved.size === 0 && this.rcvHolders.size === 0 && this.interval !== null) {
        clearInterval(this.interval);
        this.interval = null;
      }
    }, this.o.tickMs);
    this.interval.unref();
  }

  /** Run due deadlines: connect timeouts, retransmissions, zero-window probes, window updates. */
  tick(now: number): void {
    let any = false;
    this.copyPayloads = true;
    try {
      any = this.runTimers(now);
    } finally {
      this.copyPayloads = false;
    }
    for (const c of this.rcvHolders) this.reconcileRcv(c);
    for (const c of this.starved) this.windowUpdate(c);
    if (this.o.manualTimers && this.delayedAcks.size > 0) this.releaseHeldAcks(now);
    if (any) this.host.scheduleTx();
  }

  private runTimers(now: number): boolean {
    let any = false;
    for (const c of this.timed) {
      if (c.timerAt > now) continue;
      any = true;
      const kind = c.timer;
      this.disarm(c);
      if (kind === Timer.Connect) {
        if (c.state === St.Connecting) {
          this.counters.connectTimeouts++;
          this.resetGuest(c);
        }
      } else if (kind === Timer.Rto) this.onRto(c, now);
      else if (kind === Timer.Persist) this.onPersist(c, now);
    }
    return any;
  }

  private onRto(c: Conn, now: number): void {
    c.retries++;
    c.rto = Math.min(c.rto * 2, this.o.maxRtoMs);
    if (c.state === St.SynRcvd || c.state === St.SynSent) {
      if (now >= c.handshakeBy) {
        // The guest never finished the handshake: the flow and its host connection go.
        this.counters.handshakeTimeouts++;
        this.resetGuest(c);
        return;
      }
      if (c.retries > this.o.maxSynRetries) {
        this.counters.gaveUp++;
        this.resetGuest(c);
        return;
      }
      this.counters.retransmits++;
      if (c.state === St.SynRcvd) this.sendSynAck(c);
      else this.sendSyn(c);
      this.arm(c, Timer.Rto, Math.min(now + c.rto, c.handshakeBy));
      return;
    }
    if (c.state !== St.Established || c.sndMax === c.sndUna) return;
    if (c.retries > this.o.maxRetries) {
      this.counters.gaveUp++;
      this.resetGuest(c);
      return;
    }
    this.counters.rtoTimeouts++;
    const flight = seqDiff(c.sndMax, c.sndUna);
    c.ssthresh = Math.max(flight >> 1, 2 * c.mss);
    c.cwnd = c.mss;
    c.inRecovery = false;
    c.dupAcks = 0;
    c.rttSeq = -1;
    // Go back N: resend from snd.una; the FIN (if any) follows the data again.
    c.sndNxt = c.sndUna;
    this.output(c);
    if (c.timer !== Timer.Rto) this.arm(c, Timer.Rto, now + c.rto);
  }

  private onPersist(c: Conn, now: number): void {
    if (c.state !== St.Established || c.sndWnd > 0 || c.q.length === 0) {
      this.markDirty(c);
      return;
    }
    // A probe the guest must answer with its current window (seq below snd.una, like Linux's tcp_xmit_probe_skb).
    this.counters.zeroWindowProbesSent++;
    this.fill(c, ACK, seqAdd(c.sndUna, -1));
    this.out(c, undefined, 0, 0);
    c.rto = Math.min(c.rto * 2, this.o.maxRtoMs);
    this.arm(c, Timer.Persist, now + c.rto);
  }

  /** A connection refused at quota `q`'s bound: counted under its refusal counter and logged a few times per interval. */
  private refusedBy(q: Quota, vm: number, logKey: string, what: string): void {
    const counter = q === this.flowQuota ? 'refusedVmFlows' : q === this.halfOpenQuota ? 'refusedHalfOpen' : 'refusedHostSockets';
    this.counters[counter]++;
    this.host.log.limited(`${logKey}-${counter}`, 'warn', `${what}: ${q.name} bound reached`, {
      vm, used: q.usedBy(vm), perVm: q.perVm, usedAll: q.used, total: q.total,
    });
  }

  // ---- host → guest connections (port forwarding) --------------------------

  /**
   * Open a connection to guestIp:guestPort from srcIp:srcPort and pipe it
   * with `socket` (already connected on the host side). Returns false, and
   * destroys the socket, when the flow table refuses the flow, or the VM is
   * at its flow bound, or the host-socket budget (the accepted socket is one
   * of its descriptors: past the budget a local flood of a forwarded port
   * would run the process out of them, for every VM) is full.
   */
  connectToGuest(port: TcpPort, guestMac: Uint8Array, guestIp: number, guestPort: number, srcIp: number, srcPort: number, socket: net.Socket): boolean {
    const k = this.host.kernels;
    const now = this.host.now();
    const vm = port.id;
    const refused = this.closedDown ? null : takeEach(vm, [this.flowQuota, this.hostSockets]);
    if (refused !== null) {
      this.counters.forwardsRefused++;
      this.refusedBy(refused, vm, 'tcp-forward', 'forwarded TCP connection refused');
      socket.destroy();
      return false;
    }
    const id = this.closedDown ? FT_FULL : k.k.flowInsert(this.host.flowTable, PROTO_TCP, guestIp, guestPort, srcIp, srcPort, now);
    if (id === FT_FULL || id === FT_EXISTS || id < 0) {
      this.counters.flowTableFull++;
      if (!this.closedDown) {
        this.flowQuota.give(vm);
        this.hostSockets.give(vm);
      }
      socket.destroy();
      return false;
    }
    const c = new Conn(id, port, guestMac.slice(0, 6), guestIp, guestPort, srcIp, srcPort, now);
    c.flowCounted = true;
    c.socketCounted = true;
    c.handshakeBy = now + this.o.handshakeTimeoutMs;
    c.iss = this.newIss();
    c.sndUna = c.iss;
    c.sndNxt = c.iss;
    c.sndMax = c.iss;
    c.rto = this.o.initialRtoMs;
    c.rcvShift = this.ourShift;
    c.state = St.SynSent;
    c.socket = socket;
    socket.setNoDelay?.(true);
    this.conns[id] = c;
    this.all.add(c);
    this.attachSocket(c, socket);
    this.sendSyn(c);
    this.arm(c, Timer.Rto, Math.min(now + c.rto, c.handshakeBy));
    this.host.scheduleTx();
    return true;
  }

  private sendSyn(c: Conn): void {
    const s = this.seg;
    this.fill(c, SYN, c.iss);
    s.window = Math.min(this.o.rcvBufBytes, 65535);
    s.optFlags = OPT_MSS | OPT_WSCALE;
    s.mss = this.ourMss;
    s.wscale = this.ourShift;
    this.out(c, undefined, 0, 0);
    c.sndNxt = seqAdd(c.iss, 1);
    c.sndMax = c.sndNxt;
  }

  // ---- management -------------------------------------------------------------

  /** Park a flow until its VM's link drains; one that just sent goes behind the others, one that did not keeps its place. */
  private wait(c: Conn, sent: boolean): void {
    let w = this.waiting.get(c.port.id);
    if (w === undefined) {
      w = new Set();
      this.waiting.set(c.port.id, w);
    }
    if (sent) w.delete(c);
    w.add(c);
  }

  /** A VM's transport drained: its flows may send the data they held back, longest-waiting first. */
  portDrained(portId: number): void {
    let any = false;
    const w = this.waiting.get(portId);
    if (w !== undefined && w.size > 0) {
      // Waiting flows go to the front of this turn's order, ahead of flows made dirty since.
      const later = this.dirty.size > 0 ? [...this.dirty] : null;
      this.dirty.clear();
      for (const c of w) if (c.state === St.Established) this.markDirty(c);
      w.clear();
      if (later !== null) for (const c of later) this.markDirty(c);
      any = this.dirty.size > 0;
    }
    for (const c of this.all) {
      if (c.port.id === portId && c.state === St.Established) {
        this.markDirty(c);
        any = true;
      }
    }
    if (any) this.host.scheduleTx();
  }

  /** A VM went away: reset its flows' host sockets and free their ids. */
  purge(portId: number): void {
    for (const c of [...this.all]) if (c.port.id === portId) this.remove(c, true);
    this.portSenders.delete(portId);
    this.waiting.delete(portId);
    // remove() gave back each flow's share; anything left would be a leak, and must not outlive the VM.
    // Host sockets go back as each closes (their descriptors are open until then).
    this.flowQuota.release(portId);
    this.halfOpenQuota.release(portId);
    this.bytes.release(portId);
    this.reasmQuota.release(portId);
    this.activeByVm.delete(portId);
  }

  /** The stack's bounds, for the engine's stats().limits. */
  limitStats(): Record<'tcpFlows' | 'tcpHalfOpen' | 'tcpBufferBytes' | 'tcpReasmSlots', QuotaStats> {
    return {
      tcpFlows: this.flowQuota.stats(),
      tcpHalfOpen: this.halfOpenQuota.stats(),
      tcpBufferBytes: this.bytes.stats(),
      tcpReasmSlots: this.reasmQuota.stats(),
    };
  }

  /** Bytes the flows hold now, budget and floors together: send queues and guest bytes queued toward host sockets. */
  bufferedBytes(portId?: number): number {
    let n = 0;
    for (const c of this.all) if (portId === undefined || c.port.id === portId) n += c.q.length + this.rcvQueued(c);
    return n;
  }

  flows(): TcpFlowInfo[] {
    const now = this.host.now();
    const out: TcpFlowInfo[] = [];
    for (const c of this.all) {
      out.push({
        proto: 'tcp',
        guest: `${formatIPv4(c.guestIp)}:${c.guestPort}`,
        remote: `${formatIPv4(c.remoteIp)}:${c.remotePort}`,
        state: stateName(c),
        bytesIn: c.bytesIn,
        bytesOut: c.bytesOut,
        ageMs: now - c.createdAt,
        sndQueued: c.q.length,
        rcvQueued: (c.socket?.writableLength ?? 0) + (c.reasmSlot >= 0 ? this.host.kernels.k.reasmHeld(this.reasmPtrs[c.reasmSlot]) : 0),
      });
    }
    return out;
  }

  stats(): Record<string, number> {
    const reasmInUse = this.reasmPtrs.length - this.reasmFree.length;
    return {
      flows: this.all.size, pendingConnects: this.pending, reasmInUse, readReservations: this.readReservations,
      kernelSlabs: this.kslabs.allocated, bufferedBytes: this.bufferedBytes(), floorBytes: this.floorBytes, ...this.counters,
    };
  }

  close(): void {
    this.closedDown = true;
    if (this.interval !== null) clearInterval(this.interval);
    this.interval = null;
    if (this.delayedAckTimer !== null) clearTimeout(this.delayedAckTimer);
    this.delayedAckTimer = null;
    // Never connected, so it holds no handle: dropping it is enough.
    this.spare = null;
    for (const c of [...this.all]) this.remove(c, true);
  }
}

function stateName(c: Conn): string {
  switch (c.state) {
    case St.Connecting: return 'connecting';
    case St.SynRcvd: return 'syn-received';
    case St.SynSent: return 'syn-sent';
    case St.Closed: return 'closed';
  }
  if (c.finRcvd && c.finSent) return 'closing';
  if (c.finRcvd) return 'close-wait';
  if (c.finSent) return 'fin-wait';
  return 'established';
}

export type { TxSink };
