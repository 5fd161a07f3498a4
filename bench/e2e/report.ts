/**
 * Result types of the e2e bench and their Markdown rendering. Re-render a stored result with
 *   node --import tsx bench/e2e/report.ts bench/results/e2e/e2e.json
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderProfileMarkdown, type ProfileSummary } from './profile.js';
import { renderPerfMarkdown, type PerfResult } from './perf.js';

export type PeerName = 'vnetkit-simd' | 'vnetkit-js' | 'slirp' | 'passt' | 'relay';

export interface IperfRun {
  peer: PeerName; mtu: number; streams: number; dir: 'up' | 'down'; run: number; status: string;
  gbps?: number; retr?: number; bytes?: number; secs?: number;
  /** With several streams: the slowest stream's rate ÷ the fastest's (1 = fair; near 0 = a stream starved). */
  fairness?: number;
  engineCpuS?: number; relayCpuS?: number; cpuSPerGB?: number;
  enginePct?: number; relayPct?: number; sysPct?: number;
}

export interface ConnRun {
  peer: PeerName; mtu: number; kind: 'conn' | 'rr'; par: number; run: number; n: number; ok: number; fail: number;
  rate?: number; p50us?: number; p99us?: number; enginePct: number; status: string;
  /** Engine CPU seconds over the probe's whole run (results before 8acec1c lack it). */
  engineCpuS?: number;
  /** The untimed warm-up that precedes the measured connection tests of a session (a fresh engine, cold JIT). */
  warmup?: boolean;
}

export interface ProfileResult extends ProfileSummary {
  mtu: number; dir: 'up' | 'down'; streams: number; gbps: number; file: string;
  /** Set for the connection-rate profile (connect, 1 byte each way, close; connPar at a time): conn/s under the profiler. */
  connRate?: number;
  /** Connections at a time in the connection-rate profile. */
  connPar?: number;
}

export interface E2eResult {
  meta: {
    date: string; quick: boolean; commit: string; dirty: boolean; node: string; kernel: string; cpus: number; cpuModel: string;
    iperf3: string; qemu?: string; passt?: string; seconds: number;
    /** net.core.wmem_default and wmem_max: the VM link's send buffer comes from them (absent in runs before cf826d4). */
    wmem?: { default?: number; max?: number };
    /** 1-minute load average at the start and the end: the machine may be shared. */
    load: [number, number];
    options: { peers: string[]; mtus: number[]; streams: number[]; dirs: string[]; runs: number; time: number; omit: number; conn: number; rr: number; connWarmup?: number; linkSndbuf?: number; tsx?: boolean };
  };
  peers: PeerName[];
  runs: IperfRun[];
  conns: ConnRun[];
  notes: string[];
  profiles: ProfileResult[];
  /** perf samples of the engine processes (--perf; absent in runs before it existed). */
  perf?: PerfResult[];
}

export const LABEL: Record<PeerName, string> = {
  'vnetkit-simd': 'vnetkit (wasm-simd)',
  'vnetkit-js': 'vnetkit (js)',
  slirp: 'libslirp (qemu 7.2)',
  passt: 'passt',
  relay: 'relay ceiling',
};
const SHORT: Record<PeerName, string> = { 'vnetkit-simd': 'simd', 'vnetkit-js': 'js', slirp: 'slirp', passt: 'passt', relay: 'relay' };

export function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const fmt = (x: number | undefined, d = 2) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(d));
const arrow = (dir: string) => (dir === 'up' ? '↑ guest→host' : '↓ host→guest');

interface Metric { label: string; better: 'higher' | 'lower'; digits: number; value(peer: PeerName): number | undefined }

/**
 * Engine CPU µs per connection: CPU over the probe's run ÷ connections made. (CPU % ÷ conn/s,
 * used before, divided by the probe's wall time including its start-up, so it under-counted
 * most for the fastest peer.)
 */
const cpuPerConn = (c: ConnRun) =>
  c.engineCpuS !== undefined ? (c.ok > 0 ? (c.engineCpuS / c.ok) * 1e6 : undefined) : c.rate ? (c.enginePct / 100 / c.rate) * 1e6 : undefined;

