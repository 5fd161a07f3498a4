/**
 * npm run bench:e2e: vnetkit against libslirp and passt on the same real Linux TCP stack.
 * See HELP below; the design notes are in bench/e2e/README.md.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, statSync, writeFileSync, chmodSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus, loadavg, release } from 'node:os';
import { renderReport, LABEL, type E2eResult, type IperfRun, type ConnRun, type PeerName, type ProfileResult } from './report.js';
import { summarizeProfile, wasmExportNames } from './profile.js';
import { parsePerfReport, parsePerfScript, summarizePerf, summarizeEntries, costLabel, formatCost, type PerfResult, type PerfRow } from './perf.js';
import { readSysctlBytes, WMEM_DEFAULT_PATH, WMEM_MAX_PATH } from '../../src/daemon/link-buffer-hint.js';

const HELP = `npm run bench:e2e -- [options]

End-to-end TCP bench: a network namespace's own Linux kernel is the guest. Its TAP NIC is
relayed frame by frame (bench/e2e/relay.c, qemu stream framing) to each engine's unix socket,
and iperf3 / a connect-rate probe run from the namespace to a server on the host's 127.0.0.1,
reached through each engine's host-loopback address. The namespace has only its on-link
subnet and no default route, so nothing can go anywhere else.

NOT part of npm test or CI: it needs root, Debian's iproute2, iperf3, qemu-system-x86, passt
and gcc (missing ones are installed with apt-get when run as root), and takes minutes:
about 15 min by default (925 s with --profile on the 2-core project VM), 2-3 with --quick.

Peers (--peers a,b,c or VNETKIT_E2E_PEERS):
  vnetkit-simd  vnetkit, WASM-SIMD kernels (bench/e2e/vnetkit-engine.ts)   guest 192.168.65.3 -> 192.168.65.2
  vnetkit-js    vnetkit, pure-JS kernels                                      guest 192.168.65.3 -> 192.168.65.2
  slirp         libslirp in a guest-less qemu (-netdev user + stream server)  guest 10.0.2.15 -> 10.0.2.2
  passt         passt -s SOCK (gateway address = host loopback)               guest 10.0.2.15 -> 10.0.2.2
  relay         the relay's ceiling: a second namespace's kernel behind a second relay
                (no userspace TCP; its server listens on that namespace's 10.0.2.2)

Options:
  --quick             MTU 1500 only, 1 run, 3 s runs, fewer transactions (iteration mode)
  --peers LIST        default: all five
  --mtus LIST         default 1500,65520 (TAP MTU and engine MTU both set)
  --streams LIST      default 1,4
  --dirs LIST         up (namespace -> host), down (host -> namespace, iperf3 -R); default both
  --runs N            rounds, default 3 (median reported). Each round runs every peer once,
                      so load from elsewhere on the machine spreads over all peers
  --time S --omit S   iperf3 -t / -O (default 5 / 2 as in the shared perfbed; the warm-up hides
                      passt's start-up stalls)
  --conn N            connect+request+close transactions per test and round (default 2000: with
                      1 and 8 in parallel over 3 rounds, 12,000 per peer, 18,000 with the
                      warm-up; 0 skips)
  --conn-warmup N     before the measured connection tests of each session, N more connections
                      one at a time (default 2000, --quick 500; 0 skips), reported on a row of
                      their own and counted as made/failed, but not in the conn/s rows: a fresh
                      Node engine runs its connection path in the interpreter and baseline
                      tiers for its first few thousand connections (V8 optimises a function
                      only after it has run hot), and a daemon lives far longer than that
  --rr N              1-byte round trips on one connection per round (default 3000; 0 skips)
  --link-sndbuf BYTES vnetkit peers get their VM link from accept-exec.c, standing in for a VM
                      launcher: it accepts the relay's connection, asks for SO_SNDBUF BYTES on
                      vnetkit's end (passt asks for 4 MiB on its own end; Linux doubles the
                      request and caps it at net.core.wmem_max) and execs the engine with that
                      socket as --fd 3. Default 0: vnetkit listens itself and raises the
                      buffer on its own end (sendBufferBytes, 1 MiB asked)
  --tsx               run the engine under tsx from its TypeScript sources (default: bundled by
                      esbuild with a source map, as the published package is built, so tsx's
                      per-call helpers are not measured; profiles map back to the sources)
  --profile           also record CPU profiles of vnetkit-simd: the first --streams count in
                      each of --dirs at every MTU, and the connection-rate probe (1 at a
                      time, --conn N) at the first MTU (separate runs: the profiler slows
                      the engine)
  --profile-only      only the profile runs
  --profile-par N     connections at a time in the connection-rate profile (default 1)
  --perf              also sample every --peers engine process with Linux perf (cpu-clock,
                      kernel and user stacks; the project VM has no hardware counters) over
                      --time minus 2 s of an iperf3 run, from --omit + 1 s on: the first
                      --streams count in each of --dirs at every MTU, and over each whole
                      connection-rate run (1 and 8 at a time, --conn each, after the
                      warm-up) and of the --rr round trips at the first MTU. Reports CPU
                      s/GB, or CPU µs per connection or round trip, per symbol, so engines
                      compare where their cycles go, the kernel's
                      included (vnetkit engines run with --perf-basic-prof for JS names;
                      installs linux-perf when missing)
  --perf-only         only the perf runs, written to e2e-perf.* (with --profile-only: both,
                      nothing else, to e2e-profile.*)
  --worktree          run the engine from the working tree (default: a snapshot of git HEAD
                      built with the release WASM build, so concurrent edits cannot leak in)
  --out DIR           default bench/results/e2e (e2e.json + e2e.md; e2e-quick.* with --quick,
                      e2e-profile.* with --profile-only, e2e-perf.* with --perf-only)
  --soak              instead of the comparison: the trust-boundary soak (bench/e2e/soak.ts).
                      One vnetkit-simd engine, two namespace guests with mixed load (bulk both
                      ways hash-checked, connection churn, DNS, UDP) and a hostile fake VM on
                      the same socket cycling through attacks; every interval one row of engine
                      RSS, open fds and each guest's throughput. Writes soak.{json,md} to
                      bench/results/soak (or --out). Own namespaces (vnksoak0/1) and ports
  --soak-minutes N    soak length, default 30: the first interval unattacked (the baseline)
  --soak-interval S   seconds per row and per attack, default 60
  --soak-scale F      multiplies every attack's count (flows, SYNs, MACs...), default 1
  --soak-name STEM    output file stem, default soak
  --help
Logs and sockets: /tmp/vnetkit-e2e (VNETKIT_E2E_RUN). One bench at a time: fixed names
(netns vnke2e0/vnke2e1) and ports (127.0.0.1:5201 iperf3, :5202 probe).`;

export const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, '../..');
export const RUN = process.env.VNETKIT_E2E_RUN ?? '/tmp/vnetkit-e2e';
const NS = 'vnke2e0';
const NS2 = 'vnke2e1';
const TAP = 'tap0';
const GUEST_MAC = '52:54:00:12:34:56';
const PEER_MAC = '52:54:00:12:34:99';
const IPERF_PORT = 5201;
const PROBE_PORT = 5202;
export const ENGINE_BUNDLE = 'bench/e2e/vnetkit-engine.mjs';
const SOCK = join(RUN, 'engine.sock');
const ALL_PEERS: PeerName[] = ['vnetkit-simd', 'vnetkit-js', 'slirp', 'passt', 'relay'];

// ---- options ----------------------------------------------------------------------------------

export interface Opts {
  quick: boolean; peers: PeerName[]; mtus: number[]; streams: number[]; dirs: ('up' | 'down')[];
  runs: number; time: number; omit: number; conn: number; connWarmup: number; rr: number; linkSndbuf: number; tsx: boolean;
  profile: boolean; profileOnly: boolean; profilePar: number; perf: boolean; perfOnly: boolean; worktree: boolean; out: string;
  soak: boolean; soakMinutes: number; soakInterval: number; soakScale: number; soakName: string;
}

export function parseOpts(argv: string[]): Opts {
  const quick = argv.includes('--quick');
  const o: Opts = {
    quick,
    peers: (process.env.VNETKIT_E2E_PEERS?.split(',') ?? ALL_PEERS) as PeerName[],
    mtus: quick ? [1500] : [1500, 65520],
    streams: [1, 4],
    dirs: ['up', 'down'],
    runs: quick ? 1 : 3,
    time: quick ? 3 : 5,
    omit: quick ? 1 : 2,
    conn: quick ? 500 : 2000,
    connWarmup: quick ? 500 : 2000,
    rr: quick ? 1000 : 3000,
    linkSndbuf: 0,
    tsx: false,
    profile: false,
    profileOnly: false,
    profilePar: 1,
    perf: false,
    perfOnly: false,
    worktree: false,
    out: join(REPO, argv.includes('--soak') ? 'bench/results/soak' : 'bench/results/e2e'),
    soak: false,
    soakMinutes: 30,
    soakInterval: 60,
    soakScale: 1,
    soakName: 'soak',
  };
  const list = (s: string) => s.split(/[,\s]+/).filter(Boolean);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) die(`${a} needs a value`);
      return x;
    };
    switch (a) {
      case '--quick': break;
      case '--peers': o.peers = list(v()) as PeerName[]; break;
      case '--mtus': o.mtus = list(v()).map(Number); break;
      case '--streams': o.streams = list(v()).map(Number); break;
      case '--dirs': o.dirs = list(v()) as ('up' | 'down')[]; break;
      case '--runs': o.runs = Number(v()); break;
      case '--time': o.time = Number(v()); break;
      case '--omit': o.omit = Number(v()); break;
      case '--conn': o.conn = Number(v()); break;
      case '--conn-warmup': o.connWarmup = Number(v()); break;
      case '--rr': o.rr = Number(v()); break;
      case '--link-sndbuf': o.linkSndbuf = Number(v()); break;
      case '--tsx': o.tsx = true; break;
      case '--profile': o.profile = true; break;
      case '--profile-only': o.profile = true; o.profileOnly = true; break;
      case '--profile-par': o.profilePar = Number(v()); break;
      case '--perf': o.perf = true; break;
      case '--perf-only': o.perf = true; o.perfOnly = true; break;
      case '--worktree': o.worktree = true; break;
      case '--out': o.out = resolve(v()); break;
      case '--soak': o.soak = true; break;
      case '--soak-minutes': o.soakMinutes = Number(v()); break;
      case '--soak-interval': o.soakInterval = Number(v()); break;
      case '--soak-scale': o.soakScale = Number(v()); break;
      case '--soak-name': o.soakName = v(); break;
      case '-h': case '--help': console.log(HELP); process.exit(0);
      default: die(`unknown option ${a} (--help)`);
    }
  }
  for (const p of o.peers) if (!ALL_PEERS.includes(p)) die(`unknown peer ${p}; peers: ${ALL_PEERS.join(', ')}`);
  for (const m of o.mtus) if (!Number.isInteger(m) || m < 576 || m > 65520) die(`bad MTU ${m} (576..65520)`);
  for (const d of o.dirs) if (d !== 'up' && d !== 'down') die(`bad direction ${d}`);
  if (!(o.runs >= 1) || !(o.time >= 1) || !(o.omit >= 0)) die('bad --runs/--time/--omit');
  if (!Number.isInteger(o.conn) || o.conn < 0 || !Number.isInteger(o.connWarmup) || o.connWarmup < 0) die('bad --conn/--conn-warmup');
  if (!Number.isInteger(o.profilePar) || o.profilePar < 1 || o.profilePar > 64) die('bad --profile-par (1..64)');
  if (!Number.isInteger(o.linkSndbuf) || o.linkSndbuf < 0 || o.linkSndbuf > 0x7fffffff) die('bad --link-sndbuf');
  if (!(o.soakMinutes > 0 && o.soakMinutes <= 24 * 60)) die('bad --soak-minutes (0..1440)');
  if (!Number.isInteger(o.soakInterval) || o.soakInterval < 5 || o.soakInterval > 3600) die('bad --soak-interval (5..3600 s)');
  if (!(o.soakScale > 0 && o.soakScale <= 10)) die('bad --soak-scale (0..10)');
  if (!/^[\w.-]+$/.test(o.soakName)) die('bad --soak-name');
  return o;
}

export function log(msg: string): void {
  process.stderr.write(`e2e: ${msg}\n`);
}
export class Fatal extends Error {}
/** Throws: main() stops every process this run started and removes the namespaces first. */
export function die(msg: string): never {
  throw new Fatal(msg);
}

