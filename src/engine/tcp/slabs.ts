/**
 * Buffers carved from a few reused slabs instead of allocated one by one:
 * guest→host socket writes (released when the write completes) and host
 * socket reads held until the guest acknowledges them (released when the
 * send queue drops them). At large MTUs a fresh Buffer per write or read made
 * garbage collection half of the engine's time; a slab returns to the free
 * list once every piece cut from it is released, so steady-state bulk
 * transfer allocates nothing. A fixed pool (views of kernel memory) works the
 * same way, but never grows: take() can then come back empty.
 */

export const SLAB_BYTES = 1 << 20;
/** Free slabs kept for reuse; beyond this a finished slab is left to the GC. */
const MAX_FREE = 16;

class Slab {
  used = 0;
  /** Pieces cut from this slab that have not been released yet. */
  refs = 0;
  retired = false;
  /** Releases one piece; bound once per slab so handing out a piece allocates no closure. */
  readonly release: () => void;

  constructor(owner: Slabs, readonly buf: Buffer) {
    this.release = () => {
      this.refs--;
      if (this.retired && this.refs === 0) owner.recycle(this);
    };
  }
}

export class Slabs {
  private current: Slab | null = null;
  private readonly free: Slab[] = [];
  /** Slabs made so far (a pool's count from the start). */
  allocated = 0;
  /** Set for a fixed pool: slabs only come from it and always go back to it. */
  private readonly pooled: boolean;
  /** Release callback for the piece the last take() returned (e.g. passed to socket.write). */
  lastDone: () => void = noop;
  /** The piece the last take() returned, while its slab is still the current one. */
  private lastPiece: Buffer | null = null;

  /**
   * Slabs from the heap, made as needed; or, given `pool` (SLAB_BYTES views,
   * e.g. of kernel memory), exactly those, and take() may then come back empty.
   */
  constructor(pool?: Buffer[]) {
    this.pooled = pool !== undefined;
    for (const b of pool ?? []) this.free.push(new Slab(this, b));
    this.allocated = this.free.length;
  }

  /**
   * A buffer of `n` bytes; call `lastDone` (read right after) once it is no
   * longer used. Requests larger than a slab get their own Buffer.
   */
  take(n: number): Buffer {
    return this.tryTake(n)!;
  }

  /** take(), or null when a pool has no slab free (never for heap slabs). */
  tryTake(n: number): Buffer | null {
    if (n > SLAB_BYTES) {
      if (this.pooled) return null;
      this.lastDone = noop;
      this.lastPiece = null;
      return Buffer.allocUnsafe(n);
    }
    let s = this.current;
    if (s === null || s.used + n > SLAB_BYTES) {
      // With no free slab left, a pool's current slab that nobody holds a piece of any more
      // starts over in place (retiring it would recycle it at once; a pool of one had no other).
      const next = this.free.pop() ?? (this.pooled ? (s !== null && s.refs === 0 ? s : null) : this.newSlab());
      if (next === null) return null;
      if (s !== null && s !== next) this.retire(s);
      s = next;
      s.used = 0;
      s.refs = 0;
      s.retired = false;
      this.current = s;
    }
    const buf = s.buf.subarray(s.used, s.used + n);
    s.used += n;
    s.refs++;
    this.lastDone = s.release;
    this.lastPiece = buf;
    return buf;
  }

  /**
   * Hands the unused tail of `piece` (bytes from `keep` on) back to the slab
   * when nothing was taken after it: a host read reserves more than it
   * usually gets. Otherwise the tail stays unused until the slab recycles.
   * The caller must not touch those bytes again.
   */
  trim(piece: Buffer, keep: number): void {
    const s = this.current;
    if (piece !== this.lastPiece || s === null || keep >= piece.length) return;
    s.used -= piece.length - keep;
    this.lastPiece = null;
  }

  private newSlab(): Slab {
    this.allocated++;
    return new Slab(this, Buffer.allocUnsafeSlow(SLAB_BYTES));
  }

  private retire(s: Slab): void {
    s.retired = true;
    if (s.refs === 0) this.recycle(s);
  }

  /** @internal called by a slab whose last piece was released after it was retired. */
  recycle(s: Slab): void {
    if (this.pooled || this.free.length < MAX_FREE) this.free.push(s);
  }
}

function noop(): void {}
