/**
 * One guest TCP connection terminated in vnetkit. Plain state; the logic is
 * in stack.ts. Field names follow RFC 793 (snd.una, rcv.nxt, ...).
 */
import type net from 'node:net';
import type { TxSink } from '../tx-batch.js';
import { SendQueue } from './send-queue.js';

export interface TcpPort {
  readonly id: number;
  readonly link: TxSink;
}

export const St = {
  /** Guest SYN received; host connect() in progress. */
  Connecting: 1,
  /** SYN-ACK sent, waiting for the guest's ACK. */
  SynRcvd: 2,
  /** connectToGuest: our SYN sent, waiting for the guest's SYN-ACK. */
  SynSent: 3,
  /** Synchronized. Half-closes are tracked by finRcvd / finSent / finAcked. */
  Established: 4,
  Closed: 5,
} as const;
export type St = (typeof St)[keyof typeof St];

export const Timer = {
  None: 0,
  Connect: 1,
  /** Retransmission of SYN-ACK, SYN, data or FIN. */
  Rto: 2,
  /** Zero-window probing of the guest. */
  Persist: 3,
} as const;
export type Timer = (typeof Timer)[keyof typeof Timer];

export class Conn {
  state: St = St.Connecting as St;
  socket: net.Socket | null = null;
  readonly mac: Uint8Array;
  readonly createdAt: number;

  // receive side: guest → host
  irs = 0;
  rcvNxt = 0;
  /** Right edge of the window we have advertised (never moves left). */
  rcvAdv = 0;
  rcvShift = 0;
  /** Window scaling agreed (the guest's SYN carried the option). */
  wsOk = false;
  finRcvd = false;
  /** Sequence number of a FIN that arrived ahead of missing data, or -1. */
  finPending = -1;
  /** Reassembly buffer slot in use, or -1. */
  reasmSlot = -1;
  /**
   * Guest bytes for the host socket this batch: (kernel address, length, region)
   * triples, in the RX arena where the segment arrived in order, else copied
   * into the stack's stage (see TcpStack.deliver).
   */
  stageParts: number[] = [];
  stageBytes = 0;

  // send side: host → guest
  iss = 0;
  sndUna = 0;
  sndNxt = 0;
  sndMax = 0;
  sndWnd = 0;
  sndWl1 = 0;
  sndWl2 = 0;
  sndShift = 0;
  mss = 536;
  readonly q = new SendQueue();
  hostEnded = false;
  finSent = false;
  finAcked = false;
  paused = false;
  /** The last host read was big (HOT_READ_BYTES): the next one lands in a slab piece of its own (readRes). */
  hotReads = false;
  /** Slab piece the socket's next read lands in, or null (the stack's shared read buffer). */
  readRes: Buffer | null = null;
  /** Releases readRes back to its slab. */
  readResDone: () => void = noop;
  cwnd = 0;
  ssthresh = 0x7fffffff;
  dupAcks = 0;
  inRecovery = false;
  recover = 0;
  srtt = -1;
  rttvar = 0;
  rto = 1000;
  /** Sequence whose acknowledgment ends the RTT sample in progress, or -1 (Karn: never a retransmitted one). */
  rttSeq = -1;
  rttTime = 0;
  retries = 0;

  timer: Timer = Timer.None as Timer;
  timerAt = 0;
  /** An ACK must go out this turn. */
  ackNow = false;
  /** An ACK is owed but may wait (delayedAckMs) for data or a FIN to carry it. */
  ackOwed = false;
  /** When a held ACK is due (stack time, ms). */
  ackDueAt = 0;
  /** Activity epoch in which this flow last received guest data (see TcpStack's share of the VM window). */
  rxEpoch = -1;
  /** In-order guest bytes received since we last sent an ACK. */
  rcvUnacked = 0;
  bytesIn = 0;
  bytesOut = 0;

  // resource accounting (see TcpStack's budgets)
  /** Counted in the stack's flows quota (given back once, in remove). */
  flowCounted = false;
  /** Counted in the half-open quota: host connect in progress or SYN-ACK unanswered. */
  halfOpen = false;
  /** Holds one unit of the host-socket quota, given back when the socket closes. */
  socketCounted = false;
  /** When an unfinished handshake is dropped (stack time, ms), or Infinity. */
  handshakeBy = Infinity;
  /** Byte-budget units held for host→guest bytes (queued + the next read's buffer, beyond the floor). */
  sndTaken = 0;
  /** Byte-budget units held for guest→host bytes (staged + the socket's backlog, beyond the floor). */
  rcvTaken = 0;
  /** Size of the buffer the socket's next read lands in (what it may read without asking again). */
  readSize = 0;

  constructor(
    public id: number,
    readonly port: TcpPort,
    mac: Uint8Array,
    readonly guestIp: number,
    readonly guestPort: number,
    readonly remoteIp: number,
    readonly remotePort: number,
    now: number,
  ) {
    this.mac = mac;
    this.createdAt = now;
  }
}

function noop(): void {}
