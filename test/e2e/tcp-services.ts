/**
 * Host-side TCP peers for the engine-part2 e2e guests. Each binds 127.0.0.1 on a
 * random port (the guest reaches it through the host alias) and records what it
 * saw from the host's side, so a test can check both ends of every connection:
 * what the guest's tools printed and what really arrived on the host socket.
 */
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import { Writable } from 'node:stream';
import { readPcap } from '../../src/wire/pcap.js';
import { parseIPv4 } from '../../src/wire/addr.js';

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

/** Closes the listener and destroys connections still open, so a failed test never hangs in afterAll. */
function closer(server: net.Server, sockets: Set<net.Socket>): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
}

function track(server: net.Server): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  return sockets;
}

/** AES-128-CTR keystream: random-looking (no period an offset bug could hide in), reproducible per seed, ~1 GB/s. */
export function pseudoRandomBytes(size: number, seed: number): Buffer {
  const key = crypto.createHash('sha256').update(`vnetkit-e2e-${seed}`).digest().subarray(0, 16);
  const c = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

export interface BlobServer {
  port: number;
  size: number;
  md5: string;
  /** one entry per HTTP request */
  requests: { url: string; remote: string; finished: boolean; bytesWritten: number }[];
  close(): Promise<void>;
}

/** HTTP server answering every GET with the same `size`-byte body (with Content-Length). */
export async function startBlobServer(size: number, seed = 1): Promise<BlobServer> {
  const body = pseudoRandomBytes(size, seed);
  const md5 = crypto.createHash('md5').update(body).digest('hex');
  const requests: BlobServer['requests'] = [];
  const server = http.createServer((req, res) => {
    const r = { url: req.url ?? '', remote: req.socket.remoteAddress ?? '', finished: false, bytesWritten: 0 };
    requests.push(r);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
    const sock = req.socket;
    const start = sock.bytesWritten;
    res.on('finish', () => {
      r.finished = true;
      r.bytesWritten = sock.bytesWritten - start;
    });
    res.end(body);
  });
  const sockets = track(server);
  const port = await listen(server);
  return { port, size, md5, requests, close: closer(server, sockets) };
}

export interface SinkUpload {
  remote: string;
  bytes: number;
  md5: string;
  /** first bytes received, for short payloads */
  head: string;
  sawEof: boolean;
  replied: boolean;
}

export interface SinkServer {
  port: number;
  uploads: SinkUpload[];
  close(): Promise<void>;
}

/**
 * Hashes everything a connection sends; only after the client's FIN (a half-close:
 * the socket allows it) and `replyDelayMs` more does it answer
 * `bytes=<n> md5=<hex> head=<first 32 bytes>` and close. A reply can therefore only
 * reach a client whose receive side stayed open after it shut down its send side.
 */
export async function startSinkServer(replyDelayMs = 0): Promise<SinkServer> {
  const uploads: SinkUpload[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const u: SinkUpload = { remote: s.remoteAddress ?? '', bytes: 0, md5: '', head: '', sawEof: false, replied: false };
    uploads.push(u);
    const h = crypto.createHash('md5');
    let head = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      u.bytes += d.length;
      h.update(d);
      if (head.length < 32) head = Buffer.concat([head, d.subarray(0, 32 - head.length)]);
    });
    s.on('end', () => {
      u.sawEof = true;
      u.md5 = h.digest('hex');
      u.head = head.toString('latin1').replace(/[^\x21-\x7e]/g, '.');
      setTimeout(() => {
        if (s.destroyed) return;
        u.replied = true;
        s.end(`bytes=${u.bytes} md5=${u.md5} head=${u.head}\n`);
      }, replyDelayMs);
    });
    s.on('error', () => {});
  });
  const sockets = track(server);
  const port = await listen(server);
  return { port, uploads, close: closer(server, sockets) };
}

export interface TokenServer {
  port: number;
  accepted: number;
  /** most connections open at the same time */
  maxOpen: number;
  replied: number;
  /** tokens handed out, by request line */
  tokens: Map<string, string>;
  /** resolves with the open-connection count when `expect` are open at once, or when holdMs ran out */
  barrier: Promise<number>;
  close(): Promise<void>;
}

/**
 * Reads one request line per connection and answers `token-<serial> <request>` —
 * but only once `expect` connections are open at the same time (or `holdMs` after
 * the first connection), so a success proves that many flows were alive together.
 */
