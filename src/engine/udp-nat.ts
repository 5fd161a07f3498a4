/**
 * UDP NAT with endpoint-independent mapping: one host socket per guest
 * (ip, port), whatever the destination, so a guest's STUN-style traversal
 * sees one external port. Replies are accepted only from remotes the guest
 * has sent to (address-and-port-dependent filtering), so the host socket is
 * not an open door. Replies keep the true remote address and port; the host's
 * 127.0.0.1 appears to the guest as the host alias.
 *
 * Datagrams to the host's own loopback (through the host alias) use a socket
 * connected to that port instead, so a closed port comes back as
 * ECONNREFUSED and the guest gets an ICMP port unreachable, as on a real
 * network.
 *
 * Bounded per VM and in total (a VM is the engine's attachment id):
 * - a VM holds at most `perVm` bindings; a new one past that replaces the
 *   VM's own least recently active binding (`evictedOwn`);
 * - all VMs together hold at most `maxFlows`. When that is full, a VM holding
 *   at least its fair share (floor(maxFlows / VMs holding bindings, itself
 *   included)) replaces its own least recently active binding; a VM under its
 *   share takes the least recently active binding of the VM holding the most
 *   (`evictedFair`). A full table with one VM under its share always has one
 *   over it, so that victim is over its share and no VM's traffic evicts the
 *   binding of a VM within its share. Should no VM be over its share, the new
 *   binding is refused (`tableFull`, the datagram dropped).
 * - every binding's host socket is one unit of the engine's host-socket
 *   budget (`sockets`, shared with TCP). Refused there, a VM gives up its own
 *   least recently active binding for it; with none, the datagram is dropped
 *   (`socketRefused`) and a warning logged once per interval.
 * Idle bindings expire after `idleMs`.
 */
import dgram from 'node:dgram';
import { formatIPv4 } from '../wire/addr.js';
import type { Logger } from '../log.js';
import { Quota, type QuotaStats } from './quota.js';

const LOOPBACK = 0x7f000001;
/** Remotes remembered per binding for filtering; the oldest is forgotten past this. */
const MAX_PEERS = 256;
/** Datagrams held per loopback binding while its socket connects. */
const MAX_WAITING = 64;
/**
 * How long a closed socket's local port still counts as the NAT's own: a datagram it sent to a
 * loopback listener just before closing may be read by that listener after.
 */
const CLOSED_PORT_GRACE_MS = 5000;

type Key = number | string;

export interface UdpBinding<P> {
  readonly guestIp: number;
  readonly guestPort: number;
  readonly port: P;
  /** The VM (attachment id) the binding is counted against. */
  readonly vm: number;
  readonly guestMac: Uint8Array;
  socket: dgram.Socket;
  lastActive: number;
  peers: Set<number>;
  txPackets: number;
  rxPackets: number;
  txBytes: number;
  rxBytes: number;
  createdAt: number;
  /** Engine clock at creation (for ages). */
  createdAtMs: number;
  /** For a loopback binding: the host port it is connected to. */
  loopbackPort?: number;
  /** Length of the last datagram sent (to quote it in a port unreachable). */
  lastLen: number;
  /** Loopback bindings: datagrams waiting for connect() to finish (a few at most). */
  waiting?: Buffer[];
  /** The host socket's own port once bound (see ownsLocalPort). */
  localPort?: number;
  /** Set once removed: its socket and budget units are given back exactly once. */
  closed?: boolean;
}

export interface UdpNatOptions<P> {
  idleMs: number;
  /** Bindings of all VMs together. */
  maxFlows: number;
  /** Bindings of one VM (default maxFlows). */
  perVm?: number;
  /** The VM a port belongs to. */
  vmOf(port: P): number;
  /** The host-socket budget each binding's socket takes one unit of (shared with TCP). */
  sockets?: Quota;
  hostIp: number;
  log: Logger;
  now: () => number;
  /** A datagram from `srcIp:srcPort` (already translated to guest-visible addresses) for a binding's guest. */
  deliver(b: UdpBinding<P>, srcIp: number, srcPort: number, data: Buffer): void;
  /** The host refused a loopback binding's datagram: nothing listens on that port. */
  refused(b: UdpBinding<P>): void;
}

export class UdpNat<P> {
  /** Each VM's bindings; Map order doubles as that VM's LRU order. */
  private readonly byVm = new Map<number, Map<Key, UdpBinding<P>>>();
  /** Local ports of the NAT's host sockets, with how many sockets hold each. */
  private readonly localPorts = new Map<number, number>();
  /** Local ports of sockets closed lately, and until when they still count as the NAT's own. */
  private readonly closedPorts = new Map<number, number>();
  private readonly quota: Quota;
  private count = 0;
  private readonly timer: NodeJS.Timeout;
  readonly counters = {
    created: 0, evicted: 0, evictedOwn: 0, evictedFair: 0, tableFull: 0, socketRefused: 0,
    expired: 0, filtered: 0, sendErrors: 0, refused: 0, socketErrors: 0, tx: 0, rx: 0,
  };

