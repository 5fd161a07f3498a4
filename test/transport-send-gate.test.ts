import { describe, expect, it } from 'vitest';
import { nullLogger as log } from '../src/log.js';
import { ACCEPT, REFUSE_BAD, REFUSE_CAP, REFUSE_OVERSIZE, SendGate } from '../src/transport/send-gate.js';

describe('SendGate: the send() rules every link shares', () => {
  it('refuses bad ranges, closed links, oversize frames and frames over the cap, counting each', () => {
    const g = new SendGate(1000, log, () => {});
    const b = new Uint8Array(100);
    expect(g.admit(false, b, 0, 100, 1514, 0, 104)).toBe(ACCEPT);
    expect(g.admit(true, b, 0, 100, 1514, 0, 104)).toBe(REFUSE_BAD);
    expect(g.admit(false, b, 0, 0, 1514, 0, 4)).toBe(REFUSE_BAD);
    expect(g.admit(false, b, 50, 60, 1514, 0, 64)).toBe(REFUSE_BAD);
    expect(g.admit(false, b, -1, 10, 1514, 0, 14)).toBe(REFUSE_BAD);
    expect(g.admit(false, b, 0, 100, 99, 0, 104)).toBe(REFUSE_OVERSIZE);
    expect(g.admit(false, b, 0, 100, 1514, 897, 104)).toBe(REFUSE_CAP);
    expect(g.admit(false, b, 0, 100, 1514, 896, 104)).toBe(ACCEPT);
    expect(g.dropped).toBe(6);
  });

  it('counts queued frames and flushes once per turn however many were queued', async () => {
    let flushes = 0;
    const g = new SendGate(1 << 20, log, () => flushes++);
    for (let i = 0; i < 10; i++) g.queued(60);
    expect(flushes).toBe(0);
    await new Promise((r) => setImmediate(r));
    expect(flushes).toBe(1);
    expect(g.frames).toBe(10);
    expect(g.bytes).toBe(600);
    g.queued(60);
    await new Promise((r) => setImmediate(r));
    expect(flushes).toBe(2);
  });
});
