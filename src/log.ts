/**
 * Minimal structured logger shared by every vnetkit module.
 *
 * Hot paths must never log per packet; they count instead. Rare but
 * attacker-triggerable events (a malformed frame from one VM, a refused
 * handshake) go through `limited(key, ...)` so a misbehaving guest cannot
 * flood the log: at most `burst` lines per `intervalMs` per key, and the
 * first line after a quiet period reports how many were suppressed.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** Rate-limited log line: at most the configured burst per interval for this `key`. */
  limited(key: string, level: LogLevel, msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (shares level, output and rate limits). */
  child(fields: LogFields): Logger;
  /** True when `level` would be written (lets callers skip building expensive fields). */
  enabled(level: LogLevel): boolean;
}

const LEVEL_RANK: Record<LogLevel | 'silent', number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

const noop = (): void => {};
export const nullLogger: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  limited: noop,
  child: () => nullLogger,
  enabled: () => false,
};

export interface LoggerOptions {
  level?: LogLevel | 'silent';
  format?: 'text' | 'json';
  /** Where lines go (default process.stderr). Anything with write(string). */
  stream?: { write(s: string): unknown };
  /** Lines allowed per key per interval in `limited()` (default 5). */
  burst?: number;
  /** Rate-limit window in ms (default 10 000). */
  intervalMs?: number;
  /** Distinct rate-limit keys remembered; the oldest is forgotten past this (default 1024), so keys derived from guest input cannot grow memory. */
  maxKeys?: number;
  /** Injected clock for tests. */
  now?: () => number;
  /** Base fields on every line. */
  fields?: LogFields;
}

interface LimitState {
  windowStart: number;
  count: number;
  suppressed: number;
}

interface Shared {
  rank: number;
  json: boolean;
  stream: { write(s: string): unknown };
  burst: number;
  intervalMs: number;
  maxKeys: number;
  now: () => number;
  limits: Map<string, LimitState>;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const shared: Shared = {
    rank: LEVEL_RANK[opts.level ?? 'info'],
    json: opts.format === 'json',
    stream: opts.stream ?? process.stderr,
    burst: Math.max(1, opts.burst ?? 5),
    intervalMs: Math.max(1, opts.intervalMs ?? 10_000),
    maxKeys: Math.max(1, opts.maxKeys ?? 1024),
    now: opts.now ?? Date.now,
    limits: new Map(),
  };
  return makeLogger(shared, opts.fields ?? {});
}

function makeLogger(s: Shared, base: LogFields): Logger {
  const write = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LEVEL_RANK[level] < s.rank) return;
    const merged = fields ? { ...base, ...fields } : base;
    s.stream.write(s.json ? jsonLine(s.now(), level, msg, merged) : textLine(s.now(), level, msg, merged));
  };
  const logger: Logger = {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    enabled: (level) => LEVEL_RANK[level] >= s.rank,
    child: (fields) => makeLogger(s, { ...base, ...fields }),
    limited(key, level, msg, fields) {
      if (LEVEL_RANK[level] < s.rank) return;
      const t = s.now();
      let st = s.limits.get(key);
      if (st === undefined) {
        if (s.limits.size >= s.maxKeys) {
          // Map iterates in insertion order: drop the oldest key.
          const oldest = s.limits.keys().next().value;
          if (oldest !== undefined) s.limits.delete(oldest);
        }
        st = { windowStart: t, count: 0, suppressed: 0 };
        s.limits.set(key, st);
      } else if (t - st.windowStart >= s.intervalMs || t < st.windowStart) {
        st.windowStart = t;
        st.count = 0;
      }
      if (st.count >= s.burst) {
        st.suppressed++;
        return;
      }
      st.count++;
      if (st.suppressed > 0) {
        const n = st.suppressed;
        st.suppressed = 0;
        write(level, msg, { ...fields, suppressed: n });
      } else {
        write(level, msg, fields);
      }
    },
  };
  return logger;
}

function jsonLine(t: number, level: LogLevel, msg: string, fields: LogFields): string {
  const rec: LogFields = { time: new Date(t).toISOString(), level, msg };
  for (const k in fields) if (!(k in rec)) rec[k] = fields[k];
  return safeStringify(rec) + '\n';
}

function textLine(t: number, level: LogLevel, msg: string, fields: LogFields): string {
  let line = `${new Date(t).toISOString()} ${level.toUpperCase().padEnd(5)} ${msg}`;
  for (const k in fields) line += ` ${k}=${textValue(fields[k])}`;
  return line + '\n';
}

function textValue(v: unknown): string {
  if (typeof v === 'string') return /^[\w.:/@+-]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Error) return JSON.stringify(v.message);
  return safeStringify(v);
}

function safeStringify(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x instanceof Error ? { message: x.message, code: (x as { code?: unknown }).code } : x));
  } catch {
    // Circular or otherwise unserialisable fields must not take logging down.
    return '"[unserialisable]"';
  }
}
