import { describe, expect, it } from 'vitest';
import { renderMarkdown, type ConnRun, type E2eResult, type PeerName } from '../bench/e2e/report.js';

// The e2e bench itself needs root and minutes; what it concludes from its
// numbers is plain code and is checked here.
function result(conns: ConnRun[]): E2eResult {
  return {
    meta: {
      date: '2026-11-28', quick: false, commit: 'abc', dirty: false, node: 'v20', kernel: '6', cpus: 2, cpuModel: 'x',
      iperf3: 'iperf 3', seconds: 1, load: [0, 0],
      options: { peers: ['vnetkit-simd', 'slirp'], mtus: [1500], streams: [], dirs: [], runs: 2, time: 5, omit: 2, conn: 100, rr: 0, connWarmup: 100 },
    },
    peers: ['vnetkit-simd', 'slirp'],
    runs: [],
    conns,
    notes: [],
    profiles: [],
  };
}

function run(peer: PeerName, par: number, round: number, rate: number, enginePct: number, warmup = false, fail = 0): ConnRun {
  return { peer, mtu: 1500, kind: 'conn', par, run: round, n: 100, ok: 100 - fail, fail, rate, p50us: 500, p99us: 900, enginePct,
    status: fail ? 'fail: timeout' : 'ok', ...(warmup ? { warmup } : {}) };
}

function row(md: string, label: string): string[] {
  const line = md.split('\n').find((l) => l.startsWith(`| ${label}`));
  expect(line, label).toBeDefined();
  return line!.split('|').slice(2, -1).map((c) => c.trim());
}

describe('bench:e2e report', () => {
  const md = renderMarkdown(result([
    run('vnetkit-simd', 1, 1, 900, 50, true), run('vnetkit-simd', 1, 1, 1500, 45), run('vnetkit-simd', 8, 1, 4000, 50),
    run('vnetkit-simd', 1, 2, 1100, 50, true), run('vnetkit-simd', 1, 2, 1700, 51), run('vnetkit-simd', 8, 2, 3000, 30),
    run('slirp', 1, 1, 1400, 30, true), run('slirp', 1, 1, 1600, 32), run('slirp', 8, 1, 4000, 40),
    run('slirp', 1, 2, 1400, 30, true), run('slirp', 1, 2, 1600, 32, false, 2), run('slirp', 8, 2, 4000, 40),
  ]));

  it('leaves the warm-up out of the measured rates and shows it on a row of its own', () => {
    // medians of the measured rounds only (a failed round is left out of the rate)
    expect(row(md, 'connect + 1 B each way + close, 1 at a time: conn/s').slice(0, 3)).toEqual(['1600', '1600', '1.00×']);
    expect(row(md, 'the same, 8 in parallel: conn/s').slice(0, 3)).toEqual(['3500', '4000', '0.88×']);
    expect(row(md, 'the first 100 after the engine starts (warm-up), 1 at a time: conn/s').slice(0, 3)).toEqual(['1000', '1400', '0.71×']);
  });

  it('engine CPU per connection is CPU share over rate, median over the measured rounds', () => {
    // simd 1 at a time: 0.45/1500 = 300 µs, 0.51/1700 = 300 µs; 8 at a time: 0.5/4000 = 125, 0.3/3000 = 100
    expect(row(md, 'engine CPU per connection, 1 at a time: µs').slice(0, 2)).toEqual(['300', '200']);
    expect(row(md, 'engine CPU per connection, 8 in parallel: µs').slice(0, 3)).toEqual(['113', '100', '1.13×']);
  });

  it('counts every connection made, warm-up included, toward made and failed', () => {
    expect(row(md, 'vnetkit (wasm-simd) | 600')).toEqual(['600', '0']);
    expect(row(md, 'libslirp (qemu 7.2) | 600')).toEqual(['600', '2']);
    expect(md).toContain('| vnetkit (wasm-simd) | warm-up: connect+1 B+close | 1 | 1 | 100/100 | 900 |');
  });

  it("lists each round's CPU per connection beside its rate", () => {
    // slirp round 1, 1 at a time: 0.32 / 1600 = 200 µs; 8 at a time: 0.4 / 4000 = 100 µs
    expect(md).toContain('| libslirp (qemu 7.2) | connect+1 B+close | 1 | 1 | 100/100 | 1600 | 500 | 900 | 32 | 200 | ok |');
    expect(md).toContain('| libslirp (qemu 7.2) | connect+1 B+close | 8 | 1 | 100/100 | 4000 | 500 | 900 | 40 | 100 | ok |');
  });
});
