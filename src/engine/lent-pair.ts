/**
 * Two buffers filled in turn, whose bytes a consumer may hold past a fill (a
 * host socket write, whose bytes libuv keeps until the write's callback). A
 * buffer with holders is "lent" and the next fill takes the other one. A
 * buffer is lent only while the other is free, and only the buffer being
 * filled is lent, so a fill never waits and never writes over held bytes.
 * The RX batch's arenas and the TCP stack's stage halves both work this way.
 */
export class LentPair {
  /** The buffer (0 or 1) being filled. */
  current = 0;
  private readonly lent = [0, 0];
  private readonly releases = [() => { this.lent[0]--; }, () => { this.lent[1]--; }];

  /** Whether bytes of buffer h may be held past its fill: only while the other buffer is free. */
  canLend(h: number): boolean {
    return this.lent[h ^ 1] === 0;
  }

  /** One more holder of buffer h (after canLend(h)); returns the function to call when done. */
  lend(h: number): () => void {
    this.lent[h]++;
    return this.releases[h];
  }

  /** The buffer to fill next: the other one if the current one is lent (that one is then free). */
  next(): number {
    if (this.lent[this.current] > 0) this.current ^= 1;
    return this.current;
  }
}
