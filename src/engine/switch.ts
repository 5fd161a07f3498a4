/**
 * The learning L2 switch: which VM port owns which MAC. Bounded: when full,
 * new MACs are not learned (counted), so a guest spraying source MACs cannot
 * grow memory; frames to unlearned unicast MACs are dropped and counted.
 */

/** A MAC as one number (48 bits fit a double exactly). */
export function macKey(b: Uint8Array, off: number): number {
  return (b[off] * 0x10000 + (b[off + 1] << 8) + b[off + 2]) * 0x1000000 + ((b[off + 3] << 16) | (b[off + 4] << 8) | b[off + 5]);
}

export class MacTable<P> {
  private readonly owner = new Map<number, P>();
  /** MACs not learned because the table was full. */
  refused = 0;
  /** Bumped on every ownership change, so callers can cache "already learned". */
  version = 0;

  constructor(private readonly max: number) {}

  get size(): number {
    return this.owner.size;
  }

  /** Record that `mac` was seen on `port`. Returns false when the table is full. */
  learn(mac: number, port: P): boolean {
    const cur = this.owner.get(mac);
    if (cur === port) return true;
    if (cur === undefined && this.owner.size >= this.max) {
      this.refused++;
      return false;
    }
    this.owner.set(mac, port);
    this.version++;
    return true;
  }

  lookup(mac: number): P | undefined {
    return this.owner.get(mac);
  }

  /** Forget every MAC of a port (it disconnected). */
  purge(port: P): void {
    for (const [mac, p] of this.owner) if (p === port) this.owner.delete(mac);
    this.version++;
  }
}
