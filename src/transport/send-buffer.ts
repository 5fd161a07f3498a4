/**
 * The kernel send buffer of a VM link's Unix socket.
 *
 * Linux wakes a Unix stream writer only when three quarters of its send
 * buffer are free, and the default buffer (net.core.wmem_default, 208 KiB on
 * most systems) holds three 64 KiB frames: at jumbo MTUs the VM's side runs
 * dry while the engine waits for that wake-up. passt and gvisor-tap-vsock
 * raise SO_SNDBUF on their end of the link. Node has no public call for it on
 * a stream socket, only on UDP sockets.
 *
 * A socket option belongs to the socket, not to the descriptor or to the
 * libuv handle type, so a UDP handle opened on the link's descriptor can set
 * it. uv_udp_open on a connected stream socket only sets O_NONBLOCK, which the
 * link sets anyway, and SO_REUSEADDR, which a connected Unix socket ignores.
 * The UDP handle is then kept, never started and never closed: closing it
 * would close the descriptor under the link. It refers to the descriptor
 * number, so a later link whose socket gets the same number reuses it: there
 * is at most one such handle per number the process has used for a VM link,
 * bounded by its descriptor table. Node closes every handle of an environment
 * when the environment ends, so this is done only on the main thread, whose
 * environment ends with the process; a Worker's would close a descriptor
 * number that may belong to another socket by then.
 *
 * TCP sockets are left alone: their buffer grows by itself (tcp_wmem), and
 * setting SO_SNDBUF would switch that off.
 *
 * It must run before the link's socket has read or written anything: libuv
 * refuses to open a descriptor that its loop is already watching (a number
 * that already has its handle is not checked again).
 */
import { isMainThread } from 'node:worker_threads';
import { ErrorCodes, VnetkitError } from '../errors.js';
import type { Logger } from '../log.js';

/** What a Unix-socket link asks for by default (as gvisor-tap-vsock does); the kernel doubles it, up to twice net.core.wmem_max. */
export const DEFAULT_SEND_BUFFER_BYTES = 1024 * 1024;
/** Bounds of LinkOptions.sendBufferBytes other than 0 (leave the system default). */
export const MIN_SEND_BUFFER_BYTES = 64 * 1024;
export const MAX_SEND_BUFFER_BYTES = 256 * 1024 * 1024;

interface UdpHandle {
  open(fd: number): number;
  bufferSize(size: number, recv: boolean, ctx: Record<string, unknown>): number | undefined;
  getsockname(out: Record<string, unknown>): number;
  unref?(): void;
  close?(): void;
}
type UdpCtor = new () => UdpHandle;

let udpCtor: UdpCtor | null | undefined;
/** Descriptor number → the UDP handle opened on it (see above: kept for the process's life). */
const handles = new Map<number, UdpHandle>();

function loadUdp(): UdpCtor | null {
  if (udpCtor !== undefined) return udpCtor;
  udpCtor = null;
  try {
    // Deprecated for general use, but 'udp_wrap' stays on process.binding's allow list;
    // a Node without it leaves the system default buffer.
    const binding = (process as unknown as { binding(name: string): { UDP?: UdpCtor } }).binding('udp_wrap');
    const p = binding.UDP?.prototype as Partial<UdpHandle> | undefined;
    if (typeof binding.UDP === 'function' && typeof p?.open === 'function' && typeof p.bufferSize === 'function' && typeof p.getsockname === 'function') {
      udpCtor = binding.UDP;
    }
  } catch {
    udpCtor = null;
  }
  return udpCtor;
}

/** How many descriptor numbers hold a kept UDP handle (for tests and the curious: bounded by the descriptor table). */
export function sendBufferHandleCount(): number {
  return handles.size;
}

/** True where setSendBuffer can work at all (this Node, this thread). */
export function canSetSendBuffer(): boolean {
  return isMainThread && loadUdp() !== null;
}

export type SendBufferResult =
  /** `bytes`: the buffer the kernel now reports (double the request, capped at twice net.core.wmem_max; a bigger one already there is kept). */
  | { ok: true; bytes: number }
  | { ok: false; reason: string };

/**
 * Raise the send buffer of the Unix stream socket `fd` to `bytes` (as
 * setsockopt(SO_SNDBUF) counts them). Never shrinks it. Fails, leaving the
 * buffer as it was, on a TCP socket, off the main thread, on a descriptor
 * the loop already watches (unless its number has been through here before),
 * and where Node offers no way.
 */
export function setSendBuffer(fd: number, bytes: number): SendBufferResult {
  if (!isMainThread) return { ok: false, reason: 'not on the main thread' };
  if (!Number.isInteger(fd) || fd < 0) return { ok: false, reason: 'no file descriptor' };
  const Udp = loadUdp();
  if (Udp === null) return { ok: false, reason: "this Node has no process.binding('udp_wrap')" };
  try {
    let h = handles.get(fd);
    if (h === undefined) {
      h = new Udp();
      const err = h.open(fd);
      if (err !== 0) {
        h.close?.();
        return { ok: false, reason: `uv_udp_open failed (${err})` };
      }
      // From here the handle owns `fd` as far as libuv knows: it must never be closed.
      h.unref?.();
      handles.set(fd, h);
    }
    const udp = h;
    const name: Record<string, unknown> = {};
    if (udp.getsockname(name) !== 0) return { ok: false, reason: 'getsockname failed' };
    if (name.family !== undefined) return { ok: false, reason: `not a Unix socket (${String(name.family)})` };
    // bufferSize(0) reads SO_SNDBUF, bufferSize(n) sets it; undefined means it failed (the reason is in ctx).
    const sndbuf = (n: number): number | string => {
      const ctx: Record<string, unknown> = {};
      const r = udp.bufferSize(n, false, ctx);
      return typeof r === 'number' ? r : `${n === 0 ? 'getsockopt' : 'setsockopt'}(SO_SNDBUF) failed (${String(ctx.code ?? ctx.errno)})`;
    };
    const before = sndbuf(0);
    if (typeof before === 'string') return { ok: false, reason: before };
    if (before >= bytes * 2) return { ok: true, bytes: before };
    const set = sndbuf(bytes);
    if (typeof set === 'string') return { ok: false, reason: set };
    const now = sndbuf(0);
    if (typeof now === 'string') return { ok: false, reason: now };
    return { ok: true, bytes: now };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
}

/**
 * Apply LinkOptions.sendBufferBytes to the socket a link is about to be
 * built on: the kernel's figure, or undefined when it was not set (0 asked,
 * not a Unix socket, not possible here; the reason is logged at debug).
 */
export function applyLinkSendBuffer(fd: number, asked: number | undefined, log: Logger): number | undefined {
  const bytes = asked ?? DEFAULT_SEND_BUFFER_BYTES;
  if (bytes === 0) return undefined;
  const r = setSendBuffer(fd, bytes);
  if (!r.ok) {
    log.debug('VM link keeps the system default send buffer', { reason: r.reason });
    return undefined;
  }
  return r.bytes;
}

/** Throws ERR_VNETKIT_BAD_OPTION unless `v` is absent, 0, or within the bounds. */
export function checkSendBufferBytes(v: number | undefined): void {
  if (v === undefined || v === 0) return;
  if (!Number.isInteger(v) || v < MIN_SEND_BUFFER_BYTES || v > MAX_SEND_BUFFER_BYTES) {
    throw new VnetkitError(ErrorCodes.BAD_OPTION, `option sendBufferBytes: must be 0 or an integer from ${MIN_SEND_BUFFER_BYTES} to ${MAX_SEND_BUFFER_BYTES} bytes, got ${v}`);
  }
}
