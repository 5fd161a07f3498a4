/**
 * Shared bench machinery: every row runs the same workload on each backend
 * (wasm-simd, wasm, js), each on its own kernel instance and memory, and
 * reports throughput in the row's unit. Workloads rotate over a pool of
 * inputs and fold results into `sink` so nothing is optimised away.
 */
import { Bench } from 'tinybench';
import { createKernels, type Kernels, type BackendName } from '../src/kernels/index.js';

export const BACKENDS: BackendName[] = ['wasm-simd', 'wasm', 'js'];

export type Unit = 'GB/s' | 'Mpps' | 'M/s' | 'Gbit/s' | 'µs' | 'conn/s';

export interface Row {
  group: string;
  name: string;
  unit: Unit;
  /** value per backend, in `unit` */
  values: Partial<Record<BackendName, number>>;
  note?: string;
}

/** Results are folded here; printed at the end so the work is observable. */
export const sink = { value: 0 };

export interface Workload {
  /** One iteration of the measured work. */
  run(): void;
  /** Units of work per iteration: bytes for GB/s, frames for Mpps, operations for M/s. */
  per: number;
}

export interface RowSpec {
  group: string;
  name: string;
  unit: Unit;
  memoryBytes?: number;
  /** Build the workload on one backend's kernels (setup is not timed). */
  setup(k: Kernels): Workload;
}

const TIME_MS = Number(process.env.VNETKIT_BENCH_MS ?? 300);

export async function measureRow(spec: RowSpec, backends: BackendName[] = BACKENDS): Promise<Row> {
  const values: Partial<Record<BackendName, number>> = {};
  for (const backend of backends) {
    const kernels = createKernels({ backend, memoryBytes: spec.memoryBytes ?? 64 * 1024 * 1024 });
    const w = spec.setup(kernels);
    const bench = new Bench({ time: TIME_MS, warmupTime: Math.min(200, TIME_MS), warmupIterations: 16 });
    bench.add(`${spec.name} ${backend}`, () => w.run());
    await bench.run();
    const r = bench.tasks[0].result as unknown as { state?: string; latency?: { mean: number }; throughput?: { mean: number }; error?: unknown };
    if (!r || r.error || !r.latency) throw new Error(`bench ${spec.name} on ${backend} failed: ${String(r?.error)}`);
    const secPerIter = r.latency.mean / 1000; // tinybench reports ms
    const perSec = w.per / secPerIter;
    values[backend] = scale(spec.unit, perSec);
  }
  return { group: spec.group, name: spec.name, unit: spec.unit, values };
}

function scale(unit: Unit, perSec: number): number {
  switch (unit) {
    case 'GB/s': return perSec / 1e9;
    case 'Gbit/s': return (perSec * 8) / 1e9;
    case 'Mpps': return perSec / 1e6;
    case 'M/s': return perSec / 1e6;
    case 'conn/s': return perSec;
    case 'µs': return 1e6 / perSec;
  }
}

export { rng } from '../test/support/rng.js';
