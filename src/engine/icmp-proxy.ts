/**
 * Echo requests to addresses beyond the engine. Node has no ICMP socket, so
 * the platform's own `ping` (which uses the kernel's unprivileged ICMP
 * datagram socket or its setuid/capability bit) sends one real echo to the
 * destination; only when that echo is answered does the guest get a reply.
 * Without a usable `ping`, nothing is answered: vnetkit never forges a reply
 * for an address it did not reach.
 *
 * Bounded, so a guest flood-pinging costs a few processes a second:
 * - each VM has a token bucket (`ratePerSecond`, `burst`): a probe that would
 *   start a `ping` takes a token, and with none left the request is dropped
 *   (`rateLimited`);
 * - the outcome for a destination, answered or not, is kept for `cacheMs`: a
 *   request within that is answered (or not) from it and starts nothing
 *   (`cached`); requests while a probe to that destination runs wait for it
 *   (`coalesced`, at most MAX_WAITERS per destination);
 * - at most `maxInflight` probes run at once; more are dropped (`overCap`).
 * Time comes from `now` (milliseconds), so the policy is testable without
 * waiting.
 */
import { execFile } from 'node:child_process';
import { formatIPv4 } from '../wire/addr.js';
import type { QuotaStats } from './quota.js';

export type Pinger = (ip: number, timeoutMs: number) => Promise<boolean>;

/** One echo through the system `ping`: true when the destination answered. */
export const systemPing: Pinger = (ip, timeoutMs) =>
  new Promise((resolve) => {
    const secs = String(Math.max(1, Math.ceil(timeoutMs / 1000)));
    execFile('ping', ['-n', '-q', '-c', '1', '-W', secs, formatIPv4(ip)], { timeout: timeoutMs + 1000 }, (err) => resolve(err === null));
  });

/** Requests waiting on one running probe; more are dropped (each holds a reply frame). */
const MAX_WAITERS = 64;
/** VMs with a bucket before idle ones are swept (VMs that left leave theirs behind). */
const MAX_BUCKETS = 256;
/** Destinations whose outcome is remembered; past this the oldest go first. */
const MAX_CACHED = 4096;

export interface IcmpProxyOptions {
  pinger: Pinger;
  /** Probes running at once, all VMs together (default 32). */
  maxInflight?: number;
  /** How long one probe waits for an answer (default 2000 ms). */
  timeoutMs?: number;
  /** Probes each VM may start per second, and how many at once after a quiet spell (defaults 5 and 10). */
  ratePerSecond?: number;
  burst?: number;
  /** How long an outcome answers later requests to the same destination (default 1000 ms). */
  cacheMs?: number;
  /** Milliseconds, any origin (default performance.now). */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
  /** Probes this VM started that are still running. */
  inflight: number;
}

export class IcmpProxy {
  private inflight = 0;
  private readonly maxInflight: number;
  private readonly timeoutMs: number;
  private readonly rate: number;
  private readonly burst: number;
  private readonly cacheMs: number;
  private readonly now: () => number;
  private readonly pinger: Pinger;
  private readonly buckets = new Map<number, Bucket>();
  private readonly running = new Map<number, (() => void)[]>();
  private readonly outcomes = new Map<number, { at: number; ok: boolean }>();
  readonly counters = { sent: 0, answered: 0, unanswered: 0, overCap: 0, rateLimited: 0, cached: 0, coalesced: 0, waitersFull: 0 };

  constructor(opts: IcmpProxyOptions) {
    this.pinger = opts.pinger;
    this.maxInflight = opts.maxInflight ?? 32;
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.rate = opts.ratePerSecond ?? 5;
    this.burst = opts.burst ?? 10;
    this.cacheMs = opts.cacheMs ?? 1000;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Probe `ip` for VM `vm`; `onReply` runs only if it answered. */
  probe(vm: number, ip: number, onReply: () => void): void {
    const cb = onReply;
    const now = this.now();
    const known = this.outcomes.get(ip);
    if (known !== undefined) {
      if (now - known.at < this.cacheMs) {
        this.counters.cached++;
        if (known.ok) cb();
        return;
      }
      this.outcomes.delete(ip);
    }
    const waiters = this.running.get(ip);
    if (waiters !== undefined) {
      if (waiters.length >= MAX_WAITERS) {
        this.counters.waitersFull++;
        return;
      }
      waiters.push(cb);
      this.counters.coalesced++;
      return;
    }
    const b = this.bucketOf(vm, now);
    if (b.tokens < 1) {
      this.counters.rateLimited++;
      return;
    }
    if (this.inflight >= this.maxInflight) {
      this.counters.overCap++;
      return;
    }
    b.tokens -= 1;
    b.inflight++;
    this.inflight++;
    this.counters.sent++;
    const list = [cb];
    this.running.set(ip, list);
    const finish = (ok: boolean) => {
      this.inflight--;
      b.inflight--;
      this.running.delete(ip);
      this.remember(ip, ok);
      if (ok) {
        this.counters.answered++;
        for (const w of list) w();
      } else {
        this.counters.unanswered++;
      }
    };
    this.pinger(ip, this.timeoutMs).then(finish, () => finish(false));
  }

  /**
   * As a QuotaStats: `used`/`total` are probes running and maxInflight,
   * `perVm` the burst a VM may start at once, `refusedVm` requests over a
   * VM's rate, `refusedTotal` over maxInflight, `maxVmUsed` the most probes
   * one VM has running.
   */
  limits(): QuotaStats {
    let maxVmUsed = 0;
    for (const b of this.buckets.values()) if (b.inflight > maxVmUsed) maxVmUsed = b.inflight;
    return { used: this.inflight, total: this.maxInflight, perVm: this.burst, refusedVm: this.counters.rateLimited, refusedTotal: this.counters.overCap, maxVmUsed };
  }

  private bucketOf(vm: number, now: number): Bucket {
    let b = this.buckets.get(vm);
    if (b === undefined) {
      if (this.buckets.size >= MAX_BUCKETS) this.pruneBuckets(now);
      b = { tokens: this.burst, at: now, inflight: 0 };
      this.buckets.set(vm, b);
      return b;
    }
    if (now > b.at) {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.rate) / 1000);
      b.at = now;
    }
    return b;
  }

  /** Buckets refilled to the burst with nothing running are as good as new: VMs that left or went quiet. */
  private pruneBuckets(now: number): void {
    for (const [vm, b] of this.buckets) {
      if (b.inflight === 0 && b.tokens + ((now - b.at) * this.rate) / 1000 >= this.burst) this.buckets.delete(vm);
    }
  }

  private remember(ip: number, ok: boolean): void {
    const now = this.now();
    if (this.outcomes.size >= MAX_CACHED) {
      for (const [k, v] of this.outcomes) {
        if (now - v.at >= this.cacheMs || this.outcomes.size >= MAX_CACHED) this.outcomes.delete(k);
        else break;
      }
    }
    this.outcomes.set(ip, { at: now, ok });
  }
}
