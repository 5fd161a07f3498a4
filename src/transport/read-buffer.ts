/**
 * Accepted VM sockets that read into one buffer of their own.
 *
 * Node gives every read of a plain socket a fresh ArrayBuffer (64 KiB
 * asked, shrunk to what arrived). On a VM link moving gigabits that is half a
 * gigabyte of external memory a second, and V8 answers external-memory growth
 * with full mark-compacts every few tens of milliseconds; the engine slows
 * down run after run. Client sockets avoid it with `onread`, but
 * net.Server has no such option for the sockets it accepts.
 *
 * So the listener accepts paused (`pauseOnConnect`), takes the handle out of
 * the accepted socket before it has read anything, and builds a socket around
 * the same handle with `onread`: Socket's constructor accepts both, and then
 * installs the user buffer on the handle. The husk is destroyed without a
 * handle, which only settles the server's connection count. If a future Node
 * hides the handle, the accepted socket is used as it is. A socket on an
 * inherited descriptor is built with `onread` from the start.
 */
import net from 'node:net';

export const READ_BUFFER_BYTES = 256 * 1024;

interface HandleCarrier {
  _handle?: { useUserBuffer?: unknown; readStart?: unknown } | null;
}

export type ReadCallback = (buf: Uint8Array, n: number) => void;

/**
 * The socket to use for an accepted (paused) connection: a new one reading
 * into `buffer`, or `accepted` itself when its handle cannot be moved.
 * `onRead` sees each read in `buffer`, valid only until it returns or, if it
 * paused the socket, until it resumes it.
 */
export function adoptWithReadBuffer(accepted: net.Socket, buffer: Uint8Array, onRead: ReadCallback): net.Socket {
  const carrier = accepted as unknown as HandleCarrier;
  const handle = carrier._handle;
  if (handle == null || typeof handle.useUserBuffer !== 'function' || typeof handle.readStart !== 'function' || accepted.destroyed) {
    accepted.resume();
    return accepted;
  }
  carrier._handle = null;
  accepted.destroy();
  return new net.Socket({ handle: handle as never, ...readingInto(buffer, onRead) } as net.SocketConstructorOpts);
}

/**
 * A socket on an inherited, connected descriptor (a launcher's socketpair),
 * reading into `buffer` like an accepted one. Throws when `fd` is not an open
 * socket or pipe.
 */
export function socketOnFd(fd: number, buffer: Uint8Array, onRead: ReadCallback): net.Socket {
  return new net.Socket({ fd, ...readingInto(buffer, onRead) } as net.SocketConstructorOpts);
}

function readingInto(buffer: Uint8Array, onRead: ReadCallback) {
  return {
    allowHalfOpen: false,
    readable: true,
    writable: true,
    onread: {
      buffer,
      callback: (n: number, buf: Uint8Array): boolean => {
        onRead(buf, n);
        // Pausing already stopped the handle (Socket.pause does readStop
        // when it owns the buffer); true means "keep reading" otherwise.
        return true;
      },
    },
  };
}