  constructor(private readonly o: UdpNatOptions<P>) {
    this.quota = new Quota('udpBindings', o.maxFlows, Math.min(o.perVm ?? o.maxFlows, o.maxFlows));
    this.timer = setInterval(() => this.expire(), Math.min(10_000, Math.max(250, o.idleMs / 4)));
    this.timer.unref();
  }

  get size(): number {
    return this.count;
  }

  list(): UdpBinding<P>[] {
    const out: UdpBinding<P>[] = [];
    for (const m of this.byVm.values()) for (const b of m.values()) out.push(b);
    return out;
  }

  /** Bindings in use, the bounds, and refusals (a VM at its own bound evicts its own oldest, so refusedVm stays 0). */
  limits(): QuotaStats {
    return this.quota.stats();
  }

  /** Whether one of the NAT's host sockets is bound to local port `port` (so a datagram from it is the NAT's own). */
  ownsLocalPort(port: number): boolean {
    return this.localPorts.has(port) || (this.closedPorts.get(port) ?? -Infinity) >= this.o.now();
  }

  /**
   * Send a guest datagram to `hostIp:dstPort` (hostIp already rewritten to
   * 127.0.0.1 for the host alias by the caller's policy). `data` is copied.
   * Returns false when the datagram was dropped for want of a binding.
   */
  send(port: P, guestMac: Uint8Array, guestIp: number, guestPort: number, dstIp: number, dstPort: number,
    data: Uint8Array, off: number, len: number): boolean {
    const vm = this.o.vmOf(port);
    const loopback = dstIp === LOOPBACK;
    const key: Key = loopback ? `${guestIp}:${guestPort}:${dstPort}` : guestIp * 65536 + guestPort;
    let mine = this.byVm.get(vm);
    let b = mine?.get(key);
    if (b === undefined) {
      b = this.create(vm, port, guestMac, guestIp, guestPort, key, loopback ? dstPort : undefined);
      if (b === undefined) return false;
    } else {
      mine!.delete(key);
      mine!.set(key, b);
    }
    b.lastActive = this.o.now();
    const peer = dstIp * 65536 + dstPort;
    if (!b.peers.has(peer)) {
      if (b.peers.size >= MAX_PEERS) b.peers.delete(b.peers.values().next().value as number);
      b.peers.add(peer);
    }
    b.txPackets++;
    b.txBytes += len;
    b.lastLen = len;
    this.counters.tx++;
    const copy = Buffer.from(data.subarray(off, off + len));
    const done = (err: Error | null) => {
      if (err) {
        this.counters.sendErrors++;
        this.o.log.limited('udp-send', 'debug', 'udp send failed', { dst: `${formatIPv4(dstIp)}:${dstPort}`, error: err.message });
      }
    };
    if (b.waiting !== undefined) {
      if (b.waiting.length < MAX_WAITING) b.waiting.push(copy);
      else this.counters.sendErrors++;
    } else if (b.loopbackPort !== undefined) {
      b.socket.send(copy, done);
    } else {
      b.socket.send(copy, dstPort, formatIPv4(dstIp), done);
    }
    return true;
  }

  /**
   * Room for one more binding of `vm`, by the policy in the header comment:
   * true once a binding slot and a host socket are taken for it.
   */
  private admit(vm: number): boolean {
    const q = this.quota;
    if (q.usedBy(vm) >= q.perVm) {
      this.evictOldestOf(vm);
      this.counters.evictedOwn++;
    } else if (q.used >= q.total) {
      const mine = q.usedBy(vm);
      const holders = this.byVm.size + (mine === 0 ? 1 : 0);
      const share = Math.floor(q.total / holders);
      if (mine > 0 && mine >= share) {
        this.evictOldestOf(vm);
        this.counters.evictedOwn++;
      } else {
        let victim = -1;
        let most = 0;
        for (const [v, m] of this.byVm) {
          if (m.size > most) {
            most = m.size;
            victim = v;
          }
        }
        if (victim < 0 || victim === vm || most <= share) {
          q.take(vm); // full: counted as a refusal at the global bound
          this.counters.tableFull++;
          this.o.log.limited('udp-full', 'warn', 'UDP binding table full: datagram dropped', { vm, max: q.total, share });
          return false;
        }
        this.evictOldestOf(victim);
        this.counters.evictedFair++;
        this.o.log.limited('udp-evict', 'info', 'UDP binding table full: evicted the least recently active binding of the VM holding the most', { vm: victim, for: vm, held: most, share });
      }
    }
    const s = this.o.sockets;
    if (s !== undefined) {
      // Out of host sockets: the VM's own oldest binding gives its socket up, if it has one.
      if (!s.fits(vm) && q.usedBy(vm) > 0) {
        this.evictOldestOf(vm);
        this.counters.evictedOwn++;
      }
      if (!s.take(vm)) {
        this.counters.socketRefused++;
        this.o.log.limited('udp-sockets', 'warn', 'host socket budget reached: UDP datagram dropped', { vm, used: s.used, total: s.total, perVm: s.perVm });
        return false;
      }
    }
    q.take(vm);
    return true;
  }

