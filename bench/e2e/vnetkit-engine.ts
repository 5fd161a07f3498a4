/**
 * Launch one vnetkit engine for the e2e bench:
 *
 *   node --import tsx bench/e2e/vnetkit-engine.ts --sock PATH | --fd N [--mtu 1500] [--backend wasm-simd|wasm|js]
 *        [--subnet 192.168.65.0/24] [--cpu-prof FILE] [--log-level warn]
 *
 * Listens on unix://PATH with qemu framing, or adopts the connected socket inherited as file
 * descriptor N (as the daemon's --fd; accept-exec.c hands one over with its send buffer sized),
 * prints "ready" on stdout once the socket exists,
 * and on SIGTERM/SIGINT closes the engine, prints its stats to stderr as one JSON line and
 * exits 0. --cpu-prof records a V8 CPU profile over the engine's whole life (written on exit)
 * through the inspector, so the profile covers exactly what the bench measured.
 * VNETKIT_BENCH_TCP='{"sndBufBytes":4194304}' passes TCP tunables (src/engine/tcp/options.ts)
 * through, for trying a setting without a commit. The bench records none by default.
 * VNETKIT_BENCH_SEND_BUFFER=BYTES sets the VM link's sendBufferBytes the same way (0 = system default).
 * VNETKIT_BENCH_ENGINE='{"dhcpStart":"192.168.65.100","dns":{"upstreams":[...]}}' adds engine
 * options (the soak's DNS upstream, zones and DHCP pool); a zone the engine refuses at load is
 * dropped and reported as "zones refused: ..." so the soak can still run against it.
 * --fake-pinger yes: echo requests to other addresses are answered "no reply" without spawning
 * `ping`, so a guest's echo flood never sends anything off the machine; SIGUSR2 prints
 * "stats {json}" (engine.stats(), the fake pinger's calls, process.memoryUsage()) on stdout.
 */
import { Session } from 'node:inspector/promises';
import { writeFileSync } from 'node:fs';
import { createEngine, createLogger, type BackendName, type Engine, type EngineOptions, type LogLevel } from '../../src/index.js';

function usage(msg: string): never {
  process.stderr.write(`vnetkit-engine: ${msg}\nusage: vnetkit-engine.ts --sock PATH | --fd N [--mtu N] [--backend wasm-simd|wasm|js] [--subnet CIDR] [--cpu-prof FILE] [--log-level LEVEL]\n`);
  process.exit(2);
}

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i];
  const v = process.argv[i + 1];
  if (!k.startsWith('--') || v === undefined) usage(`bad argument ${k}`);
  args.set(k.slice(2), v);
}
const sock = args.get('sock');
const fd = args.has('fd') ? Number(args.get('fd')) : undefined;
if ((sock === undefined) === (fd === undefined)) usage('give one of --sock and --fd');
const mtu = Number(args.get('mtu') ?? '1500');
const backend = (args.get('backend') ?? 'wasm-simd') as BackendName;
if (!['wasm-simd', 'wasm', 'js'].includes(backend)) usage(`unknown backend ${backend}`);
const subnet = args.get('subnet') ?? '192.168.65.0/24';
const profFile = args.get('cpu-prof');
const level = (args.get('log-level') ?? 'warn') as LogLevel;
const fakePinger = args.get('fake-pinger') === 'yes';
let pings = 0;

let session: Session | undefined;
if (profFile !== undefined) {
  session = new Session();
  session.connect();
  // 100 µs sampling: fine enough to split the per-frame work from the per-turn work without
  // the profiler itself eating a visible share of one core.
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  await session.post('Profiler.start');
}

const tcp = process.env.VNETKIT_BENCH_TCP ? JSON.parse(process.env.VNETKIT_BENCH_TCP) : undefined;
if (tcp !== undefined) process.stdout.write(`tcp options ${JSON.stringify(tcp)}\n`);
const extra: EngineOptions = process.env.VNETKIT_BENCH_ENGINE ? JSON.parse(process.env.VNETKIT_BENCH_ENGINE) : {};
const options = (dns: EngineOptions['dns']): EngineOptions => ({
  ...extra,
  subnet,
  tcp,
  mtu,
  backend,
  // The bench guest uses a static address and never asks for DNS; keep the engine from
  // reading the host's resolver or hosts file so its start-up is the same on every machine.
  dns: { upstreams: [], hostsFile: null, ...dns },
  ...(fakePinger ? { pinger: async () => { pings++; return false; } } : {}),
  log: createLogger({ level }),
});
let engine: Engine;
try {
  engine = createEngine(options(extra.dns));
} catch (e) {
  if (extra.dns?.zones === undefined) throw e;
  process.stdout.write(`zones refused: ${(e as Error).message}\n`);
  engine = createEngine(options({ ...extra.dns, zones: undefined }));
}
const sendBufferBytes = process.env.VNETKIT_BENCH_SEND_BUFFER ? Number(process.env.VNETKIT_BENCH_SEND_BUFFER) : undefined;
const listener = sock !== undefined ? await engine.listen(`unix://${sock}`, { framing: 'qemu', sendBufferBytes }) : undefined;
const attached = fd !== undefined ? engine.attachFd(fd, { framing: 'qemu', sendBufferBytes }) : undefined;
if (sendBufferBytes !== undefined) process.stdout.write(`sendBufferBytes ${sendBufferBytes}\n`);
engine.on('vm-connected', (info: { link: { sendBuffer?: number } }) => process.stdout.write(`vm link send buffer ${info.link.sendBuffer ?? 'system default'}\n`));
if (attached !== undefined) process.stdout.write(`vm link send buffer ${attached.link.sendBuffer ?? 'system default'}\n`);
process.stdout.write(`ready backend=${engine.kernels.backend} mtu=${mtu} ${sock !== undefined ? `sock=${sock}` : `fd=${fd}`}\n`);

let stopping = false;
async function stop(sig: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  const stats = engine.stats();
  try {
    await listener?.close();
    await engine.close();
  } catch (e) {
    process.stderr.write(`vnetkit-engine: close failed: ${(e as Error).message}\n`);
  }
  if (session !== undefined && profFile !== undefined) {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(profFile, JSON.stringify(profile));
    session.disconnect();
  }
  process.stderr.write(`vnetkit-engine: ${sig}: ${JSON.stringify(stats)}\n`);
  process.exit(0);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
// memory: what the JS heap and Buffers hold, to tell growth the engine keeps from pages the allocator keeps.
process.on('SIGUSR2', () => process.stdout.write(`stats ${JSON.stringify({ ...engine.stats(), fakePings: pings, memory: process.memoryUsage() })}\n`));
process.on('SIGINT', () => void stop('SIGINT'));
