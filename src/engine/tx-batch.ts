/**
 * The transmit side of the batch boundary. Outbound TCP/UDP segments for all
 * VMs are described by TX descriptors during a turn; flush() builds every
 * frame — headers, options, checksums — with ONE buildFrames call and hands
 * each to its VM link. The owner flushes the links once at the end of the
 * turn (the engine's flushTx), so a VM gets one socket write per turn.
 *
 * Each descriptor reserves a slot in the output region, in order: HEADROOM
 * bytes for the largest headers, then its payload, copied there once when the
 * segment is queued. buildFrames builds the frame around the payload where
 * it lies and only sums it; a frame without payload is built at the start of
 * its slot. So every payload byte is copied once on its way to the link.
 */
import type { Kernels } from '../kernels/index.js';
import {
  TX_SIZE, FRAME_ENTRY_SIZE, T_PROTO, T_TCP_FLAGS, T_OPT_FLAGS, T_WSCALE, T_SRC_IP, T_DST_IP,
  T_SRC_PORT, T_DST_PORT, T_SEQ, T_ACK, T_WINDOW, T_MSS, T_TS_VAL, T_TS_ECR, T_PAYLOAD_PTR,
  T_PAYLOAD_LEN, T_IP_ID, T_TTL, T_DST_MAC, T_SRC_MAC,
} from '../../assembly/layout.js';

/** Where built frames go: the engine's VM port. */
export interface TxSink {
  send(buf: Uint8Array, off: number, len: number): void;
  /** True while the VM's transport is above its high-water mark: senders hold new data until it drains. */
  readonly congested?: boolean;
  /** Bytes the VM's transport holds that the VM has not taken yet (see VmLink.backlog). */
  readonly backlog?: number;
  /** Backlog at which the transport turns congested. */
  readonly highWater?: number;
}

export interface TcpSegment {
  srcIp: number;
  srcPort: number;
  dstIp: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  optFlags?: number;
  mss?: number;
  wscale?: number;
  tsVal?: number;
  tsEcr?: number;
}

/** Room in front of a payload for the largest headers: Ethernet 14 + IPv4 20 + TCP 20 + 40 of options, rounded to 8. */
const HEADROOM = 96;

export class TxBatch {
  private readonly descs: number;
  private readonly table: number;
  private readonly out: number;
  private readonly outEnd: number;
  private readonly outCap: number;
  private readonly sinks: (TxSink | undefined)[];
  private count = 0;
  private nextSlot: number;
  private ipId = 1;
  /** Frames built in total (for stats). */
  framesBuilt = 0;

  constructor(
    private readonly kern: Kernels,
    private readonly maxFrames: number,
    payloadBytes: number,
    private readonly srcMac: Uint8Array,
  ) {
    this.descs = kern.alloc(maxFrames * TX_SIZE, 64);
    this.table = kern.alloc(maxFrames * FRAME_ENTRY_SIZE, 16);
    this.outCap = payloadBytes + maxFrames * (HEADROOM + 8);
    this.out = kern.alloc(this.outCap, 64);
    this.outEnd = this.out + this.outCap;
    this.nextSlot = this.out;
    this.sinks = new Array(maxFrames);
  }

  get pending(): number {
    return this.count;
  }

  /** Reserve the next descriptor's slot for `len` payload bytes; flushes first when full. Returns where the payload goes. */
  private reserve(len: number): number {
    if (this.count === this.maxFrames || this.nextSlot + HEADROOM + len > this.outEnd) this.flush();
    const ptr = this.nextSlot + HEADROOM;
    this.nextSlot = (ptr + len + 7) & ~7;
    return ptr;
  }

