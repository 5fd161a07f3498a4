/**
 * Where an engine process's CPU goes, kernel included, from Linux perf:
 * `perf record -e cpu-clock -g -p PID` during an iperf3 run or a
 * connection-rate run, then `perf report --sort dso,sym -n`. cpu-clock is a
 * software event, so this works in a VM without hardware counters (the
 * project VM has none). Each symbol's samples become CPU seconds per GB moved
 * or CPU µs per connection, so engines written in different languages
 * compare symbol by symbol: the kernel's copy into a read buffer, the
 * loopback send, connect() and close(), the engine's own code.
 *
 * Also a CLI: `node --import tsx bench/e2e/perf.ts REPORT.txt HZ SECONDS GBPS`
 * summarises a saved `perf report --no-children --sort dso,sym -g none --stdio -n`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { originalPosition } from './profile.js';

export interface PerfRow { pct: number; samples: number; dso: string; kernel: boolean; sym: string }

/**
 * What a window's samples are divided by: GB moved (an iperf3 run; cost in CPU
 * seconds per GB), connections made (the connection-rate probe; cost in CPU
 * µs per connection) or 1-byte round trips on one open connection (CPU µs per
 * round trip, the request/response latency's share of engine work).
 */
export type PerfUnit = 'GB' | 'conn' | 'rt';

export interface PerfSymbol { sym: string; where: string; kernel: boolean; pct: number; cost: number }

export interface PerfSummary {
  samples: number;
  /** CPU seconds sampled (samples / hz). */
  cpuS: number;
  unit: PerfUnit;
  /** GB moved, connections made or round trips done during the window. */
  work: number;
  /** CPU s per GB, or CPU µs per connection or round trip; 0 when no work was done. */
  cost: number;
  kernelCost: number;
  userCost: number;
  top: PerfSymbol[];
}

/** How a cost is written: "CPU s/GB" with three decimals, "CPU µs/conn" and "CPU µs/round trip" with one. */
export function costLabel(unit: PerfUnit): string {
  return unit === 'GB' ? 'CPU s/GB' : unit === 'conn' ? 'CPU µs/conn' : 'CPU µs/round trip';
}
export function formatCost(unit: PerfUnit, v: number, extra = 0): string {
  return v.toFixed((unit === 'GB' ? 3 : 1) + extra);
}

/** Rows of `perf report --no-children --sort dso,sym -g none --stdio -n`. */
export function parsePerfReport(text: string): PerfRow[] {
  const rows: PerfRow[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    // "  16.21%  1025  [kernel.kallsyms]  [k] _copy_to_iter"; a DSO may hold spaces ("[JIT] tid 31086")
    const m = /^\s*([\d.]+)%\s+(\d+)\s+(.+?)\s+\[([k.])\]\s+(.*)$/.exec(line);
    if (m === null) continue;
    rows.push({ pct: Number(m[1]), samples: Number(m[2]), dso: m[3], kernel: m[4] === 'k', sym: m[5].trim() });
  }
  return rows;
}

/** A bundled engine's position (1-based line:col in the .mjs at `path`) put back at its source file and line when the bundle has a map. */
function unbundle(path: string, line: number, col: number): string {
  const o = originalPosition(pathToFileURL(path).href, line - 1, col - 1);
  return o === undefined ? `${path}:${line}:${col}` : `${fileURLToPath(o.url)}:${o.line + 1}`;
}

