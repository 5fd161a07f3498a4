/**
 * Self-time summary of a V8 .cpuprofile (what `node --cpu-prof` or the inspector writes):
 *   node --import tsx bench/e2e/profile.ts FILE.cpuprofile [TOP=30] [ROOT_DIR]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ProfileResult } from './report.js';

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  /** Sampled wall time of the main thread, idle included, in ms. */
  totalMs: number;
  idleMs: number;
  gcMs: number;
  top: { fn: string; where: string; selfMs: number; pctBusy: number }[];
  byFile: { file: string; selfMs: number; pctBusy: number }[];
}

function shortUrl(url: string, root: string): string {
  if (url === '') return '(native)';
  let u = url.replace(/^file:\/\//, '');
  if (root && u.startsWith(root + '/')) u = u.slice(root.length + 1);
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) u = u.slice(nm + 1);
  return u;
}

export function summarizeProfile(p: CpuProfile, topN = 30, root = ''): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  // V8 stores the gap *before* each sample; the time a sample stands for is the gap to the next.
  for (let i = 0; i < p.samples.length; i++) {
    const dt = i + 1 < p.timeDeltas.length ? p.timeDeltas[i + 1] : 0;
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + Math.max(0, dt));
  }
  let totalUs = 0, idleUs = 0, gcUs = 0;
  const fns = new Map<string, { fn: string; where: string; us: number }>();
  const files = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (n === undefined) continue;
    totalUs += us;
    const name = n.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') { idleUs += us; continue; }
    if (name === '(garbage collector)') gcUs += us;
    const file = shortUrl(n.callFrame.url, root);
    const where = n.callFrame.url ? `${file}:${n.callFrame.lineNumber + 1}` : file;
    const key = `${name}@${where}`;
    const e = fns.get(key) ?? { fn: name, where, us: 0 };
    e.us += us;
    fns.set(key, e);
    files.set(file, (files.get(file) ?? 0) + us);
  }
  const busy = Math.max(1, totalUs - idleUs);
  return {
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    gcMs: gcUs / 1000,
    top: [...fns.values()].sort((a, b) => b.us - a.us).slice(0, topN)
      .map((e) => ({ fn: e.fn, where: e.where, selfMs: e.us / 1000, pctBusy: (100 * e.us) / busy })),
    byFile: [...files.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15)
      .map(([file, us]) => ({ file, selfMs: us / 1000, pctBusy: (100 * us) / busy })),
  };
}

export function renderProfileMarkdown(p: ProfileResult): string {
  const busy = p.totalMs - p.idleMs;
  const L = [
    `## CPU profile: vnetkit (wasm-simd), ${p.dir === 'up' ? 'guest→host' : 'host→guest'}, MTU ${p.mtu}, ${p.streams} stream`, '',
    `${p.gbps.toFixed(2)} Gbit/s under the profiler (100 µs sampling). Main thread sampled ${(p.totalMs / 1000).toFixed(1)} s: ` +
      `busy ${(busy / 1000).toFixed(1)} s (${((100 * busy) / Math.max(1, p.totalMs)).toFixed(0)} %), GC ${(p.gcMs / 1000).toFixed(2)} s. ` +
      `Percentages are of busy time. Profile: \`${p.file}\`.`, '',
    '| self ms | % busy | function | where |', '|---:|---:|---|---|',
    ...p.top.map((t) => `| ${t.selfMs.toFixed(0)} | ${t.pctBusy.toFixed(1)} | \`${t.fn}\` | ${t.where} |`),
    '', '| file | self ms | % busy |', '|---|---:|---:|',
    ...p.byFile.map((f) => `| ${f.file} | ${f.selfMs.toFixed(0)} | ${f.pctBusy.toFixed(1)} |`),
  ];
  return L.join('\n') + '\n';
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, top, root] = process.argv.slice(2);
  if (!file) {
    console.error('usage: profile.ts FILE.cpuprofile [TOP] [ROOT_DIR]');
    process.exit(2);
  }
  const s = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, Number(top ?? 30), root ?? '');
  process.stdout.write(renderProfileMarkdown({ ...s, mtu: 0, dir: 'up', streams: 1, gbps: 0, file }));
}