// ---- processes --------------------------------------------------------------------------------

export interface Bg { name: string; proc: ChildProcess; exited: Promise<void>; done: boolean; logFile: string }
const live = new Set<Bg>();

let interrupted = false;
export function startBg(name: string, cmd: string, args: string[], logFile: string, cwd?: string): Bg {
  // the measuring loop keeps going while an interrupt cleans up: start nothing new then
  if (interrupted) throw new Fatal('interrupted');
  const fd = openSync(logFile, 'a');
  const proc = spawn(cmd, args, { stdio: ['ignore', fd, fd], cwd });
  closeSync(fd);
  const bg: Bg = { name, proc, done: false, logFile, exited: Promise.resolve() };
  bg.exited = new Promise((res) => proc.on('exit', () => { bg.done = true; live.delete(bg); res(); }));
  proc.on('error', (e) => log(`${name}: ${e.message}`));
  live.add(bg);
  return bg;
}

/** SIGTERM this one process, SIGKILL after 5 s. Never by name: other benches may share the box. */
export async function stopBg(bg: Bg | undefined): Promise<void> {
  if (bg === undefined || bg.done) return;
  bg.proc.kill('SIGTERM');
  const t = setTimeout(() => { if (!bg.done) bg.proc.kill('SIGKILL'); }, 5000);
  await bg.exited;
  clearTimeout(t);
}

