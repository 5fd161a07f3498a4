/**
 * Host → guest port forwarding. Each forward owns one host listener (TCP
 * server, UDP socket or Unix socket server); every accepted connection or
 * UDP client is handed to the engine, which reaches the guest through its
 * own stack.
 *
 * What the guest sees as the source:
 * - default: the host alias (e.g. 192.168.65.2) and a port chosen here from
 *   49152–65535, unique among live forwarded flows, so two host clients can
 *   never map onto the same 4-tuple in the guest (they could if we reused the
 *   clients' own ports: 127.0.0.1:5000 and 10.0.0.7:5000 would collide).
 * - source-IP preservation: the client's own IPv4 address and port. A
 *   loopback client (127/8, ::1) shows as the host alias with its own port,
 *   because a guest drops packets that claim to come from its own loopback.
 *   IPv6 clients and Unix clients have no IPv4 address and use the default.
 *
 * Errors read like dockerd's, since users know those from `docker run -p`.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import { unixPathState } from '../unix-path.js';
import net from 'node:net';
import { VnetkitError } from '../errors.js';
import { nullLogger, type Logger } from '../log.js';
import { parseIPv4 } from '../wire/addr.js';
import {
  canonicalLocal, checkLocal, formatHostPort, parseHostPort, parseRemote,
  type ForwardProtocol, type ForwardRequest, type SubnetView,
} from './forward-spec.js';

export type { ForwardRequest, ForwardProtocol } from './forward-spec.js';

/** The part of the engine the forwarder uses. */
export interface ForwardEngine {
  readonly config: SubnetView;
  openTcpToGuest(guestIp: number, guestPort: number, socket: net.Socket, opts?: { srcIp?: number; srcPort?: number }): boolean | void;
  openUdpToGuest(guestIp: number, guestPort: number, srcIp: number, srcPort: number, onReply: (data: Buffer) => void): { send(data: Uint8Array): boolean | void; close(): void };
}

export const ForwardErrorCodes = {
  BAD_REQUEST: 'ERR_VNETKIT_FORWARD_BAD_REQUEST',
  EXISTS: 'ERR_VNETKIT_FORWARD_EXISTS',
  NOT_FOUND: 'ERR_VNETKIT_FORWARD_NOT_FOUND',
  BIND: 'ERR_VNETKIT_FORWARD_BIND',
  CLOSED: 'ERR_VNETKIT_FORWARD_CLOSED',
} as const;

/** A refused expose/unexpose; `status` is the HTTP status the control API answers with. */
export class ForwardError extends VnetkitError {
  constructor(code: string, message: string, readonly status: number, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ForwardError';
  }
}

export interface ForwarderOptions {
  sourceIpPreservation?: boolean;
  log?: Logger;
  /** A UDP client with no traffic for this long is forgotten (default 90 000 ms, gvproxy's conntrack). */
  udpIdleMs?: number;
  /** UDP clients tracked per forward; the least recently active is dropped past it (default 1024). */
  maxUdpClients?: number;
  /** Concurrent connections per TCP/Unix forward (default 4096); more are refused by the listener. */
  maxConnections?: number;
  /** Mode of Unix forward sockets (default 0o600: only this user may connect). */
  unixMode?: number;
}

interface UdpClient {
  key: string;
  address: string;
  port: number;
  srcIp: number;
  srcPort: number;
  channel: { send(data: Uint8Array): boolean | void; close(): void };
  last: number;
}

interface Forward {
  req: ForwardRequest;
  guestIp: number;
  guestPort: number;
  close(): Promise<void>;
  conns: Set<net.Socket>;
  udpClients?: Map<string, UdpClient>;
}

const EPHEMERAL_LO = 49152;
const EPHEMERAL_N = 65536 - EPHEMERAL_LO;

/** Source ports handed to forwarded flows; one set per protocol so TCP and UDP do not compete. */
class PortPool {
  private readonly used = new Set<number>();
  private next = 0;

