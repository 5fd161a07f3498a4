import { VnetkitError, ErrorCodes } from '../errors.js';
import type { BackendName, KernelExports } from './types.js';
import { createJsExports } from './js/index.js';
import { WASM_SIMD_BASE64, WASM_SCALAR_BASE64, WASM_BUILD } from './wasm-bytes.generated.js';

export type { BackendName, KernelExports } from './types.js';

const PAGE = 65536;

export interface KernelOptions {
  /** Force a backend; default: VNETKIT_BACKEND, else wasm-simd when the platform validates it, else wasm, else js. */
  backend?: BackendName;
  /** Total linear memory in bytes, fixed for the kernels' lifetime (default 64 MiB). */
  memoryBytes?: number;
}

/**
 * One backend instance: its exports and its linear memory. Memory is sized at
 * creation and never grows afterwards, so the `u8`/`dv` views stay valid for
 * the instance's life; callers carve regions out of it with `alloc()` during
 * setup.
 */
export interface Kernels {
  readonly backend: BackendName;
  /** 'release' or 'test' (bounds-checked) for WASM backends; 'js' for the twin. */
  readonly build: string;
  readonly k: KernelExports;
  readonly u8: Uint8Array;
  readonly dv: DataView;
  readonly memoryBytes: number;
  /** Reserve `size` bytes aligned to `align` (setup-time bump allocation; nothing is ever freed). */
  alloc(size: number, align?: number): number;
  /** Bytes still free for alloc(). */
  available(): number;
}

let simdModule: WebAssembly.Module | undefined;
let scalarModule: WebAssembly.Module | undefined;

function decode(b64: string): Uint8Array {
  return new Uint8Array(Buffer.from(b64, 'base64'));
}

function wasmModule(simd: boolean): WebAssembly.Module {
  if (simd) return (simdModule ??= new WebAssembly.Module(decode(WASM_SIMD_BASE64)));
  return (scalarModule ??= new WebAssembly.Module(decode(WASM_SCALAR_BASE64)));
}

let simdSupported: boolean | undefined = undefined;
/** Whether this platform accepts the SIMD build. */
export function wasmSimdSupported(): boolean {
  if (simdSupported === undefined) {
    let ok = false;
    try {
      ok = typeof WebAssembly === 'object' && WebAssembly.validate(decode(WASM_SIMD_BASE64));
    } catch {
      ok = false;
    }
    simdSupported = ok;
  }
  return simdSupported;
}

function wasmSupported(): boolean {
  try {
    return typeof WebAssembly === 'object' && WebAssembly.validate(decode(WASM_SCALAR_BASE64));
  } catch {
    return false;
  }
}

const BACKENDS: readonly BackendName[] = ['wasm-simd', 'wasm', 'js'];

/** Resolve the backend: explicit option, then VNETKIT_BACKEND, then the best the platform runs. */
export function resolveBackend(requested?: string): BackendName {
  const want = requested ?? process.env.VNETKIT_BACKEND;
  if (want !== undefined && want !== '') {
    if (!BACKENDS.includes(want as BackendName)) {
      throw new VnetkitError(ErrorCodes.BAD_BACKEND, `unknown backend "${want}" (expected one of ${BACKENDS.join(', ')})`);
    }
    if (want === 'wasm-simd' && !wasmSimdSupported()) {
      throw new VnetkitError(ErrorCodes.BACKEND_UNAVAILABLE, 'backend "wasm-simd" requested but this platform does not validate WebAssembly SIMD');
    }
    if (want === 'wasm' && !wasmSupported()) {
      throw new VnetkitError(ErrorCodes.BACKEND_UNAVAILABLE, 'backend "wasm" requested but WebAssembly is unavailable');
    }
    return want as BackendName;
  }
  if (wasmSimdSupported()) return 'wasm-simd';
  if (wasmSupported()) return 'wasm';
  return 'js';
}

export function createKernels(options: KernelOptions = {}): Kernels {
  const backend = resolveBackend(options.backend);
  const memoryBytes = Math.ceil((options.memoryBytes ?? 64 * 1024 * 1024) / PAGE) * PAGE;
  let k: KernelExports;
  let buffer: ArrayBuffer;
  let build: string;
  if (backend === 'js') {
    buffer = new ArrayBuffer(memoryBytes);
    k = createJsExports(buffer);
    build = 'js';
  } else {
    const instance = new WebAssembly.Instance(wasmModule(backend === 'wasm-simd'), {
      env: {
        abort(msg: number, file: number, line: number, col: number) {
          throw new Error(`vnetkit wasm abort at ${line}:${col}`);
        },
      },
    });
    const memory = instance.exports.memory as WebAssembly.Memory;
    const have = memory.buffer.byteLength;
    // Grow once, before any view exists; after this the memory never grows.
    if (memoryBytes > have) memory.grow((memoryBytes - have) / PAGE);
    buffer = memory.buffer;
    k = instance.exports as unknown as KernelExports;
    build = WASM_BUILD;
  }
  const u8 = new Uint8Array(buffer);
  const dv = new DataView(buffer);
  let next = k.heapBase();
  const end = buffer.byteLength;
  return {
    backend,
    build,
    k,
    u8,
    dv,
    memoryBytes: end,
    alloc(size: number, align = 16): number {
      const ptr = Math.ceil(next / align) * align;
      if (!(size >= 0) || ptr + size > end) {
        throw new VnetkitError(
          ErrorCodes.KERNEL_MEMORY,
          `kernel memory exhausted: need ${size} bytes, ${Math.max(0, end - ptr)} of ${end} left (raise memoryBytes)`,
        );
      }
      next = ptr + size;
      return ptr;
    },
    available(): number {
      return Math.max(0, end - next);
    },
  };
}
