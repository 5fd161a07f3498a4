/**
 * Real-guest harness for the e2e tests: boots the Linux guest built by
 * scripts/testbed/build-guest.sh under qemu (TCG), wires its virtio-net NIC to
 * a socket an engine listens on, runs a shell script inside it and collects the
 * `TESTBED: ` lines the guest prints on its serial console.
 *
 * The guest side (helpers such as tb_dhcp, tb_ping, tb_dns, tb_udp) lives in
 * scripts/testbed/guest/lib.sh; every helper prints one line
 * `TESTBED: <what> ok|fail [args...] key=value...`.
 *
 * Missing qemu or kernel is an error, never a skip: a green e2e run must mean
 * the guests really booted.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CACHE_DIR = process.env.VNETKIT_TESTBED_CACHE ?? path.join(REPO_ROOT, '.testbed-cache');
export const LOG_DIR = path.join(CACHE_DIR, 'logs');
const BUILD_SCRIPT = path.join(REPO_ROOT, 'scripts/testbed/build-guest.sh');
const QEMU = 'qemu-system-x86_64';

export interface GuestImage {
  kernel: string;
  initrd: string;
  kernelVersion: string;
}

export class TestbedSetupError extends Error {
  constructor(detail: string) {
    const bar = '#'.repeat(72);
    super(
      `\n${bar}\n# e2e testbed unavailable: the guest tests cannot run.\n# ${detail.trim().split('\n').join('\n# ')}\n` +
        `# Fix: scripts/testbed/install-deps.sh (as root), then scripts/testbed/build-guest.sh\n${bar}`,
    );
    this.name = 'TestbedSetupError';
  }
}

let image: GuestImage | undefined;

/**
 * Builds the guest if needed (build-guest.sh is idempotent, takes a lock, and
 * returns in ~20 ms when up to date) and checks qemu is runnable. Memoised per
 * process; throws TestbedSetupError with a loud message otherwise.
 */
export function ensureGuest(): GuestImage {
  if (image) return image;
  const q = spawnSync(QEMU, ['--version'], { encoding: 'utf8' });
  if (q.error || q.status !== 0) {
    throw new TestbedSetupError(`${QEMU} is not runnable: ${q.error?.message ?? q.stderr}`);
  }
  const b = spawnSync('bash', [BUILD_SCRIPT, CACHE_DIR], { encoding: 'utf8', timeout: 600_000 });
  if (b.error || b.status !== 0) {
    throw new TestbedSetupError(
      `build-guest.sh failed (status ${b.status}): ${b.error?.message ?? ''}\n${(b.stderr ?? '').slice(-2000)}`,
    );
  }
  const env = parseEnvFile(path.join(CACHE_DIR, 'build.env'));
  const kernel = env.TB_KERNEL;
  const initrd = env.TB_INITRD;
  if (!kernel || !initrd || !fs.existsSync(kernel) || !fs.existsSync(initrd)) {
    throw new TestbedSetupError(`build.env in ${CACHE_DIR} does not name an existing kernel and initrd`);
  }
  image = { kernel, initrd, kernelVersion: env.TB_KERNEL_VERSION ?? '' };
  return image;
}

function parseEnvFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const l of text.split('\n')) {
    const eq = l.indexOf('=');
    if (eq > 0) out[l.slice(0, eq)] = l.slice(eq + 1);
  }
  return out;
}

// ---------------------------------------------------------------- TESTBED lines

export interface TestbedLine {
  raw: string;
  /** first word after "TESTBED: " (dhcp, ping, exit, ...) */
  what: string;
  /** second word when it is ok/fail */
  status: 'ok' | 'fail' | null;
  /** remaining words without '=' */
  args: string[];
  /** key=value words */
  fields: Record<string, string>;
}

const PREFIX = 'TESTBED: ';

export function parseTestbedLine(text: string): TestbedLine | null {
  // the first line after the kernel takes the console starts with terminal resets
  // (ESC c, ESC [?7l, ESC [2J); they are not part of the text
  const raw = text.replace(/\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])/g, '').replace(/\r/g, '');
  // the prefix must start the line; a kernel message could otherwise smuggle one in
  if (!raw.startsWith(PREFIX)) return null;
  const words = raw.slice(PREFIX.length).trim().split(/\s+/).filter((w) => w.length > 0);
  const what = words.shift() ?? '';
  let status: TestbedLine['status'] = null;
  if (words[0] === 'ok' || words[0] === 'fail') status = words.shift() as 'ok' | 'fail';
  const args: string[] = [];
  const fields: Record<string, string> = {};
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq > 0) fields[w.slice(0, eq)] = w.slice(eq + 1);
    else args.push(w);
  }
  return { raw, what, status, args, fields };
}

