/**
 * The transmit side of the batch boundary. Outbound TCP/UDP segments for all
 * VMs are described by TX descriptors during a turn; flush() builds every
 * frame — headers, options, checksums — with ONE buildFrames call and hands
 * each to its VM link. The owner flushes the links once at the end of the
 * turn (the engine's flushTx), so a VM gets one socket write per turn.
 *
 * Frames are laid out back to back in a ring in kernel memory: each
 * descriptor reserves its sink's framing header, the exact header length of
 * its frame, then its payload, which is copied there once when the segment is
 * queued. buildFrames builds each frame around its payload where it lies and
 * only sums it. A sink that can write from this memory (a stream link,
 * sendInPlace) gets the frame where it was built: the link writes the
 * length prefix in front of it, and a turn's frames for one VM leave as one
 * view of the ring. So every payload byte is copied once in user space on its
 * way from the host socket to the VM's socket.
 *
 * The ring's bytes stay pinned (a TxHold per flushed batch) until every link
 * that took frames from the batch has written them. When the links hold the
 * whole ring — more unwritten data than the ring holds, several VMs not
 * reading — batches are built in a small scratch region instead and copied
 * into the links with send(), as every frame was before: slower, never lost.
 */
import type { Kernels } from '../kernels/index.js';
import {
  TX_SIZE, FRAME_ENTRY_SIZE, T_PROTO, T_TCP_FLAGS, T_OPT_FLAGS, T_WSCALE, T_SRC_IP, T_DST_IP,
  T_SRC_PORT, T_DST_PORT, T_SEQ, T_ACK, T_WINDOW, T_MSS, T_TS_VAL, T_TS_ECR, T_PAYLOAD_PTR,
  T_PAYLOAD_LEN, T_IP_ID, T_TTL, T_RESERVED, T_DST_MAC, T_SRC_MAC, T_COPY_FROM,
} from '../../assembly/layout.js';
// The same option layout buildFrames writes (assembly/emit.ts), so each frame lands on its reserved slot.
import { tcpOptionsLen } from '../kernels/js/emit.js';
import type { FrameHold } from '../transport/types.js';

/** Where built frames go: the engine's VM port. */
export interface TxSink {
  send(buf: Uint8Array, off: number, len: number): void;
  /**
   * Framing bytes the sink writes in front of each frame when it takes frames
   * where they were built (sendInPlace); 0 or absent: frames are copied with send().
   */
  readonly framePrefix?: number;
  /** Queue u8[ptr, ptr+len) without copying it; u8[ptr - framePrefix, ptr) is the sink's to write. See FrameHold. */
  sendInPlace?(u8: Uint8Array, ptr: number, len: number, hold: FrameHold): void;
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

const ETH_IP = 14 + 20;
/** The largest framing header a sink may ask for (qemu's 4-byte length). */
const MAX_PREFIX = 4;
/** The scratch region: a batch's worth of frames when the ring is pinned; at least one frame of the largest IPv4 packet. */
const SCRATCH_BYTES = 256 * 1024;

/**
 * One flushed batch's stretch of the ring, pinned while links still have to
 * write frames from it. `users` counts the links' retains plus one for the
 * batch itself while flush() hands frames out.
 */
class TxHold implements FrameHold {
  start = 0;
  end = 0;
  users = 0;
  constructor(private readonly owner: TxBatch) {}
  retain(): void {
    this.users++;
  }
  readonly release = (): void => {
    if (--this.users === 0) this.owner.unpinned();
  };
}

export class TxBatch {
  private readonly descs: number;
  private readonly table: number;
  private readonly ringStart: number;
  private readonly ringEnd: number;
  private readonly scratchStart: number;
  private readonly scratchEnd: number;
  private readonly sinks: (TxSink | undefined)[];
  /** Where each descriptor's frame must start for its sink to take it in place (-1: copy it). */
  private readonly frameAt: Int32Array;
  private count = 0;
  /** The current batch is in the scratch region, not the ring. */
  private inScratch = false;
  private batchStart: number;
  private nextSlot: number;
  /** Flushed batches still pinned, oldest first; the oldest one's start is where free ring space ends. */
  private readonly pinned: TxHold[] = [];
  private readonly spareHolds: TxHold[] = [];
  private ipId = 1;
  /** Frames built in total (for stats). */
  framesBuilt = 0;
  /** Frames handed to their links without a copy / batches built in scratch because the ring was pinned (for stats and tests). */
  framesInPlace = 0;
  scratchBatches = 0;

