import { describe, it, expect, afterEach } from 'vitest';
import { createKernels, resolveBackend } from '../src/kernels/index.js';

describe('kernel loader', () => {
  const saved = process.env.VNETKIT_BACKEND;
  afterEach(() => {
    if (saved === undefined) delete process.env.VNETKIT_BACKEND;
    else process.env.VNETKIT_BACKEND = saved;
  });

  it('picks wasm-simd on Node 20 when nothing is forced', () => {
    delete process.env.VNETKIT_BACKEND;
    expect(resolveBackend()).toBe('wasm-simd');
  });

  it('honours VNETKIT_BACKEND and rejects unknown names with a code', () => {
    process.env.VNETKIT_BACKEND = 'js';
    expect(resolveBackend()).toBe('js');
    process.env.VNETKIT_BACKEND = 'fast';
    expect(() => resolveBackend()).toThrow(expect.objectContaining({ code: 'ERR_VNETKIT_BAD_BACKEND' }));
  });

  it.each(['wasm-simd', 'wasm', 'js'] as const)('%s: memory is sized once and views stay attached', (backend) => {
    const k = createKernels({ backend, memoryBytes: 4 * 1024 * 1024 });
    expect(k.backend).toBe(backend);
    expect(k.memoryBytes).toBe(4 * 1024 * 1024);
    const a = k.alloc(1000);
    const b = k.alloc(10, 64);
    expect(a).toBeGreaterThanOrEqual(k.k.heapBase());
    expect(b % 64).toBe(0);
    expect(b).toBeGreaterThanOrEqual(a + 1000);
    k.u8[b] = 0xab;
    expect(k.u8.byteLength).toBe(4 * 1024 * 1024); // not detached
    expect(() => k.alloc(8 * 1024 * 1024)).toThrow(expect.objectContaining({ code: 'ERR_VNETKIT_KERNEL_MEMORY' }));
  });

  it('the test suite runs the bounds-checked WASM build', () => {
    expect(createKernels({ backend: 'wasm', memoryBytes: 1 << 20 }).build).toBe('test');
  });
});
