/**
 * Streaming decoder for length-prefixed frames (4-byte BE or 2-byte LE).
 *
 * A frame that lies whole inside one chunk is handed out as a view into that
 * chunk (no copy). Only a frame that straddles chunks is assembled, into one
 * buffer reused for the life of the decoder and never larger than maxFrame.
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
  /** Set (by the sink) to make push() return after the current frame. */
  stop = false;
  frames = 0;
  bytes = 0;

  private readonly hdrLen: number;
  private readonly maxFrame: number;
  private readonly sink: FrameSink;
  private hdrVal = 0;
  private hdrHave = 0;
  private asm: Uint8Array;
  /** Length of the frame being assembled; 0 while reading a header. */
  private need = 0;
  private have = 0;

  constructor(hdrLen: typeof HDR_BE32 | typeof HDR_LE16, maxFrame: number, sink: FrameSink) {
    this.hdrLen = hdrLen;
    this.maxFrame = hdrLen === HDR_LE16 ? Math.min(maxFrame, 0xffff) : maxFrame;
    this.sink = sink;
    this.asm = new Uint8Array(Math.min(2048, this.maxFrame));
  }

  /** Bytes of a partial header or frame held between chunks. */
  get buffered(): number {
    return this.need === 0 ? this.hdrHave : this.hdrLen + this.have;
  }

  /**
   * Consume buf[off, end). Returns where it stopped: `end`, or earlier when
   * `stop` was set during a sink call or a bad header was met (see `error`).
   */
  push(buf: Uint8Array, off: number, end: number): number {
    let p = off;
    if (this.error !== DEC_OK) return p;
    const hdrLen = this.hdrLen;
    while (p < end) {
      if (this.stop) return p;
      if (this.need === 0) {
        let len: number;
        if (this.hdrHave === 0 && end - p >= hdrLen) {
          len = hdrLen === HDR_BE32 ? ((buf[p] << 24) | (buf[p + 1] << 16) | (buf[p + 2] << 8) | buf[p + 3]) >>> 0 : buf[p] | (buf[p + 1] << 8);
          p += hdrLen;
        } else {
          // A header split across chunks: accumulate it byte by byte in the
          // order it is read, so both byte orders share one path.
          while (this.hdrHave < hdrLen && p < end) {
            const b = buf[p++];
            this.hdrVal = hdrLen === HDR_BE32 ? ((this.hdrVal << 8) | b) >>> 0 : this.hdrVal | (b << (8 * this.hdrHave));
            this.hdrHave++;
          }
          if (this.hdrHave < hdrLen) return p;
          len = this.hdrVal;
          this.hdrVal = 0;
          this.hdrHave = 0;
        }
        if (len === 0 || len > this.maxFrame) {
          this.error = len === 0 ? DEC_EMPTY : DEC_TOO_LARGE;
          this.badLength = len;
          return p;
        }
        if (end - p >= len) {
          this.frames++;
          this.bytes += len;
          this.sink(buf, p, len);
          p += len;
          continue;
        }
        if (this.asm.length < len) this.asm = new Uint8Array(Math.min(this.maxFrame, Math.max(len, this.asm.length * 2)));
        const take = end - p;
        this.asm.set(buf.subarray(p, end), 0);
        this.need = len;
        this.have = take;
        return end;
      }
      const take = Math.min(this.need - this.have, end - p);
      this.asm.set(buf.subarray(p, p + take), this.have);
      this.have += take;
      p += take;
      if (this.have === this.need) {
        const len = this.need;
        this.need = 0;
        this.have = 0;
        this.frames++;
        this.bytes += len;
        this.sink(this.asm, 0, len);
      }
    }
    return p;
  }
}
