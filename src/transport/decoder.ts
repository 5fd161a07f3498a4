/**
 * Decoder for length-prefixed frames (4-byte BE or 2-byte LE).
 *
 * It hands out whole frames as views into the caller's buffer and stops at
 * the first incomplete header or frame. The caller (StreamReader) keeps the
 * bytes from there on and puts the next read right behind them, so a frame
 * that straddles reads is whole in one buffer by the time it is decoded:
 * nothing is assembled here.
 */

export const HDR_BE32 = 4;
export const HDR_LE16 = 2;

export const DEC_OK = 0;
/** A header declared length 0. */
export const DEC_EMPTY = 1;
/** A header declared a length above maxFrame. */
export const DEC_TOO_LARGE = 2;

export type FrameSink = (buf: Uint8Array, off: number, len: number) => void;

export class FrameDecoder {
  /** DEC_* after a bad header; the decoder consumes nothing more once set. */
  error = DEC_OK;
  /** The offending declared length when error != DEC_OK. */
  badLength = 0;
  /** Set (by the sink) to make decode() return after the current frame. */
  stop = false;
  frames = 0;
  bytes = 0;

  private readonly hdrLen: number;
  readonly maxFrame: number;
  private readonly sink: FrameSink;

  constructor(hdrLen: typeof HDR_BE32 | typeof HDR_LE16, maxFrame: number, sink: FrameSink) {
    this.hdrLen = hdrLen;
    this.maxFrame = hdrLen === HDR_LE16 ? Math.min(maxFrame, 0xffff) : maxFrame;
    this.sink = sink;
  }

  /**
   * Hand every whole frame in buf[off, end) to the sink. Returns where it
   * stopped: the start of an incomplete header or frame (or `end`), after the
   * frame during which `stop` was set, or at a bad header (see `error`).
   */
  decode(buf: Uint8Array, off: number, end: number): number {
    let p = off;
    if (this.error !== DEC_OK) return p;
    const h = this.hdrLen;
    while (end - p >= h && !this.stop) {
      const len = h === HDR_BE32 ? ((buf[p] << 24) | (buf[p + 1] << 16) | (buf[p + 2] << 8) | buf[p + 3]) >>> 0 : buf[p] | (buf[p + 1] << 8);
      if (len === 0 || len > this.maxFrame) {
        this.error = len === 0 ? DEC_EMPTY : DEC_TOO_LARGE;
        this.badLength = len;
        return p;
      }
      if (end - p - h < len) break;
      p += h;
      this.frames++;
      this.bytes += len;
      this.sink(buf, p, len);
      p += len;
    }
    return p;
  }
}
