import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { summarizeProfile } from '../bench/e2e/profile.js';
import { bundleWithMap } from './support/bundle-fixture.js';

/** A one-node-per-function profile where each function got `ms` of self time. */
function profile(frames: { fn: string; url: string; line: number; col: number; ms: number }[]) {
  const nodes = [{ id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1, columnNumber: -1 }, children: frames.map((_, i) => i + 2) },
    ...frames.map((f, i) => ({ id: i + 2, callFrame: { functionName: f.fn, url: f.url, lineNumber: f.line, columnNumber: f.col } }))];
  const samples: number[] = [];
  const timeDeltas: number[] = [];
  frames.forEach((f, i) => { for (let k = 0; k < f.ms; k++) { samples.push(i + 2); timeDeltas.push(1000); } });
  timeDeltas.push(1000);
  return { nodes, samples, timeDeltas, startTime: 0, endTime: samples.length * 1000 };
}

describe('bench:e2e profile summary', () => {
  it('maps frames of a bundled engine back to source files and lines through the bundle\'s source map', () => {
    const { root, bundle } = bundleWithMap('vnetkit-prof-');
    const url = pathToFileURL(bundle).href;
    const s = summarizeProfile(profile([
      { fn: 'hot', url, line: 0, col: 0, ms: 30 },
      { fn: 'cold', url, line: 1, col: 0, ms: 10 },
    ]) as never, 10, root);
    expect(s.top.map((t) => [t.fn, t.where])).toEqual([['hot', 'src/a.ts:42'], ['cold', 'src/b.ts:10']]);
    expect(s.byFile.map((f) => f.file)).toEqual(['src/a.ts', 'src/b.ts']);
  });

  it('leaves frames without a source map where they are', () => {
    const root = mkdtempSync(join(tmpdir(), 'vnetkit-prof-'));
    const url = pathToFileURL(join(root, 'plain.mjs')).href;
    const s = summarizeProfile(profile([{ fn: 'f', url, line: 4, col: 2, ms: 5 }]) as never, 10, root);
    expect(s.top[0].where).toBe('plain.mjs:5');
  });
});
