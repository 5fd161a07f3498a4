/**
 * The learning L2 switch: which VM port owns which MAC. Bounded twice: in
 * all (`max`) and per port (`perPort`), so a guest spraying source MACs
 * cannot grow memory nor take the room other VMs need; refusals are counted.
 *
 * With `isolation` a MAC belongs to the port that first used it until that
 * port leaves (purge): another port sending from it is refused, so it can
 * neither take over the MAC's traffic nor be forwarded under that name.
 * Without it the table follows the last port that sent from a MAC (a plain
 * learning switch).
 */

/** A MAC as one number (48 bits fit a double exactly). */
export function macKey(b: Uint8Array, off: number): number {
  return (b[off] * 0x10000 + (b[off + 1] << 8) + b[off + 2]) * 0x1000000 + ((b[off + 3] << 16) | (b[off + 4] << 8) | b[off + 5]);
}

/** What learn() did. LEARNED and KNOWN mean the port may send from the MAC. */
export const LEARNED = 0;
export const KNOWN = 1;
/** Refused: the table holds `max` MACs. */
export const TABLE_FULL = 2;
/** Refused: the port holds `perPort` MACs. */
export const PORT_FULL = 3;
/** Refused (isolation): another port owns the MAC. */
export const OWNED_ELSEWHERE = 4;
export type LearnResult = typeof LEARNED | typeof KNOWN | typeof TABLE_FULL | typeof PORT_FULL | typeof OWNED_ELSEWHERE;

export class MacTable<P> {
  private readonly owner = new Map<number, P>();
  private readonly perPortCount = new Map<P, number>();
  /** MACs not learned because the table was full. */
  refused = 0;
  /** MACs not learned because their port held perPort MACs already. */
  refusedPort = 0;
  /** Frames refused because another port owns their source MAC (isolation). */
  refusedOwned = 0;
  /** Bumped on every ownership change, so callers can cache "already learned". */
  version = 0;

  constructor(private readonly max: number, private readonly perPort: number = max, private readonly isolation = false) {}

  get size(): number {
    return this.owner.size;
  }

  /** MACs `port` owns now. */
  countOf(port: P): number {
    return this.perPortCount.get(port) ?? 0;
  }

  /** Record that `mac` was seen on `port`; see LearnResult. */
  learn(mac: number, port: P): LearnResult {
    const cur = this.owner.get(mac);
    if (cur === port) return KNOWN;
    if (cur !== undefined && this.isolation) {
      this.refusedOwned++;
      return OWNED_ELSEWHERE;
    }
    if (cur === undefined && this.owner.size >= this.max) {
      this.refused++;
      return TABLE_FULL;
    }
    const mine = this.countOf(port);
    if (mine >= this.perPort) {
      this.refusedPort++;
      return PORT_FULL;
    }
    if (cur !== undefined) this.dec(cur);
    this.owner.set(mac, port);
    this.perPortCount.set(port, mine + 1);
    this.version++;
    return LEARNED;
  }

  lookup(mac: number): P | undefined {
    return this.owner.get(mac);
  }

  /** Forget every MAC of a port (it disconnected). */
  purge(port: P): void {
    for (const [mac, p] of this.owner) if (p === port) this.owner.delete(mac);
    this.perPortCount.delete(port);
    this.version++;
  }

  private dec(port: P): void {
    const n = this.countOf(port) - 1;
    if (n <= 0) this.perPortCount.delete(port);
    else this.perPortCount.set(port, n);
  }
}
