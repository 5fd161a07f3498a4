/**
 * Control API: HTTP/1.1 + JSON on a Unix socket (mode 0600) or a loopback
 * TCP port, with gvisor-tap-vsock's paths so its clients (podman machine,
 * crc, `curl --unix-socket`) work unchanged.
 *
 * Who may call it. A Unix socket is guarded by its mode: only this user
 * connects, so no token is asked there (gvproxy's clients send none). A TCP
 * port is open to every local user and, through a browser, to any web page,
 * so a TCP listener requires `Authorization: Bearer <token>` on every request
 * (compared in constant time). On both, a request carrying `Origin` is
 * refused (browsers send it on every cross-origin POST and fetch; no API
 * client does), and on TCP the `Host` must name the listener itself (a page
 * that rebinds its DNS name to 127.0.0.1 still sends its own name) and a POST
 * must say `Content-Type: application/json` (the browser's "simple" requests
 * can only send form or text/plain bodies without a preflight). A Unix
 * socket accepts any Host (curl sends `localhost`, Go clients a made-up
 * name) and any Content-Type (`curl -d` sends form-urlencoded; the body is
 * parsed as JSON whatever it is labelled, and no browser reaches the socket).
 *
 * Connections: header and request timeouts per connection, a socket silent
 * for the request timeout is destroyed, timed-out and malformed requests are
 * answered and destroyed (never half-closed, which would leave the socket to
 * a client that never closes), and at the connection cap a new connection
 * closes the oldest one not inside a request (idle keep-alive, silent, or
 * still sending headers).
 *
 * Status codes: unknown path 404, wrong method 405 (with Allow), body not
 * JSON / missing or mistyped field / forward outside the subnet / bad capture
 * name 400, no or wrong token 401, foreign Host or any Origin 403, unexpose
 * of an unknown forward 404, duplicate expose, address taken, capture name
 * taken or a capture already running 409 (gvproxy answers 500; its client
 * treats every non-200 as an error with the body as message, so 409 stays
 * compatible while telling a conflict apart from a server fault), body over
 * 1 MiB 413, POST over TCP not labelled JSON 415, anything unexpected 500.
 * Every error body is {"error": "...", "code": "ERR_VNETKIT_..."}; the codes
 * are stable (ApiErrorCodes, ForwardErrorCodes, CaptureErrorCodes).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { unixPathState } from '../unix-path.js';
import http from 'node:http';
import net from 'node:net';
import { VnetkitError } from '../errors.js';
import { nullLogger, type Logger } from '../log.js';
import { formatIPv4, parseIPv4 } from '../wire/addr.js';
import { zoneFromJson, zoneToJson, type DnsZone } from '../services/dns.js';
import type { DhcpLease } from '../services/dhcp.js';
import { ForwardError, type Forwarder } from './forwarder.js';
import { CaptureError, type Capture } from './capture.js';
import { renderMetrics } from './metrics.js';

export interface ApiEngine {
  stats(): object;
  vms(): object[];
  flows?(): { proto: 'tcp' | 'udp'; guest: string; remote: string; state: string; bytesIn: number; bytesOut: number; ageMs: number }[];
  readonly dhcp: { leases(): DhcpLease[] };
  readonly dns: { zones(): DnsZone[]; addZone(z: DnsZone): void };
}

export interface ApiDeps {
  engine: ApiEngine;
  forwarder: Forwarder;
  capture: Capture;
  log?: Logger;
  /** ms epoch the daemon started, for uptime. */
  startedAt?: number;
  /** The API servers' own counters, shown in /stats and /metrics. */
  apiStats?: () => ApiStats;
}

/** What the connection and request guards did, summed over a daemon's API servers. */
export interface ApiStats {
  /** Connections open now. */
  connections: number;
  /** Counts by event: connectionsEvicted, connectionsRefused, timedOut, malformed, and refusals by reason (unauthorized, badHost, crossOrigin, contentType). */
  events: Record<string, number>;
}

/** Sum of several servers' stats. */
export function sumApiStats(all: ApiStats[]): ApiStats {
  const out: ApiStats = { connections: 0, events: {} };
  for (const a of all) {
    out.connections += a.connections;
    for (const [k, v] of Object.entries(a.events)) out.events[k] = (out.events[k] ?? 0) + v;
  }
  return out;
}