function metrics(r: E2eResult): Metric[] {
  const ok = (p: PeerName, mtu: number, streams: number, dir: string) =>
    r.runs.filter((x) => x.peer === p && x.mtu === mtu && x.streams === streams && x.dir === dir && x.status === 'ok');
  const out: Metric[] = [];
  const { mtus, streams, dirs } = r.meta.options;
  for (const mtu of mtus) for (const p of streams) for (const dir of dirs) {
    const tag = `${arrow(dir)}, MTU ${mtu}, ${p} stream${p > 1 ? 's' : ''}`;
    out.push({ label: `${tag}: Gbit/s`, better: 'higher', digits: 2, value: (peer) => median(ok(peer, mtu, p, dir).map((x) => x.gbps!)) });
    out.push({ label: `${tag}: engine CPU s/GB`, better: 'lower', digits: 2,
      value: (peer) => median(ok(peer, mtu, p, dir).map((x) => x.cpuSPerGB).filter((x): x is number => x !== undefined)) });
  }
  // median over the rounds of each round's figure
  // (the warm-up rounds only when asked for)
  const conn = (kind: string, par: number, f: (c: ConnRun) => number | undefined, warmup = false) => (peer: PeerName) =>
    median(r.conns.filter((c) => c.peer === peer && c.kind === kind && c.par === par && c.status === 'ok' && (c.warmup === true) === warmup)
      .map(f).filter((x): x is number => x !== undefined));
  if (r.meta.options.conn > 0) {
    out.push({ label: 'connect + 1 B each way + close, 1 at a time: conn/s', better: 'higher', digits: 0, value: conn('conn', 1, (c) => c.rate) });
    out.push({ label: 'the same, 8 in parallel: conn/s', better: 'higher', digits: 0, value: conn('conn', 8, (c) => c.rate) });
    if (r.meta.options.connWarmup) {
      out.push({ label: `the first ${r.meta.options.connWarmup} after the engine starts (warm-up), 1 at a time: conn/s`, better: 'higher', digits: 0,
        value: conn('conn', 1, (c) => c.rate, true) });
    }
    out.push({ label: 'connect + request + close latency p50: µs', better: 'lower', digits: 0, value: conn('conn', 1, (c) => c.p50us) });
    out.push({ label: 'connect + request + close latency p99: µs', better: 'lower', digits: 0, value: conn('conn', 1, (c) => c.p99us) });
    // CPU per connection varies less between rounds than the rate does (the rate also carries
    // the client's and server's scheduling on a shared machine).
    out.push({ label: 'engine CPU per connection, 1 at a time: µs', better: 'lower', digits: 0, value: conn('conn', 1, cpuPerConn) });
    out.push({ label: 'engine CPU per connection, 8 in parallel: µs', better: 'lower', digits: 0, value: conn('conn', 8, cpuPerConn) });
  }
  if (r.meta.options.rr > 0) {
    out.push({ label: 'request/response (1 B, open connection) p50: µs', better: 'lower', digits: 0, value: conn('rr', 1, (c) => c.p50us) });
    out.push({ label: 'request/response (1 B, open connection) p99: µs', better: 'lower', digits: 0, value: conn('rr', 1, (c) => c.p99us) });
  }
  return out;
}

/** vnetkit's ratio to every other peer, and SIMD to JS. */
function ratioPairs(peers: PeerName[]): [PeerName, PeerName][] {
  const ours = peers.filter((p) => p.startsWith('vnetkit'));
  const pairs: [PeerName, PeerName][] = [];
  for (const v of ours) for (const p of peers) if (!p.startsWith('vnetkit')) pairs.push([v, p]);
  if (ours.length === 2) pairs.push(['vnetkit-simd', 'vnetkit-js']);
  return pairs;
}

