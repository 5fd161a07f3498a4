/**
 * A one-time hint for jumbo-MTU links whose send buffer will be too small.
 * Linux wakes a Unix stream writer only when three quarters of its send
 * buffer are free; with 64 KiB frames and the system default (208 KiB) the
 * VM's side runs dry between writes. vnetkit raises SO_SNDBUF on its end of
 * each Unix-socket link (AttachOptions.sendBufferBytes), but the kernel caps
 * that at twice net.core.wmem_max, and where it cannot be raised at all the
 * system default applies. Changing either sysctl is the user's call: they
 * apply to every socket on the host. The daemon only says so, once.
 */
import fs from 'node:fs';

export const WMEM_DEFAULT_PATH = '/proc/sys/net/core/wmem_default';
export const WMEM_MAX_PATH = '/proc/sys/net/core/wmem_max';
/** Frames above this size leave too few in a default-sized buffer to keep the VM fed. */
const JUMBO_MTU = 16384;
/** A buffer this big kept a 64 KiB-frame link as fast as a much bigger one in bench:e2e. */
export const ENOUGH_SEND_BUFFER = 2 * 1024 * 1024;

/** A byte count from a /proc/sys file, or undefined where there is none to read (not Linux, no /proc). */
export function readSysctlBytes(file: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

export interface SendBufferOutlook {
  /** LinkOptions.sendBufferBytes as the links will get it (0: keep the system default). */
  asked: number;
  /** Whether this process can set SO_SNDBUF on a stream socket at all (canSetSendBuffer). */
  canSet: boolean;
  wmemMax?: number;
  wmemDefault?: number;
}

/** The fields of the hint for this MTU, or null when none is due. */
export function linkBufferHint(mtu: number, o: SendBufferOutlook): { mtu: number; sendBuffer: number; suggest: string } | null {
  if (mtu <= JUMBO_MTU) return null;
  if (o.canSet && o.asked > 0) {
    if (o.wmemMax === undefined) return null;
    const sendBuffer = 2 * Math.min(o.asked, o.wmemMax);
    if (sendBuffer >= ENOUGH_SEND_BUFFER) return null;
    const want = ENOUGH_SEND_BUFFER / 2;
    return { mtu, sendBuffer, suggest: o.asked < want ? `--vm-send-buffer ${want}` : `sysctl -w net.core.wmem_max=${o.asked}` };
  }
  if (o.wmemDefault === undefined || o.wmemDefault >= ENOUGH_SEND_BUFFER) return null;
  return { mtu, sendBuffer: o.wmemDefault, suggest: o.canSet ? `--vm-send-buffer ${ENOUGH_SEND_BUFFER / 2}` : `sysctl -w net.core.wmem_default=${ENOUGH_SEND_BUFFER}` };
}
