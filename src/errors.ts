/**
 * Every error vnetkit throws or emits is a VnetkitError with a stable `code`
 * (ERR_VNETKIT_*), so embedders can branch on codes instead of messages.
 */
export class VnetkitError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VnetkitError';
    this.code = code;
  }
}

export const ErrorCodes = {
  /** The kernel memory arena cannot hold the requested tables. */
  KERNEL_MEMORY: 'ERR_VNETKIT_KERNEL_MEMORY',
  /** An unknown backend name was requested. */
  BAD_BACKEND: 'ERR_VNETKIT_BAD_BACKEND',
  /** The requested WASM backend cannot run on this platform. */
  BACKEND_UNAVAILABLE: 'ERR_VNETKIT_BACKEND_UNAVAILABLE',
  /** An option has an invalid value. */
  BAD_OPTION: 'ERR_VNETKIT_BAD_OPTION',
  /**
   * A VM listener guests could connect to (tcp:// or udp:// on the host's loopback while
   * hostLoopback is on, or on any other host address) without allowGuestReachable.
   */
  GUEST_REACHABLE: 'ERR_VNETKIT_GUEST_REACHABLE',
} as const;