// ---------------------------------------------------------------- per-boot archive

export type GuestFile = string | Uint8Array | { data: string | Uint8Array; mode: number };

const enc = new TextEncoder();

/** newc cpio: the format the kernel's initramfs unpacker reads. */
export function cpioNewc(entries: { name: string; mode: number; data: Uint8Array }[]): Uint8Array {
  const chunks: Uint8Array[] = [];
  let ino = 1;
  const hex = (n: number) => (n >>> 0).toString(16).padStart(8, '0');
  const pad4 = (n: number) => (4 - (n % 4)) % 4;
  const push = (name: string, mode: number, data: Uint8Array) => {
    const nameBytes = enc.encode(name + '\0');
    const header =
      '070701' +
      hex(ino++) + hex(mode) + hex(0) + hex(0) + hex(mode & 0o40000 ? 2 : 1) + hex(0) +
      hex(data.length) + hex(0) + hex(0) + hex(0) + hex(0) + hex(nameBytes.length) + hex(0);
    chunks.push(enc.encode(header), nameBytes, new Uint8Array(pad4(110 + nameBytes.length)));
    chunks.push(data, new Uint8Array(pad4(data.length)));
  };
  for (const e of entries) push(e.name, e.mode, e.data);
  push('TRAILER!!!', 0, new Uint8Array(0));
  const total = chunks.reduce((s, c) => s + c.length, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

function shellQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

function overlayArchive(script: string, env: Record<string, string>, files: Record<string, GuestFile>): Uint8Array {
  const entries: { name: string; mode: number; data: Uint8Array }[] = [];
  const dirs = new Set<string>();
  const addDirs = (p: string) => {
    const parts = p.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (d && !dirs.has(d)) {
        dirs.add(d);
        entries.push({ name: d, mode: 0o40755, data: new Uint8Array(0) });
      }
    }
  };
  const add = (guestPath: string, f: GuestFile) => {
    if (!guestPath.startsWith('/') || guestPath.split('/').includes('..')) {
      throw new Error(`guest file path must be absolute without '..': ${guestPath}`);
    }
    const rel = guestPath.slice(1);
    const data = typeof f === 'string' ? enc.encode(f) : f instanceof Uint8Array ? f : typeof f.data === 'string' ? enc.encode(f.data) : f.data;
    const mode = typeof f === 'object' && !(f instanceof Uint8Array) ? f.mode : 0o644;
    addDirs(rel);
    entries.push({ name: rel, mode: 0o100000 | (mode & 0o7777), data });
  };
  let envText = '';
  for (const [k, v] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`guest env name ${JSON.stringify(k)} is not a shell name`);
    envText += `export ${k}=${shellQuote(v)}\n`;
  }
  add('/testbed/env.sh', envText);
  add('/testbed/script.sh', script.endsWith('\n') ? script : script + '\n');
  for (const [p, f] of Object.entries(files)) add(p, f);
  return zlib.gzipSync(cpioNewc(entries), { level: 1 });
}

// ---------------------------------------------------------------- boot

export interface BootOptions {
  /** engine's unix stream socket (qemu connects: -netdev stream,server=off); must already exist */
  socket?: string;
  /** engine's UDP endpoint (-netdev dgram, inet); qemu binds localPort (default: a free port) */
  dgram?: { port: number; host?: string; localPort?: number };
  /** NIC MAC, default 52:54:00:12:34:56 */
  mac?: string;
  /** shell snippet run in the guest after lib.sh; its exit code is reported */
  script: string;
  /** wall-clock limit; qemu is killed when it passes (default 60 s) */
  timeoutMs?: number;
  /** exported to the script (written to /testbed/env.sh) */
  env?: Record<string, string>;
  /** extra guest files by absolute path */
  files?: Record<string, GuestFile>;
  /** used in the log file name */
  name?: string;
  memMb?: number;
  /** called for each TESTBED line as it arrives */
  onLine?: (line: TestbedLine) => void;
}

