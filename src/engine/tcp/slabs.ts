/**
 * Buffers carved from a few reused slabs instead of allocated one by one:
 * guest→host socket writes (released when the write completes) and host
 * socket reads held until the guest acknowledges them (released when the
 * send queue drops them). At large MTUs a fresh Buffer per write or read made
 * garbage collection half of the engine's time; a slab returns to the free
 * list once every piece cut from it is released, so steady-state bulk
 * transfer allocates nothing.
 */

export const SLAB_BYTES = 1 << 20;
/** Free slabs kept for reuse; beyond this a finished slab is left to the GC. */
const MAX_FREE = 16;

interface Slab {
  buf: Buffer;
  used: number;
  /** Writes cut from this slab whose callback has not run yet. */
  refs: number;
  retired: boolean;
}

export class Slabs {
  private current: Slab | null = null;
  private readonly free: Slab[] = [];
  allocated = 0;

  /**
   * A buffer of `n` bytes and the callback that releases it (e.g. passed to
   * socket.write). Requests larger than a slab get their own Buffer.
   */
  take(n: number): { buf: Buffer; done: () => void } {
    if (n > SLAB_BYTES) return { buf: Buffer.allocUnsafe(n), done: noop };
    let s = this.current;
    if (s === null || s.used + n > SLAB_BYTES) {
      if (s !== null) this.retire(s);
      s = this.free.pop() ?? this.newSlab();
      s.used = 0;
      s.refs = 0;
      s.retired = false;
      this.current = s;
    }
    const buf = s.buf.subarray(s.used, s.used + n);
    s.used += n;
    s.refs++;
    const slab = s;
    return {
      buf,
      done: () => {
        slab.refs--;
        if (slab.retired && slab.refs === 0) this.recycle(slab);
      },
    };
  }

  private newSlab(): Slab {
    this.allocated++;
    return { buf: Buffer.allocUnsafeSlow(SLAB_BYTES), used: 0, refs: 0, retired: false };
  }

  private retire(s: Slab): void {
    s.retired = true;
    if (s.refs === 0) this.recycle(s);
  }

  private recycle(s: Slab): void {
    if (this.free.length < MAX_FREE) this.free.push(s);
  }
}

function noop(): void {}