interface CmdResult { code: number; stdout: string; stderr: string }
/** Foreground commands in flight (an iperf3 client, a probe), so an interrupt can stop them too. */
const inFlight = new Set<ChildProcess>();
export function run(cmd: string, args: string[], timeoutMs = 60_000, cwd?: string): Promise<CmdResult> {
  return new Promise((res) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20, cwd, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      inFlight.delete(child);
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1;
      res({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    inFlight.add(child);
  });
}
export async function must(cmd: string, args: string[], timeoutMs?: number, cwd?: string): Promise<string> {
  const r = await run(cmd, args, timeoutMs, cwd);
  if (r.code !== 0) die(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const inNs = (ns: string | null, cmd: string, args: string[]): [string, string[]] =>
  ns === null ? [cmd, args] : ['ip', ['netns', 'exec', ns, cmd, ...args]];

// ---- CPU accounting from /proc ------------------------------------------------------------------

let HZ = 100;
/** utime+stime in clock ticks of a process and every descendant alive now. */
function treeTicks(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const parent = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let s: string;
    try { s = readFileSync(`/proc/${d}/stat`, 'utf8'); } catch { continue; }
    // comm may hold spaces and parentheses: fields start after the last ')'
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    parent.set(+d, +f[1]);
    ticks.set(+d, +f[11] + +f[12]);
  }
  const keep = new Set([pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [p, pp] of parent) if (!keep.has(p) && keep.has(pp)) { keep.add(p); grew = true; }
  }
  let t = 0;
  for (const p of keep) t += ticks.get(p) ?? 0;
  return t;
}
function sysBusy(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return f.reduce((a, b) => a + b, 0) - f[3] - f[4];
}

// ---- environment ------------------------------------------------------------------------------

const TOOLS: [string, string][] = [['ip', 'iproute2'], ['ss', 'iproute2'], ['iperf3', 'iperf3'], ['qemu-system-x86_64', 'qemu-system-x86'], ['passt', 'passt'], ['gcc', 'gcc']];
async function have(cmd: string): Promise<boolean> {
  return (await run('sh', ['-c', `command -v ${cmd}`])).code === 0;
}
export async function ensureTools(peers: PeerName[], perf: boolean): Promise<void> {
  const need = TOOLS.filter(([c]) => (c !== 'qemu-system-x86_64' || peers.includes('slirp')) && (c !== 'passt' || peers.includes('passt')));
  if (perf) need.push(['perf', 'linux-perf']);
  const missing: string[] = [];
  for (const [c, pkg] of need) if (!(await have(c))) missing.push(pkg);
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing)];
  log(`installing ${pkgs.join(' ')} with apt-get`);
  await must('apt-get', ['update', '-qq'], 300_000);
  const r = await run('sh', ['-c', `DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${pkgs.join(' ')}`], 600_000);
  if (r.code !== 0) die(`apt-get install failed: ${r.stderr.slice(-400)}`);
}

/** The bench's C helpers (relay.c, accept-exec.c), rebuilt when their source is newer. */
export async function buildTool(name: string): Promise<string> {
  const src = join(HERE, `${name}.c`);
  const bin = join(RUN, 'bin', name);
  mkdirSync(dirname(bin), { recursive: true });
  if (!existsSync(bin) || statSync(src).mtimeMs > statSync(bin).mtimeMs) {
    await must('gcc', ['-O2', '-Wall', '-o', bin, src]);
    log(`built ${bin}`);
  }
  return bin;
}

/**
 * The engine runs from its own tree with the release WASM build: the shared checkout holds
 * the bounds-checked test build most of the time, and other engineers edit it while a
 * 20-minute run is going.
 */
export async function prepareTree(worktree: boolean, bundle: boolean): Promise<{ dir: string; commit: string; dirty: boolean }> {
  const commit = (await must('git', ['-C', REPO, 'rev-parse', 'HEAD'])).trim();
  const dirty = (await must('git', ['-C', REPO, 'status', '--porcelain', '--', 'src', 'assembly'])).trim() !== '';
  const dir = join(RUN, 'tree');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const parts = ['src', 'assembly', 'scripts', 'asconfig.json', 'package.json'];
  if (worktree) {
    await must('cp', ['-r', ...parts.map((p) => join(REPO, p)), dir]);
  } else {
    await must('sh', ['-c', `git -C '${REPO}' archive HEAD ${parts.join(' ')} | tar -x -C '${dir}'`]);
  }
  mkdirSync(join(dir, 'bench/e2e'), { recursive: true });
  copyFileSync(join(HERE, 'vnetkit-engine.ts'), join(dir, 'bench/e2e/vnetkit-engine.ts'));
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  const out = await must('node', ['scripts/build-wasm.mjs'], 300_000, dir);
  // Bundled by esbuild as tsup bundles the published package: tsx's on-the-fly transform keeps
  // function names with a helper call per closure created and turns imported constants into
  // getters, work the shipped code does not do.
  if (bundle) {
    await must(join(REPO, 'node_modules/.bin/esbuild'), ['bench/e2e/vnetkit-engine.ts', '--bundle', '--platform=node', '--format=esm',
      '--target=node20', '--packages=external', '--sourcemap', `--outfile=${ENGINE_BUNDLE}`], 60_000, dir);
  }
  log(`engine tree ${worktree ? 'working tree' : `HEAD ${commit.slice(0, 10)}`}: ${out.trim().split('\n').pop()}`);
  return { dir, commit, dirty: worktree && dirty };
}

export async function version(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, 10_000);
  return (r.stdout + r.stderr).split('\n').find((l) => l.trim() !== '')?.trim() ?? '?';
}

// ---- namespaces -------------------------------------------------------------------------------

