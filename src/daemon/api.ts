/**
 * Control API: HTTP/1.1 + JSON on a Unix socket (mode 0600) or a loopback
 * TCP port, with gvisor-tap-vsock's paths so its clients (podman machine,
 * crc, `curl --unix-socket`) work unchanged.
 *
 * Status codes: unknown path 404, wrong method 405 (with Allow), body not
 * JSON / missing or mistyped field / forward outside the subnet 400,
 * unexpose of an unknown forward 404, duplicate expose or address taken 409
 * (gvproxy answers 500; its client treats every non-200 as an error with the
 * body as message, so 409 stays compatible while telling a conflict apart
 * from a server fault), body over 1 MiB 413, anything unexpected 500.
 * Every error body is {"error": "..."}.
 */
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
}

export interface ApiServer {
  readonly url: string;
  readonly address: string;
  close(): Promise<void>;
}

export const MAX_BODY_BYTES = 1 << 20;

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
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
    '/stats': { GET: () => ok({ ...e.stats(), forwarder: { ...d.forwarder.counters, ...d.forwarder.activeCount(), forwards: d.forwarder.list().length } }) },
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
        return ok(await d.capture.start(o.file, o.snaplen as number | undefined));
      },
    },
    '/capture/stop': {
      POST: async () => {
        const r = await d.capture.stop();
        if (r === undefined) throw new HttpError(409, 'no capture is running');
        return ok(r);
      },
    },
    '/capture': { GET: () => ok(d.capture.active() ?? null) },
  };
}

/** Listen on unix:///path or tcp://127.0.0.1:PORT (loopback only; the caller decides whether TCP is allowed at all). */
export async function startApiServer(url: string, deps: ApiDeps, opts: { mode?: number } = {}): Promise<ApiServer> {
  const log = deps.log ?? nullLogger;
  const table = routes(deps);
  const server = http.createServer({ requestTimeout: 10_000, headersTimeout: 10_000, keepAliveTimeout: 5_000, maxHeaderSize: 16 * 1024 }, (req, res) => {
    void handle(req, res, table, log);
  });
  server.maxConnections = 64;
  server.on('clientError', (err, sock) => {
    log.limited('api-client-error', 'info', 'control API: malformed HTTP request', { error: err.message });
    if (sock.writable) sock.end('HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"error":"malformed HTTP request"}');
  });
  if (url.startsWith('unix://')) {
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
  return { url: `tcp://${hp}`, address: hp, close: () => closeServer(server) };
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, table: ReturnType<typeof routes>, log: Logger): Promise<void> {
  const send = (r: Reply): void => {
    if (res.headersSent) return;
    const isText = 'text' in r;
    const body = isText ? r.text : JSON.stringify(r.json) + '\n';
    res.writeHead(r.status, { 'Content-Type': isText ? r.type : 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  };
  const fail = (status: number, message: string, headers: Record<string, string> = {}): void => {
    log.limited(`api-reject-${status}`, status >= 500 ? 'warn' : 'info', 'control API request refused', { method: req.method, path: pathOf(req.url), status, error: message });
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    send({ status, json: { error: message } });
  };
  try {
    const p = pathOf(req.url);
    const route = table[p];
    if (route === undefined) {
      drain(req);
      return fail(404, `unknown path ${JSON.stringify(p)}`);
    }
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const h = route[method as 'GET' | 'POST'];
    if (h === undefined) {
      drain(req);
      const allow = Object.keys(route).join(', ');
      return fail(405, `method ${req.method} not allowed on ${p} (allowed: ${allow})`, { Allow: allow });
    }
    const body = method === 'POST' ? await readJson(req) : (drain(req), undefined);
    send(await h(body));
  } catch (e) {
    if (e instanceof HttpError) return fail(e.status, e.message);
    if (e instanceof ForwardError || e instanceof CaptureError) return fail(e.status, e.message);
    if (e instanceof VnetkitError && e.code === 'ERR_VNETKIT_BAD_OPTION') return fail(400, e.message);
    log.error('control API handler failed', { path: req.url, error: e as Error });
    return fail(500, `internal error: ${(e as Error).message}`);
  }
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
      reject(new HttpError(413, `request body of ${declared} bytes is over the ${MAX_BODY_BYTES}-byte limit`));
      return;
    }
    const chunks: Buffer[] = [];
    let n = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY_BYTES) {
        if (!over) reject(new HttpError(413, `request body is over the ${MAX_BODY_BYTES}-byte limit`));
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
