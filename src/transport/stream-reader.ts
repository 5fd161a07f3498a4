/**
 * What a stream link has received and not yet consumed, and where the next
 * bytes go.
 *
 * A socket read lands right behind the unconsumed bytes (the socket's onread
 * buffer generator calls next()), so a frame that straddles reads is whole
 * and in one piece once its last byte is in: nothing is assembled, and the
 * consumer gets views of the buffer the socket wrote. The ReadSpace decides
 * where the buffer is and when the unconsumed bytes move: the link's own space
 * is on the heap; the engine lends one in kernel memory, where its RX batch
 * takes frames without copying them. Streams that deliver 'data' chunks
 * instead are copied in with append().
 */
import type { ReadSpace } from './types.js';

/** Most bytes one read asks for. */
export const READ_CHUNK = 256 * 1024;
/** Least room a read gets: less and the unconsumed bytes move first. */
export const READ_MIN = 64 * 1024;

const EMPTY = new Uint8Array(0);

/** Consumes what it can of buf[start, end); returns the new start. */
export type ByteConsumer = (buf: Uint8Array, start: number, end: number) => number;

/** A new heap buffer holding prev[start, end) at its front and `room` bytes after them. */
export function copyToHeap(prev: Uint8Array, start: number, end: number, room: number): Uint8Array {
  const m = Buffer.allocUnsafe(end - start + room);
  m.set(prev.subarray(start, end));
  return m;
}

/** A link's own space: one heap buffer, grown when unconsumed bytes and the room asked for do not fit. */
export class HeapReadSpace implements ReadSpace {
  private mem: Uint8Array;

  constructor(bytes: number) {
    this.mem = Buffer.allocUnsafe(bytes);
  }

  take(prev: Uint8Array, start: number, end: number, room: number): Uint8Array {
    const held = end - start;
    if (this.mem.length < held + room) {
      this.mem = copyToHeap(prev, start, end, room);
    } else if (prev === this.mem) {
      if (start > 0) this.mem.copyWithin(0, start, end);
    } else {
      this.mem.set(prev.subarray(start, end));
    }
    return this.mem;
  }

  release(): void {}
}

export class StreamReader {
  /** Received bytes are buf[start, end); the next read goes to buf[end, …). */
  private buf: Uint8Array = EMPTY;
  private start = 0;
  private end = 0;
  private space: ReadSpace;
  /** A space to move into at the next read (useReadSpace). */
  private nextSpace?: ReadSpace;
  private closed = false;
  consume: ByteConsumer = (_b, s) => s;

  /** `heapBytes` sizes the link's own buffer: one read plus the largest frame with its header. */
  constructor(heapBytes: number) {
    this.space = new HeapReadSpace(heapBytes);
  }

  /** Bytes received and not consumed: an incomplete frame, or frames held by a pause. */
  get held(): number {
    return this.end - this.start;
  }

  /** Move into `space` at the next read. */
  use(space: ReadSpace): void {
    if (this.closed) {
      space.release();
      return;
    }
    this.nextSpace?.release();
    this.nextSpace = space;
  }

  /** The buffer for the next socket read (onread's buffer generator). */
  next(): Uint8Array {
    if (this.closed) return EMPTY_READ;
    if (this.nextSpace !== undefined) this.switchSpace();
    else if (this.space.askEveryRead === true || this.buf.length - this.end < READ_MIN) this.move(READ_MIN);
    return this.buf.subarray(this.end, Math.min(this.buf.length, this.end + READ_CHUNK));
  }

  /** n bytes arrived in the buffer next() returned last. */
  filled(n: number): void {
    if (this.closed) return;
    this.end += n;
    // The socket was handed its first buffer before the link had a space of its own: the
    // bytes move now, so every frame the consumer sees lies in that space.
    if (this.nextSpace !== undefined) this.switchSpace();
    this.replay();
  }

  /** A chunk from a stream without onread: copied in, consumed as it fills. */
  append(chunk: Uint8Array): void {
    for (let off = 0; off < chunk.length && !this.closed;) {
      const left = chunk.length - off;
      if (this.nextSpace !== undefined || this.buf.length - this.end < Math.min(left, READ_MIN)) this.next();
      const k = Math.min(left, this.buf.length - this.end);
      this.buf.set(k === chunk.length ? chunk : chunk.subarray(off, off + k), this.end);
      off += k;
      this.filled(k);
    }
  }

  /** Consume again what is held (after a pause). */
  replay(): void {
    if (this.closed) return;
    const s = this.consume(this.buf, this.start, this.end);
    // The consumer may have closed the link meanwhile (bad input).
    if (!this.closed) this.start = s;
  }

  /** Held bytes are dropped and the spaces released. The socket must read no more (paused or destroyed). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.buf = EMPTY;
    this.start = this.end = 0;
    this.space.release();
    this.nextSpace?.release();
    this.nextSpace = undefined;
  }

  private switchSpace(): void {
    const old = this.space;
    this.space = this.nextSpace!;
    this.nextSpace = undefined;
    this.move(READ_MIN);
    old.release();
  }

  private move(room: number): void {
    const b = this.space.take(this.buf, this.start, this.end, room);
    this.end -= this.start;
    this.start = 0;
    this.buf = b;
  }
}

/** What a closed reader offers a socket that still reads: a scratch buffer whose bytes are dropped. */
const EMPTY_READ = Buffer.allocUnsafe(4096);