  /** `want` if free (source-IP preservation), else the next free ephemeral port; -1 when all are in use. */
  take(ip: number, want?: number): number {
    if (want !== undefined && want > 0 && this.tryTake(ip, want)) return want;
    for (let i = 0; i < EPHEMERAL_N; i++) {
      const p = EPHEMERAL_LO + ((this.next + i) % EPHEMERAL_N);
      if (this.tryTake(ip, p)) {
        this.next = (this.next + i + 1) % EPHEMERAL_N;
        return p;
      }
    }
    return -1;
  }

  private tryTake(ip: number, port: number): boolean {
    const k = ip * 65536 + port;
    if (this.used.has(k)) return false;
    this.used.add(k);
    return true;
  }

  release(ip: number, port: number): void {
    this.used.delete(ip * 65536 + port);
  }

  get size(): number {
    return this.used.size;
  }
}

function key(protocol: ForwardProtocol, local: string): string {
  return `${protocol}:${local}`;
}

/** dockerd's wording for a failed bind (what `docker run -p` users know). */
export function bindErrorText(protocol: ForwardProtocol, local: string, err: NodeJS.ErrnoException): string {
  const proto = protocol === 'unix' ? 'unix' : protocol;
  switch (err.code) {
    case 'EADDRINUSE':
      return protocol === 'unix' ? `Bind for ${local} failed: address already in use` : `Bind for ${local} failed: port is already allocated`;
    case 'EADDRNOTAVAIL':
      return `listen ${proto} ${local}: bind: cannot assign requested address`;
    case 'EACCES':
    case 'EPERM':
      return `Bind for ${local} failed: permission denied`;
    default:
      return `listen ${proto} ${local}: ${err.message}`;
  }
}

export class Forwarder {
  private readonly forwards = new Map<string, Forward>();
  /** Keys whose listener is being bound, so a concurrent duplicate is refused too. */
  private readonly pending = new Set<string>();
  private readonly tcpPorts = new PortPool();
  private readonly udpPorts = new PortPool();
  private readonly log: Logger;
  private readonly preserve: boolean;
  private readonly udpIdleMs: number;
  private readonly maxUdpClients: number;
  private readonly maxConnections: number;
  private readonly unixMode: number;
  private sweeper?: NodeJS.Timeout;
  private closed = false;
  readonly counters = { connections: 0, refused: 0, udpClients: 0, udpDatagramsIn: 0, udpDatagramsOut: 0, udpDropped: 0 };

  constructor(private readonly engine: ForwardEngine, opts: ForwarderOptions = {}) {
    this.log = opts.log ?? nullLogger;
    this.preserve = opts.sourceIpPreservation ?? false;
    this.udpIdleMs = opts.udpIdleMs ?? 90_000;
    this.maxUdpClients = opts.maxUdpClients ?? 1024;
    this.maxConnections = opts.maxConnections ?? 4096;
    this.unixMode = opts.unixMode ?? 0o600;
  }

  /** Start a forward. Resolves with the canonical request (port 0 replaced by the bound port). */
  async expose(input: unknown): Promise<ForwardRequest> {
    if (this.closed) throw new ForwardError(ForwardErrorCodes.CLOSED, 'forwarder is closed', 503);
    const req = this.check(input);
    const r = parseRemote(req.remote, this.engine.config);
    if (typeof r === 'string') throw new ForwardError(ForwardErrorCodes.BAD_REQUEST, r, 400);
    const k = key(req.protocol, req.local);
    const wildPort = req.protocol !== 'unix' && (parseHostPort(req.local) as { port: number }).port === 0;
    if (!wildPort && (this.forwards.has(k) || this.pending.has(k))) {
      throw new ForwardError(ForwardErrorCodes.EXISTS, `Bind for ${req.local} failed: port is already allocated (a ${req.protocol} forward to ${this.forwards.get(k)?.req.remote ?? 'a guest'} is running; unexpose it first)`, 409);
    }
    this.pending.add(k);
    try {
      const fwd = await this.open(req, r.ip, r.port);
      if (this.closed) {
        await fwd.close();
        throw new ForwardError(ForwardErrorCodes.CLOSED, 'forwarder is closed', 503);
      }
      this.forwards.set(key(fwd.req.protocol, fwd.req.local), fwd);
      this.log.info('forward exposed', { protocol: fwd.req.protocol, local: fwd.req.local, remote: fwd.req.remote });
      return { ...fwd.req };
    } finally {
      this.pending.delete(k);
    }
  }

