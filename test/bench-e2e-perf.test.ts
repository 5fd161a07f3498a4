import { describe, expect, it } from 'vitest';
import { parsePerfReport, summarizePerf, renderPerfMarkdown } from '../bench/e2e/perf.js';
import { bundleWithMap } from './support/bundle-fixture.js';

// The shape `perf report --no-children --sort dso,sym -g none --stdio -n` prints (perf 6.x).
const REPORT = `# To display the perf.data header info, please use --header/--header-only options.
#
# Total Lost Samples: 0
#
# Samples: 4K of event 'cpu-clock'
# Event count (approx.): 4000000000
#
# Overhead       Samples  Shared Object      Symbol
# ........  ............  .................  ....................
#
    40.00%          1600  [kernel.kallsyms]  [k] _copy_to_iter
    20.00%           800  [kernel.kallsyms]  [k] _copy_from_iter
    15.00%           600  [JIT] tid 31086    [.] JS:wasm-function[3]-3-turbofan
    10.00%           400  [JIT] tid 31086    [.] JS:*segment file:///nonexistent/tree/bench/e2e/vnetkit-engine.mjs:6643:10
    10.00%           400  node               [.] Builtins_LoadIC
     5.00%           200  libc.so.6          [.] __memmove_avx512_unaligned_erms
`;

describe('bench:e2e perf summary', () => {
  it('reads every row, DSOs with spaces included, and turns samples into CPU seconds per GB', () => {
    const rows = parsePerfReport(REPORT);
    expect(rows).toHaveLength(6);
    expect(rows[2]).toEqual({ pct: 15, samples: 600, dso: '[JIT] tid 31086', kernel: false, sym: 'JS:wasm-function[3]-3-turbofan' });
    // 4000 samples at 1000 Hz = 4 CPU s; 8 Gbit/s for 2 s = 2 GB.
    const s = summarizePerf(rows, { hz: 1000, seconds: 2, gbps: 8, topN: 4, wasmNames: new Map([[3, 'csumPartial']]) });
    expect(s.samples).toBe(4000);
    expect(s.cpuS).toBe(4);
    expect(s.gb).toBe(2);
    expect(s.sPerGB).toBe(2);
    expect(s.kernelSPerGB).toBeCloseTo(1.2, 10);
    expect(s.userSPerGB).toBeCloseTo(0.8, 10);
    expect(s.top.map((t) => [t.sym, t.where, t.sPerGB])).toEqual([
      ['_copy_to_iter', 'kernel', 0.8],
      ['_copy_from_iter', 'kernel', 0.4],
      ['csumPartial', 'wasm', 0.3],
      ['segment', 'bench/e2e/vnetkit-engine.mjs:6643:10', 0.2],
    ]);
    const md = renderPerfMarkdown({ ...s, peer: 'vnetkit-simd', label: 'vnetkit (wasm-simd)', mtu: 65520, dir: 'up', streams: 4, gbps: 8, seconds: 2, hz: 1000, file: 'x.data' });
    expect(md).toContain('**2.000 CPU s/GB** (kernel 1.200, user 0.800)');
    expect(md).toContain('| 40.0 | 0.8000 | `_copy_to_iter` | kernel |');
  });

  it('puts a bundled engine\'s JS frames back at their source file and line through the bundle\'s source map', () => {
    const { bundle } = bundleWithMap('vnetkit-perf-');
    // perf maps count lines and columns from 1
    const rows = parsePerfReport(`  60.00%  60  [JIT] tid 7  [.] JS:*hot file://${bundle}:1:1\n  40.00%  40  [JIT] tid 7  [.] JS:~cold file://${bundle}:2:1\n`);
    const s = summarizePerf(rows, { hz: 1000, seconds: 1, gbps: 8, topN: 2 });
    expect(s.top.map((t) => [t.sym, t.where])).toEqual([['hot', 'src/a.ts:42'], ['cold', 'src/b.ts:10']]);
  });

  it('reports nothing per GB when nothing moved, instead of dividing by zero', () => {
    const s = summarizePerf(parsePerfReport(REPORT), { hz: 1000, seconds: 2, gbps: 0, topN: 2 });
    expect(s.sPerGB).toBe(0);
    expect(s.top[0].sPerGB).toBe(0);
    expect(parsePerfReport('# only comments\n\n')).toEqual([]);
  });
});
