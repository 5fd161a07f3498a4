/**
 * Kernel memory that one VM link's socket reads into (a ReadSpace), so the
 * RX batch takes that link's frames where the kernel put them: guest bytes
 * reach the checksum and the host socket with no copy in between. At MTU
 * 65520 the copy into the RX arena was 6 % of the engine's busy time
 * guest → host (bench/e2e/README.md has the A/Bs).
 *
 * READ_AREA_BUFFERS buffers (LentBuffers), and reads stay near the start of
 * them. Once a read has taken the link past WARM_BYTES into its buffer, the
 * next read goes to the start of the first buffer that is free: no frame of
 * the batch in hand lies there and nothing holds its bytes. At the end of a
 * turn the batch is handled and host writes that completed at once give
 * their bytes back before the next poll, so reads mostly take turns between
 * the first two buffers, whose lines are still in cache; the kernel's copy
 * into memory that reads walked through cost twice passt's per byte. Held
 * bytes (an incomplete frame) move along.
 *
 * With no buffer free, reads continue behind the held bytes, so a frame that
 * straddles reads lies in one piece. When the buffer has no room left
 * either, the RX batch is handled first (its frames may lie anywhere in the
 * buffer being reused) and the held bytes move to the start of one nothing
 * holds. Bytes lent to host writes are never written over.
 */
import type { Kernels } from '../kernels/index.js';
import type { ReadSpace } from '../transport/types.js';
import { copyToHeap } from '../transport/stream-reader.js';
import { LentBuffers } from './lent-buffers.js';

/** Bytes of each of an area's buffers: four reads of READ_CHUNK before a refill. */
export const READ_AREA_BYTES = 1024 * 1024;
/** Buffers per area: two take turns; the others stand in while host writes hold bytes of those. */
export const READ_AREA_BUFFERS = 4;
/** Reads continue behind held bytes that lie less than this far into their buffer; past it the next read goes to the start of a free buffer (the kernel's copy into it then costs half per byte). */
export const WARM_BYTES = 64 * 1024;
/** Areas an engine lends (first come): links beyond them keep heap buffers and their frames are copied. */
export const READ_AREAS = 2;

export class ReadArea implements ReadSpace {
  readonly lending: LentBuffers;
  readonly askEveryRead = true;
  /** Lent to a link (released when the link closes). */
  inUse = false;
  /** Times the RX batch was handled early so a buffer could be refilled. */
  refills = 0;
  /** Times reads moved to the start of another buffer, which was free. */
  swaps = 0;

  constructor(
    private readonly kern: Kernels,
    /** Kernel address of buffer 0; the others follow it. */
    readonly base: number,
    readonly bufBytes: number,
    buffers: number,
    /** Handle the RX batch before a buffer is refilled; false while it cannot be (it is being handled). */
    private readonly beforeRefill: () => boolean,
    /** Whether buffer h holds frames of the RX batch in hand. */
    private readonly inBatch: (h: number) => boolean,
  ) {
    this.lending = new LentBuffers(buffers);
  }

  take(prev: Uint8Array, start: number, end: number, room: number): Uint8Array {
    const u8 = this.kern.u8;
    const held = end - start;
    // More than a buffer (a paused link whose stream kept delivering): plain heap memory;
    // its frames are copied into the RX arena like any other link's.
    if (held + room > this.bufBytes) return copyToHeap(prev, start, end, room);
    const c = this.lending.current;
    const cur = this.base + c * this.bufBytes;
    const from = prev.buffer === u8.buffer ? prev.byteOffset - u8.byteOffset + start : -1;
    // Everything in this buffer that is still needed lies below `from`: reads may continue behind it.
    const behind = from >= cur && from + held + room <= cur + this.bufBytes;
    if (behind && from - cur < WARM_BYTES) return u8.subarray(from, cur + this.bufBytes);
    for (let h = 0; h < this.lending.count; h++) {
      if (h === c || !this.lending.free(h) || this.inBatch(h)) continue;
      this.swaps++;
      return this.fill(this.lending.use(h), prev, start, end, from);
    }
    if (behind) return u8.subarray(from, cur + this.bufBytes);
    // The batch is being handled and its frames may lie anywhere here: heap memory, as above.
    if (!this.beforeRefill()) return copyToHeap(prev, start, end, room);
    this.refills++;
    return this.fill(this.lending.next(), prev, start, end, from);
  }

  /** Buffer h with prev[start, end) moved to its front (`from`: their kernel address, or -1). */
  private fill(h: number, prev: Uint8Array, start: number, end: number, from: number): Uint8Array {
    const u8 = this.kern.u8;
    const at = this.base + h * this.bufBytes;
    if (from >= 0) u8.copyWithin(at, from, from + end - start);
    else u8.set(prev.subarray(start, end), at);
    return u8.subarray(at, at + this.bufBytes);
  }

  release(): void {
    this.inUse = false;
  }
}
