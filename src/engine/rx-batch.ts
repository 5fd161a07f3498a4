/**
 * The receive side of the batch boundary. Transports hand frames over one at
 * a time and each is listed in the frame table: where it lies if a link read
 * it into one of the batch's read areas (kernel memory lent to the link,
 * see ReadArea), else copied once into an arena in kernel memory. At the end
 * of the turn, or when the arena or table is full, the whole batch is
 * classified with ONE kernel call and handed to the engine descriptor by
 * descriptor.
 *
 * There are two arenas (LentBuffers). Frame bytes may be held past their
 * batch (a host socket write of a jumbo segment's payload, which libuv keeps
 * until the write completes): the arena is then lent and the next batch
 * fills the other one. Read areas work the same way with buffers of their own.
 */
import type { Kernels } from '../kernels/index.js';
import { FRAME_ENTRY_SIZE, DESC_SIZE } from '../../assembly/layout.js';
import { LentBuffers } from './lent-buffers.js';
import { ReadArea, READ_AREA_BUFFERS } from './read-area.js';

export interface RxBatchOptions {
  /** Frames per classify call at most. */
  maxFrames: number;
  /** Bytes of frame data per batch at most (must hold one maximal frame). */
  arenaBytes: number;
}

export type BatchHandler = (
  index: number,
  portId: number,
  framePtr: number,
  frameLen: number,
  descPtr: number,
) => void;

/**
 * Frame bytes held past their batch: what a consumer of RX frames may ask (see
 * RxBatch). Handles: 0 and 1 are the arenas, 2 + READ_AREA_BUFFERS i + h buffer h of read area i.
 */
export interface FrameArena {
  arenaOf(ptr: number): number;
  canLend(h: number): boolean;
  lend(h: number): () => void;
}

/** Handle h's index among its set's buffers (an arena's, or a read area's). */
const bufferOf = (h: number): number => (h < 2 ? h : (h - 2) % READ_AREA_BUFFERS);

export class RxBatch implements FrameArena {
  readonly table: number;
  readonly descs: number;
  private readonly arenas: [number, number];
  private readonly arenaBytes: number;
  private arenaEnd: number;
  /** Which arena the current batch fills, and who holds bytes of each. */
  private readonly lending = new LentBuffers();
  private readonly maxFrames: number;
  private readonly ports: Int32Array;
  private count = 0;
  private next: number;
  private processing = false;
  private readonly areas: ReadArea[] = [];
  /** Kernel addresses of every read area's buffers: [areasBase, areasEnd). */
  private areasBase = 0;
  private areasEnd = 0;
  private areaBytes = 0;
  /** Per read-area buffer (handle - 2): the batch it last had a frame in (see `serial`). */
  private areaBatch = new Int32Array(0);
  /** Counts batches started, so areaBatch tells which buffers hold frames of the one in hand. */
  private serial = 0;
  /** Frames taken where a link read them, and frames copied into the arena. */
  framesInPlace = 0;
  framesCopied = 0;
  /**
   * The clock reading taken when the batch in hand started, or -1 between
   * batches. Everything one batch does (classify, TCP input, the TX flush
   * after it) sees this one time: a batch lasts well under the millisecond
   * the timers count in, and reading the clock per ACK cost 2.7 % of busy
   * time guest→host at MTU 1500.
   */
  batchNow = -1;

  constructor(
    private readonly kern: Kernels,
    opts: RxBatchOptions,
    /** Classify the current batch; returns nothing, fills the descriptors. */
    private readonly classify: (table: number, count: number, descs: number) => void,
    private readonly handler: BatchHandler,
    /** Called after every batch is handled (the engine flushes TX here). */
    private readonly afterBatch: () => void,
    /** The engine's clock (ms), read once per batch into batchNow. */
    private readonly clock: () => number,
  ) {
    this.maxFrames = opts.maxFrames;
    this.table = kern.alloc(opts.maxFrames * FRAME_ENTRY_SIZE, 16);
    this.descs = kern.alloc(opts.maxFrames * DESC_SIZE, 64);
    this.arenaBytes = opts.arenaBytes;
    this.arenas = [kern.alloc(opts.arenaBytes, 64), kern.alloc(opts.arenaBytes, 64)];
    this.next = this.arenas[0];
    this.arenaEnd = this.next + opts.arenaBytes;
    this.ports = new Int32Array(opts.maxFrames);
  }

  /** Make `count` read areas of READ_AREA_BUFFERS `bufBytes` buffers each, to lend to links (once; kernel memory for them must be free). */
  addReadAreas(count: number, bufBytes: number): void {
    if (this.areas.length > 0 || count <= 0) return;
    this.areaBytes = bufBytes;
    const n = READ_AREA_BUFFERS;
    this.areasBase = this.kern.alloc(count * n * bufBytes, 64);
    this.areasEnd = this.areasBase + count * n * bufBytes;
    this.areaBatch = new Int32Array(count * n).fill(-1);
    for (let i = 0; i < count; i++) {
      this.areas.push(new ReadArea(this.kern, this.areasBase + i * n * bufBytes, bufBytes, n, this.settle,
        (h) => this.count > 0 && this.areaBatch[n * i + h] === this.serial));
    }
  }