export interface ApiServer {
  readonly url: string;
  readonly address: string;
  /** Connections open now, and what the connection and request guards did so far. */
  stats(): ApiStats;
  close(): Promise<void>;
}

export const MAX_BODY_BYTES = 1 << 20;

/** Stable codes in the API's error bodies (forwarder and capture errors carry their own). */
export const ApiErrorCodes = {
  /** TCP listener: no `Authorization: Bearer` header, or the wrong token (401). */
  UNAUTHORIZED: 'ERR_VNETKIT_API_UNAUTHORIZED',
  /** TCP listener: the Host header does not name the listener (DNS rebinding) (403). */
  BAD_HOST: 'ERR_VNETKIT_API_BAD_HOST',
  /** The request carries an Origin header: a browser page is calling (403). */
  CROSS_ORIGIN: 'ERR_VNETKIT_API_CROSS_ORIGIN',
  /** TCP listener: a POST whose Content-Type is not application/json (415). */
  CONTENT_TYPE: 'ERR_VNETKIT_API_CONTENT_TYPE',
  NOT_FOUND: 'ERR_VNETKIT_API_NOT_FOUND',
  METHOD_NOT_ALLOWED: 'ERR_VNETKIT_API_METHOD_NOT_ALLOWED',
  /** Body not JSON, not an object, a field missing or mistyped (400). */
  BAD_REQUEST: 'ERR_VNETKIT_API_BAD_REQUEST',
  /** /capture/stop with nothing running (409). */
  NO_CAPTURE: 'ERR_VNETKIT_API_NO_CAPTURE',
  TOO_LARGE: 'ERR_VNETKIT_API_TOO_LARGE',
  /** Not HTTP, or headers too large (400). */
  MALFORMED: 'ERR_VNETKIT_API_MALFORMED',
  /** Headers or the whole request took longer than the server allows (408). */
  TIMEOUT: 'ERR_VNETKIT_API_TIMEOUT',
  INTERNAL: 'ERR_VNETKIT_API_INTERNAL',
} as const;

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly code: string = ApiErrorCodes.BAD_REQUEST) {
    super(message);
  }
}

type Reply = { status: number; json: unknown } | { status: number; text: string; type: string };
type Handler = (body: unknown) => Promise<Reply> | Reply;

function ok(json: unknown): Reply {
  return { status: 200, json };
}

function needObject(body: unknown, what: string): Record<string, unknown> {
  if (body === undefined) throw new HttpError(400, `request body is empty; want ${what}`);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, `request body must be a JSON object (${what})`);
  return body as Record<string, unknown>;
}

