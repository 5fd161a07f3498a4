/**
 * Output segments: fixed-size Buffers that frames queued during one turn are
 * copied into, framed, back to back. A segment is handed to the socket as one
 * write and returns to a small process-wide free list when the write
 * completes, so steady-state sending allocates no Buffers.
 */

/** Big enough for any frame the transports send (≤ 65550 + 4-byte header) plus slack. */
export const SEG_SIZE = 128 * 1024;
/** Free segments kept for reuse (enough for a full default 4 MiB queue); beyond that, completed segments go to the GC. */
const POOL_MAX = 40;

export class Segment {
  readonly buf: Buffer = Buffer.allocUnsafe(SEG_SIZE);
  used = 0;
  /** Outstanding writes/sends that still reference `buf`. */
  inflight = 0;
  /** Told when this segment's write completes (the link that wrote it; set per write). */
  onWritten: (() => void) | null = null;
  /** Write/send completion callback, bound once so writes allocate no closures. */
  readonly done = (): void => {
    if (--this.inflight !== 0) return;
    const after = this.onWritten;
    releaseSegment(this);
    after?.();
  };
}

const free: Segment[] = [];

export function takeSegment(): Segment {
  const s = free.pop();
  if (s !== undefined) return s;
  return new Segment();
}

export function releaseSegment(s: Segment): void {
  s.used = 0;
  s.inflight = 0;
  s.onWritten = null;
  if (free.length < POOL_MAX) free.push(s);
}

/** For tests and stats. */
export function pooledSegments(): number {
  return free.length;
}
