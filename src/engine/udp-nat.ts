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
 * Bounded: at most `maxFlows` bindings; a new binding beyond that evicts the
 * least recently active one (counted). Idle bindings expire after `idleMs`.
 */
import dgram from 'node:dgram';
import { formatIPv4 } from '../wire/addr.js';
import type { Logger } from '../log.js';

const LOOPBACK = 0x7f000001;
/** Remotes remembered per binding for filtering; the oldest is forgotten past this. */
const MAX_PEERS = 256;
/** Datagrams held per loopback binding while its socket connects. */
const MAX_WAITING = 64;

export interface UdpBinding<P> {
  readonly guestIp: number;
  readonly guestPort: number;
  readonly port: P;
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
}

export interface UdpNatOptions<P> {
  idleMs: number;
  maxFlows: number;
  hostIp: number;
  log: Logger;
  now: () => number;
  /** A datagram from `srcIp:srcPort` (already translated to guest-visible addresses) for a binding's guest. */
  deliver(b: UdpBinding<P>, srcIp: number, srcPort: number, data: Buffer): void;
  /** The host refused a loopback binding's datagram: nothing listens on that port. */
  refused(b: UdpBinding<P>): void;
}

export class UdpNat<P> {
  private readonly bindings = new Map<number | string, UdpBinding<P>>();
  private readonly timer: NodeJS.Timeout;
  readonly counters = { created: 0, evicted: 0, expired: 0, filtered: 0, sendErrors: 0, refused: 0, tx: 0, rx: 0 };

  constructor(private readonly o: UdpNatOptions<P>) {
    this.timer = setInterval(() => this.expire(), Math.min(10_000, Math.max(250, o.idleMs / 4)));
    this.timer.unref();
  }

  get size(): number {
    return this.bindings.size;
  }

  list(): UdpBinding<P>[] {
    return [...this.bindings.values()];
  }

  /**
   * Send a guest datagram to `hostIp:dstPort` (hostIp already rewritten to
   * 127.0.0.1 for the host alias by the caller's policy). `data` is copied.
   */
  send(port: P, guestMac: Uint8Array, guestIp: number, guestPort: number, dstIp: number, dstPort: number,
    data: Uint8Array, off: number, len: number): void {
    const loopback = dstIp === LOOPBACK;
    const key: number | string = loopback ? `${guestIp}:${guestPort}:${dstPort}` : guestIp * 65536 + guestPort;
    let b = this.bindings.get(key);
    if (b === undefined) {
      b = this.create(port, guestMac, guestIp, guestPort, key, loopback ? dstPort : undefined);
    } else {
      // Map order doubles as LRU order for eviction.
      this.bindings.delete(key);
      this.bindings.set(key, b);
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
  }

  private create(port: P, guestMac: Uint8Array, guestIp: number, guestPort: number, key: number | string, loopbackPort?: number): UdpBinding<P> {
    if (this.bindings.size >= this.o.maxFlows) {
      const oldest = this.bindings.keys().next().value as number | string;
      this.remove(oldest);
      this.counters.evicted++;
      this.o.log.limited('udp-evict', 'warn', 'UDP flow table full: evicted the least recently active binding', { max: this.o.maxFlows });
    }
    const socket = dgram.createSocket({ type: 'udp4' });
    const b: UdpBinding<P> = {
      guestIp, guestPort, port, guestMac: guestMac.slice(), socket, lastActive: this.o.now(),
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
      this.o.log.limited('udp-socket', 'debug', 'udp socket error', { error: err.message });
    });
    if (loopbackPort !== undefined) {
      // Node takes send(buf, cb) only once connected; until then datagrams wait here.
      b.waiting = [];
      socket.connect(loopbackPort, '127.0.0.1', () => {
        const queued = b.waiting ?? [];
        b.waiting = undefined;
        for (const m of queued) socket.send(m);
      });
    } else {
      socket.bind(0);
    }
    this.bindings.set(key, b);
    this.counters.created++;
    return b;
  }

  private remove(key: number | string): void {
    const b = this.bindings.get(key);
    if (!b) return;
    this.bindings.delete(key);
    try {
      b.socket.close();
    } catch {
      // already closed
    }
  }

  expire(): void {
    const now = this.o.now();
    for (const [key, b] of this.bindings) {
      if (now - b.lastActive > this.o.idleMs) {
        this.remove(key);
        this.counters.expired++;
      }
    }
  }

  /** Drop every binding of a port (its VM disconnected). */
  purge(port: P): void {
    for (const [key, b] of this.bindings) if (b.port === port) this.remove(key);
  }

  close(): void {
    clearInterval(this.timer);
    for (const key of [...this.bindings.keys()]) this.remove(key);
  }
}
