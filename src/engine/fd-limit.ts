/**
 * The process's file-descriptor limit (RLIMIT_NOFILE, soft), which bounds how
 * many host sockets the engine may open for guests. Node has no getrlimit, so
 * Linux's /proc/self/limits is read; elsewhere (macOS, whose launchd default
 * is 256) the limit is unknown and a conservative figure stands in.
 */
import { readFileSync } from 'node:fs';

/** Assumed when the limit cannot be read. */
export const UNKNOWN_FD_LIMIT = 1024;

/** The soft RLIMIT_NOFILE, or UNKNOWN_FD_LIMIT when it cannot be read ("unlimited" reads as 1 << 20). */
export function fdLimit(): number {
  try {
    const m = /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m === null) return UNKNOWN_FD_LIMIT;
    if (m[1] === 'unlimited') return 1 << 20;
    const n = Number(m[1]);
    return Number.isInteger(n) && n > 0 ? n : UNKNOWN_FD_LIMIT;
  } catch {
    return UNKNOWN_FD_LIMIT;
  }
}

/**
 * Host sockets the engine may hold for guests under a limit of `limit` fds:
 * what is left after a reserve for the process itself (listeners, the control
 * API, VM links, pcap, logs, Node's own), the reserve being an eighth of the
 * limit and at least 128.
 */
export function hostSocketBudget(limit: number): number {
  const reserve = Math.max(128, Math.floor(limit / 8));
  return Math.max(16, limit - reserve);
}
