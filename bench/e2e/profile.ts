/**
 * Self-time summary of a V8 .cpuprofile (what `node --cpu-prof` or the inspector writes):
 *   node --import tsx bench/e2e/profile.ts FILE.cpuprofile [TOP=30] [ROOT_DIR] [MODULE.wasm]
 */
import { readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { ProfileResult } from './report.js';

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number; columnNumber?: number }; children?: number[] }[];
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
  top: { fn: string; where: string; selfMs: number; pctBusy: number; caller: string }[];
  byFile: { file: string; selfMs: number; pctBusy: number }[];
}

/** Function index → export name of a WASM module (the release build has no name section). */
export function wasmExportNames(bytes: Uint8Array): Map<number, string> {
  const names = new Map<number, string>();
  let at = 8;
  const leb = () => {
    let v = 0, shift = 0, b: number;
    do {
      if (at >= bytes.length) throw new Error('truncated');
      b = bytes[at++];
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return v;
  };
  const str = () => {
    const n = leb();
    const t = new TextDecoder().decode(bytes.subarray(at, at + n));
    at += n;
    return t;
  };
  try {
    while (at < bytes.length) {
      const id = bytes[at++];
      const size = leb();
      const end = at + size;
      if (id === 7) {
        for (let n = leb(); n > 0; n--) {
          const name = str();
          const kind = bytes[at++];
          const index = leb();
          if (kind === 0) names.set(index, name);
        }
      }
      at = end;
    }
  } catch {
    // a malformed module only costs the names
  }
  return names;
}

/** First line that defines `fn` in a source file: tsx hands V8 one-line modules, so the profile has no usable line. */
const sourceCache = new Map<string, string[] | null>();
function defLine(path: string, fn: string): number | undefined {
  if (!sourceCache.has(path)) {
    try { sourceCache.set(path, readFileSync(path, 'utf8').split('\n')); } catch { sourceCache.set(path, null); }
  }
  const lines = sourceCache.get(path);
  if (!lines || !/^[A-Za-z_$][\w$]*$/.test(fn)) return undefined;
  const re = new RegExp(`^\\s*(?:(?:export|private|public|protected|static|async|readonly|function|get|set|const|let)\\s+)*\\*?${fn.replace(/\$/g, '\\$')}\\s*(?:[(<=:]|\\?\\()`);
  const i = lines.findIndex((l) => re.test(l));
  return i >= 0 ? i + 1 : undefined;
}

function shortUrl(url: string, root: string): string {
  if (url === '') return '(native)';
  let u = url.replace(/^file:\/\//, '');
  if (root && u.startsWith(root + '/')) u = u.slice(root.length + 1);
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) u = u.slice(nm + 1);
  return u;
}

const sourceMaps = new Map<string, SourceMap | null>();

/**
 * Where position (line, col; 0-based) of the bundled engine at file URL `url` (esbuild, as the
 * bench runs it) came from, through the .map beside the bundle: the source's file URL and
 * 0-based line. Undefined without a (readable) map or a mapping there.
 */
export function originalPosition(url: string, line: number, col: number): { url: string; line: number } | undefined {
  if (!sourceMaps.has(url)) {
    let m: SourceMap | null = null;
    try { m = new SourceMap(JSON.parse(readFileSync(fileURLToPath(url) + '.map', 'utf8'))); } catch { m = null; }
    sourceMaps.set(url, m);
  }
  const e = sourceMaps.get(url)?.findEntry(line, col) as { originalSource?: string; originalLine?: number } | undefined;
  if (e?.originalSource === undefined || e.originalLine === undefined) return undefined;
  return { url: new URL(e.originalSource, url).href, line: e.originalLine };
}

/** Frames of a bundled engine are put back at their source file and line, so the tables read like tsx's. */
function unbundle(p: CpuProfile): Set<CpuProfile['nodes'][number]> {
  const mapped = new Set<CpuProfile['nodes'][number]>();
  for (const n of p.nodes) {
    const f = n.callFrame;
    if (!f.url.startsWith('file://') || !/\.m?js$/.test(f.url)) continue;
    // no .map (or an unreadable one): the frames stay as V8 recorded them
    const o = originalPosition(f.url, f.lineNumber, f.columnNumber ?? 0);
    if (o === undefined) continue;
    n.callFrame = { ...f, url: o.url, lineNumber: o.line };
    mapped.add(n);
  }
  return mapped;
}

export function summarizeProfile(p: CpuProfile, topN = 30, root = '', wasmNames = new Map<number, string>()): ProfileSummary {
  const mapped = unbundle(p);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  const self = new Map<number, number>();
  // V8 stores the gap *before* each sample; the time a sample stands for is the gap to the next.
  for (let i = 0; i < p.samples.length; i++) {
    const dt = i + 1 < p.timeDeltas.length ? p.timeDeltas[i + 1] : 0;
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + Math.max(0, dt));
  }
  let totalUs = 0, idleUs = 0, gcUs = 0;
  const fns = new Map<string, { fn: string; where: string; us: number; callers: Map<string, number> }>();
  const files = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (n === undefined) continue;
    totalUs += us;
    let name = n.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') { idleUs += us; continue; }
    if (name === '(garbage collector)') gcUs += us;
    const url = n.callFrame.url;
    const wasmIdx = /^wasm-function\[(\d+)\]$/.exec(name);
    if (wasmIdx && wasmNames.has(+wasmIdx[1])) name = `${wasmNames.get(+wasmIdx[1])} (wasm export)`;
    const file = url.startsWith('wasm://') ? 'wasm' : shortUrl(url, root);
    let line: number | undefined = n.callFrame.lineNumber + 1;
    if (!mapped.has(n) && url.startsWith('file://') && /\.ts$/.test(url)) line = defLine(url.slice('file://'.length), name);
    const where = url && !url.startsWith('wasm://') ? `${file}${line ? `:${line}` : ''}` : file;
    const key = `${name}@${where}`;
    const e = fns.get(key) ?? { fn: name, where, us: 0, callers: new Map<string, number>() };
    e.us += us;
    // the caller tells which path reaches a native or library function (writev from where?)
    let par = byId.get(parentOf.get(id) ?? -1);
    const first = par;
    const direct = par?.callFrame.functionName || '(anonymous)';
    // then the nearest frame of the project's own code, skipping node internals and natives
    while (par !== undefined && !/\/(src|bench)\//.test(par.callFrame.url)) par = byId.get(parentOf.get(par.id) ?? -1);
    if (direct !== '(root)' && par !== undefined) {
      const own = `${par.callFrame.functionName || '(anonymous)'} (${par.callFrame.url.replace(/^.*\/(src|bench)\//, '')})`;
      const c = par === first ? own : `${direct} ← ${own}`;
      e.callers.set(c, (e.callers.get(c) ?? 0) + us);
    }
    fns.set(key, e);
    files.set(file, (files.get(file) ?? 0) + us);
  }
  const busy = Math.max(1, totalUs - idleUs);
  return {
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    gcMs: gcUs / 1000,
    top: [...fns.values()].sort((a, b) => b.us - a.us).slice(0, topN)
      .map((e) => ({ fn: e.fn, where: e.where, selfMs: e.us / 1000, pctBusy: (100 * e.us) / busy,
        caller: [...e.callers.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '' })),
    byFile: [...files.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15)
      .map(([file, us]) => ({ file, selfMs: us / 1000, pctBusy: (100 * us) / busy })),
  };
}

export function renderProfileMarkdown(p: ProfileResult): string {
  const busy = p.totalMs - p.idleMs;
  const L = [
    p.connRate !== undefined
      ? `## CPU profile: vnetkit (wasm-simd), connection rate (connect + 1 B each way + close, ${(p.connPar ?? 1) === 1 ? '1 at a time' : `${p.connPar} in parallel`})`
      : `## CPU profile: vnetkit (wasm-simd), ${p.dir === 'up' ? 'guest→host' : 'host→guest'}, MTU ${p.mtu}, ${p.streams} stream${p.streams === 1 ? '' : 's'}`, '',
    `${p.connRate !== undefined ? `${p.connRate.toFixed(0)} conn/s` : `${p.gbps.toFixed(2)} Gbit/s`} under the profiler (100 µs sampling). Main thread sampled ${(p.totalMs / 1000).toFixed(1)} s: ` +
      `busy ${(busy / 1000).toFixed(1)} s (${((100 * busy) / Math.max(1, p.totalMs)).toFixed(0)} %), GC ${(p.gcMs / 1000).toFixed(2)} s. ` +
      `Percentages are of busy time. Profile: \`${p.file}\`.`, '',
    '| self ms | % busy | function | where | main caller |', '|---:|---:|---|---|---|',
    ...p.top.map((t) => `| ${t.selfMs.toFixed(0)} | ${t.pctBusy.toFixed(1)} | \`${t.fn}\` | ${t.where} | ${t.caller ? `\`${t.caller}\`` : ''} |`),
    '', '| file | self ms | % busy |', '|---|---:|---:|',
    ...p.byFile.map((f) => `| ${f.file} | ${f.selfMs.toFixed(0)} | ${f.pctBusy.toFixed(1)} |`),
  ];
  return L.join('\n') + '\n';
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, top, root, wasm] = process.argv.slice(2);
  if (!file) {
    console.error('usage: profile.ts FILE.cpuprofile [TOP] [ROOT_DIR] [MODULE.wasm]');
    process.exit(2);
  }
  const names = wasm ? wasmExportNames(readFileSync(wasm)) : undefined;
  const s = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, Number(top ?? 30), root ?? '', names);
  process.stdout.write(renderProfileMarkdown({ ...s, mtu: 0, dir: 'up', streams: 1, gbps: 0, file }));
}