/** The route table: path → method → handler. Exported for tests that check every path is covered. */
export function routes(d: ApiDeps): Record<string, Partial<Record<'GET' | 'POST', Handler>>> {
  const e = d.engine;
  return {
    '/services/forwarder/all': { GET: () => ok(d.forwarder.list()) },
    '/services/forwarder/expose': {
      POST: async (body) => ok(await d.forwarder.expose(needObject(body, '{"local", "remote", "protocol"}'))),
    },
    '/services/forwarder/unexpose': {
      POST: async (body) => {
        await d.forwarder.unexpose(needObject(body, '{"local", "protocol"}'));
        return ok({});
      },
    },
    '/services/dhcp/leases': {
      GET: () => {
        const out: Record<string, string> = {};
        for (const l of e.dhcp.leases()) out[formatIPv4(l.ip)] = l.mac;
        return ok(out);
      },
    },
    '/services/dns/all': { GET: () => ok(e.dns.zones().map(zoneToJson)) },
    '/services/dns/add': {
      POST: (body) => {
        const zone = zoneFromJson(needObject(body, 'a zone {"Name", "Records", "DefaultIP"}'));
        for (const ip of [zone.defaultIp, ...zone.records.map((r) => r.ip)]) {
          if (ip === undefined) continue;
          try {
            parseIPv4(ip);
          } catch {
            throw new HttpError(400, `invalid DNS zone: ${JSON.stringify(ip)} is not an IPv4 address`);
          }
        }
        e.dns.addZone(zone);
        return ok(zoneToJson(zone));
      },
    },
    '/stats': { GET: () => ok({ ...e.stats(), forwarder: { ...d.forwarder.counters, ...d.forwarder.activeCount(), forwards: d.forwarder.list().length }, ...(d.apiStats ? { api: d.apiStats() } : {}) }) },
    '/vms': { GET: () => ok(e.vms()) },
    '/flows': { GET: () => ok(e.flows?.() ?? []) },
    '/metrics': {
      GET: () => ({
        status: 200,
        type: 'text/plain; version=0.0.4; charset=utf-8',
        text: renderMetrics({
          stats: e.stats() as Record<string, unknown>,
          flows: e.flows?.(),
          forwards: d.forwarder.list(),
          forwarder: { ...d.forwarder.counters },
          capturing: d.capture.active() !== undefined,
          api: d.apiStats?.(),
          uptimeSeconds: d.startedAt !== undefined ? Math.floor((Date.now() - d.startedAt) / 1000) : undefined,
        }),
      }),
    },
    '/capture/start': {
      POST: async (body) => {
        const o = needObject(body, '{"file", "snaplen"}');
        if (o.file === undefined) throw new HttpError(400, 'missing field "file"');
        if (typeof o.file !== 'string') throw new HttpError(400, 'field "file" must be a string');
        if (o.snaplen !== undefined && typeof o.snaplen !== 'number') throw new HttpError(400, 'field "snaplen" must be a number');
        return ok(await d.capture.startInDir(o.file, o.snaplen as number | undefined));
      },
    },
    '/capture/stop': {
      POST: async () => {
        const r = await d.capture.stop();
        if (r === undefined) throw new HttpError(409, 'no capture is running', ApiErrorCodes.NO_CAPTURE);
        return ok(r);
      },
    },
    '/capture': { GET: () => ok(d.capture.active() ?? null) },
  };
}

export interface ApiServerOptions {
  /** Mode of a Unix socket (default 0600). */
  mode?: number;
  /** Bearer token every request to a TCP listener must carry; required for tcp:// URLs. */
  token?: string;
  /** Time a connection has to send a request's headers (default 10000 ms). */
  headersTimeoutMs?: number;
  /** Time a connection has to send a whole request, and the longest a socket may stay silent (default 30000 ms). */
  requestTimeoutMs?: number;
  /** How long an idle keep-alive connection is kept (default 5000 ms). */
  keepAliveTimeoutMs?: number;
  /** How often the header and request timeouts are checked (default 1000 ms). */
  timeoutCheckMs?: number;
  /** Connections at once (default 64); at the cap the oldest connection not inside a request is closed to make room. */
  maxConnections?: number;
}

/** What a request must satisfy before it reaches a route (see the file comment). */
interface Guard {
  /** SHA-256 of the token, for TCP listeners. */
  tokenDigest?: Buffer;
  /** Accepted Host values, lower case, for TCP listeners; undefined accepts any. */
  hosts?: Set<string>;
  /** POSTs must be labelled application/json. */
  jsonOnly: boolean;
}

/** A token vnetkit generates: 32 random bytes, hex. */
export function generateApiToken(): string {
  return crypto.randomBytes(32).toString('hex');
}

/** Why `token` cannot be an API token, or null: 16..512 visible ASCII characters without spaces. */
export function apiTokenProblem(token: string): string | null {
  if (token.length < 16) return 'is shorter than 16 characters';
  if (token.length > 512) return 'is longer than 512 characters';
  if (!/^[\x21-\x7e]+$/.test(token)) return 'may hold only visible ASCII characters (no spaces)';
  return null;
}

function digest(s: string): Buffer {
  return crypto.createHash('sha256').update(s, 'utf8').digest();
}