export async function nsExists(ns: string): Promise<boolean> {
  return (await run('ip', ['netns', 'list'])).stdout.split('\n').some((l) => l.split(' ')[0] === ns);
}
async function nsDown(): Promise<void> {
  for (const ns of [NS, NS2]) {
    if (!(await nsExists(ns))) continue;
    const pids = (await run('ip', ['netns', 'pids', ns])).stdout.trim();
    if (pids) log(`warning: processes still in ${ns}: ${pids.replace(/\n/g, ' ')}`);
    await run('ip', ['netns', 'del', ns]);
  }
}
export async function mkNs(ns: string): Promise<void> {
  await must('ip', ['netns', 'add', ns]);
  // no IPv6: nothing may configure an address or a default route through the engine
  await must('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
}
export async function mkTap(ns: string, tap: string, mac: string, cidr: string, mtu: number): Promise<void> {
  await must('ip', ['-n', ns, 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
  await must('ip', ['-n', ns, 'link', 'set', tap, 'address', mac, 'mtu', String(mtu)]);
  await must('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', tap]);
  await must('ip', ['-n', ns, 'link', 'set', tap, 'up']);
}
/** Fresh namespace(s) for every MTU: a persistent TAP keeps flags a previous user set. */
async function nsUp(guestCidr: string, mtu: number, loopPeerCidr?: string): Promise<void> {
  if (interrupted) throw new Fatal('interrupted');
  await nsDown();
  await mkNs(NS);
  await mkTap(NS, TAP, GUEST_MAC, guestCidr, mtu);
  if (loopPeerCidr !== undefined) {
    await mkNs(NS2);
    await mkTap(NS2, 'tap1', PEER_MAC, loopPeerCidr, mtu);
  }
}

export async function listening(ns: string | null, port: number): Promise<boolean> {
  const [c, a] = inNs(ns, 'ss', ['-Hltn', `sport = :${port}`]);
  return (await run(c, a)).stdout.trim() !== '';
}
export async function waitListening(ns: string | null, port: number, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (await listening(ns, port)) return true;
  return false;
}
export async function waitFile(path: string, ms: number, bg?: Bg): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) {
    if (existsSync(path)) return true;
    if (bg?.done) return false;
  }
  return false;
}

// ---- peers ------------------------------------------------------------------------------------

interface PeerSpec {
  guest: string; target: string; serverNs: string | null; bind: string; loop: boolean; mtuHonoured: boolean;
  engine(mtu: number, log: string, how?: EngineRun): Bg;
}

/**
 * How a vnetkit engine's node runs (other engines ignore it): `prof` records a V8 CPU
 * profile there; `perfMap` adds --perf-basic-prof so perf names JS and WASM frames. Only
 * the engine's node gets them, not the probe processes a session also starts.
 */
interface EngineRun { prof?: string; perfMap?: boolean }

export interface Tools { relay: string; acceptExec: string }

function peerSpec(name: PeerName, tools: Tools, tree: string, linkSndbuf: number, tsx: boolean): PeerSpec {
  const relayBin = tools.relay;
  const slirpNet = { guest: '10.0.2.15/24', target: '10.0.2.2', serverNs: null, bind: '127.0.0.1', loop: false };
  switch (name) {
    case 'vnetkit-simd':
    case 'vnetkit-js': {
      const backend = name === 'vnetkit-simd' ? 'wasm-simd' : 'js';
      return {
        // static guest address, no default route: the guest ARPs for .2 directly, which vnetkit
        // answers (gateway MAC) and NATs to the host's 127.0.0.1
        guest: '192.168.65.3/24', target: '192.168.65.2', serverNs: null, bind: '127.0.0.1', loop: false, mtuHonoured: true,
        engine: (mtu, lf, how = {}) => {
          const args = [...(how.perfMap ? ['--perf-basic-prof'] : []), ...(tsx ? ['--import', 'tsx', 'bench/e2e/vnetkit-engine.ts'] : [ENGINE_BUNDLE]),
            '--mtu', String(mtu), '--backend', backend, '--subnet', '192.168.65.0/24', ...(how.prof ? ['--cpu-prof', how.prof] : [])];
          return linkSndbuf > 0
            ? startBg(name, tools.acceptExec, ['--listen', SOCK, '--sndbuf', String(linkSndbuf), '--fd', '3', '--', 'node', ...args, '--fd', '3'], lf, tree)
            : startBg(name, 'node', [...args, '--sock', SOCK], lf, tree);
        },
      };
    }
    case 'slirp':
      return {
        ...slirpNet, mtuHonoured: false,
        // -M none: no guest at all, only the netdevs. qemu 7.2's -netdev user has no mtu=, so
        // slirp stays at MSS 1460 whatever the TAP MTU: its 65520 row measures that.
        engine: (_mtu, lf) => startBg(name, 'qemu-system-x86_64', ['-M', 'none', '-accel', 'tcg', '-display', 'none', '-nodefaults', '-no-user-config',
          '-netdev', 'user,id=u0,net=10.0.2.0/24,host=10.0.2.2',
          '-netdev', `stream,id=s0,server=on,addr.type=unix,addr.path=${SOCK}`,
          '-netdev', 'hubport,id=h0,hubid=0,netdev=u0', '-netdev', 'hubport,id=h1,hubid=0,netdev=s0'], lf),
      };
    case 'passt':
      return {
        ...slirpNet, mtuHonoured: true,
        // passt drops root for nobody before bind(): RUN is 1777. -l: without syslog every line
        // would be an error. -t/-u none: no inbound forwards. Its gateway maps to the host's loopback.
        engine: (mtu, lf) => startBg(name, 'passt', ['-f', '-q', '-4', '-l', join(RUN, 'passt.log'), '-s', SOCK,
          '-a', '10.0.2.15', '-n', '24', '-g', '10.0.2.2', '-m', String(mtu), '-t', 'none', '-u', 'none',
          '--no-dhcp-dns', '--no-dhcp-search'], lf),
      };
    case 'relay':
      return {
        guest: '10.0.2.15/24', target: '10.0.2.2', serverNs: NS2, bind: '10.0.2.2', loop: true, mtuHonoured: true,
        engine: (_mtu, lf) => startBg(name, relayBin, ['--netns', NS2, '--tap', 'tap1', '--listen', SOCK], lf),
      };
  }
}

// ---- measurements -----------------------------------------------------------------------------

interface Session { name: PeerName; spec: PeerSpec; mtu: number; engine: Bg; relay: Bg; probe: Bg }