export function renderMarkdown(r: E2eResult): string {
  const L: string[] = [];
  const m = r.meta;
  L.push(`# vnetkit e2e bench${m.quick ? ' (quick)' : ''}`, '');
  L.push(`${m.date}, commit ${m.commit.slice(0, 10) || '–'}${m.dirty ? ' + working-tree changes' : ''}, node ${m.node}, kernel ${m.kernel}, ` +
    `${m.cpus} × ${m.cpuModel}; ${m.iperf3}${m.qemu ? `; ${m.qemu}` : ''}${m.passt ? `; passt ${m.passt}` : ''}. ` +
    `iperf3 -t ${m.options.time} -O ${m.options.omit}, median of ${m.options.runs} run${m.options.runs > 1 ? 's' : ''}; took ${m.seconds} s; ` +
    `${m.wmem ? `net.core.wmem_default ${m.wmem.default ?? '?'}, wmem_max ${m.wmem.max ?? '?'} (they bound the VM link's send buffer); ` : ''}` +
    `load average ${m.load?.map((x) => x.toFixed(1)).join(' → ') ?? '?'} (the second figure includes the bench's own processes; ` +
    'other work on the machine skews every row alike only if it is steady).', '');
  L.push('Guest = a network namespace\'s own kernel behind a TAP, relayed frame by frame (qemu stream framing) to each engine\'s ' +
    'unix socket; servers on the host\'s 127.0.0.1 through each engine\'s host-loopback address. ' +
    '"relay ceiling" = a second namespace\'s kernel behind a second relay (no userspace TCP, two relays). ' +
    (m.options.tsx ? 'vnetkit ran under tsx from its TypeScript sources, not bundled as published. ' : '') +
    (m.options.linkSndbuf ? `vnetkit's end of the VM link was made by a launcher stand-in (accept-exec.c) that asked for SO_SNDBUF ${m.options.linkSndbuf} bytes on it and handed it over as --fd; without this option vnetkit keeps the system default buffer. ` : '') +
    'CPU s/GB = CPU seconds of the engine process per GB moved (warm-up included on both sides). ' +
    'Ratios are vnetkit ÷ peer: above 1 is better for Gbit/s and conn/s, below 1 is better for µs and CPU s/GB.', '');
  const pairs = ratioPairs(r.peers);
  const cells = (xs: string[]) => xs.map((x) => ` ${x} |`).join('');
  L.push(`| metric |${cells(r.peers.map((p) => LABEL[p]))}${cells(pairs.map(([a, b]) => `${SHORT[a]} ÷ ${SHORT[b]}`))}`);
  L.push(`|---|${[...r.peers, ...pairs].map(() => '---:|').join('')}`);
  for (const met of metrics(r)) {
    const v = new Map(r.peers.map((p) => [p, met.value(p)]));
    const ratios = pairs.map(([a, b]) => {
      const x = v.get(a), y = v.get(b);
      return x !== undefined && y !== undefined && y > 0 ? `${x / y >= 10 ? (x / y).toFixed(1) : (x / y).toFixed(2)}×` : '–';
    });
    L.push(`| ${met.label} |${cells(r.peers.map((p) => fmt(v.get(p), met.digits)))}${cells(ratios)}`);
  }
  if (r.peers.includes('slirp') && r.meta.options.mtus.some((x) => x !== 1500)) {
    L.push('', 'qemu 7.2\'s `-netdev user` has no mtu=: libslirp keeps MSS 1460 at every TAP MTU, so its large-MTU rows measure that.');
  }

  L.push('', '## Every throughput configuration', '');
  L.push('| peer | MTU | streams | direction | Gbit/s (median) | min..max | slowest ÷ fastest stream (worst run) | runs ok | retr | engine CPU % | CPU s/GB | relay CPU % | system busy % |');
  L.push('|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  const order = (x: IperfRun) => [r.peers.indexOf(x.peer), x.mtu, x.streams, x.dir === 'up' ? 0 : 1];
  const sorted = [...r.runs].sort((a, b) => {
    const oa = order(a), ob = order(b);
    for (let i = 0; i < oa.length; i++) if (oa[i] !== ob[i]) return oa[i] - ob[i];
    return 0;
  });
  const keys = [...new Set(sorted.map((x) => `${x.peer}|${x.mtu}|${x.streams}|${x.dir}`))];
  for (const k of keys) {
    const [peer, mtu, streams, dir] = k.split('|');
    const all = r.runs.filter((x) => `${x.peer}|${x.mtu}|${x.streams}|${x.dir}` === k);
    const ok = all.filter((x) => x.status === 'ok');
    const med = (f: (x: IperfRun) => number | undefined) => median(ok.map(f).filter((x): x is number => x !== undefined));
    const g = ok.map((x) => x.gbps!);
    const bad = all.filter((x) => x.status !== 'ok').map((x) => x.status);
    const fair = ok.map((x) => x.fairness).filter((x): x is number => x !== undefined);
    L.push(`| ${LABEL[peer as PeerName]} | ${mtu} | ${streams} | ${arrow(dir)} | **${fmt(median(g))}** | ${g.length ? `${fmt(Math.min(...g))}..${fmt(Math.max(...g))}` : '–'} | ` +
      `${fair.length ? fmt(Math.min(...fair)) : '–'} | ` +
      `${ok.length}/${all.length}${bad.length ? ` (${[...new Set(bad)].join(', ')})` : ''} | ${fmt(med((x) => x.retr), 0)} | ${fmt(med((x) => x.enginePct), 0)} | ` +
      `${fmt(med((x) => x.cpuSPerGB))} | ${fmt(med((x) => x.relayPct), 0)} | ${fmt(med((x) => x.sysPct), 0)} |`);
  }
  if (r.conns.length) {
    L.push('', '## Connections and latency (first MTU)', '');
    // Each round's CPU per connection too: libslirp's moves between two levels from round to round.
    L.push('| peer | test | parallel | round | ok / n | conn/s | p50 µs | p99 µs | engine CPU % | engine CPU µs per connection | status |');
    L.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|');
    for (const c of [...r.conns].sort((a, b) => r.peers.indexOf(a.peer) - r.peers.indexOf(b.peer) || a.kind.localeCompare(b.kind) || a.par - b.par || a.run - b.run)) {
      L.push(`| ${LABEL[c.peer]} | ${c.kind === 'conn' ? (c.warmup ? 'warm-up: connect+1 B+close' : 'connect+1 B+close') : '1 B round trips'} | ${c.par} | ${c.run} | ${c.ok}/${c.n} | ${c.kind === 'conn' ? fmt(c.rate, 0) : '–'} | ` +
        `${fmt(c.p50us, 0)} | ${fmt(c.p99us, 0)} | ${fmt(c.enginePct, 0)} | ${c.kind === 'conn' ? fmt(cpuPerConn(c), 0) : '–'} | ${c.status} |`);
    }
    // Every transaction of every round counts toward "no failed connection in 10,000".
    L.push('', '| peer | connections made (connect + 1 B + close) | failed |', '|---|---:|---:|');
    for (const peer of r.peers) {
      const cs = r.conns.filter((c) => c.peer === peer && c.kind === 'conn');
      if (cs.length === 0) continue;
      const n = cs.reduce((a, c) => a + c.n, 0);
      const ok = cs.reduce((a, c) => a + c.ok, 0);
      L.push(`| ${LABEL[peer]} | ${n} | ${n - ok} |`);
    }
  }
  if (r.notes.length) L.push('', '## Notes', '', ...r.notes.map((n) => `- ${n}`));
  return L.join('\n') + '\n';
}

/** The whole e2e.md: the tables, then each CPU profile and each perf sample. */
export function renderReport(r: E2eResult): string {
  return renderMarkdown(r) + (r.profiles?.length ? '\n' + r.profiles.map(renderProfileMarkdown).join('\n') : '') +
    (r.perf?.length ? '\n' + r.perf.map(renderPerfMarkdown).join('\n') : '');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: report.ts RESULT.json');
    process.exit(2);
  }
  process.stdout.write(renderReport(JSON.parse(readFileSync(file, 'utf8')) as E2eResult));
}
