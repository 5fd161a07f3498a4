#!/usr/bin/env node
// Small TCP probe for the e2e bench. Plain Node ESM with no imports beyond node:, because it
// starts once per measurement inside the namespace and tsx's start-up would skew nothing but
// cost seconds.
//
//   probe.mjs server --bind 127.0.0.1 --port 5202
//       Echoes every chunk it receives; closes its side after the client does. Serves both
//       client modes. Prints "listening" when ready.
//   probe.mjs conn --host IP --port 5202 --n 2000 --par 1 [--duration 20] [--timeout 5]
//       N transactions, PAR at a time: connect, 1 byte out, 1 byte back, client closes first.
//   probe.mjs rr --host IP --port 5202 --n 5000 [--timeout 5]
//       One connection, N round trips of 1 byte (netperf TCP_RR style): latency with no
//       handshake in it.
// Clients print one JSON line; exit 0 only if every transaction succeeded.
import net from 'node:net';

const argv = process.argv.slice(2);
const mode = argv[0];
const opt = (name, def) => {
  const i = argv.indexOf('--' + name);
  return i > 0 && i + 1 < argv.length ? argv[i + 1] : def;
};
const nowNs = () => process.hrtime.bigint();

function quantiles(latUs) {
  latUs.sort((a, b) => a - b);
  const q = (p) => (latUs.length ? Math.round(latUs[Math.min(latUs.length - 1, Math.floor(p * latUs.length))]) : null);
  return { p50_us: q(0.5), p90_us: q(0.9), p99_us: q(0.99), max_us: latUs.length ? Math.round(latUs[latUs.length - 1]) : null };
}

if (mode === 'server') {
  const srv = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
    s.on('error', () => s.destroy());
  });
  srv.listen({ host: opt('bind', '127.0.0.1'), port: +opt('port', 5202), backlog: 1024 }, () => console.log('listening'));
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
} else if (mode === 'conn') {
  const host = opt('host', ''), port = +opt('port', 5202);
  const n = +opt('n', 2000), par = +opt('par', 1);
  const durationMs = +opt('duration', 20) * 1000, timeoutMs = +opt('timeout', 5) * 1000;
  const lat = [];
  let started = 0, fail = 0, firstErr = null;
  const t0 = nowNs();
  const elapsedMs = () => Number(nowNs() - t0) / 1e6;
  const one = () => new Promise((resolve) => {
    const ts = nowNs();
    let done = false;
    const s = net.connect({ host, port, noDelay: true });
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        fail++;
        firstErr ??= String(err.message ?? err);
        s.destroy();
      } else {
        lat.push(Number(nowNs() - ts) / 1e3);
      }
      resolve();
    };
    const timer = setTimeout(() => finish(new Error('timeout')), timeoutMs);
    s.on('connect', () => s.write('x'));
    s.on('data', () => s.end());
    s.on('close', (hadErr) => finish(hadErr ? new Error('socket error') : null));
    s.on('error', (e) => finish(e));
  });
  const worker = async () => {
    while (started < n && elapsedMs() < durationMs) {
      started++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: par }, worker));
  const secs = elapsedMs() / 1000;
  console.log(JSON.stringify({ mode, n: started, ok: lat.length, fail, par, secs: +secs.toFixed(3),
    rate: +(lat.length / secs).toFixed(1), ...quantiles(lat), err: firstErr }));
  process.exit(lat.length > 0 && fail === 0 ? 0 : 1);
} else if (mode === 'rr') {
  const host = opt('host', ''), port = +opt('port', 5202);
  const n = +opt('n', 5000), timeoutMs = +opt('timeout', 5) * 1000;
  const lat = [];
  let err = null;
  await new Promise((resolve) => {
    const s = net.connect({ host, port, noDelay: true });
    let ts = 0n;
    let timer = null;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => { err = 'timeout'; s.destroy(); resolve(); }, timeoutMs);
    };
    const send = () => { ts = nowNs(); arm(); s.write('x'); };
    s.on('connect', send);
    s.on('data', () => {
      lat.push(Number(nowNs() - ts) / 1e3);
      if (lat.length < n) send();
      else { clearTimeout(timer); s.end(); resolve(); }
    });
    s.on('error', (e) => { err ??= e.message; clearTimeout(timer); resolve(); });
  });
  console.log(JSON.stringify({ mode, n, ok: lat.length, fail: n - lat.length, ...quantiles(lat), err }));
  process.exit(lat.length === n ? 0 : 1);
} else {
  console.error('usage: probe.mjs server [--bind IP] [--port P] | conn --host IP [--port P] [--n N] [--par P] | rr --host IP [--port P] [--n N]');
  process.exit(2);
}
