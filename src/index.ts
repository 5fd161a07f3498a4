export { createKernels, resolveBackend, wasmSimdSupported } from './kernels/index.js';
export type { Kernels, KernelOptions, KernelExports, BackendName } from './kernels/index.js';
export { VnetkitError, ErrorCodes } from './errors.js';
export * as layout from '../assembly/layout.js';
