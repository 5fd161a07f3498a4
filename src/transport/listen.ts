/**
 * Listeners that turn incoming VM connections into VmLinks.
 *
 *   unix:///abs/path (or unix://rel/path)  stream framings
 *   tcp://127.0.0.1:PORT, tcp://[::1]:PORT stream framings, loopback only
 *                                           unless allowNonLoopback
 *   udp://127.0.0.1:PORT                   framing 'dgram'
 *
 * For 'vpnkit' links onLink runs after the handshake, so the engine sees
 * link.vpnkit from the start; links whose handshake fails are logged and
 * never reach onLink.
 */
import fs from 'node:fs';
import { unixPathState } from '../unix-path.js';
import net from 'node:net';
import { VnetkitError } from '../errors.js';
import { nullLogger } from '../log.js';
import { listenDgram, type DgramOptions } from './dgram.js';
import { TransportErrorCodes as E, transportError } from './errors.js';
import { attachStreamLink, maxFrameInFor, readerBytes, type StreamLink } from './link.js';
import { applyLinkSendBuffer, checkSendBufferBytes } from './send-buffer.js';
import { adoptWithReadBuffer } from './read-buffer.js';
import { StreamReader } from './stream-reader.js';
import type { LinkOptions, VmLink } from './types.js';

export interface ListenOptions extends LinkOptions, Pick<DgramOptions, 'idleTimeoutMs' | 'maxLinks' | 'isOwnSocket'> {
  /** Accept tcp/udp listen addresses outside 127.0.0.0/8 and ::1. */
  allowNonLoopback?: boolean;
  /** chmod applied to a unix socket after it is bound (e.g. 0o600). */
  mode?: number;
}

export interface Listener {
  /** Canonical URL with the bound port (tcp://127.0.0.1:40123). */
  readonly url: string;
  /** Socket path or host:port. */
  readonly address: string;
  /** Stop accepting, close every link this listener produced, remove the unix socket file. */
  close(): Promise<void>;
}

type Parsed = { kind: 'unix'; path: string } | { kind: 'tcp' | 'udp'; host: string; port: number };

export function parseListenUrl(url: string): Parsed | VnetkitError {
  if (url.startsWith('unix://')) {
    const path = url.slice('unix://'.length);
    if (path.length === 0) return transportError(E.BAD_URL, `listen URL ${url} has no socket path`);
    return { kind: 'unix', path };
  }
  const m = /^(tcp|udp):\/\/(\[[0-9a-fA-F:.]+\]|[^:/[\]]+):(\d{1,5})\/?$/.exec(url);
  if (m === null) return transportError(E.BAD_URL, `unsupported listen URL ${JSON.stringify(url)} (want unix:///path, tcp://127.0.0.1:PORT or udp://127.0.0.1:PORT)`);
  const port = Number(m[3]);
  if (port > 65535) return transportError(E.BAD_URL, `port out of range in ${url}`);
  const host = m[2].startsWith('[') ? m[2].slice(1, -1) : m[2];
  return { kind: m[1] as 'tcp' | 'udp', host, port };
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  return false;
}

/**
 * How guests of an engine could reach a VM listener at `url`, or null when they cannot:
 * 'loopback' for tcp/udp on the host's loopback while the host alias leads there
 * (hostLoopback), 'address' for tcp/udp on any other host address (guest flows to host
 * addresses are relayed whatever hostLoopback says). Unix sockets and unparsable URLs
 * give null (listen() reports the latter).
 */
export function guestReachable(url: string, hostLoopback: boolean): 'loopback' | 'address' | null {
  const parsed = parseListenUrl(url);
  if (parsed instanceof VnetkitError || parsed.kind === 'unix') return null;
  if (!isLoopback(parsed.host)) return 'address';
  return hostLoopback ? 'loopback' : null;
}

export async function listen(url: string, opts: ListenOptions, onLink: (link: VmLink) => void): Promise<Listener> {
  const parsed = parseListenUrl(url);
  if (parsed instanceof VnetkitError) throw parsed;
  if (parsed.kind !== 'unix' && !opts.allowNonLoopback && !isLoopback(parsed.host)) {
    throw transportError(E.NON_LOOPBACK, `refusing to listen on non-loopback address ${parsed.host} (set allowNonLoopback to expose VM traffic to the network)`);
  }
  if (parsed.kind === 'udp') {
    if (opts.framing !== 'dgram') throw new VnetkitError('ERR_VNETKIT_BAD_OPTION', `udp:// listeners need framing 'dgram', got '${opts.framing}'`);
    const h = await listenDgram(parsed.host === 'localhost' ? '127.0.0.1' : parsed.host, parsed.port, opts, onLink);
    const hostPart = h.address.includes(':') ? `[${h.address}]` : h.address;
    return { url: `udp://${hostPart}:${h.port}`, address: `${h.address}:${h.port}`, close: h.close };
  }
  if (opts.framing === 'dgram') throw new VnetkitError('ERR_VNETKIT_BAD_OPTION', `framing 'dgram' needs a udp:// listener`);
  checkSendBufferBytes(opts.sendBufferBytes);
  return parsed.kind === 'unix' ? listenUnix(parsed.path, opts, onLink) : listenTcp(parsed.host, parsed.port, opts, onLink);
}

