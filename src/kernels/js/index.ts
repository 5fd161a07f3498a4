import type { KernelExports } from '../types.js';
import { JS_HEAP_BASE, type JsMem } from './mem.js';
import * as checksum from './checksum.js';
import * as classify from './classify.js';
import * as emit from './emit.js';
import * as flow from './flow.js';
import * as reasm from './reasm.js';
import * as frag from './frag.js';

/**
 * The pure-JS twin of the WASM module: the same functions over an
 * ArrayBuffer with the same layout. Each kernel file exports plain functions
 * whose first argument is the memory; here they are bound to one memory.
 */
export function createJsExports(buffer: ArrayBuffer): KernelExports {
  const m: JsMem = { u8: new Uint8Array(buffer), dv: new DataView(buffer) };
  const bound: Record<string, unknown> = { heapBase: () => JS_HEAP_BASE };
  for (const mod of [checksum, classify, emit, flow, reasm, frag] as Record<string, unknown>[]) {
    for (const [name, fn] of Object.entries(mod)) {
      if (typeof fn === 'function') bound[name] = (fn as (m: JsMem, ...a: number[]) => number).bind(null, m);
    }
  }
  return bound as unknown as KernelExports;
}
