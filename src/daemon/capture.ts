/**
 * One pcap capture at a time, to a file, on behalf of --pcap and the control
 * API. The file is opened (and its errors reported) before the engine's tap
 * is switched on, so a bad path is an answer to the request rather than a
 * silent empty capture.
 *
 * The API names a plain file inside the capture directory and never anything
 * else: whoever can call the API (a local user on a TCP port, a guest with
 * --allow-guest-api) must not be able to truncate or create files elsewhere
 * with the daemon's rights. The file is created new (O_CREAT|O_EXCL, which
 * also refuses a symlink in its place) with mode 0600. --pcap keeps the
 * path the user gave on the command line as is.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { nullLogger, type Logger } from '../log.js';

export interface CaptureEngine {
  startCapture(out: Writable, options?: { snaplen?: number }): void;
  stopCapture(): Promise<{ frames: number; bytes: number } | undefined>;
}

/** Stable codes of refused capture requests (the API's error bodies carry them). */
export const CaptureErrorCodes = {
  /** snaplen out of range, file field empty or of the wrong type. */
  BAD_REQUEST: 'ERR_VNETKIT_CAPTURE_BAD_REQUEST',
  /** The name is not a plain file name (a path, `..`, absolute, bad characters, too long). */
  BAD_NAME: 'ERR_VNETKIT_CAPTURE_BAD_NAME',
  /** A file (or symlink) of that name already exists in the capture directory. */
  EXISTS: 'ERR_VNETKIT_CAPTURE_EXISTS',
  /** Another capture is running. */
  RUNNING: 'ERR_VNETKIT_CAPTURE_RUNNING',
  /** The file could not be created (directory missing, permissions, disk). */
  OPEN: 'ERR_VNETKIT_CAPTURE_OPEN',
} as const;

export class CaptureError extends Error {
  constructor(message: string, readonly status: number, readonly code: string = CaptureErrorCodes.BAD_REQUEST) {
    super(message);
    this.name = 'CaptureError';
  }
}

export const MIN_SNAPLEN = 64;
export const MAX_SNAPLEN = 262144;
export const MAX_CAPTURE_NAME = 128;

/**
 * Why `name` is not acceptable as a file name inside the capture directory, or
 * null when it is: letters, digits, '.', '_' and '-', starting with a letter or
 * digit (so no '.', '..' or hidden files), at most MAX_CAPTURE_NAME characters.
 */
export function captureNameProblem(name: string): string | null {
  if (name.length === 0) return 'is empty';
  if (name.includes('/') || name.includes('\\') || path.isAbsolute(name)) return 'is a path; give a plain file name, created in the capture directory';
  if (name === '.' || name === '..' || name.includes('..')) return 'may not contain ".."';
  if (name.length > MAX_CAPTURE_NAME) return `is longer than ${MAX_CAPTURE_NAME} characters`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) return 'may hold only letters, digits, ".", "_" and "-", and must start with a letter or digit';
  return null;
}

/**
 * The capture directory: created 0700 when missing; it must be a directory
 * owned by this user. A path the user named may lead there through symlinks
 * (resolved once, here); the default one, inside the runtime directory, must
 * itself be a real directory, as the runtime directory is.
 */
export function ensureCaptureDir(dir: string, opts: { userNamed?: boolean } = {}): string {
  let abs = path.resolve(dir);
  fs.mkdirSync(abs, { recursive: true, mode: 0o700 });
  if (opts.userNamed) abs = fs.realpathSync(abs);
  const st = fs.lstatSync(abs);
  if (!st.isDirectory()) throw new Error(`capture directory ${abs} is not a directory (a symlink is refused)`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) throw new Error(`capture directory ${abs} belongs to uid ${st.uid}, not to this user`);
  return abs;
}

export interface CaptureOptions {
  /** The directory API captures are created in, or a function that makes it on first use. */
  dir?: string | (() => string);
}

function openFd(file: string, flags: number | string): Promise<number> {
  return new Promise((resolve, reject) => fs.open(file, flags, 0o600, (e, fd) => (e ? reject(e) : resolve(fd))));
}

const EXCL_FLAGS = fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW | fs.constants.O_WRONLY;

export class Capture {
  private current?: { file: string; snaplen: number; stream: fs.WriteStream; startedAt: number };
  private busy = false;
  private dirCache?: string;