  /** A read area no link holds, now lent to the caller (ReadSpace.release gives it back), or undefined when all are held. */
  takeReadArea(): ReadArea | undefined {
    const a = this.areas.find((x) => !x.inUse);
    if (a !== undefined) a.inUse = true;
    return a;
  }

  get readAreas(): number {
    return this.areas.length;
  }

  /** Times a read area had the batch handled early to refill a buffer. */
  get readAreaRefills(): number {
    let n = 0;
    for (const a of this.areas) n += a.refills;
    return n;
  }

  /** Times a read area moved a link's reads to the start of another of its buffers, which was free. */
  get readAreaSwaps(): number {
    let n = 0;
    for (const a of this.areas) n += a.swaps;
    return n;
  }

  /** Handle the batch in hand now, so a read area may refill a buffer; false while the batch is being handled. */
  private readonly settle = (): boolean => {
    if (this.processing) return false;
    this.flush();
    return true;
  };

  get pending(): number {
    return this.count;
  }

  /**
   * The handle of the arena or read-area buffer that kernel address `ptr` lies in, or -1: a consumer
   * that wants to hold a frame's bytes past the batch asks this, then
   * canLend/lend, and otherwise copies them before the batch ends.
   */
  arenaOf(ptr: number): number {
    const a = this.arenas;
    if (ptr >= a[0] && ptr < a[0] + this.arenaBytes) return 0;
    if (ptr >= a[1] && ptr < a[1] + this.arenaBytes) return 1;
    if (ptr >= this.areasBase && ptr < this.areasEnd) return 2 + this.areaBufferOf(ptr);
    return -1;
  }

  /** Index among all read-area buffers (handle - 2) of kernel address ptr, which lies in one. */
  private areaBufferOf(ptr: number): number {
    return ((ptr - this.areasBase) / this.areaBytes) | 0;
  }

  /** Whether bytes of arena h may be held past this batch: only while another buffer of its set is free. */
  canLend(h: number): boolean {
    return this.lendingOf(h).canLend(bufferOf(h));
  }

  /** One more holder of arena h (after canLend(h)); returns the function to call when done. */
  lend(h: number): () => void {
    return this.lendingOf(h).lend(bufferOf(h));
  }

  /** The buffers that handle h is one of: the arenas, or a read area's. */
  private lendingOf(h: number): LentBuffers {
    return h < 2 ? this.lending : this.areas[((h - 2) / READ_AREA_BUFFERS) | 0].lending;
  }

  /**
   * List one frame: where it lies if it is in a read area (whose buffers are
   * not refilled before this batch is handled), else copied into the arena.
   * Processes the batch first if it has no room. Returns false, taking
   * nothing, for a frame pushed while this batch's frames are being handled
   * (it could be neither handled in this batch nor kept past its reset, and a
   * full arena could not be flushed first) or one larger than an arena;
   * frames pushed from afterBatch start the next batch.
   */
  push(portId: number, buf: Uint8Array, off: number, len: number): boolean {
    if (this.processing) return false;
    const u8 = this.kern.u8;
    const at = buf.buffer === u8.buffer ? buf.byteOffset - u8.byteOffset + off : -1;
    const inPlace = at >= this.areasBase && at + len <= this.areasEnd;
    if (!inPlace && len > this.arenaBytes) return false;
    if (this.count === this.maxFrames || (!inPlace && this.next + len > this.arenaEnd)) this.flush();
    if (this.count === 0) this.startBatch();
    let ptr = at;
    if (inPlace) {
      this.areaBatch[this.areaBufferOf(at)] = this.serial;
      this.framesInPlace++;
    } else {
      ptr = this.next;
      u8.set(len === buf.length && off === 0 ? buf : buf.subarray(off, off + len), ptr);
      // Keep frame starts 4-byte aligned so header loads in the kernel are aligned.
      this.next = (ptr + len + 3) & ~3;
      this.framesCopied++;
    }
    const e = this.table + this.count * FRAME_ENTRY_SIZE;
    const dv = this.kern.dv;
    dv.setUint32(e, ptr, true);
    dv.setUint32(e + 4, len, true);
    this.ports[this.count] = portId;
    this.count++;
    return true;
  }

  /** A new batch fills its arena from the start, or the other arena if this one is lent. */
  private startBatch(): void {
    this.serial = (this.serial + 1) | 0;
    this.next = this.arenas[this.lending.next()];
    this.arenaEnd = this.next + this.arenaBytes;
  }

  /** Classify and handle everything queued. Frames pushed from afterBatch (a frame looped back) start a new batch; push refuses them while handlers run. */
  flush(): void {
    if (this.count === 0 || this.processing) return;
    this.processing = true;
    this.batchNow = this.clock();
    const n = this.count;
    try {
      try {
        this.classify(this.table, n, this.descs);
        const dv = this.kern.dv;
        for (let i = 0; i < n; i++) {
          const e = this.table + i * FRAME_ENTRY_SIZE;
          this.handler(i, this.ports[i], dv.getUint32(e, true), dv.getUint32(e + 4, true), this.descs + i * DESC_SIZE);
        }
      } finally {
        // The next push starts the next batch (startBatch): bytes of this one
        // stay where they are until then, and longer if lent.
        this.count = 0;
        this.processing = false;
      }
      this.afterBatch();
    } finally {
      // A batch pushed from inside this one (a frame looped back) has already
      // reset it; the rest of this batch then reads the live clock.
      this.batchNow = -1;
    }
  }
}
