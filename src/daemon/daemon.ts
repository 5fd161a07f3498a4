/**
 * The daemon: an engine plus its listeners, the port forwarder, the control
 * API and an optional capture, started in an order that leaves nothing
 * behind when a step fails, and closed the same way on SIGINT/SIGTERM.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { createEngine, type Engine } from '../engine/engine.js';
import { createLogger, type Logger } from '../log.js';
import type { Listener } from '../transport/index.js';
import { Capture, ensureCaptureDir } from './capture.js';
import { Forwarder } from './forwarder.js';
import { apiTokenProblem, generateApiToken, startApiServer, sumApiStats, type ApiServer, type ApiServerOptions } from './api.js';
import type { DaemonConfig } from './options.js';
import { linkBufferHint, readSysctlBytes, WMEM_DEFAULT_PATH, WMEM_MAX_PATH } from './link-buffer-hint.js';
import { canSetSendBuffer, DEFAULT_SEND_BUFFER_BYTES } from '../transport/index.js';
import { ErrorCodes, VnetkitError } from '../errors.js';

export interface DaemonIo {
  /** Human-facing messages (qemu arguments, ready line). */
  out: { write(s: string): unknown };
  /** Log lines. */
  err: { write(s: string): unknown };
  stdin?: Readable;
  stdout?: Writable;
  env?: NodeJS.ProcessEnv;
}

/**
 * The per-user directory for the default sockets: $XDG_RUNTIME_DIR/vnetkit,
 * else <tmpdir>/vnetkit-<uid>. Created 0700; an existing one must be a real
 * directory owned by us (a symlink or someone else's directory in a shared
 * /tmp could let another user take over the sockets).
 */
