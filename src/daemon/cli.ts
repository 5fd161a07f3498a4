/**
 * `vnetkit` command line: parse and validate options, start the daemon, and
 * stop it cleanly on SIGINT/SIGTERM (listeners closed, flows ended, capture
 * flushed, socket files removed). Exit codes: 0 clean stop, 1 runtime
 * failure, 2 bad usage.
 *
 * Run from a checkout with `node --import tsx src/daemon/cli.ts ...`.
 */
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { helpText, resolveCli } from './options.js';
import { startDaemon, type DaemonIo } from './daemon.js';

function version(): string {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(fs.readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'vnetkit' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      /* try the next layout (source tree vs dist) */
    }
  }
  return 'unknown';
}

export interface CliIo extends DaemonIo {
  /** Where to hook SIGINT/SIGTERM (default: process). */
  signals?: { once(sig: 'SIGINT' | 'SIGTERM', fn: () => void): unknown; off?(sig: 'SIGINT' | 'SIGTERM', fn: () => void): unknown };
}

/** Run the CLI; resolves with the process exit code once the daemon has stopped. */
export async function main(argv: readonly string[], io: CliIo = { out: process.stdout, err: process.stderr }): Promise<number> {
  let parsed;
  try {
    parsed = resolveCli(argv);
  } catch (e) {
    io.err.write(`vnetkit: ${(e as Error).message}\nTry 'vnetkit --help'.\n`);
    return 2;
  }
  if (parsed.help) {
    io.out.write(helpText());
    return 0;
  }
  if (parsed.version) {
    io.out.write(`vnetkit ${version()}\n`);
    return 0;
  }
  const cfg = parsed.config!;
  // With a stdio VM, stdout carries frames: human-facing text goes to stderr.
  const out = cfg.listenStdio ? io.err : io.out;
  // Handlers go in before anything is bound, so a signal during startup (or
  // right after "ready" is printed) still means a clean stop, never the default kill.
  const signals = io.signals ?? process;
  let daemon: Awaited<ReturnType<typeof startDaemon>> | undefined;
  let stopRequested = false;
  const onSignal = (): void => {
    if (stopRequested) return;
    stopRequested = true;
    // A second signal while closing means "now".
    if (signals === process) {
      const force = (): never => process.exit(130);
      process.once('SIGINT', force);
      process.once('SIGTERM', force);
    }
    if (daemon !== undefined) {
      daemon.log.info('shutting down');
      void daemon.close();
    }
  };
  signals.once('SIGINT', onSignal);
  signals.once('SIGTERM', onSignal);
  const unhook = (): void => {
    signals.off?.('SIGINT', onSignal);
    signals.off?.('SIGTERM', onSignal);
  };
  try {
    daemon = await startDaemon(cfg, { ...io, out });
  } catch (e) {
    unhook();
    io.err.write(`vnetkit: ${(e as Error).message}\n`);
    return 1;
  }
  if (stopRequested) {
    daemon.log.info('shutting down');
    void daemon.close();
  }
  await daemon.done;
  unhook();
  return 0;
}

/** Entry for bin/vnetkit.js and direct runs: exit once stopped (stdin or stray handles must not keep the process alive). */
export async function run(argv: readonly string[] = process.argv.slice(2)): Promise<never> {
  let code = 1;
  try {
    code = await main(argv);
  } catch (e) {
    process.stderr.write(`vnetkit: ${(e as Error).stack ?? String(e)}\n`);
  }
  process.exit(code);
}

function isEntry(): boolean {
  try {
    return process.argv[1] !== undefined && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}
if (isEntry()) void run();
