/**
 * DNS over TCP on the gateway, as an in-process stream the TCP stack treats
 * like a host socket: the guest's connection to gateway:53 ends here instead
 * of at a host listener, so nothing extra listens on the host.
 */
import { Duplex } from 'node:stream';
import type net from 'node:net';
import { DnsTcpDeframer, frameTcp } from '../services/dns-wire.js';
import type { DnsServer } from '../services/dns.js';

/** Queries answered concurrently per connection; more wait for the stream to drain. */
const MAX_INFLIGHT = 16;

class DnsTcpSession extends Duplex {
  private readonly deframer = new DnsTcpDeframer();
  private inflight = 0;
  private ended = false;

  constructor(private readonly dns: DnsServer) {
    super({ allowHalfOpen: true });
    // The stack waits for 'connect' like on a real socket.
    queueMicrotask(() => this.emit('connect'));
  }

  setNoDelay(): this {
    return this;
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    let msgs: Uint8Array[];
    try {
      msgs = this.deframer.push(chunk);
    } catch (err) {
      cb(err as Error);
      return;
    }
    for (const m of msgs) this.answer(m);
    if (this.inflight >= MAX_INFLIGHT) this.once('answered', () => cb());
    else cb();
  }

  private answer(query: Uint8Array): void {
    this.inflight++;
    this.dns.query(query, 'tcp').then(
      (reply) => {
        if (reply !== null && !this.destroyed) this.push(Buffer.from(frameTcp(reply)));
      },
      () => undefined,
    ).finally(() => {
      this.inflight--;
      this.emit('answered');
      this.maybeEnd();
    });
  }

  override _final(cb: (err?: Error | null) => void): void {
    // The guest closed its side: answer what was asked, then close ours.
    this.ended = true;
    this.maybeEnd();
    cb();
  }

  private maybeEnd(): void {
    if (this.ended && this.inflight === 0) this.push(null);
  }
}

export function openDnsTcpSession(dns: DnsServer): net.Socket {
  return new DnsTcpSession(dns) as unknown as net.Socket;
}
