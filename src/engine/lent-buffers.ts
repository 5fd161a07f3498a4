/**
 * Buffers filled one at a time, whose bytes a consumer may hold past a fill
 * (a host socket write, whose bytes libuv keeps until the write's callback).
 * A buffer with holders is "lent", and a fill never goes into a lent buffer.
 * A buffer is lent only while another one is free, so there is always one to
 * fill: a fill never waits and never writes over held bytes. The RX batch's
 * arenas and the TCP stack's stage halves are pairs; a read area has more
 * buffers, so a slow host write holding one does not stop the next batch's
 * bytes from being lent too.
 */
export class LentBuffers {
  /** The buffer being filled. */
  current = 0;
  private readonly lent: number[];
  private readonly releases: (() => void)[];

  constructor(readonly count = 2) {
    this.lent = new Array<number>(count).fill(0);
    this.releases = this.lent.map((_, h) => () => { this.lent[h]--; });
  }

  /** Whether bytes of buffer h may be held past its fill: only while another buffer is free. */
  canLend(h: number): boolean {
    for (let j = 0; j < this.count; j++) if (j !== h && this.lent[j] === 0) return true;
    return false;
  }

  /** One more holder of buffer h (after canLend(h)); returns the function to call when done. */
  lend(h: number): () => void {
    this.lent[h]++;
    return this.releases[h];
  }

  /** Whether nothing holds bytes of buffer h. */
  free(h: number): boolean {
    return this.lent[h] === 0;
  }

  /** The buffer to fill next: the current one unless it is lent, else the first free one (there is one). */
  next(): number {
    if (this.lent[this.current] > 0) this.current = this.lent.indexOf(0);
    return this.current;
  }

  /** Fill free buffer h from now on; returns it. */
  use(h: number): number {
    this.current = h;
    return h;
  }
}
