/**
 * Who may call the control API, and that no caller can hold it: the TCP
 * listener's bearer token (generated into a 0600 file, or from the
 * environment), Host and Origin checks against DNS rebinding and web pages,
 * JSON-only POSTs, and slow-loris connections that neither hold the
 * connection cap nor outlive the header timeout.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../src/daemon/daemon.js';
import { buildConfig } from '../src/daemon/options.js';
import { startApiServer, type ApiServer } from '../src/daemon/api.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-apiguard-'));
const xdg = path.join(tmp, 'xdg');
fs.mkdirSync(xdg, { mode: 0o700 });
let daemon: Daemon;
const out: string[] = [];
let port = 0;
let tokenFile = '';
let token = '';

interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: { error?: string; code?: string } & Record<string, unknown>;
}

function request(opts: { port?: number; socketPath?: string; method?: string; path?: string; headers?: Record<string, string>; body?: string }): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: opts.port ?? port, socketPath: opts.socketPath, method: opts.method ?? 'GET', path: opts.path ?? '/stats', headers: opts.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let json = {};
          try {
            json = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode!, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

const auth = (): Record<string, string> => ({ Authorization: `Bearer ${token}` });

beforeAll(async () => {
  const cfg = buildConfig({}, {
    'listen-qemu': [`unix://${path.join(tmp, 'qemu.sock')}`],
    listen: ['tcp://127.0.0.1:0'],
    'host-loopback': false,
    'capture-dir': path.join(tmp, 'captures'),
    'log-level': 'silent',
  });
  daemon = await startDaemon(cfg, { out: { write: (s: string) => out.push(s) }, err: { write: () => {} }, env: { XDG_RUNTIME_DIR: xdg } });
  const m = /control API on tcp:\/\/127\.0\.0\.1:(\d+) \(bearer token in (\S+)\)/.exec(out.join(''));
  expect(m, out.join('')).not.toBeNull();
  port = Number(m![1]);
  tokenFile = m![2];
  token = fs.readFileSync(tokenFile, 'utf8').trim();
});

afterAll(async () => {
  await daemon?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('TCP control API: bearer token', () => {
  it('a generated token: 32 random bytes in hex, in a 0600 file in the runtime directory named on stdout', () => {
    expect(tokenFile).toBe(path.join(xdg, 'vnetkit', `api-${port}.token`));
    expect(fs.statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(token).toMatch(/^[0-9a-f]{64}$/);
  });

  it('no token is 401 with WWW-Authenticate and a stable code', async () => {
    const r = await request({});
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Bearer realm="vnetkit"');
    expect(r.json.code).toBe('ERR_VNETKIT_API_UNAUTHORIZED');
    expect(typeof r.json.error).toBe('string');
  });

  it('a wrong token, a token of another length, another scheme: 401', async () => {
    for (const a of [`Bearer ${'0'.repeat(64)}`, `Bearer ${token.slice(0, 63)}`, `Bearer ${token}x`, `Basic ${Buffer.from(`u:${token}`).toString('base64')}`, token]) {
      const r = await request({ headers: { Authorization: a } });
      expect(r.status, a).toBe(401);
      expect(r.json.code).toBe('ERR_VNETKIT_API_UNAUTHORIZED');
    }
  });

  it('a POST without the token changes nothing', async () => {
    const zones = daemon.engine.dns.zones().length;
    const r = await request({ method: 'POST', path: '/services/dns/add', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ Name: 'evil.' }) });
    expect(r.status).toBe(401);
    expect(daemon.engine.dns.zones().length).toBe(zones);
  });

  it('the right token is 200, GET and a JSON POST', async () => {
    expect((await request({ headers: auth() })).status).toBe(200);
    const r = await request({ method: 'POST', path: '/services/dns/add', headers: { ...auth(), 'Content-Type': 'application/json; charset=utf-8' }, body: JSON.stringify({ Name: 'ok.internal.', Records: [{ Name: 'a', IP: '192.168.65.9' }] }) });
    expect(r.status, r.text).toBe(200);
  });
});

describe('TCP control API: requests a browser could make are refused', () => {
  it('a foreign Host (DNS rebinding) is 403 even with the token', async () => {
    for (const host of ['evil.example', `evil.example:${port}`, `127.0.0.1:${port + 1}`, '127.0.0.1', `127.0.0.2:${port}`, `[::1]:${port}`]) {
      const r = await request({ headers: { ...auth(), Host: host } });
      expect(r.status, host).toBe(403);
      expect(r.json.code).toBe('ERR_VNETKIT_API_BAD_HOST');
    }
  });

  it('the listener\'s own Host names are accepted: address:port and localhost:port', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`]) {
      expect((await request({ headers: { ...auth(), Host: host } })).status, host).toBe(200);
    }
  });

  it('any Origin is 403, even with the token (a cross-origin simple POST changes nothing)', async () => {
    const zones = daemon.engine.dns.zones().length;
    for (const origin of ['http://evil.example', `http://127.0.0.1:${port}`, 'null']) {
      const r = await request({ method: 'POST', path: '/services/dns/add', headers: { ...auth(), Origin: origin, 'Content-Type': 'application/json' }, body: JSON.stringify({ Name: 'evil.' }) });
      expect(r.status, origin).toBe(403);
      expect(r.json.code).toBe('ERR_VNETKIT_API_CROSS_ORIGIN');
    }
    expect(daemon.engine.dns.zones().length).toBe(zones);
  });

  it('a POST labelled text/plain, form-urlencoded or nothing is 415, even with the token', async () => {
    const zones = daemon.engine.dns.zones().length;
    for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', undefined]) {
      const r = await request({ method: 'POST', path: '/services/dns/add', headers: { ...auth(), ...(ct ? { 'Content-Type': ct } : {}) }, body: JSON.stringify({ Name: 'evil.' }) });
      expect(r.status, ct).toBe(415);
      expect(r.json.code).toBe('ERR_VNETKIT_API_CONTENT_TYPE');
    }
    expect((await request({ method: 'POST', path: '/capture/stop', headers: auth() })).status).toBe(415);
    expect(daemon.engine.dns.zones().length).toBe(zones);
  });
});

describe('TCP control API: refusals are counted', () => {
  it('/stats api.events and /metrics vnetkit_api_events_total count each refusal reason', async () => {
    const st = await request({ headers: auth() });
    const ev = (st.json.api as { connections: number; events: Record<string, number> }).events;
    for (const k of ['unauthorized', 'badHost', 'crossOrigin', 'contentType']) expect(ev[k], k).toBeGreaterThan(0);
    expect((st.json.api as { connections: number }).connections).toBeGreaterThanOrEqual(1);
    const m = await request({ path: '/metrics', headers: auth() });
    expect(m.text).toMatch(/^vnetkit_api_events_total\{event="unauthorized"\} [1-9]\d*$/m);
    expect(m.text).toMatch(/^vnetkit_api_connections [1-9]\d*$/m);
  });
});

describe('TCP control API: token from the environment', () => {
  it('VNETKIT_API_TOKEN is used and no file is written; a short one refuses to start', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'env-'));
    const cfg = buildConfig({}, { 'listen-qemu': [`unix://${path.join(dir, 'q.sock')}`], listen: ['tcp://127.0.0.1:0'], 'host-loopback': false, 'log-level': 'silent' });
    const lines: string[] = [];
    const d = await startDaemon(cfg, { out: { write: (s: string) => lines.push(s) }, err: { write: () => {} }, env: { XDG_RUNTIME_DIR: dir, VNETKIT_API_TOKEN: 'a-token-from-the-environment' } });
    try {
      const p = Number(/tcp:\/\/127\.0\.0\.1:(\d+) \(bearer token in VNETKIT_API_TOKEN\)/.exec(lines.join(''))![1]);
      expect((await request({ port: p, headers: { Authorization: 'Bearer a-token-from-the-environment' } })).status).toBe(200);
      expect((await request({ port: p, headers: auth() })).status).toBe(401);
      expect(fs.existsSync(path.join(dir, 'vnetkit', `api-${p}.token`))).toBe(false);
      // No --capture-dir: captures go to captures/ in the runtime directory, made 0700 on first use.
      const caps = path.join(dir, 'vnetkit', 'captures');
      expect(fs.existsSync(caps)).toBe(false);
      const headers = { Authorization: 'Bearer a-token-from-the-environment', 'Content-Type': 'application/json' };
      const r = await request({ port: p, method: 'POST', path: '/capture/start', headers, body: JSON.stringify({ file: 'first.pcap' }) });
      expect(r.status, r.text).toBe(200);
      expect(r.json.file).toBe(path.join(caps, 'first.pcap'));
      expect(fs.statSync(caps).mode & 0o777).toBe(0o700);
      expect((await request({ port: p, method: 'POST', path: '/capture/stop', headers })).status).toBe(200);
      expect(fs.statSync(path.join(caps, 'first.pcap')).size).toBeGreaterThanOrEqual(24);
    } finally {
      await d.close();
    }
    await expect(startDaemon(cfg, { out: { write: () => {} }, err: { write: () => {} }, env: { XDG_RUNTIME_DIR: dir, VNETKIT_API_TOKEN: 'short' } })).rejects.toThrow(/VNETKIT_API_TOKEN is shorter than 16/);
  });

  it('a generated token file is removed when the daemon stops', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'gen-'));
    const cfg = buildConfig({}, { 'listen-qemu': [`unix://${path.join(dir, 'q.sock')}`], listen: ['tcp://127.0.0.1:0'], 'host-loopback': false, 'log-level': 'silent' });
    const lines: string[] = [];
    const d = await startDaemon(cfg, { out: { write: (s: string) => lines.push(s) }, err: { write: () => {} }, env: { XDG_RUNTIME_DIR: dir } });
    const file = /\(bearer token in (\S+)\)/.exec(lines.join(''))![1];
    expect(fs.existsSync(file)).toBe(true);
    await d.close();
    expect(fs.existsSync(file)).toBe(false);
  });

  it('--api-token-file is read (whitespace trimmed)', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'file-'));
    const file = path.join(dir, 'tok');
    fs.writeFileSync(file, '  token-from-a-file-0123\n', { mode: 0o600 });
    const cfg = buildConfig({}, { 'listen-qemu': [`unix://${path.join(dir, 'q.sock')}`], listen: ['tcp://127.0.0.1:0'], 'host-loopback': false, 'log-level': 'silent', 'api-token-file': file });
    const lines: string[] = [];
    const d = await startDaemon(cfg, { out: { write: (s: string) => lines.push(s) }, err: { write: () => {} }, env: { XDG_RUNTIME_DIR: dir, VNETKIT_API_TOKEN: 'ignored-because-the-file-wins' } });
    try {
      const p = Number(/tcp:\/\/127\.0\.0\.1:(\d+) \(bearer token in (\S+)\)/.exec(lines.join(''))![1]);
      expect((await request({ port: p, headers: { Authorization: 'Bearer token-from-a-file-0123' } })).status).toBe(200);
      expect((await request({ port: p, headers: { Authorization: 'Bearer ignored-because-the-file-wins' } })).status).toBe(401);
    } finally {
      await d.close();
    }
  });

  it('a daemon config that slipped past option checks still gets no guest-reachable VM listener', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'reach-'));
    const cfg = buildConfig({}, { 'listen-qemu': ['tcp://127.0.0.1:0'], 'host-loopback': false, listen: [`unix://${path.join(dir, 'a.sock')}`], 'log-level': 'silent' });
    cfg.engine.hostLoopback = true;
    await expect(startDaemon(cfg, { out: { write: () => {} }, err: { write: () => {} }, env: { XDG_RUNTIME_DIR: dir } })).rejects.toMatchObject({ code: 'ERR_VNETKIT_GUEST_REACHABLE' });
    expect(fs.existsSync(path.join(dir, 'a.sock'))).toBe(false);
  });

  it('a TCP API server cannot be started without a token', async () => {
    await expect(startApiServer('tcp://127.0.0.1:0', { engine: daemon.engine, forwarder: daemon.forwarder, capture: daemon.capture })).rejects.toThrow(/needs a token/);
  });
});

/** `n` sockets that connected and sent `bytes` (perhaps nothing), never closing their side. */
async function holders(target: net.NetConnectOpts, n: number, bytes: string): Promise<net.Socket[]> {
  const socks: net.Socket[] = [];
  await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<void>((resolve) => {
        const s = net.connect({ ...target, allowHalfOpen: true } as net.NetConnectOpts);
        socks.push(s);
        s.on('error', () => {});
        // A refused or reset socket counts as placed: the point is what the server still serves.
        s.once('close', () => resolve());
        s.once('connect', () => {
          if (bytes !== '') s.write(bytes);
          resolve();
        });
      }),
    ),
  );
  return socks;
}

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('slow-loris', () => {
  // The request timeout (also the silent-socket timeout) is far beyond the test,
  // so only the header timeout and the keep-alive timeout can close what these
  // tests see closed; the stalled-body test has its own server.
  const fast = { headersTimeoutMs: 300, requestTimeoutMs: 60_000, keepAliveTimeoutMs: 200, timeoutCheckMs: 50, token: 'slow-loris-test-token' };
  let tcp: ApiServer;
  let unix: ApiServer;
  const unixPath = path.join(tmp, 'slow.sock');
  let tcpPort = 0;
  beforeAll(async () => {
    const deps = { engine: daemon.engine, forwarder: daemon.forwarder, capture: daemon.capture };
    tcp = await startApiServer('tcp://127.0.0.1:0', deps, fast);
    unix = await startApiServer(`unix://${unixPath}`, deps, { ...fast, token: undefined });
    tcpPort = Number(tcp.address.split(':')[1]);
  });
  afterAll(async () => {
    await tcp?.close();
    await unix?.close();
  });
  const get = (where: 'tcp' | 'unix') =>
    where === 'tcp' ? request({ port: tcpPort, headers: { Authorization: `Bearer ${fast.token}` } }) : request({ socketPath: unixPath });

  for (const where of ['tcp', 'unix'] as const) {
    it(`${where}: 100 sockets with partial headers neither lock out a normal request nor outlive the header timeout`, async () => {
      const srv = where === 'tcp' ? tcp : unix;
      const target: net.NetConnectOpts = where === 'tcp' ? { host: '127.0.0.1', port: tcpPort } : { path: unixPath };
      const socks = await holders(target, 100, `GET /stats HTTP/1.1\r\nHost: 127.0.0.1:${tcpPort}\r\nX-Slow: `);
      try {
        expect(srv.stats().connections).toBeLessThanOrEqual(64);
        // At the cap a new caller evicts the oldest connection not inside a request.
        const r = await get(where);
        expect(r.status, r.text).toBe(200);
        // The rest are destroyed at the header timeout (answered 408), not half-closed.
        await until(() => srv.stats().connections === 0, 5000);
        expect(srv.stats().events.timedOut).toBeGreaterThan(0);
        expect((await get(where)).status).toBe(200);
      } finally {
        for (const s of socks) s.destroy();
      }
    });
  }

  it('tcp: 100 silent sockets and idle keep-alive connections are closed, and a normal request gets in meanwhile', async () => {
    const socks = await holders({ host: '127.0.0.1', port: tcpPort }, 100, '');
    try {
      expect(tcp.stats().connections).toBeLessThanOrEqual(64);
      expect((await get('tcp')).status).toBe(200);
      await until(() => tcp.stats().connections === 0, 5000);
    } finally {
      for (const s of socks) s.destroy();
    }
    // A keep-alive client that never sends its next request is closed after keepAliveTimeoutMs.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      await new Promise<void>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: tcpPort, path: '/stats', agent, headers: { Authorization: `Bearer ${fast.token}` } }, (res) => {
          res.resume();
          res.on('end', () => resolve());
        }).on('error', reject);
      });
      await until(() => tcp.stats().connections === 0, 3000);
    } finally {
      agent.destroy();
    }
  });

  it('tcp: a request that stalls in its body is destroyed at the request timeout', async () => {
    const srv = await startApiServer('tcp://127.0.0.1:0', { engine: daemon.engine, forwarder: daemon.forwarder, capture: daemon.capture }, { ...fast, requestTimeoutMs: 600 });
    const p = Number(srv.address.split(':')[1]);
    const [s] = await holders({ host: '127.0.0.1', port: p }, 1,
      `POST /services/dns/add HTTP/1.1\r\nHost: 127.0.0.1:${p}\r\nAuthorization: Bearer ${fast.token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
    try {
      await until(() => srv.stats().connections === 1, 1000);
      await until(() => srv.stats().connections === 0, 5000);
    } finally {
      s.destroy();
      await srv.close();
    }
  });
});
