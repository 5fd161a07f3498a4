import { describe, expect, it } from 'vitest';
import { parsePerfReport, parsePerfScript, summarizePerf, summarizeEntries, entryOf, renderPerfMarkdown } from '../bench/e2e/perf.js';
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
    const s = summarizePerf(rows, { hz: 1000, unit: 'GB', work: 2, topN: 4, wasmNames: new Map([[3, 'csumPartial']]) });
    expect(s.samples).toBe(4000);
    expect(s.cpuS).toBe(4);
    expect(s.work).toBe(2);
    expect(s.cost).toBe(2);
    expect(s.kernelCost).toBeCloseTo(1.2, 10);
    expect(s.userCost).toBeCloseTo(0.8, 10);
    expect(s.top.map((t) => [t.sym, t.where, t.cost])).toEqual([
      ['_copy_to_iter', 'kernel', 0.8],
      ['_copy_from_iter', 'kernel', 0.4],
      ['csumPartial', 'wasm', 0.3],
      ['segment', 'bench/e2e/vnetkit-engine.mjs:6643:10', 0.2],
    ]);
    const md = renderPerfMarkdown({ ...s, kind: 'iperf', peer: 'vnetkit-simd', label: 'vnetkit (wasm-simd)', mtu: 65520, dir: 'up', streams: 4, gbps: 8, seconds: 2, hz: 1000, file: 'x.data' });
    expect(md).toContain('**2.000 CPU s/GB** (kernel 1.200, user 0.800)');
    expect(md).toContain('| 40.0 | 0.8000 | `_copy_to_iter` | kernel |');
  });

  it('puts a bundled engine\'s JS frames back at their source file and line through the bundle\'s source map', () => {
    const { bundle } = bundleWithMap('vnetkit-perf-');
    // perf maps count lines and columns from 1
    const rows = parsePerfReport(`  60.00%  60  [JIT] tid 7  [.] JS:*hot file://${bundle}:1:1\n  40.00%  40  [JIT] tid 7  [.] JS:~cold file://${bundle}:2:1\n`);
    const s = summarizePerf(rows, { hz: 1000, unit: 'GB', work: 1, topN: 2 });
    expect(s.top.map((t) => [t.sym, t.where])).toEqual([['hot', 'src/a.ts:42'], ['cold', 'src/b.ts:10']]);
  });

  it('turns a connection run\'s samples into CPU µs per connection', () => {
    // 4000 samples at 1000 Hz = 4 CPU s over 2000 connections = 2000 µs each.
    const s = summarizePerf(parsePerfReport(REPORT), { hz: 1000, unit: 'conn', work: 2000, topN: 2 });
    expect(s.cost).toBeCloseTo(2000, 9);
    expect(s.kernelCost).toBeCloseTo(1200, 9);
    expect(s.top.map((t) => [t.sym, t.cost])).toEqual([['_copy_to_iter', 800], ['_copy_from_iter', 400]]);
    const md = renderPerfMarkdown({ ...s, kind: 'conn', peer: 'passt', label: 'passt', mtu: 1500, par: 8, connRate: 3000, seconds: 0.7, hz: 1000, file: 'c.data',
      entries: [{ entry: 'io: onStreamRead | x', pct: 25, cost: 500 }] });
    expect(md).toContain('| 25.0 | 500.00 | io: onStreamRead \\| x |');
    expect(md).toContain('## perf: passt, connections (connect + 1 B each way + close), 8 at a time');
    expect(md).toContain('3000 conn/s; 2000 connections');
    expect(md).toContain('**2000.0 CPU µs/conn** (kernel 1200.0, user 800.0)');
    expect(md).toContain('| % | CPU µs/conn | symbol | where |');
    expect(md).toContain('| 40.0 | 800.00 | `_copy_to_iter` | kernel |');
  });

  it('turns a round-trip run\'s samples into CPU µs per round trip, with the callbacks they ran under', () => {
    // 4000 samples at 1000 Hz = 4 CPU s over 40000 round trips = 100 µs each.
    const s = summarizePerf(parsePerfReport(REPORT), { hz: 1000, unit: 'rt', work: 40000, topN: 1 });
    expect(s.cost).toBeCloseTo(100, 9);
    expect(s.userCost).toBeCloseTo(40, 9);
    const md = renderPerfMarkdown({ ...s, kind: 'rr', peer: 'vnetkit-simd', label: 'vnetkit (wasm-simd)', mtu: 1500, p50us: 148, seconds: 5.3, hz: 1000, file: 'r.data',
      entries: [{ entry: 'immediate: endTurn > flushTx > _write', pct: 10, cost: 10 }] });
    expect(md).toContain('## perf: vnetkit (wasm-simd), 1-byte round trips on one open connection');
    expect(md).toContain('p50 148 µs; 40000 round trips, 5.3 s sampled');
    expect(md).toContain('**100.0 CPU µs/round trip** (kernel 60.0, user 40.0)');
    expect(md).toContain('| 10.0 | 10.00 | immediate: endTurn > flushTx > _write |');
  });

  it('reports no cost when no work was done, instead of dividing by zero', () => {
    const s = summarizePerf(parsePerfReport(REPORT), { hz: 1000, unit: 'GB', work: 0, topN: 2 });
    expect(s.cost).toBe(0);
    expect(s.top[0].cost).toBe(0);
    expect(parsePerfReport('# only comments\n\n')).toEqual([]);
  });

  // `perf script -F ip,sym`: one block per sample, leaf first, symbols that may hold spaces.
  const SCRIPT = `
\t          14ba25b uv__tcp_connect
\t    7f3b2203651c JS:^internalConnect node:net:1038:25
\t    7f3b2206beb1 JS:* node:net:1326:73
\t    7f3b22046d75 JS:*processTicksAndRejections node:internal/process/task_queues:67:35
\t          14ac92c uv_run
\t           2724a __libc_start_call_main

\t     ffffffff8100 pvm_irq_enable
\t          14ac000 epoll_pwait
\t          14ac111 uv__io_poll
\t          14ac92c uv_run

\t          1500000 __GI___libc_write
\t    7f3b22000001 JS:*_write node:internal/streams/writable:453:16
\t    7f3b22000002 JS:*flushTx file:///nonexistent/vnetkit-engine.mjs:8260:10
\t    7f3b22000003 JS:*endTurn file:///nonexistent/vnetkit-engine.mjs:8251:13
\t    7f3b22000004 JS:*processImmediate node:internal/timers:438:28
\t          14ac92c uv_run

\t          1600000 v8::internal::compiler::GraphReducer::ReduceTop
\t          1600001 v8::internal::OptimizingCompileDispatcher::CompileTask::RunInternal
\t          1600002 node::(anonymous namespace)::PlatformWorkerThread
\t          1600003 start_thread

\t     ffffffff8200 inet_shutdown
\t     ffffffff8201 __sys_shutdown
\t     ffffffff8202 do_syscall_64
\t          1700000 __GI___shutdown
\t          14ac92c uv_run
`;

  it('names the event-loop callback each sample ran under, Node\'s dispatchers and pass-throughs skipped', () => {
    const stacks = parsePerfScript(SCRIPT);
    expect(stacks).toHaveLength(5);
    expect(stacks[0][0]).toBe('__libc_start_call_main');
    expect(stacks[0][stacks[0].length - 1]).toBe('uv__tcp_connect');
    expect(stacks.map((st) => entryOf(st))).toEqual([
      'tick: internalConnect',
      'epoll_pwait (waiting for events, waking)',
      'immediate: endTurn > flushTx > _write',
      '(thread) V8 optimising compiler',
      '(native) __GI___shutdown > __sys_shutdown > inet_shutdown',
    ]);
    // Three of the five samples in one group: 3 samples at 1000 Hz over 10 connections = 300 µs each.
    const e = summarizeEntries([...stacks, stacks[2], stacks[2]], { hz: 1000, unit: 'conn', work: 10, topN: 2 });
    expect(e).toEqual([
      { entry: 'immediate: endTurn > flushTx > _write', pct: (100 * 3) / 7, cost: 300 },
      { entry: 'tick: internalConnect', pct: 100 / 7, cost: 100 },
    ]);
  });
});
