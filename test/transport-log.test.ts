import { describe, expect, it } from 'vitest';
import { createLogger, nullLogger } from '../src/log.js';

function capture(opts: Parameters<typeof createLogger>[0] = {}) {
  const lines: string[] = [];
  let now = 1_700_000_000_000;
  const log = createLogger({ ...opts, stream: { write: (s: string) => lines.push(s) }, now: () => now });
  return { log, lines, advance: (ms: number) => (now += ms) };
}

describe('createLogger (src/log.ts)', () => {
  it('text lines: time, level, message, key=value fields (quoted when needed)', () => {
    const { log, lines } = capture();
    log.warn('closing VM link', { link: 3, peer: '/tmp/x.sock', reason: 'bad length 0' });
    expect(lines).toEqual(['2023-11-14T22:13:20.000Z WARN  closing VM link link=3 peer=/tmp/x.sock reason="bad length 0"\n']);
  });

  it('json lines parse back with level, msg and fields', () => {
    const { log, lines } = capture({ format: 'json' });
    log.error('boom', { code: 'ERR_X', n: 1, err: new Error('inner') });
    const rec = JSON.parse(lines[0]);
    expect(rec).toMatchObject({ level: 'error', msg: 'boom', code: 'ERR_X', n: 1, err: { message: 'inner' } });
    expect(lines[0].endsWith('\n')).toBe(true);
  });

  it('filters below the level; child() adds fields', () => {
    const { log, lines } = capture({ level: 'warn' });
    log.debug('no');
    log.info('no');
    log.child({ link: 7 }).warn('yes', { x: 1 });
    expect(lines.length).toBe(1);
    expect(lines[0]).toContain('yes link=7 x=1');
    expect(log.enabled('info')).toBe(false);
    expect(log.enabled('error')).toBe(true);
  });

  it('limited(): at most burst lines per interval per key, then reports how many were suppressed', () => {
    const { log, lines, advance } = capture({ burst: 2, intervalMs: 1000 });
    for (let i = 0; i < 10; i++) log.limited('k', 'warn', 'flood', { i });
    log.limited('other', 'warn', 'other key');
    expect(lines.length).toBe(3);
    advance(1000);
    log.limited('k', 'warn', 'flood', { i: 10 });
    expect(lines.length).toBe(4);
    expect(lines[3]).toContain('i=10 suppressed=8');
    log.limited('k', 'warn', 'flood', { i: 11 });
    expect(lines[4]).not.toContain('suppressed');
  });

  it('limited() remembers a bounded number of keys', () => {
    const { log, lines } = capture({ burst: 1, maxKeys: 2 });
    log.limited('a', 'warn', 'a');
    log.limited('a', 'warn', 'a'); // suppressed
    log.limited('b', 'warn', 'b');
    log.limited('c', 'warn', 'c'); // evicts 'a'
    log.limited('a', 'warn', 'a again'); // fresh state for 'a'
    expect(lines.map((l) => l.trim().replace(/^\S+ WARN +/, ''))).toEqual(['a', 'b', 'c', 'a again']);
  });

  it('unserialisable fields do not throw', () => {
    const { log, lines } = capture({ format: 'json' });
    const o: Record<string, unknown> = {};
    o.self = o;
    expect(() => log.info('circular', { o })).not.toThrow();
    expect(lines[0]).toContain('unserialisable');
    expect(() => nullLogger.child({}).limited('k', 'error', 'x')).not.toThrow();
  });
});
