/**
 * The receive side of the batch boundary. Transports hand frames over one at
 * a time (views into their read chunks); each is copied once into an arena
 * in kernel memory and listed in the frame table. At the end of the turn, or
 * when the arena or table is full, the whole batch is classified with ONE
 * kernel call and handed to the engine descriptor by descriptor.
 *
 * There are two arenas (a LentPair). Frame bytes may be held past their
 * batch (a host socket write of a jumbo segment's payload, which libuv keeps
 * until the write completes): the arena is then lent and the next batch
 * fills the other one.
 */
import type { Kernels } from '../kernels/index.js';
import { FRAME_ENTRY_SIZE, DESC_SIZE } from '../../assembly/layout.js';
import { LentPair } from './lent-pair.js';

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

/** Frame bytes held past their batch: what a consumer of RX frames may ask (see RxBatch). */
export interface FrameArena {
  arenaOf(ptr: number): number;
  canLend(h: number): boolean;
  lend(h: number): () => void;
}

export class RxBatch implements FrameArena {
  readonly table: number;
  readonly descs: number;
  private readonly arenas: [number, number];
  private readonly arenaBytes: number;
  private arenaEnd: number;
  /** Which arena the current batch fills, and who holds bytes of each. */
  private readonly lending = new LentPair();
  private readonly maxFrames: number;
  private readonly ports: Int32Array;
  private count = 0;
  private next: number;
  private processing = false;
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

  get pending(): number {
    return this.count;
  }

  /**
   * The arena (0 or 1) that kernel address `ptr` lies in, or -1: a consumer
   * that wants to hold a frame's bytes past the batch asks this, then
   * canLend/lend, and otherwise copies them before the batch ends.
   */
  arenaOf(ptr: number): number {
    const a = this.arenas;
    if (ptr >= a[0] && ptr < a[0] + this.arenaBytes) return 0;
    if (ptr >= a[1] && ptr < a[1] + this.arenaBytes) return 1;
    return -1;
  }

  /** Whether bytes of arena h may be held past this batch: only while the other arena is free. */
  canLend(h: number): boolean {
    return this.lending.canLend(h);
  }

  /** One more holder of arena h (after canLend(h)); returns the function to call when done. */
  lend(h: number): () => void {
    return this.lending.lend(h);
  }

  /**
   * Copy one frame in. Processes the batch first if it has no room. Returns
   * false, taking nothing, for a frame pushed while this batch's frames are
   * being handled (it could be neither handled in this batch nor kept past
   * its reset, and a full arena could not be flushed first) or one larger
   * than an arena; frames pushed from afterBatch start the next batch.
   */
  push(portId: number, buf: Uint8Array, off: number, len: number): boolean {
    if (this.processing || len > this.arenaBytes) return false;
    if (this.count === this.maxFrames || this.next + len > this.arenaEnd) this.flush();
    if (this.count === 0) this.startBatch();
    const ptr = this.next;
    this.kern.u8.set(len === buf.length && off === 0 ? buf : buf.subarray(off, off + len), ptr);
    const e = this.table + this.count * FRAME_ENTRY_SIZE;
    const dv = this.kern.dv;
    dv.setUint32(e, ptr, true);
    dv.setUint32(e + 4, len, true);
    this.ports[this.count] = portId;
    this.count++;
    // Keep frame starts 4-byte aligned so header loads in the kernel are aligned.
    this.next = (ptr + len + 3) & ~3;
    return true;
  }

  /** A new batch fills its arena from the start, or the other arena if this one is lent. */
  private startBatch(): void {
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