async function startSession(name: PeerName, spec: PeerSpec, mtu: number, relayBin: string, logDir: string, how?: EngineRun): Promise<Session | string> {
  await nsUp(spec.guest, mtu, spec.loop ? `${spec.target}/24` : undefined);
  for (const [ns, port] of [[spec.serverNs, IPERF_PORT], [spec.serverNs, PROBE_PORT]] as const) {
    if (await listening(ns, port)) die(`TCP port ${port} is already taken${ns ? ` in ${ns}` : ''}: a stale server would answer instead`);
  }
  const [pc, pa] = inNs(spec.serverNs, 'node', [join(HERE, 'probe.mjs'), 'server', '--bind', spec.bind, '--port', String(PROBE_PORT)]);
  const probe = startBg('probe-server', pc, pa, join(logDir, `probe-server-${name}-${mtu}.log`));
  rmSync(SOCK, { force: true });
  const engine = spec.engine(mtu, join(logDir, `engine-${name}-${mtu}.log`), how);
  if (!(await waitListening(spec.serverNs, PROBE_PORT, 5000))) return 'probe server did not start';
  if (!(await waitFile(SOCK, 20_000, engine))) return `engine did not create ${SOCK} (see ${engine.logFile})`;
  const relay = startBg('relay', relayBin, ['--netns', NS, '--tap', TAP, '--connect', SOCK, '--wait', '10'], join(logDir, `relay-${name}-${mtu}.log`));
  const s: Session = { name, spec, mtu, engine, relay, probe };
  if (await waitTransaction(NS, spec.target, PROBE_PORT, [engine, relay], 15_000)) return s;
  await stopSession(s);
  return `no TCP transaction through ${name} within 15 s${engine.done ? ' (engine exited)' : ''} (see ${engine.logFile})`;
}

/** Ready = one full TCP transaction (probe.mjs conn) from `ns` to target:port passes end to end. */
export async function waitTransaction(ns: string, target: string, port: number, procs: Bg[], ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(300)) {
    const [c, a] = inNs(ns, 'node', [join(HERE, 'probe.mjs'), 'conn', '--host', target, '--port', String(port), '--n', '1', '--timeout', '1']);
    if ((await run(c, a, 5000)).code === 0) return true;
    if (procs.some((p) => p.done)) return false;
  }
  return false;
}

async function stopSession(s: Session): Promise<void> {
  await stopBg(s.relay);
  await stopBg(s.engine);
  await stopBg(s.probe);
}

async function iperfRun(s: Session, o: Opts, streams: number, dir: 'up' | 'down', runNo: number, logDir: string): Promise<IperfRun> {
  const base = { peer: s.name, mtu: s.mtu, streams, dir, run: runNo };
  const [sc, sa] = inNs(s.spec.serverNs, 'iperf3', ['-s', '-1', '-B', s.spec.bind, '-p', String(IPERF_PORT)]);
  const srv = startBg('iperf3-server', sc, sa, join(logDir, 'iperf3-server.log'));
  try {
    if (!(await waitListening(s.spec.serverNs, IPERF_PORT, 5000))) return { ...base, status: 'server-did-not-start' };
    const e0 = treeTicks(s.engine.proc.pid), r0 = treeTicks(s.relay.proc.pid), b0 = sysBusy(), t0 = performance.now();
    const [c, a] = inNs(NS, 'iperf3', ['-c', s.spec.target, '-p', String(IPERF_PORT), '-t', String(o.time), '-O', String(o.omit),
      '-P', String(streams), ...(dir === 'down' ? ['-R'] : []), '-J']);
    const r = await run(c, a, (o.time + o.omit + 25) * 1000);
    const e1 = treeTicks(s.engine.proc.pid), r1 = treeTicks(s.relay.proc.pid), b1 = sysBusy(), secs = (performance.now() - t0) / 1000;
    let j: any;
    try { j = JSON.parse(r.stdout); } catch { j = { error: `no JSON (exit ${r.code}): ${r.stderr.trim().slice(0, 200)}` }; }
    const sum = j?.end?.sum_received;
    let status = j?.error ? `error: ${String(j.error).slice(0, 120)}` : sum === undefined ? 'no-result' : sum.bits_per_second > 0 ? 'ok' : 'zero';
    if (s.engine.done) status = 'engine-died';
    if (s.relay.done) status = 'relay-died';
    if (status !== 'ok') writeFileSync(join(logDir, `fail-${s.name}-${s.mtu}-${streams}-${dir}-${runNo}.json`), r.stdout || r.stderr);
    // CPU is sampled around the whole client run, warm-up included, so the bytes must be too:
    // every interval (omitted ones as well) counts.
    let bytes = 0;
    for (const iv of j?.intervals ?? []) bytes += iv?.sum?.bytes ?? 0;
    if (bytes === 0) bytes = sum?.bytes ?? 0;
    const engineCpuS = (e1 - e0) / HZ;
    return {
      ...base, status,
      gbps: sum ? sum.bits_per_second / 1e9 : 0,
      retr: j?.end?.sum_sent?.retransmits ?? 0,
      fairness: fairness(j),
      bytes, secs,
      engineCpuS,
      relayCpuS: (r1 - r0) / HZ,
      cpuSPerGB: bytes > 0 ? engineCpuS / (bytes / 1e9) : undefined,
      enginePct: (100 * engineCpuS) / secs,
      relayPct: (100 * (r1 - r0)) / HZ / secs,
      sysPct: (100 * (b1 - b0)) / HZ / secs,
    };
  } finally {
    await stopBg(srv);
  }
}

/** Connection tests start once the host's TIME_WAIT table is down to this. */
const TW_SETTLED = 1000;

/**
 * Wait (at most 65 s) until the host holds few TIME_WAIT sockets. Each engine's host-side
 * sockets close first and leave one for 60 s; with thousands of them a loopback connect()
 * searches longer for a free port, so a peer tested right after another's connection tests
 * would pay for them.
 */
async function settleTimeWait(): Promise<{ count: number; waitedS: number }> {
  const t0 = Date.now();
  const count = async () => (await run('ss', ['-Htan', 'state', 'time-wait'])).stdout.split('\n').filter((l) => l.trim() !== '').length;
  let n = await count();
  while (n > TW_SETTLED && Date.now() - t0 < 65_000) {
    await sleep(1000);
    n = await count();
  }
  return { count: n, waitedS: Math.round((Date.now() - t0) / 1000) };
}

/** Slowest stream ÷ fastest in one iperf3 result with several streams (a stream starved by the engine shows as ~0). */
function fairness(j: any): number | undefined {
  const rates: number[] = (j?.end?.streams ?? []).map((x: any) => x?.receiver?.bits_per_second).filter((x: unknown) => typeof x === 'number');
  if (rates.length < 2 || Math.max(...rates) <= 0) return undefined;
  return Math.min(...rates) / Math.max(...rates);
}

async function connRun(s: Session, kind: 'conn' | 'rr', n: number, par: number, round: number): Promise<ConnRun> {
  const args = [join(HERE, 'probe.mjs'), kind, '--host', s.spec.target, '--port', String(PROBE_PORT), '--n', String(n), '--timeout', '5',
    ...(kind === 'conn' ? ['--par', String(par), '--duration', '30'] : [])];
  const e0 = treeTicks(s.engine.proc.pid), t0 = performance.now();
  const [c, a] = inNs(NS, 'node', args);
  const r = await run(c, a, 90_000);
  const secs = (performance.now() - t0) / 1000;
  const engineCpuS = (treeTicks(s.engine.proc.pid) - e0) / HZ;
  const enginePct = (100 * engineCpuS) / secs;
  let j: any = {};
  try { j = JSON.parse(r.stdout.trim().split('\n').pop() ?? ''); } catch { j = { err: `bad probe output: ${r.stderr.trim().slice(0, 200)}` }; }
  return {
    peer: s.name, mtu: s.mtu, kind, par, run: round, n: j.n ?? n, ok: j.ok ?? 0, fail: j.fail ?? n, rate: j.rate,
    p50us: j.p50_us, p99us: j.p99_us, enginePct, engineCpuS, status: r.code === 0 ? 'ok' : `fail: ${j.err ?? 'exit ' + r.code}`,
  };
}