export function defaultRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_RUNTIME_DIR;
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const dir = xdg !== undefined && xdg !== '' && path.isAbsolute(xdg) ? path.join(xdg, 'vnetkit') : path.join(os.tmpdir(), `vnetkit-${uid}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (typeof process.getuid === 'function' && st.uid !== uid) throw new Error(`${dir} belongs to uid ${st.uid}, not to this user (${uid})`);
  if ((st.mode & 0o777) !== 0o700) fs.chmodSync(dir, 0o700);
  return dir;
}

/** The qemu arguments that connect a VM to a qemu-framing listener URL. */
export function qemuArgs(url: string, netdevId = 'n0'): string {
  let addr: string;
  if (url.startsWith('unix://')) {
    addr = `addr.type=unix,addr.path=${url.slice('unix://'.length)}`;
  } else {
    const m = /^tcp:\/\/\[?([^\]]*?)\]?:(\d+)$/.exec(url);
    addr = m ? `addr.type=inet,addr.host=${m[1]},addr.port=${m[2]}` : url;
  }
  return `-netdev stream,id=${netdevId},server=off,${addr} -device virtio-net-pci,netdev=${netdevId}`;
}

export interface Daemon {
  readonly engine: Engine;
  readonly forwarder: Forwarder;
  readonly capture: Capture;
  readonly log: Logger;
  /** Bound VM listener URLs by framing. */
  readonly vmListeners: { framing: string; url: string }[];
  readonly apiUrls: string[];
  /** Resolves when the daemon stops by itself (the stdio or --fd VM disconnected). */
  readonly done: Promise<void>;
  close(): Promise<void>;
}

export interface DaemonTuning {
  /** How often drop counters are checked for the "rejected input" log lines (default 5000 ms). */
  dropReportMs?: number;
  /** Where the system's default and largest socket send buffers are read for the jumbo-MTU hint (default /proc/sys/net/core/wmem_default, …/wmem_max). */
  wmemDefaultPath?: string;
  wmemMaxPath?: string;
  /** Stands in for canSetSendBuffer() in tests of the hint. */
  canSetSendBuffer?: boolean;
  /** Control API connection timeouts and cap (tests shorten them). */
  api?: Omit<ApiServerOptions, 'mode' | 'token'>;
}

/** Where a TCP control API's token came from, for the messages that tell clients. */
type ApiToken = { token: string; source: 'file' | 'env'; where: string } | { token: string; source: 'generated' };

/**
 * The token of TCP control APIs: --api-token-file, else $VNETKIT_API_TOKEN,
 * else a fresh random one (written to a file once the port is known).
 */
function apiToken(cfg: DaemonConfig, env: NodeJS.ProcessEnv, log: Logger): ApiToken {
  if (cfg.apiTokenFile !== undefined) {
    let text: string;
    try {
      const st = fs.statSync(cfg.apiTokenFile);
      if (!st.isFile()) throw new Error('not a regular file');
      if (st.size > 4096) throw new Error('larger than 4096 bytes');
      if ((st.mode & 0o077) !== 0) log.warn('the API token file can be read by other users; make it mode 0600', { file: cfg.apiTokenFile });
      text = fs.readFileSync(cfg.apiTokenFile, 'utf8');
    } catch (e) {
      throw new VnetkitError('ERR_VNETKIT_API', `--api-token-file: cannot read ${cfg.apiTokenFile}: ${(e as Error).message}`, { cause: e });
    }
    const token = text.trim();
    const bad = apiTokenProblem(token);
    if (bad !== null) throw new VnetkitError('ERR_VNETKIT_API', `--api-token-file: the token in ${cfg.apiTokenFile} ${bad}`);
    return { token, source: 'file', where: cfg.apiTokenFile };
  }
  const fromEnv = env.VNETKIT_API_TOKEN;
  if (fromEnv !== undefined && fromEnv !== '') {
    const token = fromEnv.trim();
    const bad = apiTokenProblem(token);
    if (bad !== null) throw new VnetkitError('ERR_VNETKIT_API', `VNETKIT_API_TOKEN ${bad}`);
    return { token, source: 'env', where: 'VNETKIT_API_TOKEN' };
  }
  return { token: generateApiToken(), source: 'generated' };
}

/**
 * Write `token` to `file` with mode 0600: into a new temporary file beside
 * it (O_EXCL, so nothing existing is followed or reused), then renamed over
 * whatever was there.
 */
function writeTokenFile(file: string, token: string): void {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  const fd = fs.openSync(tmp, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW, 0o600);
  try {
    fs.writeSync(fd, `${token}\n`);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

export async function startDaemon(cfg: DaemonConfig, io: DaemonIo, tuning: DaemonTuning = {}): Promise<Daemon> {
  const log = createLogger({ level: cfg.logLevel, format: cfg.logFormat, stream: io.err });
  const startedAt = Date.now();
  const engine = createEngine({ ...cfg.engine, log });
  const env = io.env ?? process.env;
  // A directory the user named is checked now, so a typo fails the start; the
  // default one is made when the first API capture asks for it.
  const userCaptureDir = cfg.captureDir;
  const captureDir = userCaptureDir !== undefined ? () => ensureCaptureDir(userCaptureDir, { userNamed: true }) : () => ensureCaptureDir(path.join(defaultRuntimeDir(env), 'captures'));
  const capture = new Capture(engine, log.child({ svc: 'capture' }), { dir: captureDir });
  const forwarder = new Forwarder(engine, { sourceIpPreservation: cfg.sourceIpPreservation, log: log.child({ svc: 'forward' }) });
  const vmListeners: Listener[] = [];
  const vmUrls: { framing: string; url: string }[] = [];
  const apis: ApiServer[] = [];
  const apiNotes = new Map<ApiServer, string>();
  const tokenFiles: { file: string; token: string }[] = [];
  let dropTimer: NodeJS.Timeout | undefined;
  let closing: Promise<void> | undefined;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));

  const close = (): Promise<void> => {
    closing ??= (async () => {
      if (dropTimer) clearInterval(dropTimer);
      // Order: stop accepting control requests, end forwarded flows, close VM
      // listeners and links (engine.close), which also flushes the capture.
      await Promise.allSettled(apis.map((a) => a.close()));
      for (const t of tokenFiles) {
        try {
          // Only our own token: another daemon on the same port may have replaced it since.
          if (fs.readFileSync(t.file, 'utf8').trim() === t.token) fs.unlinkSync(t.file);
        } catch {
          /* already gone */
        }
      }
      await forwarder.close().catch(() => {});
      await capture.stop().catch(() => {});
      await Promise.allSettled(vmListeners.map((l) => l.close()));
      await engine.close();
      log.info('vnetkit stopped');
      resolveDone();
    })();
    return closing;
  };

  try {
    if (userCaptureDir !== undefined) {
      try {
        capture.dir();
      } catch (e) {
        throw new VnetkitError(ErrorCodes.BAD_OPTION, `--capture-dir: ${(e as Error).message}`, { cause: e });
      }
    }
    // The capture starts first so it sees the guest's very first DHCP packets.
    if (cfg.pcap !== undefined) await capture.start(cfg.pcap, cfg.snaplen);

    let qemu = cfg.listenQemu;
    let api = cfg.listen;
    if (cfg.defaultListeners) {
      const dir = defaultRuntimeDir(io.env);
      qemu = [`unix://${path.join(dir, 'qemu.sock')}`];
      if (api.length === 0) api = [`unix://${path.join(dir, 'api.sock')}`];
    }
    const groups: [string, string[], 'qemu' | 'vpnkit' | 'dgram'][] = [
      ['qemu', qemu, 'qemu'],
      ['vpnkit', cfg.listenVpnkit, 'vpnkit'],
      ['dgram', cfg.listenDgram, 'dgram'],
    ];
    for (const [name, urls, framing] of groups) {
      for (const u of urls) {
        const l = await engine.listen(u, { framing, txQueueLimit: cfg.vmTxQueueLimit, sendBufferBytes: cfg.vmSendBuffer, allowGuestReachable: cfg.allowGuestReachableVmListeners });
        vmListeners.push(l);
        if (l.url.startsWith('unix://')) fs.chmodSync(l.address, 0o600);
        vmUrls.push({ framing: name, url: l.url });
        log.info('listening for VMs', { framing: name, url: l.url });
      }
    }
    // Datagram links carry one frame per datagram and have no stream buffer to fill.
    const streams = vmUrls.some((u) => u.framing !== 'dgram');
    const hint = streams
      ? linkBufferHint(engine.config.mtu, {
          asked: cfg.vmSendBuffer ?? DEFAULT_SEND_BUFFER_BYTES,
          canSet: tuning.canSetSendBuffer ?? canSetSendBuffer(),
          wmemMax: readSysctlBytes(tuning.wmemMaxPath ?? WMEM_MAX_PATH),
          wmemDefault: readSysctlBytes(tuning.wmemDefaultPath ?? WMEM_DEFAULT_PATH),
        })
      : null;
    if (hint) log.info('host-to-guest throughput at this MTU is bounded by the send buffer of the VM connections', hint);
    const token = api.some((u) => u.startsWith('tcp://')) ? apiToken(cfg, env, log) : undefined;
    for (const u of api) {
      const tcp = u.startsWith('tcp://');
      const a = await startApiServer(u, { engine, forwarder, capture, log: log.child({ svc: 'api' }), startedAt, apiStats: () => sumApiStats(apis.map((x) => x.stats())) }, { ...tuning.api, token: tcp ? token!.token : undefined });
      apis.push(a);
      if (!tcp) {
        log.info('control API listening', { url: a.url });
        continue;
      }
      let where: string;
      if (token!.source === 'generated') {
        // One file per port, so daemons sharing the runtime directory do not overwrite each other's.
        where = path.join(defaultRuntimeDir(env), `api-${a.address.slice(a.address.lastIndexOf(':') + 1)}.token`);
        writeTokenFile(where, token!.token);
        tokenFiles.push({ file: where, token: token!.token });
      } else {
        where = token!.where;
      }
      apiNotes.set(a, `bearer token in ${where}`);
      log.info('control API listening', { url: a.url, token: where });
    }
    for (const f of cfg.forwards) await forwarder.expose(f);

    // A VM given to the daemon (stdio, an inherited socket) is its only reason
    // to run: nothing else can arrive on that stream once it ends (gvproxy's
    // stdio mode, passt --fd).
    const stopWith = (id: number): void => {
      engine.on('vm-disconnected', (info: { id: number }) => {
        if (info.id === id) void close();
      });
    };
    if (cfg.listenStdio) stopWith(engine.attach({ readable: io.stdin ?? process.stdin, writable: io.stdout ?? process.stdout }, { framing: 'le16', txQueueLimit: cfg.vmTxQueueLimit }).id);
    if (cfg.fd !== undefined) {
      let vm;
      try {
        vm = engine.attachFd(cfg.fd, { framing: 'qemu', txQueueLimit: cfg.vmTxQueueLimit, sendBufferBytes: cfg.vmSendBuffer });
      } catch (e) {
        throw new VnetkitError((e as VnetkitError).code, `--fd: ${(e as Error).message}`, { cause: e });
      }
      stopWith(vm.id);
      log.info('VM attached on an inherited socket', { framing: 'qemu', fd: cfg.fd });
    }

    // One log line per class of rejected input, however many frames: the
    // engine counts drops by reason; report each reason's growth, rate-limited.
    const seen = new Map<string, number>();
    dropTimer = setInterval(() => {
      const drops = engine.stats().drops;
      for (const [reason, n] of Object.entries(drops)) {
        const before = seen.get(reason) ?? 0;
        if (n > before) log.limited(`rejected-${reason}`, 'info', 'rejected input', { reason, count: n - before, total: n });
        seen.set(reason, n);
      }
    }, tuning.dropReportMs ?? 5000);
    dropTimer.unref();
  } catch (e) {
    await close().catch(() => {});
    throw e;
  }

  for (const v of vmUrls) {
    io.out.write(`vnetkit: listening for ${v.framing} VMs on ${v.url}\n`);
    if (v.framing === 'qemu') io.out.write(`qemu args: ${qemuArgs(v.url)}\n`);
  }
  if (cfg.fd !== undefined) io.out.write(`vnetkit: qemu VM attached on fd ${cfg.fd}\n`);
  for (const a of apis) io.out.write(`vnetkit: control API on ${a.url}${apiNotes.has(a) ? ` (${apiNotes.get(a)})` : ''}\n`);
  io.out.write('vnetkit: ready\n');

  return {
    engine,
    forwarder,
    capture,
    log,
    vmListeners: vmUrls,
    apiUrls: apis.map((a) => a.url),
    done,
    close,
  };
}