export async function startTokenServer(expect: number, holdMs: number): Promise<TokenServer> {
  let open = 0;
  let released = false;
  let serial = 0;
  let releaseBarrier!: (n: number) => void;
  const waiting: (() => void)[] = [];
  const state: TokenServer = {
    port: 0, accepted: 0, maxOpen: 0, replied: 0, tokens: new Map(),
    barrier: new Promise<number>((r) => (releaseBarrier = r)),
    close: async () => {},
  };
  let holdTimer: NodeJS.Timeout | undefined;
  const release = () => {
    if (released) return;
    released = true;
    clearTimeout(holdTimer);
    releaseBarrier(open);
    for (const w of waiting.splice(0)) w();
  };
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    state.accepted++;
    open++;
    state.maxOpen = Math.max(state.maxOpen, open);
    s.once('close', () => open--);
    s.on('error', () => {});
    if (state.accepted === 1) holdTimer = setTimeout(release, holdMs);
    let buf = '';
    let answered = false;
    const answer = (req: string) => {
      if (answered) return;
      answered = true;
      const send = () => {
        if (s.destroyed) return;
        const token = `token-${++serial}`;
        state.tokens.set(req, token);
        state.replied++;
        s.end(`${token} ${req}\n`);
      };
      if (released) send();
      else waiting.push(send);
    };
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\n');
      if (nl >= 0) answer(buf.slice(0, nl));
      else if (buf.length > 256) s.destroy();
    });
    s.on('end', () => answer(buf.trim()));
    if (open >= expect) release();
  });
  const sockets = track(server);
  state.port = await listen(server);
  const closeAll = closer(server, sockets);
  state.close = () => {
    clearTimeout(holdTimer);
    return closeAll();
  };
  return state;
}

export interface LineEchoConn {
  remote: string;
  /** lines received, with Date.now() at arrival */
  lines: { text: string; at: number }[];
  sawEof: boolean;
}

export interface LineEchoServer {
  port: number;
  conns: LineEchoConn[];
  close(): Promise<void>;
}

/** Answers each line `X` with `echo:X`; on the client's FIN says `bye` and closes. */
export async function startLineEcho(): Promise<LineEchoServer> {
  const conns: LineEchoConn[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const c: LineEchoConn = { remote: s.remoteAddress ?? '', lines: [], sawEof: false };
    conns.push(c);
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        c.lines.push({ text, at: Date.now() });
        s.write(`echo:${text}\n`);
      }
      if (buf.length > 4096) s.destroy();
    });
    s.on('end', () => {
      c.sawEof = true;
      s.end('bye\n');
    });
    s.on('error', () => {});
  });
  const sockets = track(server);
  const port = await listen(server);
  return { port, conns, close: closer(server, sockets) };
}

/** A loopback port nothing listens on: bound by us a moment ago, then released. */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * A pcap sink in memory for engine.startCapture. Past `capBytes` it keeps counting
 * but stops storing, so a runaway capture cannot exhaust the test process.
 */
export class MemoryCapture extends Writable {
  private readonly chunks: Buffer[] = [];
  stored = 0;
  dropped = 0;

  constructor(private readonly capBytes = 16 << 20) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.stored + chunk.length <= this.capBytes) {
      this.chunks.push(Buffer.from(chunk));
      this.stored += chunk.length;
    } else {
      this.dropped += chunk.length;
    }
    done();
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export interface TcpDirection {
  /** TCP segments from that address */
  segments: number;
  /** of them, segments carrying payload */
  dataSegments: number;
  payloadBytes: number;
  maxPayload: number;
  /** payload carried in segments larger than a 1500-MTU segment (1460 bytes) */
  bytesInLarge: number;
}

/**
 * TCP payload sizes of the IPv4 segments sent by `srcIp` in an Ethernet pcap.
 * Only headers are read, so a small snaplen is enough; sizes come from the IP
 * total length, not the captured length.
 */
export function tcpPayloadStats(pcap: Uint8Array, srcIp: string): TcpDirection & { pcapError: string } {
  const want = parseIPv4(srcIp);
  const f = readPcap(pcap);
  const out = { segments: 0, dataSegments: 0, payloadBytes: 0, maxPayload: 0, bytesInLarge: 0, pcapError: f.error as string };
  for (const r of f.records) {
    const d = r.data;
    if (d.length < 14 + 20 || ((d[12] << 8) | d[13]) !== 0x0800) continue;
    const ihl = (d[14] & 0x0f) * 4;
    if (d[14 + 9] !== 6 || d.length < 14 + ihl + 13) continue;
    const src = ((d[26] << 24) | (d[27] << 16) | (d[28] << 8) | d[29]) >>> 0;
    if (src !== want) continue;
    const total = (d[16] << 8) | d[17];
    const doff = (d[14 + ihl + 12] >> 4) * 4;
    const payload = Math.max(0, total - ihl - doff);
    out.segments++;
    if (payload === 0) continue;
    out.dataSegments++;
    out.payloadBytes += payload;
    out.maxPayload = Math.max(out.maxPayload, payload);
    if (payload > 1460) out.bytesInLarge += payload;
  }
  return out;
}