// ---- main -------------------------------------------------------------------------------------

/** Set once this run holds RUN/lock: only then are the namespaces its own to delete. */
let ownsBench = false;
/** Extra clean-up the soak registers (its namespaces), run by cleanupAll after the processes stop. */
const cleanups: (() => Promise<void>)[] = [];
export function onCleanup(fn: () => Promise<void>): void {
  cleanups.push(fn);
}
const LOCK = join(RUN, 'lock');

/** One bench at a time: the namespace names, ports and socket path are fixed. */
function takeLock(): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(LOCK, String(process.pid), { flag: 'wx' });
      ownsBench = true;
      return;
    } catch {
      const pid = Number(readFileSync(LOCK, 'utf8').trim());
      let alive = false;
      try {
        // a zombie still answers kill(0): read the state instead
        const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
        alive = st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) !== 'Z';
      } catch { /* gone */ }
      if (alive && pid !== process.pid) die(`another bench:e2e is running (pid ${pid}, ${LOCK})`);
      rmSync(LOCK, { force: true });
    }
  }
  die(`cannot take ${LOCK}`);
}

async function cleanupAll(): Promise<void> {
  // `ip netns exec` replaces itself with the command (exec), so this PID is the client itself
  for (const c of inFlight) c.kill('SIGTERM');
  await Promise.all([...live].map((b) => stopBg(b)));
  if (ownsBench) {
    for (const fn of cleanups.splice(0)) await fn().catch((e) => log(`clean-up: ${(e as Error).message}`));
    await nsDown();
    rmSync(LOCK, { force: true });
    ownsBench = false;
  }
}

const PERF_HZ = 1000;

/** Samples `pid` with perf until the returned stop() (SIGINT: perf writes its data and exits). */
function perfRecord(pid: number, file: string, logDir: string): { stop(): Promise<void> } {
  const bg = startBg('perf', 'perf', ['record', '-q', '-e', 'cpu-clock', '-F', String(PERF_HZ), '-g', '-p', String(pid), '-o', file], join(logDir, 'perf-record.log'));
  return {
    async stop() {
      if (!bg.done) bg.proc.kill('SIGINT');
      const t = setTimeout(() => stopBg(bg), 60_000);
      await bg.exited;
      clearTimeout(t);
    },
  };
}

/**
 * Node's --perf-basic-prof map names the JIT frames; perf reads it from /tmp/perf-PID.map.
 * It moves beside the data (as X.map) so /tmp does not fill and a later `perf report
 * -g caller` can still name frames once it is copied back.
 */
function keepPerfMap(pid: number, data: string): void {
  const map = `/tmp/perf-${pid}.map`;
  if (!existsSync(map)) return;
  copyFileSync(map, data.replace(/\.data$/, '.map'));
  rmSync(map, { force: true });
}

/** `perf report` of a recorded window, symbol by symbol; a string says what failed. */
async function perfRows(file: string): Promise<PerfRow[] | string> {
  if (!existsSync(file)) return `perf wrote no ${file} (see perf-record.log)`;
  const rep = await run('perf', ['report', '-i', file, '--no-children', '--sort', 'dso,sym', '-g', 'none', '--stdio', '-n'], 300_000);
  if (rep.code !== 0) return `perf report failed (${rep.code}): ${rep.stderr.trim().slice(0, 200)}`;
  writeFileSync(file.replace(/\.data$/, '.txt'), rep.stdout);
  return parsePerfReport(rep.stdout);
}

/** One iperf3 run (the first --streams count) with perf sampling the engine over its middle. */
async function perfIperfRun(name: PeerName, spec: PeerSpec, mtu: number, dir: 'up' | 'down', o: Opts, relayBin: string, logDir: string, wasmNames?: Map<number, string>): Promise<PerfResult | string> {
  const streams = o.streams[0];
  const s = await startSession(name, spec, mtu, relayBin, logDir, { perfMap: true });
  if (typeof s === 'string') return s;
  const pid = s.engine.proc.pid!;
  const file = join(logDir, `perf-${name}-${dir}-${mtu}-P${streams}.data`);
  const seconds = Math.max(1, o.time - 2);
  let x: IperfRun;
  try {
    const iperf = iperfRun(s, o, streams, dir, 1, logDir);
    await sleep((o.omit + 1) * 1000);
    const rec = perfRecord(pid, file, logDir);
    await sleep(seconds * 1000);
    await rec.stop();
    x = await iperf;
  } finally {
    await stopSession(s);
  }
  if (x.status !== 'ok') return `iperf3: ${x.status}`;
  const rows = await perfRows(file);
  keepPerfMap(pid, file);
  if (typeof rows === 'string') return rows;
  const gbps = x.gbps ?? 0;
  return {
    kind: 'iperf', peer: name, label: LABEL[name], mtu, dir, streams, gbps, seconds, hz: PERF_HZ, file,
    ...summarizePerf(rows, { hz: PERF_HZ, unit: 'GB', work: (gbps * seconds) / 8, topN: 25, wasmNames }),
  };
}

/**
 * The connection-rate probe (1 and 8 at a time, --conn each) and the --rr round trips with
 * perf sampling the engine over each whole run, after the usual untimed warm-up: CPU µs per
 * connection or round trip, symbol by symbol, so the engines' paths compare syscall by syscall.
 */
