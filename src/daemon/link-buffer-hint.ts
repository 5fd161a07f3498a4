/**
 * A one-time hint for jumbo-MTU links. Node cannot set SO_SNDBUF on a stream
 * socket, so vnetkit's end of a VM link keeps the system default send buffer,
 * and Linux wakes a Unix stream writer only when three quarters of it is
 * free: at 64 KiB frames the VM's side runs dry between writes. Raising the
 * default is the user's call (it applies to every new socket on the host);
 * the daemon only says so, once, when it would matter.
 */
import fs from 'node:fs';

/** Where Linux keeps the default send buffer of new sockets. */
export const WMEM_DEFAULT_PATH = '/proc/sys/net/core/wmem_default';
/** Frames above this size leave too few in a default-sized buffer to keep the VM fed. */
const JUMBO_MTU = 16384;
/** What the hint suggests (passt sets this on its end of the link). */
export const SUGGESTED_WMEM = 8 * 1024 * 1024;

/** The system's default socket send buffer in bytes, or undefined where there is none to read (not Linux, no /proc). */
export function readWmemDefault(file = WMEM_DEFAULT_PATH): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The fields of the hint for this MTU and default, or null when none is due. */
export function linkBufferHint(mtu: number, wmemDefault: number | undefined): { mtu: number; wmemDefault: number; suggest: string } | null {
  if (mtu <= JUMBO_MTU || wmemDefault === undefined || wmemDefault >= SUGGESTED_WMEM / 2) return null;
  return { mtu, wmemDefault, suggest: `sysctl -w net.core.wmem_default=${SUGGESTED_WMEM}` };
}