  constructor(private readonly engine: CaptureEngine, private readonly log: Logger = nullLogger, private readonly opts: CaptureOptions = {}) {}

  active(): { file: string; snaplen: number; startedAt: string } | undefined {
    const c = this.current;
    return c === undefined ? undefined : { file: c.file, snaplen: c.snaplen, startedAt: new Date(c.startedAt).toISOString() };
  }

  /** The capture directory (made on first use), or undefined when none was configured. */
  dir(): string | undefined {
    if (this.dirCache !== undefined) return this.dirCache;
    const d = this.opts.dir;
    if (d === undefined) return undefined;
    this.dirCache = typeof d === 'string' ? d : d();
    return this.dirCache;
  }

  /**
   * A capture requested over the API: `name` is a plain file name created new
   * in the capture directory. 400 for a bad name, 409 when it exists.
   */
  async startInDir(name: string, snaplen = 65535): Promise<{ file: string; snaplen: number }> {
    if (typeof name !== 'string') throw new CaptureError('field "file" must be a string', 400);
    const problem = captureNameProblem(name);
    if (problem !== null) throw new CaptureError(`capture file name ${JSON.stringify(name.length > 80 ? name.slice(0, 80) + '…' : name)} ${problem}`, 400, CaptureErrorCodes.BAD_NAME);
    this.checkStart(snaplen);
    let dir: string | undefined;
    try {
      dir = this.dir();
    } catch (e) {
      throw new CaptureError(`capture directory unavailable: ${(e as Error).message}`, 500, CaptureErrorCodes.OPEN);
    }
    if (dir === undefined) throw new CaptureError('no capture directory is configured', 500, CaptureErrorCodes.OPEN);
    const file = path.join(dir, name);
    return this.begin(file, snaplen, async () => {
      try {
        return await openFd(file, EXCL_FLAGS);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // EEXIST covers a symlink in the name's place too: O_EXCL never follows one.
        if (code === 'EEXIST' || code === 'ELOOP') throw new CaptureError(`capture file ${name} already exists in the capture directory; pick a new name`, 409, CaptureErrorCodes.EXISTS);
        throw new CaptureError(`cannot create capture file ${file}: ${(e as Error).message}`, 500, CaptureErrorCodes.OPEN);
      }
    });
  }

  /**
   * A capture to a path the user named on the command line (--pcap): created or
   * truncated, as any program writing its output file would.
   */
  async start(file: string, snaplen = 65535): Promise<{ file: string; snaplen: number }> {
    if (typeof file !== 'string' || file.length === 0) throw new CaptureError('field "file" must be a non-empty path', 400);
    this.checkStart(snaplen);
    const abs = path.resolve(file);
    return this.begin(abs, snaplen, async () => {
      try {
        return await openFd(abs, 'w');
      } catch (e) {
        throw new CaptureError(`cannot open capture file ${abs}: ${(e as Error).message}`, 400, CaptureErrorCodes.OPEN);
      }
    });
  }

  private checkStart(snaplen: number): void {
    if (!Number.isInteger(snaplen) || snaplen < MIN_SNAPLEN || snaplen > MAX_SNAPLEN) throw new CaptureError(`snaplen must be an integer from ${MIN_SNAPLEN} to ${MAX_SNAPLEN}`, 400);
    if (this.current !== undefined || this.busy) throw new CaptureError(`a capture is already running${this.current ? ` to ${this.current.file}` : ''}; stop it first`, 409, CaptureErrorCodes.RUNNING);
  }

  private async begin(file: string, snaplen: number, open: () => Promise<number>): Promise<{ file: string; snaplen: number }> {
    this.busy = true;
    try {
      const fd = await open();
      const stream = fs.createWriteStream(file, { fd, autoClose: true });
      stream.on('error', (e) => {
        // A full disk mid-capture: stop capturing rather than buffering frames forever.
        this.log.error('capture write failed; capture stopped', { file, error: e });
        if (this.current?.stream === stream) {
          this.current = undefined;
          void this.engine.stopCapture().catch(() => {});
        }
      });
      this.engine.startCapture(stream, { snaplen });
      this.current = { file, snaplen, stream, startedAt: Date.now() };
      this.log.info('capture started', { file, snaplen });
      return { file, snaplen };
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