export interface GuestResult {
  /** the script's exit code from `TESTBED: exit N`; null when the guest never got there */
  exitCode: number | null;
  timedOut: boolean;
  qemuCode: number | null;
  qemuSignal: NodeJS.Signals | null;
  lines: TestbedLine[];
  /** full console + qemu stderr, kept for debugging */
  logFile: string;
  wallMs: number;
  /** first line with this `what` (and status, if given) */
  find(what: string, status?: 'ok' | 'fail'): TestbedLine | undefined;
  findAll(what: string): TestbedLine[];
  /** log tail for assertion messages */
  tail(n?: number): string;
}

export interface RunningGuest {
  readonly lines: readonly TestbedLine[];
  readonly logFile: string;
  readonly pid: number | undefined;
  /** resolves with the first matching line (past or future); rejects on timeout or guest end */
  waitFor(pred: (l: TestbedLine) => boolean, timeoutMs?: number): Promise<TestbedLine>;
  readonly result: Promise<GuestResult>;
  kill(): void;
}

const live = new Set<ChildProcess>();
let exitHooked = false;
let seq = 0;

function hookExit() {
  if (exitHooked) return;
  exitHooked = true;
  // a crashed or interrupted test run must not leave TCG guests burning CPU
  process.on('exit', () => {
    for (const c of live) c.kill('SIGTERM');
  });
}

/** A UDP port that was free a moment ago on host (for qemu's side of -netdev dgram). */
export async function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((res, rej) => {
    s.once('error', rej);
    s.bind(0, host, () => res());
  });
  const port = s.address().port;
  await new Promise<void>((res) => s.close(() => res()));
  return port;
}

function isSocket(p: string): boolean {
  try {
    return fs.statSync(p).isSocket();
  } catch {
    return false;
  }
}