  constructor(
    private readonly kern: Kernels,
    private readonly maxFrames: number,
    ringBytes: number,
    private readonly srcMac: Uint8Array,
  ) {
    this.descs = kern.alloc(maxFrames * TX_SIZE, 64);
    this.table = kern.alloc(maxFrames * FRAME_ENTRY_SIZE, 16);
    const ringCap = Math.max(ringBytes, SCRATCH_BYTES);
    this.ringStart = kern.alloc(ringCap, 64);
    this.ringEnd = this.ringStart + ringCap;
    this.scratchStart = kern.alloc(SCRATCH_BYTES, 64);
    this.scratchEnd = this.scratchStart + SCRATCH_BYTES;
    this.batchStart = this.nextSlot = this.ringStart;
    this.sinks = new Array(maxFrames);
    this.frameAt = new Int32Array(maxFrames);
  }

  get pending(): number {
    return this.count;
  }

  /** Ring bytes links have not finished writing (for stats and tests). */
  get pinnedBytes(): number {
    if (this.pinned.length === 0) return 0;
    const tail = this.pinned[0].start;
    const head = this.pinned[this.pinned.length - 1].end;
    return head > tail ? head - tail : this.ringEnd - tail + (head - this.ringStart);
  }

  /** Does [nextSlot, nextSlot + need) fit the current region without touching pinned bytes? */
  private fits(need: number): boolean {
    const p = this.nextSlot;
    if (this.inScratch) return p + need <= this.scratchEnd;
    if (this.pinned.length > 0) {
      const tail = this.pinned[0].start;
      // Pinned bytes run from tail round to batchStart: ahead of us lies tail, or the ring's end.
      if (tail >= this.batchStart) return p + need <= tail;
    }
    return p + need <= this.ringEnd;
  }

  /** With no batch open: start the next one in the ring where `need` fits, else in scratch. */
  private place(need: number): void {
    this.inScratch = false;
    if (this.pinned.length === 0) {
      this.batchStart = this.nextSlot = this.ringStart;
      return;
    }
    this.batchStart = this.nextSlot = this.pinned[this.pinned.length - 1].end;
    if (this.fits(need)) return;
    const tail = this.pinned[0].start;
    if (tail < this.batchStart && this.ringStart + need <= tail) {
      this.batchStart = this.nextSlot = this.ringStart;
      return;
    }
    this.inScratch = true;
    this.scratchBatches++;
    this.batchStart = this.nextSlot = this.scratchStart;
  }

  /** Reserve `prefix` + `hdrs` + `len` bytes for the next descriptor (flushing first when full); returns where its payload goes. */
  private reserve(sink: TxSink, hdrs: number, len: number): number {
    let prefix = sink.framePrefix ?? 0;
    if (!(prefix >= 0 && prefix <= MAX_PREFIX) || sink.sendInPlace === undefined) prefix = 0;
    const need = prefix + hdrs + len;
    if (this.count === this.maxFrames) this.flush();
    // A new batch after one built in scratch: the links may have let go of the ring by now.
    if (this.count === 0 && this.inScratch) this.place(need);
    else if (!this.fits(need)) {
      this.flush();
      this.place(need);
    }
    const frame = this.nextSlot + prefix;
    this.nextSlot = frame + hdrs + len;
    this.frameAt[this.count] = prefix > 0 && !this.inScratch ? frame : -1;
    return frame + hdrs;
  }

  /**
   * The fields every descriptor has. The callers write all the others, so
   * nothing is cleared first; the MACs go byte by byte because a typed-array
   * set() of six bytes costs more than the stores.
   */
  private header(sink: TxSink, dstMac: Uint8Array, proto: number, payloadPtr: number, payloadLen: number): number {
    const d = this.descs + this.count * TX_SIZE;
    const u8 = this.kern.u8;
    const dv = this.kern.dv;
    u8[d + T_PROTO] = proto;
    dv.setUint32(d + T_PAYLOAD_PTR, payloadPtr, true);
    dv.setUint32(d + T_PAYLOAD_LEN, payloadLen, true);
    dv.setUint32(d + T_COPY_FROM, 0, true);
    dv.setUint16(d + T_IP_ID, this.ipId, true);
    this.ipId = (this.ipId + 1) & 0xffff;
    u8[d + T_TTL] = 64;
    u8[d + T_RESERVED] = 0;
    const src = this.srcMac;
    for (let i = 0; i < 6; i++) {
      u8[d + T_DST_MAC + i] = dstMac[i];
      u8[d + T_SRC_MAC + i] = src[i];
    }
    this.sinks[this.count] = sink;
    this.count++;
    return d;
  }

  /** Queue one UDP datagram (payload copied now). Caller keeps it within the link MTU. */
  udp(sink: TxSink, dstMac: Uint8Array, srcIp: number, srcPort: number, dstIp: number, dstPort: number,
    data: Uint8Array, off = 0, len = data.length - off): void {
    const ptr = this.reserve(sink, ETH_IP + 8, len);
    this.kern.u8.set(data.subarray(off, off + len), ptr);
    const d = this.header(sink, dstMac, 17, ptr, len);
    // The TCP-only fields, cleared so a descriptor never carries a previous segment's values.
    this.kern.u8.fill(0, d + T_TCP_FLAGS, d + T_SRC_IP);
    this.kern.u8.fill(0, d + T_SEQ, d + T_PAYLOAD_PTR);
    const dv = this.kern.dv;
    dv.setUint32(d + T_SRC_IP, srcIp, true);
    dv.setUint32(d + T_DST_IP, dstIp, true);
    dv.setUint16(d + T_SRC_PORT, srcPort, true);
    dv.setUint16(d + T_DST_PORT, dstPort, true);
  }

