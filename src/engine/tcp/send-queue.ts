/**
 * Bytes from a host socket not yet acknowledged by the guest. Chunks are kept
 * by reference (no copy on arrival), each with an optional release callback
 * run when the chunk leaves the queue (slab-backed chunks); a segment that
 * straddles chunks is gathered into a caller-provided scratch buffer so the
 * hot path never allocates per segment.
 */
const EMPTY = new Uint8Array(0);

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
   * Make bytes [off, off+len) of the queue contiguous: afterwards they are in
   * `viewBuf` from the returned index — the chunk itself when the range lies
   * inside one, else `scratch` after gathering. Caller keeps off+len <= length.
   * (A field plus an index rather than a tuple, so no allocation per segment.)
   */
  viewBuf: Uint8Array = EMPTY;
  view(off: number, len: number, scratch: Uint8Array): number {
    let i = 0;
    let pos = off + this.headOff;
    while (pos >= this.chunks[i].length) {
      pos -= this.chunks[i].length;
      i++;
    }
    const c = this.chunks[i];
    if (pos + len <= c.length) {
      this.viewBuf = c;
      return pos;
    }
    let done = 0;
    while (done < len) {
      const ch = this.chunks[i];
      const take = Math.min(ch.length - pos, len - done);
      scratch.set(ch.subarray(pos, pos + take), done);
      done += take;
      pos = 0;
      i++;
    }
    this.viewBuf = scratch;
    return 0;
  }
}
