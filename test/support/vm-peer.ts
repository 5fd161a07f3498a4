/**
 * A fake VM for transport and engine tests: connects to a listener and speaks
 * one framing ('qemu' 4-byte BE, 'le16', 'vpnkit' handshake + le16) or sends
 * UDP datagrams ('dgram').
 *
 * Its stream decoding is deliberately naive (concatenate, then slice) and
 * independent of src/transport/decoder.ts, so it can serve as an oracle.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { encodeCommand, encodeInit, parseResponse, VPNKIT_INIT_LEN, VPNKIT_RESPONSE_LEN, type ParsedResponse } from '../../src/transport/vpnkit.js';

export type StreamFraming = 'qemu' | 'le16' | 'vpnkit';
export type Target = { path: string } | { host: string; port: number };

export function targetOf(url: string): Target {
  if (url.startsWith('unix://')) return { path: url.slice(7) };
  const m = /^(?:tcp|udp):\/\/\[?([^\]]+?)\]?:(\d+)$/.exec(url);
  if (!m) throw new Error(`bad url ${url}`);
  return { host: m[1], port: Number(m[2]) };
}

export function encodeFrame(framing: StreamFraming, frame: Uint8Array): Buffer {
  const hdr = framing === 'qemu' ? 4 : 2;
  const b = Buffer.alloc(hdr + frame.length);
  if (hdr === 4) b.writeUInt32BE(frame.length, 0);
  else b.writeUInt16LE(frame.length & 0xffff, 0);
  b.set(frame, hdr);
  return b;
}

export interface VpnkitClientOptions {
  version?: number;
  /** null sends 36 NULs. */
  uuid?: string | null;
  command?: 'ethernet' | 'preferred-ipv4' | 'bind-ipv4';
  preferredIp?: number;
}

export class StreamVmPeer {
  readonly frames: Buffer[] = [];
  /** Every byte received (after the handshake for vpnkit). */
  rxBytes = 0;
  response?: ParsedResponse;
  serverInit?: Buffer;
  private buf: Buffer = Buffer.alloc(0);
  private readonly hdr: number;
  private waiters: Array<() => void> = [];
  closed = false;
  private closedWaiters: Array<() => void> = [];

  private constructor(
    readonly socket: net.Socket,
    readonly framing: StreamFraming,
  ) {
    this.hdr = framing === 'qemu' ? 4 : 2;
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.closedWaiters.splice(0)) w();
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => {});
  }

  /** Connect and (for vpnkit) run the client handshake. A Disconnect leaves `response.kind === 'disconnect'`. */
  static async connect(target: Target, framing: StreamFraming, vpnkit: VpnkitClientOptions = {}): Promise<StreamVmPeer> {
    const socket = await rawConnect(target);
    const peer = new StreamVmPeer(socket, framing);
    if (framing === 'vpnkit') {
      const reader = new ExactReader(socket);
      socket.write(encodeInit(vpnkit.version ?? 22, '\0'.repeat(40)));
      peer.serverInit = await reader.read(VPNKIT_INIT_LEN);
      socket.write(encodeCommand(vpnkit.command ?? 'ethernet', vpnkit.uuid === undefined ? 'c0ffee00-1234-4abc-8def-0123456789ab' : vpnkit.uuid, vpnkit.preferredIp ?? 0));
      const resp = await reader.read(VPNKIT_RESPONSE_LEN);
      peer.response = parseResponse(resp);
      const rest = reader.detach();
      peer.startReading(rest);
    } else {
      peer.startReading(Buffer.alloc(0));
    }
    return peer;
  }

  private startReading(initial: Buffer): void {
    if (initial.length) this.onData(initial);
    this.socket.on('data', (d: Buffer) => this.onData(d));
  }

  private onData(d: Buffer): void {
    this.rxBytes += d.length;
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      if (this.buf.length < this.hdr) break;
      const len = this.hdr === 4 ? this.buf.readUInt32BE(0) : this.buf.readUInt16LE(0);
      if (this.buf.length < this.hdr + len) break;
      this.frames.push(Buffer.from(this.buf.subarray(this.hdr, this.hdr + len)));
      this.buf = this.buf.subarray(this.hdr + len);
    }
    for (const w of this.waiters.splice(0)) w();
  }

  /** Send frames, all in one socket write. */
  send(...frames: Uint8Array[]): void {
    this.socket.write(Buffer.concat(frames.map((f) => encodeFrame(this.framing, f))));
  }

  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  async waitFrames(n: number, timeoutMs = 5000): Promise<Buffer[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length < n) {
      if (this.closed) throw new Error(`peer closed with ${this.frames.length}/${n} frames`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out with ${this.frames.length}/${n} frames`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
    return this.frames;
  }

  waitClose(timeoutMs = 5000): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error('peer not closed in time')), timeoutMs);
      this.closedWaiters.push(() => {
        clearTimeout(t);
        res();
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

export function rawConnect(target: Target): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = 'path' in target ? net.connect({ path: target.path }) : net.connect({ host: target.host, port: target.port });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Reads exact byte counts from a socket; detach() returns what was read beyond. For byte-exact handshake tests. */
export class ExactReader {
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;
  private wake?: () => void;
  private readonly onData = (d: Buffer): void => {
    this.buf = Buffer.concat([this.buf, d]);
    this.wake?.();
  };
  private readonly onEnd = (): void => {
    this.ended = true;
    this.wake?.();
  };
  constructor(private readonly socket: net.Socket) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
  }
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`EOF after ${this.buf.length}/${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${this.buf.length}/${n} bytes`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.wake = () => {
          clearTimeout(t);
          res();
        };
      });
      this.wake = undefined;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return Buffer.from(out);
  }
  /** Resolves with every byte left until EOF/close. */
  async readToEnd(timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no EOF in time');
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.wake = () => {
          clearTimeout(t);
          res();
        };
      });
      this.wake = undefined;
    }
    return this.buf;
  }
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    return this.buf;
  }
}

/** A qemu `-netdev dgram` stand-in: one frame per UDP datagram. */
export class UdpVmPeer {
  readonly frames: Buffer[] = [];
  private waiters: Array<() => void> = [];
  private constructor(
    readonly socket: dgram.Socket,
    readonly remote: { host: string; port: number },
  ) {
    socket.on('message', (m) => {
      this.frames.push(Buffer.from(m));
      for (const w of this.waiters.splice(0)) w();
    });
  }
  static async open(remote: { host: string; port: number }): Promise<UdpVmPeer> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
    return new UdpVmPeer(s, remote);
  }
  get port(): number {
    return this.socket.address().port;
  }
  send(frame: Uint8Array): Promise<void> {
    return new Promise((res, rej) => this.socket.send(frame, this.remote.port, this.remote.host, (e) => (e ? rej(e) : res())));
  }
  async waitFrames(n: number, timeoutMs = 5000): Promise<Buffer[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out with ${this.frames.length}/${n} datagrams`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
    return this.frames;
  }
  close(): Promise<void> {
    return new Promise((res) => this.socket.close(() => res()));
  }
}

/** A recognisable test frame: broadcast dst, src MAC 02:00:00:00:00:xx, ethertype 0x88b5 (local experimental), `tag` in the payload. */
export function testFrame(tag: number, len = 60): Buffer {
  const f = Buffer.alloc(Math.max(len, 18));
  f.fill(0xff, 0, 6);
  f.set([0x02, 0, 0, 0, 0, tag & 255], 6);
  f.writeUInt16BE(0x88b5, 12);
  f.writeUInt32BE(tag >>> 0, 14);
  for (let i = 18; i < f.length; i++) f[i] = (i + tag) & 255;
  return f;
}
