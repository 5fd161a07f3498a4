import { describe, expect, it } from 'vitest';
import { LentPair } from '../src/engine/lent-pair.js';

describe('LentPair', () => {
  it('fills one buffer until it is lent, then the other; lends only while the other is free', () => {
    const lp = new LentPair();
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