/** Listen on unix:///path or tcp://127.0.0.1:PORT (loopback only; the caller decides whether TCP is allowed at all). */
export async function startApiServer(url: string, deps: ApiDeps, opts: ApiServerOptions = {}): Promise<ApiServer> {
  const log = deps.log ?? nullLogger;
  const table = routes(deps);
  const tcp = !url.startsWith('unix://');
  if (tcp) {
    if (opts.token === undefined) throw new VnetkitError('ERR_VNETKIT_API', `control API: ${url} is a TCP listener and needs a token`);
    const bad = apiTokenProblem(opts.token);
    if (bad !== null) throw new VnetkitError('ERR_VNETKIT_API', `control API: the token ${bad}`);
  }
  const guard: Guard = { jsonOnly: tcp, tokenDigest: tcp ? digest(opts.token!) : undefined };
  const requestTimeout = opts.requestTimeoutMs ?? 30_000;
  const counters: Record<string, number> = { connectionsEvicted: 0, connectionsRefused: 0, timedOut: 0, malformed: 0, unauthorized: 0, badHost: 0, crossOrigin: 0, contentType: 0 };
  const server = http.createServer({
    headersTimeout: opts.headersTimeoutMs ?? 10_000,
    requestTimeout,
    keepAliveTimeout: opts.keepAliveTimeoutMs ?? 5_000,
    connectionsCheckingInterval: opts.timeoutCheckMs ?? 1_000,
    maxHeaderSize: 16 * 1024,
  }, (req, res) => {
    void handle(req, res, table, guard, counters, log);
  });
  // Backstop beside the header, request and keep-alive timeouts: a socket
  // silent for requestTimeout is destroyed (with no 'timeout' listener Node
  // destroys it itself).
  server.setTimeout(requestTimeout);
  // The connection cap: at the cap a new connection evicts the oldest one that
  // is not inside a request (idle keep-alive, connected and silent, or still
  // sending headers), never itself; only when every other connection is
  // inside a request is the new one closed. A request is entered only with
  // complete headers, and over TCP a request without the token is answered
  // and closed at once, so callers without the token can never hold the cap,
  // and slow senders hold no slot another caller needs.
  const cap = opts.maxConnections ?? 64;
  const conns = new Map<net.Socket, { inRequest: number }>();
  server.on('connection', (sock: net.Socket) => {
    const entry = { inRequest: 0 };
    conns.set(sock, entry);
    sock.once('close', () => conns.delete(sock));
    if (conns.size <= cap) return;
    for (const [s, e] of conns) {
      if (s === sock || e.inRequest > 0) continue;
      conns.delete(s);
      s.destroy();
      counters.connectionsEvicted++;
      log.limited('api-connection-evicted', 'info', 'control API: at the connection cap; closed the oldest connection not in a request', { cap });
      return;
    }
    conns.delete(sock);
    sock.destroy();
    counters.connectionsRefused++;
    log.limited('api-connection-refused', 'warn', 'control API: connection refused, every connection is inside a request', { cap });
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const e = conns.get(req.socket);
    if (e === undefined) return;
    e.inRequest++;
    res.once('close', () => e.inRequest--);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, sock: net.Socket) => {
    const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    if (timeout) counters.timedOut++;
    else counters.malformed++;
    log.limited(timeout ? 'api-client-timeout' : 'api-client-error', 'info', timeout ? 'control API: request timed out' : 'control API: malformed HTTP request', { error: err.message });
    // Answer if the socket can take it, then destroy: end() would only
    // half-close, and a client that never closes its side keeps the slot.
    if (sock.writable && err.code !== 'ECONNRESET') {
      const [status, text, code] = timeout ? ['408 Request Timeout', 'request timed out', ApiErrorCodes.TIMEOUT] : ['400 Bad Request', 'malformed HTTP request', ApiErrorCodes.MALFORMED];
      const body = JSON.stringify({ error: text, code });
      sock.write(`HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    }
    sock.destroy();
  });
  const stats = (): ApiStats => ({ connections: conns.size, events: { ...counters } });
  if (!tcp) {
    const p = url.slice('unix://'.length);
    await clearStaleSocket(p);
    await listenServer(server, { path: p, exclusive: true }, url);
    let ino = -1;
    try {
      fs.chmodSync(p, opts.mode ?? 0o600);
      ino = fs.lstatSync(p).ino;
    } catch (e) {
      server.close();
      throw new VnetkitError('ERR_VNETKIT_API', `control API: cannot set mode on ${p}: ${(e as Error).message}`);
    }
    return {
      url,
      address: p,
      stats,
      close: async () => {
        await closeServer(server);
        try {
          if (fs.lstatSync(p).ino === ino) fs.unlinkSync(p);
        } catch {
          /* already gone */
        }
      },
    };
  }
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d{1,5})\/?$/.exec(url);
  if (m === null) throw new VnetkitError('ERR_VNETKIT_API', `control API: unsupported URL ${url} (want unix:///path or tcp://127.0.0.1:PORT)`);
  const host = m[1].startsWith('[') ? m[1].slice(1, -1) : m[1];
  if (!(host === 'localhost' || host === '::1' || (net.isIPv4(host) && host.startsWith('127.')))) {
    throw new VnetkitError('ERR_VNETKIT_API', `control API: refusing non-loopback address ${host}`);
  }
  await listenServer(server, { host, port: Number(m[2]), exclusive: true }, url);
  const a = server.address() as net.AddressInfo;
  const hp = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  guard.hosts = allowedHosts(a);
  return { url: `tcp://${hp}`, address: hp, stats, close: () => closeServer(server) };
}

/** The Host values naming a TCP listener: its bound address and localhost, with its port (bare when 80). */
export function allowedHosts(a: { address: string; family: string; port: number }): Set<string> {
  const names = [a.family === 'IPv6' ? `[${a.address.toLowerCase()}]` : a.address, 'localhost'];
  const out = new Set<string>();
  for (const n of names) {
    out.add(`${n}:${a.port}`);
    if (a.port === 80) out.add(n);
  }
  return out;
}

/** The refusal a request earns before routing, or null: Origin, Host, token (see the file comment). */
function screen(req: http.IncomingMessage, guard: Guard): HttpError | null {
  if (req.headers.origin !== undefined) return new HttpError(403, 'requests from web pages (with an Origin header) are not accepted', ApiErrorCodes.CROSS_ORIGIN);
  if (guard.hosts !== undefined) {
    const h = (req.headers.host ?? '').toLowerCase();
    if (!guard.hosts.has(h)) return new HttpError(403, `Host ${JSON.stringify(req.headers.host ?? '')} is not this API's address (want one of ${[...guard.hosts].join(', ')})`, ApiErrorCodes.BAD_HOST);
  }
  if (guard.tokenDigest !== undefined) {
    const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
    if (m === null) return new HttpError(401, 'this API needs "Authorization: Bearer <token>" (the token file is named in the daemon\'s log)', ApiErrorCodes.UNAUTHORIZED);
    if (!crypto.timingSafeEqual(digest(m[1]), guard.tokenDigest)) return new HttpError(401, 'wrong API token', ApiErrorCodes.UNAUTHORIZED);
  }
  return null;
}

const REFUSAL_EVENT: Record<string, string> = {
  [ApiErrorCodes.UNAUTHORIZED]: 'unauthorized',
  [ApiErrorCodes.BAD_HOST]: 'badHost',
  [ApiErrorCodes.CROSS_ORIGIN]: 'crossOrigin',
  [ApiErrorCodes.CONTENT_TYPE]: 'contentType',
};

async function handle(req: http.IncomingMessage, res: http.ServerResponse, table: ReturnType<typeof routes>, guard: Guard, counters: Record<string, number>, log: Logger): Promise<void> {
  const send = (r: Reply): void => {
    if (res.headersSent) return;
    const isText = 'text' in r;
    const body = isText ? r.text : JSON.stringify(r.json) + '\n';
    res.writeHead(r.status, { 'Content-Type': isText ? r.type : 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  };
  const fail = (status: number, message: string, code: string, headers: Record<string, string> = {}): void => {
    log.limited(`api-reject-${status}`, status >= 500 ? 'warn' : 'info', 'control API request refused', { method: req.method, path: pathOf(req.url), status, code, error: message });
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    send({ status, json: { error: message, code } });
  };
  try {
    const refused = screen(req, guard);
    if (refused !== null) {
      counters[REFUSAL_EVENT[refused.code]]++;
      // Not worth reading an unwanted caller's body: answer and close.
      res.shouldKeepAlive = false;
      return fail(refused.status, refused.message, refused.code, refused.status === 401 ? { 'WWW-Authenticate': 'Bearer realm="vnetkit"' } : {});
    }
    const p = pathOf(req.url);
    const route = table[p];
    if (route === undefined) {
      drain(req);
      return fail(404, `unknown path ${JSON.stringify(p)}`, ApiErrorCodes.NOT_FOUND);
    }
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const h = route[method as 'GET' | 'POST'];
    if (h === undefined) {
      drain(req);
      const allow = Object.keys(route).join(', ');
      return fail(405, `method ${req.method} not allowed on ${p} (allowed: ${allow})`, ApiErrorCodes.METHOD_NOT_ALLOWED, { Allow: allow });
    }
    if (method === 'POST' && guard.jsonOnly && !isJsonType(req.headers['content-type'])) {
      counters.contentType++;
      res.shouldKeepAlive = false;
      return fail(415, `POST needs "Content-Type: application/json", got ${JSON.stringify(req.headers['content-type'] ?? '')}`, ApiErrorCodes.CONTENT_TYPE);
    }
    const body = method === 'POST' ? await readJson(req) : (drain(req), undefined);
    send(await h(body));
  } catch (e) {
    if (e instanceof HttpError) return fail(e.status, e.message, e.code);
    if (e instanceof ForwardError || e instanceof CaptureError) return fail(e.status, e.message, e.code);
    if (e instanceof VnetkitError && e.code === 'ERR_VNETKIT_BAD_OPTION') return fail(400, e.message, e.code);
    log.error('control API handler failed', { path: req.url, error: e as Error });
    return fail(500, `internal error: ${(e as Error).message}`, ApiErrorCodes.INTERNAL);
  }
}

function isJsonType(ct: string | undefined): boolean {
  return ct !== undefined && ct.split(';')[0].trim().toLowerCase() === 'application/json';
}

function pathOf(url: string | undefined): string {
  const u = url ?? '/';
  const q = u.indexOf('?');
  const p = q < 0 ? u : u.slice(0, q);
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

function drain(req: http.IncomingMessage): void {
  req.resume();
}

/** The request body as JSON; undefined when empty. Over MAX_BODY_BYTES → 413 without reading the rest. */
function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      req.resume();
      reject(new HttpError(413, `request body of ${declared} bytes is over the ${MAX_BODY_BYTES}-byte limit`, ApiErrorCodes.TOO_LARGE));
      return;
    }
    const chunks: Buffer[] = [];
    let n = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY_BYTES) {
        if (!over) reject(new HttpError(413, `request body is over the ${MAX_BODY_BYTES}-byte limit`, ApiErrorCodes.TOO_LARGE));
        over = true;
        return;
      }
      chunks.push(c);
    });
    req.on('error', (e) => reject(new HttpError(400, `reading the request failed: ${e.message}`)));
    req.on('end', () => {
      if (over) return;
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim().length === 0) return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(new HttpError(400, `request body is not valid JSON: ${(e as Error).message}`));
      }
    });
  });
}

function listenServer(server: net.Server, opts: net.ListenOptions, url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onErr = (e: NodeJS.ErrnoException): void =>
      reject(new VnetkitError(e.code === 'EADDRINUSE' ? 'ERR_VNETKIT_ADDRESS_IN_USE' : 'ERR_VNETKIT_API', `control API: cannot listen on ${url}: ${e.message}`, { cause: e }));
    server.once('error', onErr);
    server.listen(opts, () => {
      server.off('error', onErr);
      resolve();
    });
  });
}

async function clearStaleSocket(p: string): Promise<void> {
  const state = await unixPathState(p);
  if (state === 'not-socket') throw new VnetkitError('ERR_VNETKIT_API', `control API: ${p} exists and is not a socket; refusing to replace it`);
  if (state === 'live') throw new VnetkitError('ERR_VNETKIT_ADDRESS_IN_USE', `control API: another process is listening on ${p}`);
  if (state === 'stale') fs.unlinkSync(p);
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
