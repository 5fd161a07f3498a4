/**
 * Where an engine process's CPU goes, kernel included, from Linux perf:
 * `perf record -e cpu-clock -g -p PID` during an iperf3 run, then
 * `perf report --sort dso,sym -n`. cpu-clock is a software event, so this
 * works in a VM without hardware counters (the project VM has none). Each
 * symbol's samples become CPU seconds per GB moved, so engines written in
 * different languages compare symbol by symbol: the kernel's copy into a
 * read buffer, the loopback send, the engine's own code.
 *
 * Also a CLI: `node --import tsx bench/e2e/perf.ts REPORT.txt HZ SECONDS GBPS`
 * summarises a saved `perf report --no-children --sort dso,sym -g none --stdio -n`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { originalPosition } from './profile.js';

export interface PerfRow { pct: number; samples: number; dso: string; kernel: boolean; sym: string }

export interface PerfSymbol { sym: string; where: string; kernel: boolean; pct: number; sPerGB: number }

export interface PerfSummary {
  samples: number;
  /** CPU seconds sampled (samples / hz). */
  cpuS: number;
  /** GB the peer moved during the window (its iperf3 rate times the window). */
  gb: number;
  sPerGB: number;
  kernelSPerGB: number;
  userSPerGB: number;
  top: PerfSymbol[];
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

export function summarizePerf(rows: PerfRow[], opts: { hz: number; seconds: number; gbps: number; topN: number; wasmNames?: Map<number, string> }): PerfSummary {
  const samples = rows.reduce((a, r) => a + r.samples, 0);
  const cpuS = samples / opts.hz;
  const gb = (opts.gbps * opts.seconds) / 8;
  const per = (n: number) => (gb > 0 ? n / opts.hz / gb : 0);
  let kernel = 0;
  for (const r of rows) if (r.kernel) kernel += r.samples;
  return {
    samples, cpuS, gb,
    sPerGB: per(samples),
    kernelSPerGB: per(kernel),
    userSPerGB: per(samples - kernel),
    top: [...rows].sort((a, b) => b.samples - a.samples).slice(0, opts.topN).map((r) => {
      const n = r.kernel ? { sym: r.sym, where: 'kernel' } : readable(r.sym, opts.wasmNames);
      return { ...n, where: n.where || r.dso, kernel: r.kernel, pct: samples > 0 ? (100 * r.samples) / samples : 0, sPerGB: per(r.samples) };
    }),
  };
}

export interface PerfResult extends PerfSummary {
  peer: string; label: string; mtu: number; dir: 'up' | 'down'; streams: number; gbps: number; seconds: number; hz: number; file: string;
}

export function renderPerfMarkdown(p: PerfResult): string {
  const L = [
    `## perf: ${p.label}, ${p.dir === 'up' ? 'guest→host' : 'host→guest'}, MTU ${p.mtu}, ${p.streams} stream${p.streams === 1 ? '' : 's'}`, '',
    `${p.gbps.toFixed(2)} Gbit/s; ${p.seconds} s sampled at ${p.hz} Hz (cpu-clock, every thread of the process): ${p.cpuS.toFixed(2)} CPU s for ` +
      `${p.gb.toFixed(2)} GB = **${p.sPerGB.toFixed(3)} CPU s/GB** (kernel ${p.kernelSPerGB.toFixed(3)}, user ${p.userSPerGB.toFixed(3)}). ` +
      `GB = the run's iperf3 rate × the window. Data: \`${p.file}\`.`, '',
    '| % | CPU s/GB | symbol | where |', '|---:|---:|---|---|',
    ...p.top.map((t) => `| ${t.pct.toFixed(1)} | ${t.sPerGB.toFixed(4)} | \`${t.sym}\` | ${t.where} |`),
  ];
  return L.join('\n') + '\n';
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, hz, seconds, gbps] = process.argv.slice(2);
  if (!file || !hz || !seconds || !gbps) {
    console.error('usage: perf.ts REPORT.txt HZ SECONDS GBPS   (REPORT.txt: perf report --no-children --sort dso,sym -g none --stdio -n)');
    process.exit(2);
  }
  const s = summarizePerf(parsePerfReport(readFileSync(file, 'utf8')), { hz: Number(hz), seconds: Number(seconds), gbps: Number(gbps), topN: 30 });
  process.stdout.write(renderPerfMarkdown({ ...s, peer: '', label: file, mtu: 0, dir: 'up', streams: 0, gbps: Number(gbps), seconds: Number(seconds), hz: Number(hz), file }));
}
