/**
 * The kernel interface. The WebAssembly module's exports and the pure-JS twin
 * both implement it, over the same memory layout (see assembly/layout.ts), so
 * any test can run the same bytes through both and compare.
 *
 * Conventions:
 * - Every `ptr` is an absolute byte offset into the backend's linear memory
 *   (`Kernels.u8`). Nothing here copies in or out of the JS heap.
 * - IPv4 addresses are unsigned 32-bit integers (192.168.65.1 = 0xc0a84101).
 *   WASM returns i32, so JS callers normalise u32 results with `>>> 0`.
 * - Times are caller-supplied milliseconds as u32 (wrapping); kernels never
 *   read a clock.
 * - No kernel throws on bad input: it returns a code.
 */
export interface KernelExports {
  /** Start of memory the kernels leave to the caller (static data ends below it). */
  heapBase(): number;

  // ---- checksum.ts -------------------------------------------------------
  /**
   * RFC 1071 sum of `len` bytes at `ptr` (any alignment, any length), read as
   * big-endian 16-bit words starting at `ptr`, added to `sum` (a 16-bit
   * partial). Returns the folded 16-bit sum, not complemented (0..0xffff).
   * A range running past the end of memory is cut at the end (no trap).
   */
  csumPartial(ptr: number, len: number, sum: number): number;

  // ---- classify.ts -------------------------------------------------------
  /**
   * Parse and validate `count` frames listed in the frame table at `table`
   * (FRAME_ENTRY_SIZE each) and write one DESC_SIZE descriptor per frame at
   * `descs`. When `flowTable` is non-zero, valid TCP/UDP frames are looked up
   * by (proto, src, dst), found flows get last-seen = `now`, and unknown ones
   * are inserted when `flags` asks (CF_INSERT_TCP_SYN for a bare SYN,
   * CF_INSERT_UDP), reporting FLOW_NEW with the new id, or FLOW_FULL.
   * Returns the number of frames classified (= count).
   */
  classify(table: number, count: number, descs: number, flowTable: number, now: number, flags: number): number;

  // ---- emit.ts -----------------------------------------------------------
  /**
   * Build `count` TCP/UDP frames from TX descriptors at `txs` into the region
   * [out, out + outCap): Ethernet + IPv4 + L4 header (+ options) + payload
   * copied from T_PAYLOAD_PTR, all checksums filled. Frames are written back to
   * back; each one's (ptr, len) goes to the frame table at `table`, and its
   * length to T_FRAME_LEN. Each frame starts on a 4-byte boundary, except
   * one whose payload already lies inside [out, out + outCap) with room for
   * its headers after the previous frame: it is built around the payload in
   * place (payloadPtr - headers), and the payload is summed, not copied.
   * Unbuildable descriptors (protocol not TCP/UDP, IPv4 total length over
   * 65535, payload outside memory) get T_FRAME_LEN = 0 and a (ptr, 0) table
   * entry and still count. Returns the number consumed; fewer than `count`
   * means the output region is full (the rest are untouched).
   */
  buildFrames(txs: number, count: number, out: number, outCap: number, table: number): number;

  // ---- flow.ts -----------------------------------------------------------
  /** Bytes needed by a flow table holding at most `capacity` entries; 0 for capacity 0 or above 2^22. */
  flowTableBytes(capacity: number): number;
  /** Initialise a table at `ptr` (memory must be flowTableBytes(capacity)). `seed` keys the hash (HalfSipHash): take it from a CSPRNG. */
  flowInit(ptr: number, capacity: number, seed: number): void;
  /** Insert; returns the new flow's id (0..capacity-1), FT_FULL or FT_EXISTS. */
  flowInsert(t: number, proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number, now: number): number;
  /** Returns the flow's id, or FT_MISS. Does not touch last-seen. */
  flowLookup(t: number, proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number): number;
  /** Set last-seen to `now`; returns the id or FT_MISS. */
  flowTouch(t: number, proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number, now: number): number;
  /** Remove; returns the freed id or FT_MISS. The id may be reused by the next insert. */
  flowRemove(t: number, proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number): number;
  /** Number of entries. */
  flowCount(t: number): number;
  /** Write (as i32) the ids of up to `max` entries whose last-seen is more than `idle` ms before `now`; returns how many. */
  flowIdle(t: number, now: number, idle: number, out: number, max: number): number;
  /** Look up `n` keys (KEY_SIZE each; padding ignored) at `keys`, writing one i32 id or FT_MISS per key at `out` (which may overlap `keys`); returns hits. */
  flowLookupBatch(t: number, keys: number, n: number, out: number): number;
  /** Remove every entry. */
  flowClear(t: number): void;
  /** Last-seen time of flow `id`, or 0 for an unused id (WASM returns it as i32: apply `>>> 0`). */
  flowLastSeen(t: number, id: number): number;
  /** Write flow `id`'s key (KEY_SIZE bytes) at `out`; returns 1, or 0 for an unused id. */
  flowKeyOf(t: number, id: number, out: number): number;

  // ---- reasm.ts (one TCP receive stream) --------------------------------
  /** Bytes needed by a stream with a `cap`-byte buffer and at most `maxHoles` holes. */
  reasmBytes(cap: number, maxHoles: number): number;
  reasmInit(ptr: number, cap: number, maxHoles: number): void;
  /**
   * Accept `len` bytes at `data` whose first byte is `offset` bytes after the
   * next expected byte (offset may be negative: already-delivered bytes are
   * trimmed). Bytes past the window (free buffer space) are trimmed. Returns the
   * number of contiguous readable bytes, RA_OUTSIDE_WINDOW when nothing of the
   * segment is inside the window and it is not an old duplicate, or
   * RA_TOO_MANY_HOLES (state unchanged).
   */
  reasmWrite(r: number, offset: number, data: number, len: number): number;
  /** Contiguous bytes ready to read. */
  reasmReadable(r: number): number;
  /** Pointer to the first readable byte and the length until the buffer wraps. */
  reasmReadPtr(r: number): number;
  reasmReadChunk(r: number): number;
  /** Drop `n` readable bytes (n <= readable). */
  reasmConsume(r: number, n: number): void;
  /** Free space from the next expected byte: the receive window. */
  reasmWindow(r: number): number;
  reasmHoles(r: number): number;
  /** Bytes held out of order (beyond the contiguous prefix). */
  reasmHeld(r: number): number;
  reasmReset(r: number): void;

  // ---- frag.ts (IPv4 fragments) -----------------------------------------
  /** Bytes needed for `slots` datagrams in reassembly at once, each up to `maxDatagram` bytes of IP payload. */
  fragBytes(slots: number, maxDatagram: number): number;
  fragInit(ptr: number, slots: number, maxDatagram: number, timeout: number): void;
  /**
   * Add the IPv4 fragment at `ip` (`len` bytes from the IPv4 header on; the
   * header is trusted to be validated by classify). Returns a slot >= 0 when
   * the datagram is complete, else FR_* (FR_PENDING while waiting).
   */
  fragInsert(t: number, ip: number, len: number, now: number): number;
  /** The reassembled datagram (IPv4 header rewritten: no fragment bits, new total length and checksum). */
  fragDatagramPtr(t: number, slot: number): number;
  fragDatagramLen(t: number, slot: number): number;
  fragRelease(t: number, slot: number): void;
  /** Drop datagrams older than the timeout; returns how many were dropped. */
  fragExpire(t: number, now: number): number;
  /** Datagrams in progress. */
  fragPending(t: number): number;
}

export type BackendName = 'wasm-simd' | 'wasm' | 'js';
