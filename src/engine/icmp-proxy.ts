/**
 * Echo requests to addresses beyond the engine. Node has no ICMP socket, so
 * the platform's own `ping` (which uses the kernel's unprivileged ICMP
 * datagram socket or its setuid/capability bit) sends one real echo to the
 * destination; only when that echo is answered does the guest get a reply.
 * Without a usable `ping`, nothing is answered: vnetkit never forges a reply
 * for an address it did not reach.
 *
 * Bounded: at most `maxInflight` probes at once; more are dropped and
 * counted (a guest flood-pinging costs at most that many processes).
 */
import { execFile } from 'node:child_process';
import { formatIPv4 } from '../wire/addr.js';

export type Pinger = (ip: number, timeoutMs: number) => Promise<boolean>;

/** One echo through the system `ping`: true when the destination answered. */
export const systemPing: Pinger = (ip, timeoutMs) =>
  new Promise((resolve) => {
    const secs = String(Math.max(1, Math.ceil(timeoutMs / 1000)));
    execFile('ping', ['-n', '-q', '-c', '1', '-W', secs, formatIPv4(ip)], { timeout: timeoutMs + 1000 }, (err) => resolve(err === null));
  });

export class IcmpProxy {
  private inflight = 0;
  readonly counters = { sent: 0, answered: 0, unanswered: 0, overCap: 0 };

  constructor(private readonly pinger: Pinger, private readonly maxInflight = 32, private readonly timeoutMs = 2000) {}

  /** Probe `ip`; `onReply` runs only if it answered. */
  probe(ip: number, onReply: () => void): void {
    if (this.inflight >= this.maxInflight) {
      this.counters.overCap++;
      return;
    }
    this.inflight++;
    this.counters.sent++;
    this.pinger(ip, this.timeoutMs).then(
      (ok) => {
        this.inflight--;
        if (ok) {
          this.counters.answered++;
          onReply();
        } else {
          this.counters.unanswered++;
        }
      },
      () => {
        this.inflight--;
        this.counters.unanswered++;
      },
    );
  }
}
