/**
 * vnetkit: a userspace network engine for virtual machines.
 *
 * - createEngine(): the VMs' switch, gateway, DHCP/DNS server and NAT to host sockets.
 * - createKernels(): the batch kernels (WASM-SIMD, WASM, or the pure-JS twin) on their own.
 */
export { createEngine, Engine, VmPort, type EngineOptions, type EngineStats, type VmInfo, type AttachOptions } from './engine/engine.js';
export { createKernels, resolveBackend, wasmSimdSupported } from './kernels/index.js';
export type { Kernels, KernelOptions, KernelExports, BackendName } from './kernels/index.js';
export { VnetkitError, ErrorCodes } from './errors.js';
export { createLogger, nullLogger, type Logger, type LoggerOptions, type LogLevel } from './log.js';
export { listen, attachStream, TransportErrorCodes, type Framing, type VmLink, type Listener } from './transport/index.js';
export { DhcpServer } from './services/dhcp.js';
export { DnsServer, type DnsZone } from './services/dns.js';
export { readPcap, PcapWriter } from './wire/pcap.js';
export * as layout from '../assembly/layout.js';
