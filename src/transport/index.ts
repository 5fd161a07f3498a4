/**
 * VM transports: how Ethernet frames travel between a VM and the engine.
 *
 * ## Engine integration
 *
 * ```ts
 * const l = await listen('unix:///run/vnetkit.sock', { framing: 'qemu', log }, (link) => {
 *   link.onFrame = (buf, off, len) => { copy buf[off, off+len) into the RX ring }; // view, valid during the call only
 *   link.onClose = (err) => { remove the port; err?.code says why (ERR_VNETKIT_FRAME_TOO_LARGE, …) };
 *   link.onDrain = () => { resume reading host sockets for this VM };
 * });
 * // per turn, for each VM port:
 * link.send(tx, off, len);     // copied into a pooled, already-framed output segment
 * link.flush();                // one socket write (writev if > 128 KiB) for the whole turn
 * if (link.congested) { stop reading host sockets for this VM until onDrain }
 * ```
 *
 * - `attachFd(fd, opts)` wraps an inherited, connected socket (a launcher's
 *   socketpair; passt's --fd) and reads it into one buffer of its own, as
 *   listen() does for accepted sockets.
 * - Send buffer: a Unix socket that listen() accepts or attachFd() adopts gets
 *   SO_SNDBUF raised to `sendBufferBytes` (default 1 MiB) before its first
 *   read; a bigger one a launcher set is kept. `link.sendBuffer` reports it.
 * - `attachStream(stream, opts)` wraps an already-connected Duplex (or a
 *   {readable, writable} pair such as stdin/stdout) and returns at once. For
 *   'vpnkit' the handshake then runs on the stream; frames sent before it
 *   completes wait in the queue, `link.vpnkit` is set when it completes, and
 *   `link.whenReady(ready, fail)` reports the outcome. `listen()` only calls
 *   onLink once a vpnkit link is ready.
 * - Receive: the decoder hands out views into socket chunks; only frames that
 *   straddle chunks are assembled (one reusable buffer ≤ maxFrame per link).
 *   A header declaring 0 bytes or more than maxFrame closes that link alone
 *   (onClose(err), ERR_VNETKIT_FRAME_EMPTY / ERR_VNETKIT_FRAME_TOO_LARGE).
 * - pause()/resume(): the link stops after the frame being delivered; the
 *   unread rest of the chunk is held and replayed first on resume().
 *   For 'dgram' links (shared UDP socket), datagrams arriving while paused are
 *   dropped and counted.
 * - Send limits: frames above maxFrameOut (MTU + 14; vpnkit's negotiated MTU,
 *   like vpnkit's "Dropping over-large ethernet frame") are dropped and
 *   counted. Bytes queued by the link plus the socket's own buffer are capped
 *   at txQueueLimit (default 4 MiB): a VM that stops reading makes the link
 *   drop new frames (counted in stats().dropped) instead of buffering without
 *   bound. `congested` turns true when the backlog reaches highWater (half
 *   the cap) and back to false, with onDrain, once written segments bring it
 *   down to half of that: the socket always has a megabyte or so in hand while
 *   senders refill, instead of running dry while they wait for a full drain.
 * - Errors: VnetkitError with codes in TransportErrorCodes.
 */
export type { FrameHold, Framing, LinkOptions, LinkStats, VmLink, VpnkitDecision, VpnkitNegotiator, VpnkitRequest } from './types.js';
export { TransportErrorCodes, type TransportErrorCode } from './errors.js';
export { FrameDecoder, HDR_BE32, HDR_LE16, DEC_OK, DEC_EMPTY, DEC_TOO_LARGE, type FrameSink } from './decoder.js';
export {
  StreamLink,
  attachStreamLink,
  DEFAULT_MAX_FRAME,
  DEFAULT_MTU,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_TX_QUEUE_LIMIT,
  type StreamPair,
} from './link.js';
export { DgramLink, type DgramOptions } from './dgram.js';
export { DEFAULT_SEND_BUFFER_BYTES, canSetSendBuffer, checkSendBufferBytes, setSendBuffer, type SendBufferResult } from './send-buffer.js';
export { listen, parseListenUrl, isLoopback, type Listener, type ListenOptions } from './listen.js';
export {
  VPNKIT_MAGIC,
  VPNKIT_VERSION,
  VPNKIT_INIT_LEN,
  VPNKIT_COMMAND_LEN,
  VPNKIT_RESPONSE_LEN,
  VPNKIT_SERVER_COMMIT,
  VpnkitReasons,
  createSimpleNegotiator,
  encodeInit,
  parseInit,
  encodeCommand,
  parseCommand,
  encodeVif,
  encodeDisconnect,
  parseResponse,
  type ParsedResponse,
  type SimpleNegotiatorOptions,
} from './vpnkit.js';

import type { Duplex } from 'node:stream';
import { attachStreamLink, maxFrameInFor, readerBytes, type StreamLink, type StreamPair } from './link.js';
import type { LinkOptions } from './types.js';
import { socketOnFd } from './read-buffer.js';
import { StreamReader } from './stream-reader.js';
import { applyLinkSendBuffer, checkSendBufferBytes } from './send-buffer.js';
import { nullLogger } from '../log.js';
import { TransportErrorCodes, transportError } from './errors.js';

/** Wrap a connected stream (socket, or stdin/stdout pair) as a VM link. Throws only on invalid options (framing 'dgram'). */
export function attachStream(stream: Duplex | StreamPair, opts: LinkOptions): StreamLink {
  return attachStreamLink(stream, opts);
}

/** Wrap an inherited, connected stream socket (file descriptor `fd`) as a VM link. Throws ERR_VNETKIT_BAD_FD when it is not an open socket. */
export function attachFd(fd: number, opts: LinkOptions): StreamLink {
  checkSendBufferBytes(opts.sendBufferBytes);
  const reader = new StreamReader(readerBytes(maxFrameInFor(opts)));
  let sock;
  // Before the socket exists: libuv would refuse a descriptor its loop already watches.
  const sendBuffer = applyLinkSendBuffer(fd, opts.sendBufferBytes, opts.log ?? nullLogger);
  try {
    // Reads only start on a later turn of the loop, by which time `link` is set.
    sock = socketOnFd(fd, reader);
  } catch (e) {
    throw transportError(TransportErrorCodes.BAD_FD, `file descriptor ${fd} is not an open stream socket (${(e as Error).message})`, e);
  }
  const link = attachStreamLink(sock, opts, `fd ${fd}`, reader);
  link.sendBuffer = sendBuffer;
  return link;
}
