/**
 * One pcap capture at a time, to a file, on behalf of --pcap and the control
 * API. The file is opened (and its errors reported) before the engine's tap
 * is switched on, so a bad path is an answer to the request rather than a
 * silent empty capture.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { nullLogger, type Logger } from '../log.js';

export interface CaptureEngine {
  startCapture(out: Writable, options?: { snaplen?: number }): void;
  stopCapture(): Promise<{ frames: number; bytes: number } | undefined>;
}

export class CaptureError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
    this.name = 'CaptureError';
  }
}

export const MIN_SNAPLEN = 64;
export const MAX_SNAPLEN = 262144;

export class Capture {
  private current?: { file: string; snaplen: number; stream: fs.WriteStream; startedAt: number };
  private busy = false;

  constructor(private readonly engine: CaptureEngine, private readonly log: Logger = nullLogger) {}

  active(): { file: string; snaplen: number; startedAt: string } | undefined {
    const c = this.current;
    return c === undefined ? undefined : { file: c.file, snaplen: c.snaplen, startedAt: new Date(c.startedAt).toISOString() };
  }

  async start(file: string, snaplen = 65535): Promise<{ file: string; snaplen: number }> {
    if (typeof file !== 'string' || file.length === 0) throw new CaptureError('field "file" must be a non-empty path', 400);
    if (!Number.isInteger(snaplen) || snaplen < MIN_SNAPLEN || snaplen > MAX_SNAPLEN) throw new CaptureError(`snaplen must be an integer from ${MIN_SNAPLEN} to ${MAX_SNAPLEN}`, 400);
    if (this.current !== undefined || this.busy) throw new CaptureError(`a capture is already running${this.current ? ` to ${this.current.file}` : ''}; stop it first`, 409);
    this.busy = true;
    try {
      const abs = path.resolve(file);
      const stream = fs.createWriteStream(abs, { flags: 'w', mode: 0o600 });
      await new Promise<void>((resolve, reject) => {
        stream.once('open', () => resolve());
        stream.once('error', (e) => reject(new CaptureError(`cannot open capture file ${abs}: ${e.message}`, 400)));
      });
      stream.on('error', (e) => {
        // A full disk mid-capture: stop capturing rather than buffering frames forever.
        this.log.error('capture write failed; capture stopped', { file: abs, error: e });
        if (this.current?.stream === stream) {
          this.current = undefined;
          void this.engine.stopCapture().catch(() => {});
        }
      });
      this.engine.startCapture(stream, { snaplen });
      this.current = { file: abs, snaplen, stream, startedAt: Date.now() };
      this.log.info('capture started', { file: abs, snaplen });
      return { file: abs, snaplen };
    } finally {
      this.busy = false;
    }
  }

  /** Stop and flush; undefined when nothing was running. */
  async stop(): Promise<{ file: string; frames: number; bytes: number } | undefined> {
    const c = this.current;
    if (c === undefined) return undefined;
    this.current = undefined;
    const r = await this.engine.stopCapture();
    this.log.info('capture stopped', { file: c.file, frames: r?.frames ?? 0 });
    return { file: c.file, frames: r?.frames ?? 0, bytes: r?.bytes ?? 0 };
  }
}