  /** Queue one TCP segment; its payload, if any, is copied from `data` now. */
  tcp(sink: TxSink, dstMac: Uint8Array, s: TcpSegment, data?: Uint8Array, off = 0, len = 0): void {
    if (!(len > 0 && data)) len = 0;
    const ptr = this.tcpSlot(sink, dstMac, s, len);
    if (len > 0) this.kern.u8.set(data!.subarray(off, off + len), ptr);
  }

  /**
   * Queue one TCP segment of `len` payload bytes that the caller writes to
   * kernel memory at the returned pointer before the next flush (so a payload
   * in pieces is gathered there directly).
   */
  tcpSlot(sink: TxSink, dstMac: Uint8Array, s: TcpSegment, len: number): number {
    return this.tcpDesc(sink, dstMac, s, len, 0);
  }

  /**
   * Queue one TCP segment whose `len` payload bytes lie in kernel memory at
   * `from` and stay there until the next flush: buildFrames copies them into
   * the frame in the pass that sums them.
   */
  tcpFrom(sink: TxSink, dstMac: Uint8Array, s: TcpSegment, from: number, len: number): void {
    this.tcpDesc(sink, dstMac, s, len, from);
  }

  private tcpDesc(sink: TxSink, dstMac: Uint8Array, s: TcpSegment, len: number, from: number): number {
    const opt = s.optFlags ?? 0;
    const ptr = this.reserve(sink, ETH_IP + 20 + tcpOptionsLen(opt), len);
    const d = this.header(sink, dstMac, 6, ptr, len);
    const u8 = this.kern.u8;
    const dv = this.kern.dv;
    u8[d + T_TCP_FLAGS] = s.flags;
    u8[d + T_OPT_FLAGS] = opt;
    u8[d + T_WSCALE] = s.wscale ?? 0;
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
    if (from !== 0) dv.setUint32(d + T_COPY_FROM, from, true);
    return ptr;
  }

  /** Build everything queued in one kernel call and hand the frames to their links (which the caller flushes). */
  flush(): void {
    const n = this.count;
    if (n === 0) return;
    const start = this.batchStart;
    const end = this.nextSlot;
    const cap = (this.inScratch ? this.scratchEnd : this.ringEnd) - start;
    const built = this.kern.k.buildFrames(this.descs, n, start, cap, this.table);
    // Every descriptor had a slot that fits, so all of them are built.
    let hold: TxHold | undefined;
    if (!this.inScratch) {
      hold = this.spareHolds.pop() ?? new TxHold(this);
      hold.start = start;
      hold.end = end;
      hold.users = 1;
    }
    const dv = this.kern.dv;
    const u8 = this.kern.u8;
    const frameAt = this.frameAt;
    let inPlace = 0;
    for (let i = 0; i < built; i++) {
      const e = this.table + i * FRAME_ENTRY_SIZE;
      const ptr = dv.getUint32(e, true);
      const len = dv.getUint32(e + 4, true);
      const sink = this.sinks[i]!;
      this.sinks[i] = undefined;
      if (len === 0) continue;
      // In place only where the frame landed on its reserved slot (always, unless the layout
      // rules above and buildFrames' disagree; then the copy is still right).
      if (hold !== undefined && frameAt[i] === ptr) {
        sink.sendInPlace!(u8, ptr, len, hold);
        inPlace++;
      } else {
        sink.send(u8, ptr, len);
      }
    }
    this.framesBuilt += built;
    this.framesInPlace += inPlace;
    this.count = 0;
    this.batchStart = end;
    if (hold === undefined) {
      // Scratch is free again: everything in it was copied out.
      this.nextSlot = this.batchStart = this.scratchStart;
    } else if (hold.users === 1) {
      // No link kept a view: the stretch is free at once.
      hold.users = 0;
      this.spareHolds.push(hold);
      if (this.pinned.length === 0) this.batchStart = this.nextSlot = this.ringStart;
    } else {
      hold.users--;
      this.pinned.push(hold);
    }
  }

  /** A hold's last user let go: free the pinned stretches at the tail that are done. */
  unpinned(): void {
    const p = this.pinned;
    let k = 0;
    while (k < p.length && p[k].users === 0) this.spareHolds.push(p[k++]);
    if (k > 0) p.splice(0, k);
    // Nothing pinned and nothing open: start again at the ring's beginning, which keeps the
    // active stretch of memory small and warm in cache.
    if (p.length === 0 && this.count === 0 && !this.inScratch) this.batchStart = this.nextSlot = this.ringStart;
  }
}