export async function startGuest(opts: BootOptions): Promise<RunningGuest> {
  const img = ensureGuest();
  hookExit();
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const mac = opts.mac ?? '52:54:00:12:34:56';
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) throw new Error(`bad MAC ${mac}`);

  let netdev: string;
  if (opts.socket !== undefined && opts.dgram === undefined) {
    // qemu 7.2 connects once, never retries, and a failed connect is silent (the guest
    // even sees carrier): refuse to boot a guest that could only time out
    if (!isSocket(opts.socket)) throw new Error(`no unix socket at ${opts.socket}: start the engine first`);
    netdev = `stream,id=n0,server=off,addr.type=unix,addr.path=${opts.socket}`;
  } else if (opts.dgram !== undefined && opts.socket === undefined) {
    const host = opts.dgram.host ?? '127.0.0.1';
    const localPort = opts.dgram.localPort ?? (await freeUdpPort(host));
    netdev =
      `dgram,id=n0,local.type=inet,local.host=${host},local.port=${localPort},` +
      `remote.type=inet,remote.host=${host},remote.port=${opts.dgram.port}`;
  } else {
    throw new Error('bootGuest needs exactly one of socket or dgram');
  }

  fs.mkdirSync(LOG_DIR, { recursive: true });
  const tag = `${(opts.name ?? 'guest').replace(/[^\w.-]+/g, '_')}-${process.pid}-${++seq}`;
  const logFile = path.join(LOG_DIR, `${tag}.log`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-e2e-'));
  const initrd = path.join(work, 'initrd');
  fs.writeFileSync(initrd, fs.readFileSync(img.initrd));
  // the kernel unpacks concatenated archives in order, so the overlay wins
  fs.appendFileSync(initrd, overlayArchive(opts.script, opts.env ?? {}, opts.files ?? {}));

  const args = [
    '-accel', 'tcg', '-cpu', 'max', '-M', 'pc', '-smp', '1', '-m', String(opts.memMb ?? 256),
    '-nographic', '-no-reboot', '-nodefaults', '-no-user-config', '-serial', 'stdio',
    '-kernel', img.kernel, '-initrd', initrd,
    '-append', 'console=ttyS0 quiet loglevel=3 panic=-1',
    // romfile= drops the iPXE option ROM: the kernel is loaded directly, PXE is never used
    '-netdev', netdev, '-device', `virtio-net-pci,netdev=n0,mac=${mac},romfile=`,
  ];
  const log = fs.createWriteStream(logFile);
  log.write(`# ${QEMU} ${args.join(' ')}\n`);
  const started = Date.now();
  // coreutils timeout is the backstop for when this process dies without running its
  // exit hook (a killed test worker): the guest then still cannot outlive its budget.
  // Signals sent to it are forwarded to qemu.
  const backstopS = Math.ceil(timeoutMs / 1000) + 10;
  const child = spawn('timeout', ['-s', 'KILL', String(backstopS), QEMU, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);

  const lines: TestbedLine[] = [];
  const waiters = new Set<{ pred: (l: TestbedLine) => boolean; resolve: (l: TestbedLine) => void }>();
  let pending = '';
  const onData = (buf: Buffer) => {
    log.write(buf);
    pending += buf.toString('latin1');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const l = parseTestbedLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      if (!l) continue;
      lines.push(l);
      opts.onLine?.(l);
      for (const w of waiters) {
        if (w.pred(l)) {
          waiters.delete(w);
          w.resolve(l);
        }
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', (b: Buffer) => log.write(`[qemu stderr] ${b.toString()}`));

  // TERM reaches qemu through timeout and qemu exits at once; KILL later in case it does not
  const stop = () => {
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 2000).unref();
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    log.write(`\n# harness: timeout after ${timeoutMs} ms, killing qemu\n`);
    stop();
  }, timeoutMs);

  const tailOf = (n = 25) => {
    try {
      return fs.readFileSync(logFile, 'utf8').split('\n').slice(-n).join('\n');
    } catch {
      return '';
    }
  };

  let ended = false;
  const result = new Promise<GuestResult>((resolve) => {
    const finish = (code: number | null, signal: NodeJS.Signals | null, err?: Error) => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      live.delete(child);
      if (err) log.write(`\n# harness: spawn error ${err.message}\n`);
      const tailLine = pending.length > 0 ? parseTestbedLine(pending) : null;
      if (tailLine) lines.push(tailLine);
      const exitLine = [...lines].reverse().find((l) => l.what === 'exit');
      const exitCode = exitLine && /^\d+$/.test(exitLine.args[0] ?? '') ? Number(exitLine.args[0]) : null;
      const wallMs = Date.now() - started;
      log.end(`\n# harness: qemu code=${code} signal=${signal} script exit=${exitCode} wall=${wallMs}ms\n`, () => {
        fs.rmSync(work, { recursive: true, force: true });
        resolve({
          exitCode, timedOut, qemuCode: code, qemuSignal: signal, lines, logFile, wallMs,
          find: (what, status) => lines.find((l) => l.what === what && (status === undefined || l.status === status)),
          findAll: (what) => lines.filter((l) => l.what === what),
          tail: tailOf,
        });
      });
      for (const w of waiters) w.resolve(undefined as unknown as TestbedLine);
      waiters.clear();
    };
    child.once('error', (e) => finish(null, null, e));
    child.once('close', (code, signal) => finish(code, signal));
  });

  return {
    lines,
    logFile,
    pid: child.pid,
    result,
    kill: stop,
    waitFor(pred, waitMs = timeoutMs) {
      const seen = lines.find(pred);
      if (seen) return Promise.resolve(seen);
      if (ended) return Promise.reject(new Error(`guest ended without the awaited line; log ${logFile}\n${tailOf()}`));
      return new Promise<TestbedLine>((resolve, reject) => {
        const w = {
          pred,
          resolve: (l: TestbedLine) => {
            clearTimeout(t);
            if (l) resolve(l);
            else reject(new Error(`guest ended without the awaited line; log ${logFile}\n${tailOf()}`));
          },
        };
        const t = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`no awaited TESTBED line within ${waitMs} ms; log ${logFile}\n${tailOf()}`));
        }, waitMs);
        waiters.add(w);
      });
    },
  };
}

/** Boots a guest, runs its script to the end and returns what it printed. */
export async function bootGuest(opts: BootOptions): Promise<GuestResult> {
  return (await startGuest(opts)).result;
}

/** Assertion message context: where the console log is and how it ended. */
export function context(r: GuestResult): string {
  return `guest log ${r.logFile} (exit=${r.exitCode} timedOut=${r.timedOut})\n${r.tail()}`;
}
