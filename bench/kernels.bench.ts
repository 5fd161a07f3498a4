/**
 * npm run bench: one table of every kernel, WASM-SIMD / WASM / JS side by
 * side with the ratio to JS, plus the same numbers as JSON in bench/results/.
 * VNETKIT_BENCH_MS sets the time per cell (default 300 ms);
 * VNETKIT_BENCH_FILTER=substring runs only matching rows. The tcp-e2e rows are
 * bulk TCP through the engine (in-process guest peer ⇄ TcpStack ⇄ loopback socket).
 */
import os from 'node:os';
import { writeFileSync, mkdirSync, readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { measureRow, sink, type Row, type RowSpec } from './lib.js';
import { rows as checksumRows } from './suites/checksum.js';
import { rows as classifyRows } from './suites/classify.js';
import { rows as flowRows } from './suites/flow.js';
import { rows as reasmRows } from './suites/reasm.js';
import { tcpE2eRows } from './suites/tcp-e2e.js';

const filter = process.env.VNETKIT_BENCH_FILTER ?? '';
const specs: RowSpec[] = [...checksumRows(), ...classifyRows(), ...flowRows(), ...reasmRows()].filter(
  (s) => !filter || `${s.group} ${s.name}`.includes(filter),
);

const results: Row[] = [];
for (const spec of specs) {
  const row = await measureRow(spec);
  results.push(row);
  process.stderr.write(`  measured ${row.group} ${row.name}\n`);
}
// Bulk TCP through the engine's stack measures its own wall time (not a kernel call).
results.push(...(await tcpE2eRows(undefined, filter)));

const fmt = (v: number | undefined) => (v === undefined ? '-' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const ratio = (a: number | undefined, b: number | undefined) => (a && b ? `${(a / b).toFixed(2)}×` : '-');
const header = ['kernel', 'case', 'unit', 'WASM-SIMD', 'WASM', 'JS', 'SIMD/JS', 'WASM/JS'];
const lines = results.map((r) => [
  r.group, r.name, r.unit,
  fmt(r.values['wasm-simd']), fmt(r.values.wasm), fmt(r.values.js),
  ratio(r.values['wasm-simd'], r.values.js), ratio(r.values.wasm, r.values.js),
]);
const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
const pad = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |';
const env = {
  node: process.versions.node,
  v8: process.versions.v8,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cores: os.cpus().length,
  platform: `${os.platform()} ${os.arch()}`,
  date: new Date().toISOString(),
};
console.log(`vnetkit kernels — Node ${env.node}, V8 ${env.v8}, ${env.cpu} (${env.cores} cores), ${env.platform}`);
console.log(pad(header));
console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
for (const l of lines) console.log(pad(l));
console.log(`(sink ${sink.value >>> 0}: results folded so no work is elided)`);

const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
mkdirSync(dir, { recursive: true });
// A filtered run updates its rows and keeps the others from the last full run.
const file = join(dir, 'kernels.json');
let merged = results;
if (filter && existsSync(file)) {
  const old = JSON.parse(readFileSync(file, 'utf8')) as { rows: Row[] };
  const key = (r: Row) => `${r.group}\u0000${r.name}`;
  const fresh = new Map(results.map((r) => [key(r), r]));
  merged = old.rows.map((r) => fresh.get(key(r)) ?? r);
  for (const r of results) if (!old.rows.some((o) => key(o) === key(r))) merged.push(r);
}
writeFileSync(file, JSON.stringify({ env, rows: merged }, null, 2) + '\n');
