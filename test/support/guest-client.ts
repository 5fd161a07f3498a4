/**
 * A scripted guest for in-process engine tests: connects to an engine
 * listener with the qemu framing, sends frames built with src/wire, and
 * waits for frames matching a predicate.
 */
import net from 'node:net';
import { emitEthernet, ETHERTYPE_IPV4, ETHERTYPE_ARP } from '../../src/wire/ethernet.js';
import { emitIpv4, IP_PROTO_UDP, IP_PROTO_ICMP } from '../../src/wire/ipv4.js';
import { emitUdp } from '../../src/wire/udp.js';
import { emitIcmp } from '../../src/wire/icmp.js';
import { emitArp } from '../../src/wire/arp.js';

export class GuestClient {
  readonly frames: Uint8Array[] = [];
  private waiters: { pred: (f: Uint8Array) => boolean; resolve: (f: Uint8Array) => void }[] = [];
  private pending = Buffer.alloc(0);
  closed = false;
  private closeWaiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket, readonly mac: Uint8Array) {
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.closeWaiters) w();
    });
    socket.on('error', () => {});
  }

  static connect(path: string, mac: Uint8Array): Promise<GuestClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path, () => resolve(new GuestClient(s, mac)));
      s.once('error', reject);
    });
  }

  private onData(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 4) {
      const n = this.pending.readUInt32BE(0);
      if (this.pending.length < 4 + n) break;
      const f = new Uint8Array(this.pending.subarray(4, 4 + n));
      this.pending = this.pending.subarray(4 + n);
      const i = this.waiters.findIndex((w) => w.pred(f));
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(f);
      else this.frames.push(f);
    }
  }

  /** The first received frame (already queued or future) matching `pred`. */
  next(pred: (f: Uint8Array) => boolean, timeoutMs = 3000): Promise<Uint8Array> {
    const i = this.frames.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.frames.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve: (f: Uint8Array) => { clearTimeout(t); resolve(f); } };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error('timed out waiting for a frame'));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  waitClosed(timeoutMs = 3000): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('connection not closed')), timeoutMs);
      this.closeWaiters.push(() => { clearTimeout(t); resolve(); });
    });
  }

  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  send(frame: Uint8Array): void {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(frame.length, 0);
    this.socket.write(Buffer.concat([h, frame]));
  }

  arpRequest(senderIp: number, targetIp: number): Uint8Array {
    const f = new Uint8Array(42);
    const o = emitEthernet({ dst: new Uint8Array(6).fill(0xff), src: this.mac, ethertype: ETHERTYPE_ARP }, f, 0);
    emitArp({ op: 1, senderMac: this.mac, senderIp, targetMac: new Uint8Array(6), targetIp }, f, o);
    return f;
  }

  udpFrame(dstMac: Uint8Array, src: number, srcPort: number, dst: number, dstPort: number, payload: Uint8Array): Uint8Array {
    const f = new Uint8Array(14 + 20 + 8 + payload.length);
    let o = emitEthernet({ dst: dstMac, src: this.mac, ethertype: ETHERTYPE_IPV4 }, f, 0);
    o += emitIpv4({ src, dst, protocol: IP_PROTO_UDP, payloadLen: 8 + payload.length, ttl: 64, ident: 1 }, f, o);
    emitUdp({ srcPort, dstPort, payload }, f, o, src, dst);
    return f;
  }

  echoFrame(dstMac: Uint8Array, src: number, dst: number, ident: number, seq: number, data: Uint8Array): Uint8Array {
    const f = new Uint8Array(14 + 20 + 8 + data.length);
    let o = emitEthernet({ dst: dstMac, src: this.mac, ethertype: ETHERTYPE_IPV4 }, f, 0);
    o += emitIpv4({ src, dst, protocol: IP_PROTO_ICMP, payloadLen: 8 + data.length, ttl: 64, ident: 2 }, f, o);
    emitIcmp({ kind: 'echoRequest', ident, seq, data }, f, o);
    return f;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Helpers to read received frames. */
export const ethType = (f: Uint8Array) => (f[12] << 8) | f[13];
export const ipProto = (f: Uint8Array) => f[23];
export const ipSrc = (f: Uint8Array) => ((f[26] << 24) | (f[27] << 16) | (f[28] << 8) | f[29]) >>> 0;
export const ipDst = (f: Uint8Array) => ((f[30] << 24) | (f[31] << 16) | (f[32] << 8) | f[33]) >>> 0;
export const udpPorts = (f: Uint8Array) => {
  const o = 14 + (f[14] & 0xf) * 4;
  return { src: (f[o] << 8) | f[o + 1], dst: (f[o + 2] << 8) | f[o + 3], payload: f.subarray(o + 8) };
};
