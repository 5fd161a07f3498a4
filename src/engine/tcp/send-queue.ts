/**
 * Bytes from a host socket not yet acknowledged by the guest. Chunks are kept
 * by reference (no copy on arrival), each with an optional release callback
 * run when the chunk leaves the queue (slab-backed chunks). A segment's
 * payload is copied from here straight into its TX slot, gathered across
 * chunks when it straddles them.
 */

export class SendQueue {
  private chunks: Buffer[] = [];
  private releases: ((() => void) | undefined)[] = [];
  /** Bytes of chunks[0] already acknowledged. */
  private headOff = 0;
  /** Bytes held (acknowledged ones excluded). */
  length = 0;

  push(b: Buffer, release?: () => void): void {
    if (b.length === 0) {
      release?.();
      return;
    }
    this.chunks.push(b);
    this.releases.push(release);
    this.length += b.length;
  }

  private drop(count: number): void {
    for (let i = 0; i < count; i++) this.releases[i]?.();
    this.chunks.splice(0, count);
    this.releases.splice(0, count);
  }

  /** Drop `n` acknowledged bytes from the front. */
  consume(n: number): void {
    if (n >= this.length) {
      this.drop(this.chunks.length);
      this.headOff = 0;
      this.length = 0;
      return;
    }
    this.length -= n;
    let i = 0;
    while (n > 0) {
      const avail = this.chunks[i].length - this.headOff;
      if (n < avail) {
        this.headOff += n;
        n = 0;
      } else {
        n -= avail;
        this.headOff = 0;
        i++;
      }
    }
    if (i > 0) this.drop(i);
  }

  /**
   * Where bytes [off, off+len) of the queue start in `mem`, when they lie
   * there in one run (one chunk, or chunks read back to back into the same
   * slab), else -1: such a segment is built from where it lies.
   */
  runIn(off: number, len: number, mem: ArrayBufferLike): number {
    let i = 0;
    let pos = off + this.headOff;
    while (pos >= this.chunks[i].length) {
      pos -= this.chunks[i].length;
      i++;
    }
    let ch = this.chunks[i];
    if (ch.buffer !== mem) return -1;
    const start = ch.byteOffset + pos;
    let end = ch.byteOffset + ch.length;
    while (end - start < len) {
      ch = this.chunks[++i];
      if (ch.buffer !== mem || ch.byteOffset !== end) return -1;
      end += ch.length;
    }
    return start;
  }

  /**
   * Copy bytes [off, off+len) of the queue to dst[at, at+len), gathering
   * across chunks: the TX slot a segment is built in is the only place its
   * payload is copied to. Caller keeps off+len <= length.
   */
  copyOut(off: number, len: number, dst: Uint8Array, at: number): void {
    let i = 0;
    let pos = off + this.headOff;
    while (pos >= this.chunks[i].length) {
      pos -= this.chunks[i].length;
      i++;
    }
    let done = 0;
    while (done < len) {
      const ch = this.chunks[i];
      const take = Math.min(ch.length - pos, len - done);
      dst.set(pos === 0 && take === ch.length ? ch : ch.subarray(pos, pos + take), at + done);
      done += take;
      pos = 0;
      i++;
    }
  }
}
