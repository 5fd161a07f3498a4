/**
 * A resource bound, per VM and global: the one shape every budget in the
 * engine takes (host sockets, flows, bindings, slots, leases, bytes).
 *
 * `take(vm, n)` succeeds only while the VM stays within `perVm` and everyone
 * together within `total`; otherwise nothing is taken and the refusal is
 * counted by which bound was hit. The caller states the policy when full
 * (refuse the new thing, evict the VM's own oldest, shrink a window...) and
 * gives back exactly what it took with `give(vm, n)`.
 *
 * Units are whatever the owner counts (sockets, slots, bytes); a VM is the
 * engine's attachment id.
 */
export interface QuotaStats {
  used: number;
  total: number;
  perVm: number;
  /** Refusals because the asking VM was at perVm. */
  refusedVm: number;
  /** Refusals because all VMs together were at total. */
  refusedTotal: number;
  /** The most any one VM holds now. */
  maxVmUsed: number;
}

export class Quota {
  private readonly byVm = new Map<number, number>();
  used = 0;
  refusedVm = 0;
  refusedTotal = 0;

  constructor(readonly name: string, readonly total: number, readonly perVm: number) {}

  /** What `vm` holds now. */
  usedBy(vm: number): number {
    return this.byVm.get(vm) ?? 0;
  }

  /** Whether `vm` could take `n` more, without taking or counting anything. */
  fits(vm: number, n = 1): boolean {
    return this.usedBy(vm) + n <= this.perVm && this.used + n <= this.total;
  }

  /** Room left for `vm`: the smaller of its own and the global headroom. */
  room(vm: number): number {
    return Math.max(0, Math.min(this.perVm - this.usedBy(vm), this.total - this.used));
  }

  /** Take `n` units for `vm`; false (and counted) when a bound would be passed. */
  take(vm: number, n = 1): boolean {
    const mine = this.usedBy(vm);
    if (mine + n > this.perVm) {
      this.refusedVm++;
      return false;
    }
    if (this.used + n > this.total) {
      this.refusedTotal++;
      return false;
    }
    this.byVm.set(vm, mine + n);
    this.used += n;
    return true;
  }

  /** Give back `n` units `vm` took. Never goes below zero, so a double give is harmless. */
  give(vm: number, n = 1): void {
    const mine = this.usedBy(vm);
    const g = Math.min(n, mine);
    if (g <= 0) return;
    if (mine - g === 0) this.byVm.delete(vm);
    else this.byVm.set(vm, mine - g);
    this.used -= g;
  }

  /** Everything `vm` holds, given back at once (the VM left). Returns how much that was. */
  release(vm: number): number {
    const mine = this.usedBy(vm);
    this.byVm.delete(vm);
    this.used -= mine;
    return mine;
  }

  stats(): QuotaStats {
    let maxVmUsed = 0;
    for (const v of this.byVm.values()) if (v > maxVmUsed) maxVmUsed = v;
    return { used: this.used, total: this.total, perVm: this.perVm, refusedVm: this.refusedVm, refusedTotal: this.refusedTotal, maxVmUsed };
  }
}

/**
 * Take one unit of each of `quotas` for `vm`, all or nothing: the first that refuses is
 * returned (its refusal counted) after the ones already taken are given back; null when
 * every one was taken.
 */
export function takeEach(vm: number, quotas: readonly Quota[]): Quota | null {
  for (let i = 0; i < quotas.length; i++) {
    if (quotas[i].take(vm)) continue;
    for (let j = 0; j < i; j++) quotas[j].give(vm);
    return quotas[i];
  }
  return null;
}