function makeServer(opts: ListenOptions, onLink: (link: VmLink) => void, peerOf: (s: net.Socket) => string, unix: boolean) {
  const log = opts.log ?? nullLogger;
  const links = new Set<StreamLink>();
  const server = net.createServer({ allowHalfOpen: false, pauseOnConnect: true }, (accepted) => {
    let link: StreamLink | undefined;
    // Accepted paused: nothing has read or written yet, so the descriptor can still be tuned.
    const sendBuffer = unix ? applyLinkSendBuffer((accepted as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1, opts.sendBufferBytes, log) : undefined;
    const reader = new StreamReader(readerBytes(maxFrameInFor(opts)));
    const sock = adoptWithReadBuffer(accepted, reader);
    sock.setNoDelay?.(true);
    link = attachStreamLink(sock, opts, peerOf(sock), reader);
    link.sendBuffer = sendBuffer;
    links.add(link);
    link.closeHook = () => links.delete(link);
    link.whenReady(
      (l) => {
        try {
          onLink(l);
        } catch (e) {
          log.error('onLink threw; closing the link', { error: e as Error, link: l.id });
          l.close('onLink failed');
        }
      },
      (err) => {
        links.delete(link);
        log.debug('VM connection failed before it was ready', { code: err.code, peer: link.peer });
      },
    );
  });
  return { server, links, log };
}

async function listenTcp(host: string, port: number, opts: ListenOptions, onLink: (link: VmLink) => void): Promise<Listener> {
  const { server, links } = makeServer(opts, onLink, (s) => `${s.remoteAddress}:${s.remotePort}`, false);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(transportError(e.code === 'EADDRINUSE' ? E.ADDRESS_IN_USE : E.TRANSPORT, `cannot listen on tcp://${host}:${port}: ${e.message}`, e)),
    );
    server.listen({ host, port, exclusive: true }, () => resolve());
  });
  const a = server.address() as net.AddressInfo;
  const hostPart = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `tcp://${hostPart}:${a.port}`,
    address: `${a.address}:${a.port}`,
    close: () => closeServer(server, links),
  };
}

async function listenUnix(path: string, opts: ListenOptions, onLink: (link: VmLink) => void): Promise<Listener> {
  const { server, links, log } = makeServer(opts, onLink, () => path, true);
  const tryListen = (): Promise<NodeJS.ErrnoException | null> =>
    new Promise((resolve) => {
      const onErr = (e: NodeJS.ErrnoException): void => resolve(e);
      server.once('error', onErr);
      server.listen({ path, exclusive: true }, () => {
        server.off('error', onErr);
        resolve(null);
      });
    });

  let err = await tryListen();
  if (err !== null && err.code === 'EADDRINUSE') {
    const state = await unixPathState(path);
    if (state === 'not-socket') {
      throw transportError(E.PATH_NOT_SOCKET, `${path} exists and is not a socket; refusing to replace it`);
    }
    if (state === 'live') throw transportError(E.ADDRESS_IN_USE, `another process is listening on ${path}`);
    if (state === 'stale') {
      // A socket file nobody answers on: left behind by a crashed process.
      log.info('removing stale unix socket', { path });
      try {
        fs.unlinkSync(path);
      } catch (e) {
        throw transportError(E.TRANSPORT, `cannot remove stale socket ${path}: ${(e as Error).message}`, e);
      }
    }
    err = await tryListen();
  }
  if (err !== null) throw transportError(err.code === 'EADDRINUSE' ? E.ADDRESS_IN_USE : E.TRANSPORT, `cannot listen on unix://${path}: ${err.message}`, err);
  let ino = -1;
  try {
    if (opts.mode !== undefined) fs.chmodSync(path, opts.mode);
    ino = fs.lstatSync(path).ino;
  } catch (e) {
    await closeServer(server, links);
    throw transportError(E.TRANSPORT, `cannot set mode on ${path}: ${(e as Error).message}`, e);
  }
  return {
    url: `unix://${path}`,
    address: path,
    close: async () => {
      await closeServer(server, links);
      // Only remove the file if it is still the socket we created, not one a
      // newer process bound after us.
      try {
        if (fs.lstatSync(path).ino === ino) fs.unlinkSync(path);
      } catch {
        /* already gone */
      }
    },
  };
}

function closeServer(server: net.Server, links: Set<StreamLink>): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      for (const l of [...links]) l.close('listener closed');
      resolve();
      return;
    }
    server.close(() => resolve());
    for (const l of [...links]) l.close('listener closed');
  });
}
