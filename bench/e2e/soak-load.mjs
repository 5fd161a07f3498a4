#!/usr/bin/env node
// The soak's traffic (bench/e2e/soak.ts). Plain Node ESM, like probe.mjs.
//
//   soak-load.mjs servers --bulk P --udp P --big P --syn P [--big-bytes N]
//       On 127.0.0.1 only: P bulk (hash-checked transfers, below), UDP echo, a "big sender"
//       that writes N bytes (default 4 MiB) to every connection (the zero-window attack's
//       target), and a listener that accepts and holds connections (the SYN flood's target);
//       only those whose port is given. Prints "listening" when they are up.
//   soak-load.mjs guest --id NAME --target IP --dns IP --bulk P --echo P --udp P
//                       [--bulk-mib 32] [--churn-per-s 40] [--dns-per-s 10] [--udp-per-s 20]
//                       [--names a,b] [--name-ips x,y]
//       A well-behaved guest's mixed load, all at once until SIGTERM: one bulk transfer loop
//       each way, connection churn to probe.mjs's echo server, DNS queries over UDP to the
//       gateway, UDP request/response to the echo server. Prints its cumulative counters as one
//       JSON line every second and a last one after SIGTERM, once the transfers in hand are
//       finished (at most 30 s).
//
// Bulk protocol, one transfer per connection: the client sends "UP <n>\n" then n bytes, and
// the server answers "<received> <sha256>\n"; or "DOWN <n>\n", and the server sends n bytes
// then "<sha256>\n". The receiver hashes what it got; the transfer is intact only when the
// count and the hash both match. Every 64 KiB chunk is stamped with its index, so duplicated,
// dropped or reordered chunks change the hash.
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { parseArgs } from 'node:util';
import dnsPacket from 'dns-packet';

const mode = process.argv[2];
const OPTIONS = ['bulk', 'udp', 'big', 'syn', 'big-bytes', 'id', 'target', 'dns', 'echo', 'bulk-mib', 'churn-per-s', 'dns-per-s', 'udp-per-s', 'names', 'name-ips'];
const { values } = parseArgs({ args: process.argv.slice(3), options: Object.fromEntries(OPTIONS.map((o) => [o, { type: 'string' }])) });
const opt = (name, def) => values[name] ?? def;
const HOST = '127.0.0.1';
const CHUNK = 64 << 10;
const BLOCK = crypto.randomBytes(CHUNK);
const STALL_MS = 30_000;

/** Chunk `i` of a transfer: random bytes with the index in the first 8 (a fresh buffer: writes keep a reference). */
function chunk(i, len) {
  const b = Buffer.allocUnsafe(len);
  BLOCK.copy(b, 0, 0, len);
  if (len >= 8) b.writeBigUInt64BE(BigInt(i), 0);
  return b;
}

/** Write n stamped bytes to `sock` with backpressure, hashing them; resolves with the hex digest. */
function sendStream(sock, n, onBytes) {
  const h = crypto.createHash('sha256');
  let sent = 0, i = 0;
  return new Promise((resolve, reject) => {
    const pump = () => {
      while (sent < n) {
        const c = chunk(i++, Math.min(CHUNK, n - sent));
        h.update(c);
        sent += c.length;
        onBytes?.(c.length);
        if (!sock.write(c)) return sock.once('drain', pump);
      }
      resolve(h.digest('hex'));
    };
    sock.once('error', reject);
    pump();
  });
}

/** A line-then-bytes reader: `line()` waits for "...\n", `take(n, onChunk)` passes the next n bytes on. */
function reader(sock) {
  let buf = Buffer.alloc(0), want = null;
  const wake = () => { if (want && want()) want = null; };
  sock.on('data', (d) => { buf = buf.length ? Buffer.concat([buf, d]) : d; wake(); });
  sock.on('end', () => { sock.ended = true; wake(); });
  sock.on('close', () => { sock.ended = true; wake(); });
  return {
    line: () => new Promise((resolve) => {
      want = () => {
        const at = buf.indexOf(10);
        if (at < 0) {
          if (sock.ended || buf.length > 256) { resolve(null); return true; }
          return false;
        }
        const l = buf.subarray(0, at).toString('latin1');
        buf = buf.subarray(at + 1);
        resolve(l);
        return true;
      };
      wake();
    }),
    take: (n, onChunk) => new Promise((resolve) => {
      let got = 0;
      want = () => {
        if (buf.length > 0 && got < n) {
          const part = buf.subarray(0, Math.min(buf.length, n - got));
          buf = buf.subarray(part.length);
          got += part.length;
          onChunk(part);
        }
        if (got >= n || sock.ended) { resolve(got); return true; }
        return false;
      };
      wake();
    }),
  };
}