/** Node's perf map names JS functions "JS:*name file:///…/file.mjs:line:col"; WASM ones "JS:wasm-function[N]-N-turbofan". */
function readable(sym: string, wasmNames?: Map<number, string>): { sym: string; where: string } {
  const w = /^JS:wasm-function\[(\d+)\]/.exec(sym);
  if (w !== null) return { sym: wasmNames?.get(Number(w[1])) ?? `wasm-function[${w[1]}]`, where: 'wasm' };
  const js = /^JS:[*~^]?(\S*)\s+(\S+)$/.exec(sym);
  if (js === null) return { sym, where: '' };
  let where = js[2];
  const pos = /^file:\/\/(.+):(\d+):(\d+)$/.exec(where);
  if (pos !== null) where = unbundle(pos[1], Number(pos[2]), Number(pos[3]));
  return { sym: js[1] || '(anonymous)', where: where.replace(/^.*\/(bench|src)\//, '$1/') };
}

interface CostOpts { hz: number; unit: PerfUnit; work: number; topN: number; wasmNames?: Map<number, string> }

/** n samples as CPU s per GB or CPU µs per connection or round trip; 0 when no work was done. */
function costOf(n: number, opts: CostOpts): number {
  return opts.work > 0 ? ((opts.unit === 'GB' ? 1 : 1e6) * n) / opts.hz / opts.work : 0;
}

export function summarizePerf(rows: PerfRow[], opts: CostOpts): PerfSummary {
  const samples = rows.reduce((a, r) => a + r.samples, 0);
  const cpuS = samples / opts.hz;
  const per = (n: number) => costOf(n, opts);
  let kernel = 0;
  for (const r of rows) if (r.kernel) kernel += r.samples;
  return {
    samples, cpuS, unit: opts.unit, work: opts.work,
    cost: per(samples),
    kernelCost: per(kernel),
    userCost: per(samples - kernel),
    top: [...rows].sort((a, b) => b.samples - a.samples).slice(0, opts.topN).map((r) => {
      const n = r.kernel ? { sym: r.sym, where: 'kernel' } : readable(r.sym, opts.wasmNames);
      return { ...n, where: n.where || r.dso, kernel: r.kernel, pct: samples > 0 ? (100 * r.samples) / samples : 0, cost: per(r.samples) };
    }),
  };
}

/** Each sample's call stack from `perf script -F ip,sym`, root first. */
export function parsePerfScript(text: string): string[][] {
  const stacks: string[][] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const frames: string[] = [];
    for (const line of block.split('\n')) {
      // "\t    7f3b2206beb1 JS:* node:net:1326:73": address, then the symbol (which may hold spaces)
      const m = /^\s*[0-9a-f]+\s+(.*)$/.exec(line);
      if (m !== null) frames.push(m[1].trim());
    }
    if (frames.length > 0) stacks.push(frames.reverse());
  }
  return stacks;
}

export interface PerfEntry { entry: string; pct: number; cost: number }

/** Node's dispatchers: they name the kind of event, not what ran. */
const DISPATCH: Record<string, string> = {
  processImmediate: 'immediate', processTicksAndRejections: 'tick', processTimers: 'timer', listOnTimeout: 'timer',
};
const PASS_THROUGH = new Set(['emit', 'onceWrapper', '(anonymous)', 'defaultTriggerAsyncIdScope']);

/**
 * Which event-loop callback a sample ran under: the kind of event (an
 * immediate, a tick, a timer, or I/O when a native callback called JS) and
 * the first three JS functions under Node's dispatchers; for native-only
 * stacks, the libuv phase and the calls under it, with threads' own work
 * (V8's compiler, the GC helpers) and sleeping in epoll_pwait named as such.
 * A connection's CPU then reads event by event: the turn that writes to the
 * VM link, the connect() in a tick, the host socket's close.
 */
export function entryOf(stack: string[], wasmNames?: Map<number, string>): string {
  const js = stack.filter((f) => f.startsWith('JS:')).map((f) => readable(f, wasmNames).sym); // names suffice here, not source lines
  if (js.length > 0) {
    const kind = DISPATCH[js[0]] ?? 'io';
    const fns = js.filter((n) => DISPATCH[n] === undefined && !PASS_THROUGH.has(n)).slice(0, 3);
    return `${kind}: ${fns.length > 0 ? fns.join(' > ') : js[0]}`;
  }
  if (stack[0] === 'start_thread' || stack.some((f) => f.includes('PlatformWorkerThread'))) {
    if (stack.some((f) => f.includes('OptimizingCompileDispatcher') || f.includes('compiler::'))) return '(thread) V8 optimising compiler';
    if (stack.some((f) => /Scavenge|Marking|Sweeper|Heap|GC/.test(f))) return '(thread) V8 garbage collector';
    return '(thread) other';
  }
  // Callbacks run after epoll_pwait returns, so a stack through it is the loop asleep or waking.
  if (stack.includes('epoll_pwait')) return 'epoll_pwait (waiting for events, waking)';
  const i = stack.indexOf('uv_run');
  const under = (i >= 0 ? stack.slice(i + 1) : stack.slice(1)).filter((f) => !/^(node::|v8::|entry_SYSCALL|do_syscall|__x64_sys)/.test(f));
  return `(native) ${under.slice(0, 3).join(' > ') || stack[stack.length - 1]}`;
}

/** Samples grouped by entryOf, costed like summarizePerf's symbols, biggest first. */
export function summarizeEntries(stacks: string[][], opts: CostOpts): PerfEntry[] {
  const counts = new Map<string, number>();
  for (const st of stacks) {
    const e = entryOf(st, opts.wasmNames);
    counts.set(e, (counts.get(e) ?? 0) + 1);
  }
  const total = stacks.length;
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, opts.topN).map(([entry, n]) => ({
    entry, pct: total > 0 ? (100 * n) / total : 0, cost: costOf(n, opts),
  }));
}

