import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A two-function "bundle" at ROOT/bench/e2e/engine.mjs with a source map beside it, as the
 * e2e bench's esbuild build leaves: line 0 → src/a.ts line 41, line 1 → src/b.ts line 9
 * (0-based; VLQ line deltas AAyCA; AChCA).
 */
export function bundleWithMap(prefix: string): { root: string; bundle: string } {
  const root = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(root, 'bench/e2e'), { recursive: true });
  const bundle = join(root, 'bench/e2e/engine.mjs');
  writeFileSync(bundle, 'function hot(){}\nfunction cold(){}\n');
  writeFileSync(bundle + '.map', JSON.stringify({ version: 3, sources: ['../../src/a.ts', '../../src/b.ts'], names: [], mappings: 'AAyCA;AChCA' }));
  return { root, bundle };
}