async function perfConnRuns(name: PeerName, spec: PeerSpec, mtu: number, o: Opts, relayBin: string, logDir: string, wasmNames?: Map<number, string>): Promise<(PerfResult | string)[]> {
  const tw = await settleTimeWait();
  log(`perf ${name} conn: ${tw.count} host TIME_WAIT sockets after waiting ${tw.waitedS} s`);
  const s = await startSession(name, spec, mtu, relayBin, logDir, { perfMap: true });
  if (typeof s === 'string') return [s];
  const pid = s.engine.proc.pid!;
  const out: (PerfResult | string)[] = [];
  try {
    if (o.connWarmup > 0) await connRun(s, 'conn', o.connWarmup, 1, 0);
    // One probe run under perf: its samples per connection or per round trip, by symbol and
    // by the event-loop callback they ran under.
    const sampled = async (kind: 'conn' | 'rr', n: number, par: number, file: string): Promise<PerfResult | string> => {
      const rec = perfRecord(pid, file, logDir);
      const t0 = performance.now();
      const c = await connRun(s, kind, n, par, 1);
      const seconds = (performance.now() - t0) / 1000;
      await rec.stop();
      if (c.status !== 'ok' || c.fail > 0) return `${kind} par=${par}: ${c.status}, ${c.fail} failed`;
      const rows = await perfRows(file);
      if (typeof rows === 'string') return rows;
      const opts = { hz: PERF_HZ, unit: kind === 'conn' ? 'conn' as const : 'rt' as const, work: c.ok, topN: 25, wasmNames };
      const script = await run('perf', ['script', '-i', file, '-F', 'ip,sym'], 300_000);
      const common = {
        peer: name, label: LABEL[name], mtu, seconds, hz: PERF_HZ, file, ...summarizePerf(rows, opts),
        entries: script.code === 0 ? summarizeEntries(parsePerfScript(script.stdout), { ...opts, topN: 15 }) : undefined,
      };
      return kind === 'conn' ? { ...common, kind, par, connRate: c.rate ?? 0 } : { ...common, kind, p50us: c.p50us ?? 0 };
    };
    for (const par of o.conn > 0 ? [1, 8] : []) out.push(await sampled('conn', o.conn, par, join(logDir, `perf-${name}-conn-${mtu}-par${par}.data`)));
    // Request/response latency on an open connection is CPU per event and nothing else: no
    // handshake, no socket set-up, two wake-ups per round trip.
    if (o.rr > 0) out.push(await sampled('rr', o.rr, 1, join(logDir, `perf-${name}-rr-${mtu}.data`)));
  } finally {
    await stopSession(s);
    keepPerfMap(pid, join(logDir, `perf-${name}-conn-${mtu}.data`));
  }
  return out;
}

