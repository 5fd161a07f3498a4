import { describe, expect, it } from 'vitest';
import { Quota, takeEach } from '../src/engine/quota.js';
import { hostSocketBudget } from '../src/engine/fd-limit.js';
import { resolveLimits } from '../src/engine/config.js';

describe('Quota', () => {
  it('refuses past the per-VM bound, leaving room for another VM', () => {
    const q = new Quota('x', 10, 4);
    for (let i = 0; i < 4; i++) expect(q.take(1)).toBe(true);
    expect(q.take(1)).toBe(false);
    expect(q.refusedVm).toBe(1);
    expect(q.take(2, 4)).toBe(true);
    expect(q.usedBy(1)).toBe(4);
    expect(q.stats()).toMatchObject({ used: 8, maxVmUsed: 4, refusedVm: 1, refusedTotal: 0 });
  });

  it('refuses past the global bound and counts it apart', () => {
    const q = new Quota('x', 5, 4);
    expect(q.take(1, 3)).toBe(true);
    expect(q.fits(2, 3)).toBe(false);
    expect(q.take(2, 3)).toBe(false);
    expect(q.refusedTotal).toBe(1);
    expect(q.room(2)).toBe(2);
  });

  it('gives back no more than was taken, and release frees a VM at once', () => {
    const q = new Quota('x', 10, 10);
    q.take(1, 3);
    q.give(1, 5);
    expect(q.used).toBe(0);
    q.take(1, 2);
    q.take(2, 2);
    expect(q.release(1)).toBe(2);
    expect(q.used).toBe(2);
    expect(q.usedBy(1)).toBe(0);
  });
});

describe('limits', () => {
  it('leave a reserve of file descriptors for the process', () => {
    expect(hostSocketBudget(1024)).toBe(896);
    expect(hostSocketBudget(256)).toBe(128);
    expect(hostSocketBudget(1 << 20)).toBe((1 << 20) - (1 << 17));
  });

  it('default the per-VM socket bound to half the global one, and reject nonsense', () => {
    const l = resolveLimits({ hostSockets: 1000 });
    expect(l.hostSocketsPerVm).toBe(500);
    expect(() => resolveLimits({ hostSocketsPerVm: 2000, hostSockets: 1000 })).toThrow(/hostSocketsPerVm/);
    expect(() => resolveLimits({ tcpFlowsPerVm: -1 })).toThrow(/tcpFlowsPerVm/);
  });
});

describe('takeEach', () => {
  it('takes one of each or none: the refusing quota is returned and the others are given back', () => {
    const a = new Quota('a', 10, 10);
    const b = new Quota('b', 10, 1);
    const c = new Quota('c', 10, 10);
    expect(takeEach(1, [a, b, c])).toBeNull();
    expect([a.used, b.used, c.used]).toEqual([1, 1, 1]);
    expect(takeEach(1, [a, b, c])).toBe(b);
    expect([a.used, b.used, c.used]).toEqual([1, 1, 1]);
    expect(b.refusedVm).toBe(1);
  });
});