if (mode === 'servers') {
  const bigBytes = +opt('big-bytes', 4 << 20);
  const big = crypto.randomBytes(bigBytes);
  const held = new Set();
  const hold = (s) => {
    held.add(s);
    s.on('error', () => s.destroy());
    s.on('close', () => held.delete(s));
  };
  const bulk = net.createServer({ noDelay: true }, async (s) => {
    hold(s);
    const r = reader(s);
    const l = await r.line();
    const m = l && /^(UP|DOWN) (\d+)$/.exec(l);
    if (!m) return s.destroy();
    const n = Number(m[2]);
    if (m[1] === 'UP') {
      const h = crypto.createHash('sha256');
      const got = await r.take(n, (c) => h.update(c));
      s.end(`${got} ${h.digest('hex')}\n`);
    } else {
      try {
        const sha = await sendStream(s, n);
        s.end(`${sha}\n`);
      } catch { s.destroy(); }
    }
  });
  const bigSrv = net.createServer((s) => { hold(s); s.on('data', () => {}); s.end(big); });
  // Accept and keep: the half-open flows of a SYN flood each hold one of these until the engine lets go.
  const synSrv = net.createServer((s) => { hold(s); s.on('data', () => {}); s.on('end', () => s.end()); });
  const udp = dgram.createSocket('udp4');
  udp.on('message', (m, r) => udp.send(m, r.port, r.address));
  const up = (srv, port) => new Promise((res) => srv.listen({ host: HOST, port, backlog: 4096 }, res));
  // Only the servers named: the soak runs the guests' servers and the attack's targets as two
  // processes, so a thousand sockets pushing into zero windows do not share the event loop that
  // serves the well-behaved guests' downloads (an attacker's server is its own machine).
  if (opt('bulk') !== undefined) await up(bulk, +opt('bulk'));
  if (opt('big') !== undefined) await up(bigSrv, +opt('big'));
  if (opt('syn') !== undefined) await up(synSrv, +opt('syn'));
  if (opt('udp') !== undefined) await new Promise((res) => udp.bind(+opt('udp'), HOST, res));
  console.log('listening');
  const stop = () => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else if (mode === 'guest') {
  const target = opt('target'), dnsIp = opt('dns', '192.168.65.1');
  const bulkPort = +opt('bulk'), echoPort = +opt('echo'), udpPort = +opt('udp');
  const bulkBytes = +opt('bulk-mib', 32) << 20;
  const churnPerS = +opt('churn-per-s', 40), dnsPerS = +opt('dns-per-s', 10), udpPerS = +opt('udp-per-s', 20);
  // Names and the address each must resolve to (builtins and the soak's upstream responder).
  const names = opt('names', 'host.docker.internal').split(',');
  const nameIps = opt('name-ips', '192.168.65.2').split(',');
  const c = {
    id: opt('id', 'guest'), t: 0,
    upBytes: 0, downBytes: 0, bulkOk: 0, bulkFail: 0, bulkCorrupt: 0, lostBytes: 0, firstBulkErr: null,
    connOk: 0, connFail: 0, dnsOk: 0, dnsFail: 0, udpOk: 0, udpFail: 0,
  };
  let stopping = false;
  const t0 = Date.now();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const paced = async (perS, fn) => {
    const gap = 1000 / perS;
    for (let next = Date.now(); !stopping; next += gap) {
      await fn();
      const wait = next + gap - Date.now();
      if (wait > 0) await sleep(wait);
      else next = Date.now();
    }
  };
  // lost: bytes a transfer that ended cleanly did not deliver intact (short at the peer's FIN,
  // or a wrong hash). A transfer that stalls or is reset fails without losing bytes silently.
  const bulkFail = (lost, why) => {
    c.bulkFail++;
    c.lostBytes += lost;
    c.firstBulkErr ??= why;
  };

  /** One transfer; a stall of STALL_MS without progress fails it. */
  const transfer = (dir) => new Promise((resolve) => {
    const s = net.connect({ host: target, port: bulkPort, noDelay: true });
    let progress = Date.now(), done = false;
    const finish = (ok, lost, why) => {
      if (done) return;
      done = true;
      clearInterval(watch);
      if (ok) c.bulkOk++;
      else bulkFail(lost, why);
      s.destroy();
      resolve();
    };
    const watch = setInterval(() => { if (Date.now() - progress > STALL_MS) finish(false, 0, `${dir}: stalled ${STALL_MS / 1000} s`); }, 1000);
    s.on('error', (e) => finish(false, 0, `${dir}: ${e.message}`));
    s.on('connect', async () => {
      const r = reader(s);
      s.write(`${dir === 'up' ? 'UP' : 'DOWN'} ${bulkBytes}\n`);
      if (dir === 'up') {
        let sha;
        try {
          sha = await sendStream(s, bulkBytes, (n) => { c.upBytes += n; progress = Date.now(); });
        } catch (e) { return finish(false, 0, `up: ${e.message}`); }
        const l = await r.line();
        const m = l && /^(\d+) ([0-9a-f]{64})$/.exec(l);
        if (!m) return finish(false, 0, 'up: no verdict from the server');
        const got = Number(m[1]);
        if (got !== bulkBytes) return finish(false, bulkBytes - got, `up: server got ${got} of ${bulkBytes}`);
        if (m[2] !== sha) { c.bulkCorrupt++; return finish(false, bulkBytes, 'up: hash mismatch'); }
        finish(true);
      } else {
        const h = crypto.createHash('sha256');
        const got = await r.take(bulkBytes, (b) => { h.update(b); c.downBytes += b.length; progress = Date.now(); });
        if (got < bulkBytes) return finish(false, bulkBytes - got, `down: got ${got} of ${bulkBytes}`);
        const l = await r.line();
        if (l === null) return finish(false, 0, 'down: no hash from the server');
        if (l !== h.digest('hex')) { c.bulkCorrupt++; return finish(false, bulkBytes, 'down: hash mismatch'); }
        finish(true);
      }
    });
  });
  const bulkLoop = async (dir) => { while (!stopping) await transfer(dir); };

  /** One short connection: connect, 16 bytes out, the same 16 back, close. */
  const churnOne = () => new Promise((resolve) => {
    const s = net.connect({ host: target, port: echoPort, noDelay: true });
    const msg = crypto.randomBytes(16);
    let got = Buffer.alloc(0);
    const t = setTimeout(() => end(false), 5000);
    const end = (ok) => {
      clearTimeout(t);
      if (ok) c.connOk++;
      else c.connFail++;
      s.destroy();
      resolve();
    };
    s.on('connect', () => s.write(msg));
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= msg.length) end(got.equals(msg));
    });
    s.on('error', () => end(false));
  });

  const dnsSock = dgram.createSocket('udp4');
  const dnsWait = new Map();
  dnsSock.on('message', (m) => {
    try {
      const p = dnsPacket.decode(m);
      dnsWait.get(p.id)?.(p);
    } catch { /* a reply we cannot parse counts as a failure by timeout */ }
  });
  let qid = 0;
  const dnsOne = () => new Promise((resolve) => {
    const id = (qid = (qid + 1) & 0xffff);
    const k = id % names.length;
    const t = setTimeout(() => { dnsWait.delete(id); c.dnsFail++; resolve(); }, 2000);
    dnsWait.set(id, (p) => {
      clearTimeout(t);
      dnsWait.delete(id);
      const ok = p.rcode === 'NOERROR' && p.answers.some((a) => a.type === 'A' && a.data === nameIps[k]);
      if (ok) c.dnsOk++;
      else c.dnsFail++;
      resolve();
    });
    dnsSock.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: names[k] }] }), 53, dnsIp);
  });

  // A fresh socket (a new NAT binding) every 50 requests.
  let udpSock = null, udpUses = 0;
  const udpOne = () => new Promise((resolve) => {
    if (udpSock === null || udpUses++ >= 50) {
      udpSock?.close();
      udpSock = dgram.createSocket('udp4');
      udpSock.on('error', () => {});
      udpUses = 0;
    }
    const s = udpSock, msg = crypto.randomBytes(64);
    const t = setTimeout(() => { s.off('message', on); c.udpFail++; resolve(); }, 1000);
    const on = (m) => {
      if (!m.equals(msg)) return;
      clearTimeout(t);
      s.off('message', on);
      c.udpOk++;
      resolve();
    };
    s.on('message', on);
    s.send(msg, udpPort, target);
  });

  const report = () => { c.t = Date.now() - t0; console.log(JSON.stringify(c)); };
  const ticker = setInterval(report, 1000);
  const work = [
    bulkLoop('up'), bulkLoop('down'),
    ...Array.from({ length: 4 }, () => paced(churnPerS / 4, churnOne)),
    paced(dnsPerS, dnsOne), paced(udpPerS, udpOne),
  ];
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await Promise.race([Promise.all(work), sleep(STALL_MS)]);
    clearInterval(ticker);
    report();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  console.error('usage: soak-load.mjs servers --bulk P --udp P --big P --syn P | guest --target IP --bulk P --echo P --udp P [...]');
  process.exit(2);
}
