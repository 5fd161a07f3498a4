import { VnetkitError } from '../errors.js';

/**
 * Error codes for VM transports. They live here rather than in src/errors.ts
 * so the transport module can evolve without touching the shared file; the
 * values follow the same ERR_VNETKIT_* scheme and are stable.
 */
export const TransportErrorCodes = {
  /** A frame header declared a length above the link's maxFrame. */
  FRAME_TOO_LARGE: 'ERR_VNETKIT_FRAME_TOO_LARGE',
  /** A frame header declared a length of 0 (no valid Ethernet frame is empty; a desynchronised stream often reads as zeros). */
  FRAME_EMPTY: 'ERR_VNETKIT_FRAME_EMPTY',
  /** The vpnkit handshake was malformed or refused. */
  HANDSHAKE: 'ERR_VNETKIT_HANDSHAKE',
  /** The vpnkit client speaks another protocol version (we sent our Init and closed). */
  HANDSHAKE_VERSION: 'ERR_VNETKIT_HANDSHAKE_VERSION',
  /** The vpnkit handshake did not complete in time. */
  HANDSHAKE_TIMEOUT: 'ERR_VNETKIT_HANDSHAKE_TIMEOUT',
  /** The stream closed before the handshake completed. */
  HANDSHAKE_EOF: 'ERR_VNETKIT_HANDSHAKE_EOF',
  /** The underlying socket or stream reported an error. */
  TRANSPORT: 'ERR_VNETKIT_TRANSPORT',
  /** The stream delivered something other than bytes (e.g. a string after setEncoding). */
  BAD_CHUNK: 'ERR_VNETKIT_BAD_CHUNK',
  /** A listen URL could not be parsed or names an unsupported scheme. */
  BAD_URL: 'ERR_VNETKIT_BAD_URL',
  /** A non-loopback listen address without allowNonLoopback. */
  NON_LOOPBACK: 'ERR_VNETKIT_NON_LOOPBACK',
  /** Another process is listening on the requested address or socket path. */
  ADDRESS_IN_USE: 'ERR_VNETKIT_ADDRESS_IN_USE',
  /** An inherited file descriptor is not an open socket or pipe. */
  BAD_FD: 'ERR_VNETKIT_BAD_FD',
  /** The unix socket path exists and is not a socket: we refuse to delete it. */
  PATH_NOT_SOCKET: 'ERR_VNETKIT_PATH_NOT_SOCKET',
} as const;

export type TransportErrorCode = (typeof TransportErrorCodes)[keyof typeof TransportErrorCodes];

export function transportError(code: TransportErrorCode, message: string, cause?: unknown): VnetkitError {
  return new VnetkitError(code, message, cause === undefined ? undefined : { cause });
}