  /** Stop a forward and end its connections. */
  async unexpose(input: unknown): Promise<void> {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ForwardError(ForwardErrorCodes.BAD_REQUEST, 'request must be a JSON object {local, protocol}', 400);
    const o = input as Record<string, unknown>;
    const protocol = o.protocol ?? 'tcp';
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'unix') throw new ForwardError(ForwardErrorCodes.BAD_REQUEST, `protocol must be tcp, udp or unix, got ${JSON.stringify(protocol)}`, 400);
    if (o.local === undefined) throw new ForwardError(ForwardErrorCodes.BAD_REQUEST, 'missing field "local"', 400);
    const bad = checkLocal(protocol, o.local);
    if (bad !== null) throw new ForwardError(ForwardErrorCodes.BAD_REQUEST, bad, 400);
    const local = canonicalLocal(protocol, o.local as string);
    const k = key(protocol, local);
    const fwd = this.forwards.get(k);
    if (fwd === undefined) throw new ForwardError(ForwardErrorCodes.NOT_FOUND, `no ${protocol} forward on ${local} (proxy not found)`, 404);
    this.forwards.delete(k);
    await fwd.close();
    this.log.info('forward removed', { protocol, local, remote: fwd.req.remote });
  }

  /** Running forwards, sorted by local like gvproxy's /services/forwarder/all. */
  list(): ForwardRequest[] {
    return [...this.forwards.values()].map((f) => ({ ...f.req })).sort((a, b) => (a.local < b.local ? -1 : a.local > b.local ? 1 : a.protocol < b.protocol ? -1 : 1));
  }

  /** Live host connections and UDP clients across all forwards. */
  activeCount(): { connections: number; udpClients: number } {
    let connections = 0;
    let udpClients = 0;
    for (const f of this.forwards.values()) {
      connections += f.conns.size;
      udpClients += f.udpClients?.size ?? 0;
    }
    return { connections, udpClients };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    const all = [...this.forwards.values()];
    this.forwards.clear();
    await Promise.all(all.map((f) => f.close()));
  }

  private check(input: unknown): ForwardRequest {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ForwardError(ForwardErrorCodes.BAD_REQUEST, 'request must be a JSON object {local, remote, protocol}', 400);
    const o = input as Record<string, unknown>;
    for (const f of ['local', 'remote'] as const) if (o[f] === undefined || o[f] === null) throw new ForwardError(ForwardErrorCodes.BAD_REQUEST, `missing field "${f}"`, 400);
    // gvproxy treats an absent protocol as tcp; so do we.
    const protocol = o.protocol === undefined || o.protocol === '' ? 'tcp' : o.protocol;
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'unix') throw new ForwardError(ForwardErrorCodes.BAD_REQUEST, `protocol must be tcp, udp or unix, got ${JSON.stringify(protocol)}`, 400);
    const bad = checkLocal(protocol, o.local);
    if (bad !== null) throw new ForwardError(ForwardErrorCodes.BAD_REQUEST, bad, 400);
    if (typeof o.remote !== 'string') throw new ForwardError(ForwardErrorCodes.BAD_REQUEST, 'field "remote" must be a string "GUESTIP:PORT"', 400);
    return { protocol, local: canonicalLocal(protocol, o.local as string), remote: o.remote };
  }

  private open(req: ForwardRequest, guestIp: number, guestPort: number): Promise<Forward> {
    switch (req.protocol) {
      case 'tcp':
        return this.openStream(req, guestIp, guestPort);
      case 'unix':
        return this.openStream(req, guestIp, guestPort);
      case 'udp':
        return this.openUdp(req, guestIp, guestPort);
    }
  }

  /** Source the guest should see for a connection from `address:port`. */
  private source(pool: PortPool, address: string | undefined, port: number | undefined): { ip: number; port: number } | null {
    const hostIp = this.engine.config.hostIp;
    if (this.preserve && address !== undefined && port !== undefined) {
      const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
      if (net.isIPv4(v4)) {
        const ip = v4.startsWith('127.') ? hostIp : parseIPv4(v4);
        const p = pool.take(ip, port);
        return p < 0 ? null : { ip, port: p };
      }
      if (v4 === '::1') {
        const p = pool.take(hostIp, port);
        return p < 0 ? null : { ip: hostIp, port: p };
      }
    }
    const p = pool.take(hostIp);
    return p < 0 ? null : { ip: hostIp, port: p };
  }

  private async openStream(req: ForwardRequest, guestIp: number, guestPort: number): Promise<Forward> {
    const conns = new Set<net.Socket>();
    const server = net.createServer((sock) => {
      const src = this.source(this.tcpPorts, sock.remoteAddress, sock.remotePort);
      if (src === null) {
        this.counters.refused++;
        this.log.limited('forward-no-ports', 'warn', 'forward refused a connection: no free source port', { local: req.local });
        sock.destroy();
        return;
      }
      this.counters.connections++;
      conns.add(sock);
      sock.once('close', () => {
        conns.delete(sock);
        this.tcpPorts.release(src.ip, src.port);
      });
      // The engine owns the socket from here (errors included); this listener
      // only stops an early reset from being an unhandled 'error' event.
      sock.on('error', () => {});
      let ok: boolean | void;
      try {
        ok = this.engine.openTcpToGuest(guestIp, guestPort, sock, { srcIp: src.ip, srcPort: src.port });
      } catch (e) {
        this.log.limited('forward-open-failed', 'warn', 'forward could not open a guest connection', { local: req.local, remote: req.remote, error: e as Error });
        sock.destroy();
        return;
      }
      if (ok === false) {
        this.counters.refused++;
        this.log.limited(`forward-unreachable-${req.remote}`, 'info', 'forwarded connection refused: guest not known or flow table full', { local: req.local, remote: req.remote });
      }
    });
    server.maxConnections = this.maxConnections;
    let unixIno = -1;
    let local = req.local;
    if (req.protocol === 'unix') {
      await this.clearStaleUnix(req.local);
      await listenOrThrow(server, { path: req.local, exclusive: true }, req);
      try {
        fs.chmodSync(req.local, this.unixMode);
        unixIno = fs.lstatSync(req.local).ino;
      } catch (e) {
        server.close();
        throw new ForwardError(ForwardErrorCodes.BIND, `listen unix ${req.local}: ${(e as Error).message}`, 500, { cause: e });
      }
    } else {
      const hp = parseHostPort(req.local) as { host: string; port: number };
      await listenOrThrow(server, { host: hp.host, port: hp.port, exclusive: true, ipv6Only: hp.host.includes(':') }, req);
      local = formatHostPort({ host: hp.host, port: (server.address() as net.AddressInfo).port });
    }
    return {
      req: { ...req, local },
      guestIp,
      guestPort,
      conns,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => {
            if (unixIno >= 0) {
              // Remove only our own socket file, not one a later process bound.
              try {
                if (fs.lstatSync(req.local).ino === unixIno) fs.unlinkSync(req.local);
              } catch {
                /* already gone */
              }
            }
            resolve();
          });
          for (const c of conns) c.destroy();
        }),
    };
  }

  /** A socket file nobody answers on is left from a crash: remove it. Anything else at the path is an error. */
  private async clearStaleUnix(p: string): Promise<void> {
    const state = await unixPathState(p);
    if (state === 'not-socket') throw new ForwardError(ForwardErrorCodes.BIND, `Bind for ${p} failed: the path exists and is not a socket`, 409);
    if (state === 'live') throw new ForwardError(ForwardErrorCodes.BIND, `Bind for ${p} failed: address already in use`, 409);
    if (state !== 'stale') return;
    try {
      fs.unlinkSync(p);
    } catch (e) {
      throw new ForwardError(ForwardErrorCodes.BIND, `Bind for ${p} failed: cannot remove stale socket: ${(e as Error).message}`, 500, { cause: e });
    }
  }


  private async openUdp(req: ForwardRequest, guestIp: number, guestPort: number): Promise<Forward> {
    const hp = parseHostPort(req.local) as { host: string; port: number };
    const v6 = hp.host.includes(':');
    const sock = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6 });
    const clients = new Map<string, UdpClient>();
    const drop = (c: UdpClient): void => {
      clients.delete(c.key);
      c.channel.close();
      this.udpPorts.release(c.srcIp, c.srcPort);
    };
    sock.on('message', (msg, rinfo) => {
      this.counters.udpDatagramsIn++;
      const k = `${rinfo.address}|${rinfo.port}`;
      let c = clients.get(k);
      if (c === undefined) {
        if (clients.size >= this.maxUdpClients) {
          // Map order is insertion order and active clients are re-inserted: the first is the stalest.
          const oldest = clients.values().next().value;
          if (oldest !== undefined) drop(oldest);
        }
        const src = this.source(this.udpPorts, rinfo.address, rinfo.port);
        if (src === null) {
          this.counters.udpDropped++;
          this.log.limited('forward-no-ports', 'warn', 'forward dropped a datagram: no free source port', { local: req.local });
          return;
        }
        const address = rinfo.address;
        const port = rinfo.port;
        const channel = this.engine.openUdpToGuest(guestIp, guestPort, src.ip, src.port, (data) => {
          this.counters.udpDatagramsOut++;
          sock.send(data, port, address, (err) => {
            if (err) this.log.limited('forward-udp-reply', 'debug', 'forward could not send a UDP reply', { local: req.local, error: err });
          });
          const cl = clients.get(k);
          if (cl !== undefined) cl.last = Date.now();
        });
        c = { key: k, address, port, srcIp: src.ip, srcPort: src.port, channel, last: Date.now() };
        this.counters.udpClients++;
      } else {
        clients.delete(k);
        c.last = Date.now();
      }
      clients.set(k, c);
      if (c.channel.send(msg) === false) {
        this.counters.udpDropped++;
        this.log.limited(`forward-unreachable-${req.remote}`, 'info', 'forwarded datagram dropped: guest not known', { local: req.local, remote: req.remote });
      }
    });
    sock.on('error', (err) => this.log.limited('forward-udp-error', 'warn', 'forward UDP socket error', { local: req.local, error: err }));
    await new Promise<void>((resolve, reject) => {
      const onErr = (e: NodeJS.ErrnoException): void => reject(new ForwardError(ForwardErrorCodes.BIND, bindErrorText('udp', req.local, e), e.code === 'EADDRINUSE' ? 409 : 500, { cause: e }));
      sock.once('error', onErr);
      sock.bind({ address: hp.host, port: hp.port, exclusive: true }, () => {
        sock.off('error', onErr);
        resolve();
      });
    });
    this.startSweeper();
    const local = formatHostPort({ host: hp.host, port: sock.address().port });
    return {
      req: { ...req, local },
      guestIp,
      guestPort,
      conns: new Set(),
      udpClients: clients,
      close: () =>
        new Promise<void>((resolve) => {
          for (const c of [...clients.values()]) drop(c);
          sock.close(() => resolve());
        }),
    };
  }

  private startSweeper(): void {
    if (this.sweeper !== undefined) return;
    const every = Math.max(100, Math.min(10_000, this.udpIdleMs / 2));
    this.sweeper = setInterval(() => {
      const cutoff = Date.now() - this.udpIdleMs;
      for (const f of this.forwards.values()) {
        if (f.udpClients === undefined) continue;
        for (const c of [...f.udpClients.values()]) {
          if (c.last >= cutoff) continue;
          f.udpClients.delete(c.key);
          c.channel.close();
          this.udpPorts.release(c.srcIp, c.srcPort);
        }
      }
    }, every);
    this.sweeper.unref();
  }
}

function listenOrThrow(server: net.Server, opts: net.ListenOptions, req: ForwardRequest): Promise<void> {
  return new Promise((resolve, reject) => {
    const onErr = (e: NodeJS.ErrnoException): void => reject(new ForwardError(ForwardErrorCodes.BIND, bindErrorText(req.protocol, req.local, e), e.code === 'EADDRINUSE' ? 409 : 500, { cause: e }));
    server.once('error', onErr);
    server.listen(opts, () => {
      server.off('error', onErr);
      resolve();
    });
  });
}