async function main(): Promise<void> {
  const o = parseOpts(process.argv.slice(2));
  if (process.getuid?.() !== 0) {
    process.stderr.write('e2e: needs root (network namespaces, TAP devices, apt-get for missing tools). Run it as root; see --help.\n');
    process.exit(2);
  }
  mkdirSync(RUN, { recursive: true });
  chmodSync(RUN, 0o1777);
  takeLock();
  const logDir = join(RUN, `logs-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(logDir, { recursive: true });
  mkdirSync(o.out, { recursive: true });
  const onSig = () => {
    if (interrupted) return;
    interrupted = true;
    log('interrupted: stopping what this run started');
    void cleanupAll().then(() => process.exit(130));
  };
  process.on('SIGINT', onSig);
  process.on('SIGTERM', onSig);

  const t0 = Date.now();
  if (o.soak) {
    try {
      await ensureTools(['vnetkit-simd'], false);
      const { runSoak } = await import('./soak.js');
      await runSoak(o, logDir);
    } finally {
      await cleanupAll();
    }
    return;
  }
  await ensureTools(o.peers, o.perf);
  HZ = Number((await must('getconf', ['CLK_TCK'])).trim()) || 100;
  const tools: Tools = { relay: await buildTool('relay'), acceptExec: await buildTool('accept-exec') };
  const relayBin = tools.relay;
  const tree = o.peers.some((p) => p.startsWith('vnetkit')) || o.profile ? await prepareTree(o.worktree, !o.tsx) : { dir: REPO, commit: '', dirty: false };
  for (const port of [IPERF_PORT, PROBE_PORT]) if (await listening(null, port)) die(`127.0.0.1:${port} is already in use`);

  const result: E2eResult = {
    meta: {
      date: new Date().toISOString(), quick: o.quick, commit: tree.commit, dirty: tree.dirty, node: process.version,
      kernel: release(), cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '?',
      iperf3: await version('iperf3', ['--version']),
      wmem: { default: readSysctlBytes(WMEM_DEFAULT_PATH), max: readSysctlBytes(WMEM_MAX_PATH) },
      qemu: o.peers.includes('slirp') ? await version('qemu-system-x86_64', ['--version']) : undefined,
      passt: o.peers.includes('passt') ? (await run('sh', ['-c', "dpkg-query -W -f='${Version}' passt"])).stdout : undefined,
      options: { peers: o.peers, mtus: o.mtus, streams: o.streams, dirs: o.dirs, runs: o.runs, time: o.time, omit: o.omit, conn: o.conn, connWarmup: o.connWarmup, rr: o.rr, linkSndbuf: o.linkSndbuf, tsx: o.tsx },
      seconds: 0,
      load: [loadavg()[0], 0],
    },
    peers: o.peers, runs: [], conns: [], notes: [], profiles: [], perf: [],
  };
  log(`peers ${o.peers.join(',')} mtus ${o.mtus.join(',')} runs ${o.runs}; logs in ${logDir}`);

  try {
    if (!o.profileOnly && !o.perfOnly) {
      // Rounds are the outer loop: the machine may be shared, and load that comes and goes then
      // lands on every peer alike instead of on whichever peer happened to run at that moment.
      for (let round = 1; round <= o.runs; round++) {
        for (const mtu of o.mtus) {
          for (const name of o.peers) {
            const spec = peerSpec(name, tools, tree.dir, o.linkSndbuf, o.tsx);
            const s = await startSession(name, spec, mtu, relayBin, logDir);
            if (typeof s === 'string') {
              log(`${name} mtu ${mtu} round ${round}: ${s}`);
              result.notes.push(`${name} at MTU ${mtu}, round ${round}: ${s}`);
              for (const streams of o.streams) for (const dir of o.dirs) result.runs.push({ peer: name, mtu, streams, dir, run: round, status: 'not-ready' });
              continue;
            }
            for (const streams of o.streams) for (const dir of o.dirs) {
              if (s.engine.done || s.relay.done) {
                result.runs.push({ peer: name, mtu, streams, dir, run: round, status: 'skipped-peer-dead' });
                continue;
              }
              const x = await iperfRun(s, o, streams, dir, round, logDir);
              result.runs.push(x);
              log(`${name} mtu=${mtu} P=${streams} ${dir} #${round}: ${x.gbps?.toFixed(2) ?? '-'} Gbit/s, engine ${x.enginePct?.toFixed(0) ?? '-'}% ` +
                `(${x.cpuSPerGB?.toFixed(2) ?? '-'} CPU s/GB), relay ${x.relayPct?.toFixed(0) ?? '-'}%, retr ${x.retr ?? '-'}${x.fairness !== undefined ? `, slowest stream ${(100 * x.fairness).toFixed(0)}% of fastest` : ''} ${x.status}`);
            }
            // connection tests at the first MTU only: a handshake and a 1-byte exchange do not depend on it
            if (mtu === o.mtus[0] && !s.engine.done && !s.relay.done) {
              if (o.conn > 0) {
                const tw = await settleTimeWait();
                log(`${name} conn #${round}: ${tw.count} host TIME_WAIT sockets after waiting ${tw.waitedS} s`);
                if (o.connWarmup > 0) {
                  const c = { ...(await connRun(s, 'conn', o.connWarmup, 1, round)), warmup: true };
                  result.conns.push(c);
                  log(`${name} conn warm-up #${round}: ${c.rate ?? '-'} conn/s p50 ${c.p50us ?? '-'} µs ${c.status}`);
                }
                for (const par of [1, 8]) {
                  const c = await connRun(s, 'conn', o.conn, par, round);
                  result.conns.push(c);
                  log(`${name} conn par=${par} #${round}: ${c.rate ?? '-'} conn/s p50 ${c.p50us ?? '-'} µs p99 ${c.p99us ?? '-'} µs ${c.status}`);
                }
              }
              if (o.rr > 0) {
                const c = await connRun(s, 'rr', o.rr, 1, round);
                result.conns.push(c);
                log(`${name} rr #${round}: p50 ${c.p50us ?? '-'} µs p99 ${c.p99us ?? '-'} µs ${c.status}`);
              }
            }
            await stopSession(s);
            const tail = readFileSync(s.relay.logFile, 'utf8').trim().split('\n').pop();
            if (tail) log(`  ${tail}`);
          }
        }
      }
    }
    if (o.profile) {
      const spec = peerSpec('vnetkit-simd', tools, tree.dir, o.linkSndbuf, o.tsx);
      for (const mtu of o.mtus) for (const dir of o.dirs) {
        // One profile per MTU and direction, at the first --streams count.
        const streams = o.streams[0];
        const prof = join(logDir, `vnetkit-simd-${dir}-${mtu}-P${streams}.cpuprofile`);
        const s = await startSession('vnetkit-simd', spec, mtu, relayBin, logDir, { prof });
        if (typeof s === 'string') {
          result.notes.push(`profile ${dir} at MTU ${mtu}: ${s}`);
          continue;
        }
        const x = await iperfRun(s, o, streams, dir, 1, logDir);
        await stopSession(s);
        if (!existsSync(prof)) {
          result.notes.push(`profile ${dir} at MTU ${mtu}: the engine wrote no profile`);
          continue;
        }
        const names = wasmExportNames(readFileSync(join(tree.dir, 'build/vnetkit-simd.wasm')));
        const p: ProfileResult = { mtu, dir, streams, gbps: x.gbps ?? 0, file: prof,
          ...summarizeProfile(JSON.parse(readFileSync(prof, 'utf8')), 30, tree.dir, names) };
        result.profiles.push(p);
        log(`profile ${dir} mtu ${mtu}: ${p.gbps.toFixed(2)} Gbit/s under the profiler, ${p.totalMs.toFixed(0)} ms sampled`);
      }
      if (o.conn > 0) {
        // The connection path is its own profile: handshakes and closes, not bulk data.
        const prof = join(logDir, 'vnetkit-simd-conn.cpuprofile');
        const s = await startSession('vnetkit-simd', spec, o.mtus[0], relayBin, logDir, { prof });
        if (typeof s === 'string') result.notes.push(`connection profile: ${s}`);
        else {
          const c = await connRun(s, 'conn', o.conn, o.profilePar, 1);
          await stopSession(s);
          if (!existsSync(prof)) result.notes.push('connection profile: the engine wrote no profile');
          else {
            const names = wasmExportNames(readFileSync(join(tree.dir, 'build/vnetkit-simd.wasm')));
            const p: ProfileResult = { mtu: o.mtus[0], dir: 'up', streams: 1, gbps: 0, file: prof, connRate: c.rate ?? 0, connPar: o.profilePar,
              ...summarizeProfile(JSON.parse(readFileSync(prof, 'utf8')), 30, tree.dir, names) };
            result.profiles.push(p);
            log(`profile conn: ${c.rate ?? '-'} conn/s under the profiler (${c.status}), ${p.totalMs.toFixed(0)} ms sampled`);
          }
        }
      }
    }
    if (o.perf) {
      const wasmNames = (name: PeerName) => name === 'vnetkit-simd' ? wasmExportNames(readFileSync(join(tree.dir, 'build/vnetkit-simd.wasm'))) : undefined;
      const keep = (what: string, p: PerfResult | string) => {
        if (typeof p === 'string') {
          result.notes.push(`perf ${what}: ${p}`);
          log(`perf ${what}: ${p}`);
          return;
        }
        result.perf!.push(p);
        log(`perf ${what}: ${p.kind === 'iperf' ? `${p.gbps.toFixed(2)} Gbit/s` : p.kind === 'conn' ? `${p.connRate.toFixed(0)} conn/s` : `p50 ${p.p50us} µs`}, ` +
          `${formatCost(p.unit, p.cost)} ${costLabel(p.unit)} (kernel ${formatCost(p.unit, p.kernelCost)})`);
      };
      for (const mtu of o.mtus) for (const name of o.peers) for (const dir of o.dirs) {
        keep(`${name} ${dir} at MTU ${mtu}`, await perfIperfRun(name, peerSpec(name, tools, tree.dir, o.linkSndbuf, o.tsx), mtu, dir, o, relayBin, logDir, wasmNames(name)));
      }
      if (o.conn > 0 || o.rr > 0) {
        for (const name of o.peers) {
          const spec = peerSpec(name, tools, tree.dir, o.linkSndbuf, o.tsx);
          for (const p of await perfConnRuns(name, spec, o.mtus[0], o, relayBin, logDir, wasmNames(name))) keep(`${name} connection probes`, p);
        }
      }
    }
  } finally {
    await cleanupAll();
  }
  result.meta.seconds = Math.round((Date.now() - t0) / 1000);
  result.meta.load[1] = loadavg()[0];
  const stem = o.profileOnly ? 'e2e-profile' : o.perfOnly ? 'e2e-perf' : o.quick ? 'e2e-quick' : 'e2e';
  writeFileSync(join(o.out, `${stem}.json`), JSON.stringify(result, null, 1) + '\n');
  const md = renderReport(result);
  writeFileSync(join(o.out, `${stem}.md`), md);
  console.log(md);
  log(`done in ${result.meta.seconds} s: ${join(o.out, stem)}.{json,md}`);
}

// soak.ts imports the machinery above: only the script run as the program starts a bench.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch(async (e) => {
    process.stderr.write(e instanceof Fatal ? `e2e: ERROR: ${e.message}\n` : `e2e: ${(e as Error).stack ?? e}\n`);
    await cleanupAll();
    process.exit(1);
  });
}
