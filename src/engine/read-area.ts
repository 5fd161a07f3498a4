/**
 * Kernel memory that one VM link's socket reads into (a ReadSpace), so the
 * RX batch takes that link's frames where the kernel put them: guest bytes
 * reach the checksum and the host socket with no copy in between. At MTU
 * 65520 the copy into the RX arena was 6 % of the engine's busy time
 * guest → host; the checksum now reads bytes the kernel has just written
 * instead of ones our copy left in cache, and gives back part of that
 * (bench/e2e/README.md has the A/Bs).
 *
 * Two buffers in turn (a LentPair). Reads fill the current one front to
 * back, each right behind the bytes the link still holds (an incomplete
 * frame), so a frame that straddles reads lies in one piece. When the buffer
 * has no room left, the held bytes move to the start of the next buffer to
 * fill, and the RX batch is handled first, because its frames may lie
 * anywhere in the buffer being reused. Bytes lent to host writes are never
 * written over (LentPair: a lent buffer is not refilled).
 */
import type { Kernels } from '../kernels/index.js';
import type { ReadSpace } from '../transport/types.js';
import { copyToHeap } from '../transport/stream-reader.js';
import { LentPair } from './lent-pair.js';

/** Bytes of each of an area's two buffers: eight reads of READ_CHUNK before a refill. */
export const READ_AREA_BYTES = 2 * 1024 * 1024;
/** Areas an engine lends (first come): links beyond them keep heap buffers and their frames are copied. */
export const READ_AREAS = 2;

export class ReadArea implements ReadSpace {
  readonly lending = new LentPair();
  /** Lent to a link (released when the link closes). */
  inUse = false;
  /** Times held bytes moved to the start of a buffer. */
  refills = 0;

  constructor(
    private readonly kern: Kernels,
    /** Kernel address of buffer 0; buffer 1 follows it. */
    readonly base: number,
    readonly bufBytes: number,
    /** Handle the RX batch before a buffer is refilled; false while it cannot be (it is being handled). */
    private readonly beforeRefill: () => boolean,
  ) {}

  take(prev: Uint8Array, start: number, end: number, room: number): Uint8Array {
    const u8 = this.kern.u8;
    const held = end - start;
    // More than a buffer (a paused link whose stream kept delivering): plain heap memory;
    // its frames are copied into the RX arena like any other link's.
    if (held + room > this.bufBytes) return copyToHeap(prev, start, end, room);
    const cur = this.base + this.lending.current * this.bufBytes;
    const ours = prev.buffer === u8.buffer;
    const from = ours ? prev.byteOffset - u8.byteOffset + start : -1;
    // Everything in this buffer that is still needed lies below `from`: continue behind it.
    if (ours && from >= cur && from + held + room <= cur + this.bufBytes) return u8.subarray(from, cur + this.bufBytes);
    // The batch is being handled and its frames may lie anywhere here: heap memory, as above.
    if (!this.beforeRefill()) return copyToHeap(prev, start, end, room);
    const at = this.base + this.lending.next() * this.bufBytes;
    if (ours) u8.copyWithin(at, from, from + held);
    else u8.set(prev.subarray(start, end), at);
    this.refills++;
    return u8.subarray(at, at + this.bufBytes);
  }

  release(): void {
    this.inUse = false;
  }
}
