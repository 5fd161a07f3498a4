import { describe, expect, it } from 'vitest';
import { LentBuffers } from '../src/engine/lent-buffers.js';

describe('LentBuffers', () => {
  it('fills one buffer until it is lent, then the other; lends only while the other is free', () => {
    const lp = new LentBuffers();
    expect(lp.next()).toBe(0);
    expect(lp.next()).toBe(0);
    expect(lp.canLend(0)).toBe(true);
    const done0 = lp.lend(0);
    // Buffer 0 is held: the next fill takes buffer 1, whose bytes may not be held meanwhile.
    expect(lp.next()).toBe(1);
    expect(lp.canLend(1)).toBe(false);
    expect(lp.next()).toBe(1);
    done0();
    expect(lp.canLend(1)).toBe(true);
    const done1a = lp.lend(1);
    const done1b = lp.lend(1);
    expect(lp.next()).toBe(0);
    done1a();
    // One holder of buffer 1 is left: buffer 0 is filled but cannot be lent yet.
    expect(lp.canLend(0)).toBe(false);
    done1b();
    expect(lp.canLend(0)).toBe(true);
    expect(lp.next()).toBe(0);
  });
});

describe('LentBuffers of four (a read area)', () => {
  it('lends a buffer only while another stays free, so a fill always finds one; fills the first free one when the current is lent', () => {
    const lb = new LentBuffers(4);
    const held: (() => void)[] = [];
    // Lending one after another, each checked against the ones before it: the fourth is refused.
    for (const h of [1, 2, 3]) {
      expect(lb.canLend(h)).toBe(true);
      held.push(lb.lend(h));
    }
    expect(lb.canLend(0)).toBe(false);
    // Buffer 0 is the only free one: a fill goes there, whatever was current.
    lb.use(2);
    expect(lb.next()).toBe(0);
    expect(lb.free(0)).toBe(true);
    expect(lb.free(2)).toBe(false);
    held[1]();
    expect(lb.free(2)).toBe(true);
    expect(lb.canLend(0)).toBe(true);
    lb.lend(0);
    expect(lb.next()).toBe(2);
  });
});