  private header(sink: TxSink, dstMac: Uint8Array, proto: number, payloadPtr: number, payloadLen: number): number {
    const d = this.descs + this.count * TX_SIZE;
    const u8 = this.kern.u8;
    u8.fill(0, d, d + TX_SIZE);
    const dv = this.kern.dv;
    dv.setUint8(d + T_PROTO, proto);
    dv.setUint32(d + T_PAYLOAD_PTR, payloadPtr, true);
    dv.setUint32(d + T_PAYLOAD_LEN, payloadLen, true);
    dv.setUint16(d + T_IP_ID, this.ipId, true);
    this.ipId = (this.ipId + 1) & 0xffff;
    dv.setUint8(d + T_TTL, 64);
    u8.set(dstMac, d + T_DST_MAC);
    u8.set(this.srcMac, d + T_SRC_MAC);
    this.sinks[this.count] = sink;
    this.count++;
    return d;
  }

  /** Queue one UDP datagram (payload copied now). Caller keeps it within the link MTU. */
  udp(sink: TxSink, dstMac: Uint8Array, srcIp: number, srcPort: number, dstIp: number, dstPort: number,
    data: Uint8Array, off = 0, len = data.length - off): void {
    const ptr = this.reserve(len);
    this.kern.u8.set(data.subarray(off, off + len), ptr);
    const d = this.header(sink, dstMac, 17, ptr, len);
    const dv = this.kern.dv;
    dv.setUint32(d + T_SRC_IP, srcIp, true);
    dv.setUint32(d + T_DST_IP, dstIp, true);
    dv.setUint16(d + T_SRC_PORT, srcPort, true);
    dv.setUint16(d + T_DST_PORT, dstPort, true);
  }

  /** Queue one TCP segment; its payload, if any, is copied from `data` now. */
  tcp(sink: TxSink, dstMac: Uint8Array, s: TcpSegment, data?: Uint8Array, off = 0, len = 0): void {
    let ptr = 0;
    if (len > 0 && data) {
      ptr = this.reserve(len);
      this.kern.u8.set(data.subarray(off, off + len), ptr);
    } else {
      this.reserve(0);
      len = 0;
    }
    const d = this.header(sink, dstMac, 6, ptr, len);
    const dv = this.kern.dv;
    dv.setUint8(d + T_TCP_FLAGS, s.flags);
    dv.setUint8(d + T_OPT_FLAGS, s.optFlags ?? 0);
    dv.setUint8(d + T_WSCALE, s.wscale ?? 0);
    dv.setUint32(d + T_SRC_IP, s.srcIp, true);
    dv.setUint32(d + T_DST_IP, s.dstIp, true);
    dv.setUint16(d + T_SRC_PORT, s.srcPort, true);
    dv.setUint16(d + T_DST_PORT, s.dstPort, true);
    dv.setUint32(d + T_SEQ, s.seq >>> 0, true);
    dv.setUint32(d + T_ACK, s.ack >>> 0, true);
    dv.setUint16(d + T_WINDOW, s.window, true);
    dv.setUint16(d + T_MSS, s.mss ?? 0, true);
    dv.setUint32(d + T_TS_VAL, (s.tsVal ?? 0) >>> 0, true);
    dv.setUint32(d + T_TS_ECR, (s.tsEcr ?? 0) >>> 0, true);
  }

  /** Build everything queued in one kernel call and hand the frames to their links (which the caller flushes). */
  flush(): void {
    const n = this.count;
    if (n === 0) return;
    const built = this.kern.k.buildFrames(this.descs, n, this.out, this.outCap, this.table);
    // Every descriptor had a slot that fits, so all of them are built.
    const dv = this.kern.dv;
    const u8 = this.kern.u8;
    for (let i = 0; i < built; i++) {
      const e = this.table + i * FRAME_ENTRY_SIZE;
      const len = dv.getUint32(e + 4, true);
      if (len > 0) this.sinks[i]!.send(u8, dv.getUint32(e, true), len);
      this.sinks[i] = undefined;
    }
    this.framesBuilt += built;
    this.count = 0;
    this.nextSlot = this.out;
  }
}
