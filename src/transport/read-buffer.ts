/**
 * Accepted VM sockets that read into their link's StreamReader.
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
 * hides the handle, the accepted socket is used as it is (its link then
 * copies 'data' chunks into the reader). A socket on an inherited descriptor
 * is built with `onread` from the start.
 *
 * `onread`'s buffer is a generator: Node asks it for the next read's buffer
 * after every read, so each read lands where the reader wants it, right
 * behind the bytes it still holds.
 */
import net from 'node:net';
import type { StreamReader } from './stream-reader.js';

interface HandleCarrier {
  _handle?: { useUserBuffer?: unknown; readStart?: unknown } | null;
}

/**
 * The socket to use for an accepted (paused) connection: a new one reading
 * into `reader`, or `accepted` itself when its handle cannot be moved.
 */
export function adoptWithReadBuffer(accepted: net.Socket, reader: StreamReader): net.Socket {
  const carrier = accepted as unknown as HandleCarrier;
  const handle = carrier._handle;
  if (handle == null || typeof handle.useUserBuffer !== 'function' || typeof handle.readStart !== 'function' || accepted.destroyed) {
    accepted.resume();
    return accepted;
  }
  carrier._handle = null;
  accepted.destroy();
  return new net.Socket({ handle: handle as never, ...readingInto(reader) } as net.SocketConstructorOpts);
}

/**
 * A socket on an inherited, connected descriptor (a launcher's socketpair),
 * reading into `reader` like an accepted one. Throws when `fd` is not an open
 * socket or pipe.
 */
export function socketOnFd(fd: number, reader: StreamReader): net.Socket {
  return new net.Socket({ fd, ...readingInto(reader) } as net.SocketConstructorOpts);
}

function readingInto(reader: StreamReader) {
  return {
    allowHalfOpen: false,
    readable: true,
    writable: true,
    onread: {
      buffer: () => reader.next(),
      callback: (n: number): boolean => {
        reader.filled(n);
        // Pausing already stopped the handle (Socket.pause does readStop
        // when it owns the buffer); true means "keep reading" otherwise.
        return true;
      },
    },
  };
}