/** One perf window: the middle of an iperf3 run, or a whole connection-rate or round-trip run. */
export type PerfResult = PerfSummary & {
  peer: string; label: string; mtu: number; seconds: number; hz: number; file: string;
} & (
  | { kind: 'iperf'; dir: 'up' | 'down'; streams: number; gbps: number }
  | { kind: 'conn'; par: number; connRate: number; entries?: PerfEntry[] }
  | { kind: 'rr'; p50us: number; entries?: PerfEntry[] }
);

export function renderPerfMarkdown(p: PerfResult): string {
  const u = p.unit;
  const title = p.kind === 'iperf'
    ? `${p.dir === 'up' ? 'guest→host' : 'host→guest'}, MTU ${p.mtu}, ${p.streams} stream${p.streams === 1 ? '' : 's'}`
    : p.kind === 'conn' ? `connections (connect + 1 B each way + close), ${p.par} at a time` : '1-byte round trips on one open connection';
  const what = p.kind === 'iperf'
    ? `${p.gbps.toFixed(2)} Gbit/s; ${p.seconds} s sampled`
    : p.kind === 'conn'
      ? `${p.connRate.toFixed(0)} conn/s; ${p.work} connections, ${p.seconds.toFixed(1)} s sampled`
      : `p50 ${p.p50us.toFixed(0)} µs; ${p.work} round trips, ${p.seconds.toFixed(1)} s sampled`;
  const work = p.kind === 'iperf' ? `${p.work.toFixed(2)} GB` : p.kind === 'conn' ? `${p.work} connections` : `${p.work} round trips`;
  const basis = p.kind === 'iperf' ? 'GB = the run\'s iperf3 rate × the window.' : 'The window is the probe\'s whole run, after a warm-up.';
  const L = [
    `## perf: ${p.label}, ${title}`, '',
    `${what} at ${p.hz} Hz (cpu-clock, every thread of the process): ${p.cpuS.toFixed(2)} CPU s for ` +
      `${work} = **${formatCost(u, p.cost)} ${costLabel(u)}** (kernel ${formatCost(u, p.kernelCost)}, user ${formatCost(u, p.userCost)}). ` +
      `${basis} Data: \`${p.file}\`.`, '',
    `| % | ${costLabel(u)} | symbol | where |`, '|---:|---:|---|---|',
    ...p.top.map((t) => `| ${t.pct.toFixed(1)} | ${formatCost(u, t.cost, 1)} | \`${t.sym}\` | ${t.where} |`),
  ];
  if (p.kind !== 'iperf' && p.entries?.length) {
    L.push('', 'The same samples by the event-loop callback they ran under (first JS frames from the root):', '',
      `| % | ${costLabel(u)} | callback |`, '|---:|---:|---|',
      ...p.entries.map((e) => `| ${e.pct.toFixed(1)} | ${formatCost(u, e.cost, 1)} | ${e.entry.replace(/\|/g, '\\|')} |`));
  }
  return L.join('\n') + '\n';
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, hz, seconds, gbps] = process.argv.slice(2);
  if (!file || !hz || !seconds || !gbps) {
    console.error('usage: perf.ts REPORT.txt HZ SECONDS GBPS   (REPORT.txt: perf report --no-children --sort dso,sym -g none --stdio -n)');
    process.exit(2);
  }
  const s = summarizePerf(parsePerfReport(readFileSync(file, 'utf8')), { hz: Number(hz), unit: 'GB', work: (Number(gbps) * Number(seconds)) / 8, topN: 30 });
  process.stdout.write(renderPerfMarkdown({ ...s, kind: 'iperf', peer: '', label: file, mtu: 0, dir: 'up', streams: 0, gbps: Number(gbps), seconds: Number(seconds), hz: Number(hz), file }));
}
