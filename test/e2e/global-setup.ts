/**
 * Runs once per `vitest run`, before any e2e file: builds the guest image so
 * that the first test does not spend its timeout on it and parallel workers
 * never build at the same time (build-guest.sh also holds a lock).
 *
 * A failure here is reported loudly but not thrown: throwing would abort the
 * unit tests too. Each e2e test then fails on its own through ensureGuest()
 * with the same message.
 */
import * as fs from 'node:fs';
import { ensureGuest, LOG_DIR } from './harness.js';

export default function setup(): void {
  // console logs of earlier runs: keep only this run's, so the directory stays bounded
  fs.rmSync(LOG_DIR, { recursive: true, force: true });
  const t0 = Date.now();
  try {
    const img = ensureGuest();
    process.stderr.write(`[e2e] guest ready in ${Date.now() - t0} ms: kernel ${img.kernelVersion}; console logs in ${LOG_DIR}\n`);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
  }
}