  private evictOldestOf(vm: number): void {
    const m = this.byVm.get(vm);
    if (m === undefined) return;
    const oldest = m.keys().next().value as Key;
    this.remove(m.get(oldest)!);
    this.counters.evicted++;
  }

  private create(vm: number, port: P, guestMac: Uint8Array, guestIp: number, guestPort: number, key: Key, loopbackPort?: number): UdpBinding<P> | undefined {
    if (!this.admit(vm)) return undefined;
    const socket = dgram.createSocket({ type: 'udp4' });
    const b: UdpBinding<P> = {
      guestIp, guestPort, port, vm, guestMac: guestMac.slice(), socket, lastActive: this.o.now(),
      peers: new Set(), txPackets: 0, rxPackets: 0, txBytes: 0, rxBytes: 0, createdAt: Date.now(), createdAtMs: this.o.now(),
      loopbackPort, lastLen: 0,
    };
    socket.on('message', (msg, rinfo) => {
      if (rinfo.family !== 'IPv4') return;
      const p = rinfo.address.split('.');
      const src = ((+p[0] << 24) | (+p[1] << 16) | (+p[2] << 8) | +p[3]) >>> 0;
      if (!b.peers.has(src * 65536 + rinfo.port)) {
        this.counters.filtered++;
        return;
      }
      b.lastActive = this.o.now();
      b.rxPackets++;
      b.rxBytes += msg.length;
      this.counters.rx++;
      this.o.deliver(b, src === LOOPBACK ? this.o.hostIp : src, rinfo.port, msg);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' && b.loopbackPort !== undefined) {
        this.counters.refused++;
        this.o.refused(b);
        return;
      }
      this.counters.socketErrors++;
      // Out of descriptors is the host's limit, not one guest's mistake: say so.
      const level = err.code === 'EMFILE' || err.code === 'ENFILE' ? 'warn' : 'debug';
      this.o.log.limited(`udp-socket-${level}`, level, 'udp socket error', { error: err.message, code: err.code });
    });
    if (loopbackPort !== undefined) {
      // Node takes send(buf, cb) only once connected; until then datagrams wait here.
      b.waiting = [];
      socket.connect(loopbackPort, '127.0.0.1', () => {
        if (b.closed) return;
        this.noteLocalPort(b);
        const queued = b.waiting ?? [];
        b.waiting = undefined;
        for (const m of queued) socket.send(m);
      });
    } else {
      socket.bind(0, () => {
        if (!b.closed) this.noteLocalPort(b);
      });
    }
    let mine = this.byVm.get(vm);
    if (mine === undefined) {
      mine = new Map();
      this.byVm.set(vm, mine);
    }
    mine.set(key, b);
    this.count++;
    this.counters.created++;
    return b;
  }

  private noteLocalPort(b: UdpBinding<P>): void {
    try {
      b.localPort = b.socket.address().port;
    } catch {
      return; // closed meanwhile
    }
    this.localPorts.set(b.localPort, (this.localPorts.get(b.localPort) ?? 0) + 1);
  }

  private keyOf(b: UdpBinding<P>): Key {
    return b.loopbackPort !== undefined ? `${b.guestIp}:${b.guestPort}:${b.loopbackPort}` : b.guestIp * 65536 + b.guestPort;
  }

  private remove(b: UdpBinding<P>): void {
    if (b.closed) return;
    b.closed = true;
    const mine = this.byVm.get(b.vm);
    if (mine !== undefined && mine.get(this.keyOf(b)) === b) {
      mine.delete(this.keyOf(b));
      if (mine.size === 0) this.byVm.delete(b.vm);
    }
    this.count--;
    this.quota.give(b.vm);
    this.o.sockets?.give(b.vm);
    if (b.localPort !== undefined) {
      const n = (this.localPorts.get(b.localPort) ?? 1) - 1;
      if (n <= 0) this.localPorts.delete(b.localPort);
      else this.localPorts.set(b.localPort, n);
      this.closedPorts.set(b.localPort, this.o.now() + CLOSED_PORT_GRACE_MS);
    }
    try {
      b.socket.close();
    } catch {
      // already closed
    }
  }

  expire(): void {
    const now = this.o.now();
    for (const [port, until] of this.closedPorts) if (until < now) this.closedPorts.delete(port);
    for (const b of this.list()) {
      if (now - b.lastActive > this.o.idleMs) {
        this.remove(b);
        this.counters.expired++;
      }
    }
  }

  /** Drop every binding of a port (its VM disconnected), giving back all its units. */
  purge(port: P): void {
    const m = this.byVm.get(this.o.vmOf(port));
    if (m === undefined) return;
    for (const b of [...m.values()]) if (b.port === port) this.remove(b);
  }

  close(): void {
    clearInterval(this.timer);
    for (const b of this.list()) this.remove(b);
  }
}
