/**
 * What send() shares on every VM link: which frames are refused, the
 * transmit counters, and the one flush per turn. The stream and datagram
 * links differ in how they queue and write a frame, not in these rules.
 */
import type { Logger } from '../log.js';

export const ACCEPT = 0;
/** Closed link, empty frame, or a range outside the buffer. */
export const REFUSE_BAD = 1;
/** Longer than the link's maxFrameOut. */
export const REFUSE_OVERSIZE = 2;
/** Would take the link's queue past txQueueLimit. */
export const REFUSE_CAP = 3;

export class SendGate {
  frames = 0;
  bytes = 0;
  dropped = 0;
  private scheduled = false;

  constructor(
    /** Bytes a link may hold for its VM (queued and being written). */
    readonly limit: number,
    private readonly log: Logger,
    private readonly flush: () => void,
  ) {}

  /**
   * ACCEPT, or why the frame buf[off, off+len) is dropped (and counted, and
   * logged at a limited rate). `cost` is what it adds to `backlog`.
   */
  admit(closed: boolean, buf: Uint8Array, off: number, len: number, maxOut: number, backlog: number, cost: number): number {
    let why = ACCEPT;
    if (closed || len <= 0 || off < 0 || off + len > buf.length) why = REFUSE_BAD;
    else if (len > maxOut) why = REFUSE_OVERSIZE;
    else if (backlog + cost > this.limit) why = REFUSE_CAP;
    if (why === ACCEPT) return ACCEPT;
    this.dropped++;
    if (why === REFUSE_OVERSIZE) this.log.limited('tx-oversize', 'warn', 'Dropping over-large ethernet frame', { len, max: maxOut });
    else if (why === REFUSE_CAP) this.log.limited('tx-cap', 'warn', 'VM is not reading: dropping frames over the transmit queue cap', { dropped: this.dropped, limit: this.limit });
    return why;
  }

  /** A frame of `len` bytes was queued: count it and make sure the queue is flushed at the end of this turn. */
  queued(len: number): void {
    this.frames++;
    this.bytes += len;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.run);
    }
  }

  private readonly run = (): void => {
    this.scheduled = false;
    this.flush();
  };
}
