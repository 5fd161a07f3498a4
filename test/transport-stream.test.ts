import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VnetkitError } from '../src/errors.js';
import { createLogger } from '../src/log.js';
import { attachFd, attachStream, listen, TransportErrorCodes, type Listener, type StreamLink, type VmLink } from '../src/transport/index.js';
import { adoptWithReadBuffer } from '../src/transport/read-buffer.js';
import { HeapReadSpace, READ_MIN, StreamReader } from '../src/transport/stream-reader.js';
import { SEG_SIZE } from '../src/transport/segments.js';
import { StreamVmPeer, encodeFrame, rawConnect, targetOf, testFrame, type StreamFraming } from './support/vm-peer.js';

let dir: string;
const listeners: Listener[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-tr-'));
});
afterEach(async () => {
  for (const l of listeners.splice(0)) await l.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Rec {
  links: VmLink[];
  frames: Map<number, Buffer[]>;
  closes: Map<number, VnetkitError | undefined | 'open'>;
}

/** Listen, and make every link echo what it receives (engine stand-in). */
async function startEcho(url: string, framing: StreamFraming, extra: Record<string, unknown> = {}, echo = true) {
  const rec: Rec = { links: [], frames: new Map(), closes: new Map() };
  const l = await listen(url, { framing, ...extra }, (link) => {
    rec.links.push(link);
    rec.frames.set(link.id, []);
    rec.closes.set(link.id, 'open');
    link.onFrame = (b, o, n) => {
      rec.frames.get(link.id)!.push(Buffer.from(b.subarray(o, o + n)));
      if (echo) link.send(b, o, n);
    };
    link.onClose = (e) => rec.closes.set(link.id, e);
  });
  listeners.push(l);
  return { rec, listener: l };
}

const urls = (): Array<[string, string]> => [
  ['unix', `unix://${path.join(dir, 'e.sock')}`],
  ['tcp', 'tcp://127.0.0.1:0'],
];

describe.each(['qemu', 'le16', 'vpnkit'] as StreamFraming[])('%s framing end to end', (framing) => {
  it.each(['unix', 'tcp'])('over %s: frames of every size both ways, in order', async (kind) => {
    const url = urls().find(([k]) => k === kind)![1];
    const { rec, listener } = await startEcho(url, framing, { mtu: 9000 });
    const peer = await StreamVmPeer.connect(targetOf(listener.url), framing);
    const sizes = [14, 42, 60, 1514, 9014, 300, 9014, 1];
    const frames = sizes.map((n, i) => testFrame(i, n).subarray(0, n));
    peer.send(...frames.slice(0, 4));
    for (const f of frames.slice(4)) peer.send(f);
    const got = await peer.waitFrames(frames.length);
    expect(got).toEqual(frames.map((f) => Buffer.from(f)));
    const link = rec.links[0];
    expect(link.framing).toBe(framing);
    expect(link.stats()).toMatchObject({ rxFrames: 8, txFrames: 8, dropped: 0, rxBytes: sizes.reduce((a, b) => a + b) });
    if (kind === 'unix') expect(link.peer).toBe(listener.address);
    else expect(link.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    peer.close();
    await waitFor(() => rec.closes.get(link.id) !== 'open');
    expect(rec.closes.get(link.id)).toBeUndefined();
  });
});

describe('bad lengths', () => {
  it.each([
    ['qemu', 'oversize', TransportErrorCodes.FRAME_TOO_LARGE],
    ['qemu', 'zero', TransportErrorCodes.FRAME_EMPTY],
    ['le16', 'oversize', TransportErrorCodes.FRAME_TOO_LARGE],
  ] as Array<[StreamFraming, string, string]>)('%s %s length closes only that link; a second link keeps working', async (framing, what, code) => {
    const lines: string[] = [];
    const log = createLogger({ level: 'warn', stream: { write: (s: string) => lines.push(s) } });
    const { rec, listener } = await startEcho(`unix://${path.join(dir, 'b.sock')}`, framing, { maxFrame: 1600, log });
    const good = await StreamVmPeer.connect(targetOf(listener.url), framing);
    const bad = await StreamVmPeer.connect(targetOf(listener.url), framing);
    await waitFor(() => rec.links.length === 2);
    const hdr = framing === 'qemu' ? 4 : 2;
    const badHdr = Buffer.alloc(hdr);
    const n = what === 'zero' ? 0 : 1601;
    if (hdr === 4) badHdr.writeUInt32BE(n);
    else badHdr.writeUInt16LE(n);
    bad.sendRaw(Buffer.concat([encodeFrame(framing, testFrame(1)), badHdr, Buffer.alloc(1601)]));
    await bad.waitClose();
    const badLink = rec.links[1];
    await waitFor(() => rec.closes.get(badLink.id) !== 'open');
    expect((rec.closes.get(badLink.id) as VnetkitError).code).toBe(code);
    expect(rec.frames.get(badLink.id)).toEqual([testFrame(1)]); // the frame before the bad header still arrived
    expect(lines.some((l) => l.includes('bad frame length') && l.includes(code))).toBe(true);

    good.send(testFrame(2), testFrame(3));
    expect(await good.waitFrames(2)).toEqual([testFrame(2), testFrame(3)]);
    expect(rec.closes.get(rec.links[0].id)).toBe('open');
    good.close();
  });
});

/** A server whose accepted sockets we wrap with attachStream, so tests can spy on the socket. */
async function attachedPair(framing: StreamFraming, opts: Record<string, unknown> = {}) {
  const sockPath = path.join(dir, `a${Math.random().toString(36).slice(2)}.sock`);
  let resolveLink!: (v: { link: StreamLink; sock: net.Socket }) => void;
  const p = new Promise<{ link: StreamLink; sock: net.Socket }>((r) => (resolveLink = r));
  const server = net.createServer((sock) => resolveLink({ link: attachStream(sock, { framing, ...opts }), sock }));
  await new Promise<void>((r) => server.listen(sockPath, () => r()));
  const peer = await StreamVmPeer.connect({ path: sockPath }, framing);
  const { link, sock } = await p;
  return { link, sock, peer, server };
}

describe('coalescing', () => {
  it('N frames sent in one turn leave in one socket write', async () => {
    const { link, sock, peer, server } = await attachedPair('qemu');
    let writes = 0;
    const orig = sock.write.bind(sock);
    (sock as unknown as { write: typeof sock.write }).write = ((...a: Parameters<typeof sock.write>) => {
      writes++;
      return orig(...a);
    }) as typeof sock.write;
    const frames = Array.from({ length: 50 }, (_, i) => testFrame(i, 60 + i * 20));
    for (const f of frames) link.send(f, 0, f.length);
    expect(writes).toBe(0); // nothing before the flush
    await new Promise((r) => setImmediate(r)); // the automatic end-of-turn flush
    expect(writes).toBe(1);
    expect(await peer.waitFrames(50)).toEqual(frames);
    // An explicit flush writes immediately, and a second flush with nothing queued writes nothing.
    link.send(frames[0], 0, 60);
    link.flush();
    link.flush();
    expect(writes).toBe(2);
    await peer.waitFrames(51);
    peer.close();
    server.close();
  });

  it('a turn larger than one segment goes out as one corked writev', async () => {
    const { link, sock, peer, server } = await attachedPair('qemu', { mtu: 9000 });
    let writev = 0;
    let single = 0;
    const s = sock as unknown as { _writev: (...a: unknown[]) => unknown; _write: (...a: unknown[]) => unknown };
    const ov = s._writev.bind(sock);
    const ow = s._write.bind(sock);
    s._writev = (...a: unknown[]) => {
      writev++;
      return ov(...a);
    };
    s._write = (...a: unknown[]) => {
      single++;
      return ow(...a);
    };
    const n = Math.ceil((3 * SEG_SIZE) / 9018);
    const frames = Array.from({ length: n }, (_, i) => testFrame(i, 9014));
    for (const f of frames) link.send(f, 0, f.length);
    link.flush();
    const got = await peer.waitFrames(n);
    expect(got.length).toBe(n);
    expect(got.every((f, i) => f.equals(frames[i]))).toBe(true);
    expect(writev).toBe(1);
    expect(single).toBe(0);
    peer.close();
    server.close();
  });

  it('send() copies: mutating the caller buffer after send does not change what is sent', async () => {
    const { link, peer, server } = await attachedPair('le16');
    const f = testFrame(9);
    const expected = Buffer.from(f);
    link.send(f, 0, f.length);
    f.fill(0);
    expect(await peer.waitFrames(1)).toEqual([expected]);
    // offset/length slicing works too
    const big = Buffer.concat([Buffer.alloc(7, 1), expected, Buffer.alloc(3, 2)]);
    link.send(big, 7, expected.length);
    expect((await peer.waitFrames(2))[1]).toEqual(expected);
    peer.close();
    server.close();
  });
});

/** Both ends of a fresh unix stream connection: [accepted, connecting]. */
async function socketPair(d: string): Promise<[net.Socket, net.Socket]> {
  const p = path.join(d, `p${Math.random().toString(36).slice(2)}.sock`);
  let accept!: (s: net.Socket) => void;
  const accepted = new Promise<net.Socket>((r) => (accept = r));
  const srv = net.createServer((s) => {
    srv.close();
    accept(s);
  });
  await new Promise<void>((r) => srv.listen(p, r));
  const c = await rawConnect({ path: p });
  c.on('error', () => {});
  return [await accepted, c];
}

/** A FrameHold that counts: the engine's TX ring pin, as the link sees it. */
function countingHold() {
  const h = {
    retained: 0,
    released: 0,
    retain() {
      h.retained++;
    },
    release: () => {
      h.released++;
    },
  };
  return h;
}

/** Lay frames out as the engine's TX batch does: each one behind `prefix` free bytes, back to back. */
function layOut(frames: Buffer[], prefix: number, gapAfter = -1) {
  const mem = new Uint8Array(1 << 20);
  const at: number[] = [];
  let p = 64;
  frames.forEach((f, i) => {
    p += prefix;
    at.push(p);
    mem.set(f, p);
    p += f.length;
    if (i === gapAfter) p += 8;
  });
  return { mem, at };
}

describe('sendInPlace (frames written from the engine\'s memory)', () => {
  it.each(['qemu', 'le16'] as const)('%s: adjacent frames leave as one view, in order with copied ones; each view is released once written', async (framing) => {
    const { link, sock, peer, server } = await attachedPair(framing, { mtu: 9000 });
    const prefix = framing === 'qemu' ? 4 : 2;
    expect(link.framePrefix).toBe(prefix);
    const chunks: number[] = [];
    const s = sock as unknown as { _writev: (chunks: { chunk: Buffer }[], cb: unknown) => unknown };
    const ov = s._writev.bind(sock);
    s._writev = (c, cb) => {
      chunks.push(c.length);
      return ov(c, cb);
    };
    const frames = Array.from({ length: 12 }, (_, i) => testFrame(i, 60 + i * 700));
    // Frames 0-5 adjacent, a gap, 6-11 adjacent: two views.
    const { mem, at } = layOut(frames, prefix, 5);
    const hold = countingHold();
    const copied = testFrame(99, 100);
    link.send(copied, 0, copied.length); // queued first: must arrive first
    for (let i = 0; i < 12; i++) link.sendInPlace(mem, at[i], frames[i].length, hold);
    link.send(copied, 0, copied.length); // after the views: a new segment
    expect(hold.retained).toBe(2);
    expect(hold.released).toBe(0);
    link.flush();
    // segment, view, view, segment: one corked writev of four chunks.
    expect(chunks).toEqual([4]);
    const got = await peer.waitFrames(14);
    expect(got).toEqual([copied, ...frames, copied]);
    await new Promise((r) => setImmediate(r));
    expect(hold.released).toBe(2);
    // The link wrote its length prefixes into the reserved bytes.
    if (framing === 'qemu') expect(Buffer.from(mem.buffer, at[3] - 4, 4).readUInt32BE(0)).toBe(frames[3].length);
    else expect(Buffer.from(mem.buffer, at[3] - 2, 2).readUInt16LE(0)).toBe(frames[3].length);
    expect(link.stats().txFrames).toBe(14);
    peer.close();
    server.close();
  });

  it('refused frames pin nothing: no room for the prefix, too big, closed link', async () => {
    const { link, peer, server } = await attachedPair('qemu');
    const hold = countingHold();
    const mem = new Uint8Array(70000);
    link.sendInPlace(mem, 2, 60, hold); // the prefix would start before the buffer
    link.sendInPlace(mem, 100, 9000, hold); // above MTU 1500 + 14
    expect(link.stats().dropped).toBe(2);
    link.close('test');
    link.sendInPlace(mem, 100, 60, hold);
    expect(link.stats().dropped).toBe(3);
    expect(hold.retained).toBe(0);
    await peer.waitClose();
    server.close();
  });

  it('views queued but never written are released when the link fails; views being written are released when the socket dies', async () => {
    // Queued: a vpnkit link before its handshake holds frames back; the peer hangs up.
    {
      const [a, b] = await socketPair(dir);
      const link = attachStream(a, { framing: 'vpnkit' });
      link.onClose = () => {};
      const hold = countingHold();
      const f = testFrame(1, 60);
      const { mem, at } = layOut([f], 2);
      link.sendInPlace(mem, at[0], f.length, hold);
      link.flush();
      expect(hold.retained).toBe(1);
      b.destroy();
      await new Promise((r) => a.once('close', r));
      expect(hold.released).toBe(1);
    }
    // Written: a VM that does not read leaves views in the socket's queue until the link is torn down.
    {
      const { link, sock, peer, server } = await attachedPair('qemu', { mtu: 9000, txQueueLimit: 64 * 1024 * 1024 });
      peer.socket.pause();
      const big = Buffer.alloc(9014, 7);
      const hold = countingHold();
      for (let turn = 0; turn < 100; turn++) {
        const { mem, at } = layOut(Array(64).fill(big), 4);
        for (const p of at) link.sendInPlace(mem, p, big.length, hold);
        link.flush();
      }
      expect(sock.writableLength).toBeGreaterThan(0);
      expect(hold.released).toBeLessThan(hold.retained);
      sock.destroy();
      peer.close();
      await new Promise((r) => setTimeout(r, 50));
      expect(hold.released).toBe(hold.retained);
      server.close();
    }
  });
});

/** Send 64 frames a turn, flushing each turn, until the link says it is congested (or maxTurns pass); returns frames sent. */
async function sendUntilCongested(link: StreamLink, f: Buffer, maxTurns: number): Promise<number> {
  let sent = 0;
  for (let turn = 0; turn < maxTurns && !link.congested; turn++) {
    for (let i = 0; i < 64; i++, sent++) link.send(f, 0, f.length);
    link.flush();
    await new Promise((r) => setImmediate(r));
  }
  return sent;
}

describe('backpressure', () => {
  it('a VM that does not read makes the link congested; reading again drains it and calls onDrain', async () => {
    const { link, peer, server } = await attachedPair('qemu', { txQueueLimit: 64 * 1024 * 1024 });
    peer.socket.pause();
    let drains = 0;
    link.onDrain = () => drains++;
    const sent = await sendUntilCongested(link, testFrame(1, 1514), 2000);
    expect(link.congested).toBe(true);
    expect(drains).toBe(0);
    peer.socket.resume();
    await waitFor(() => drains === 1, 10_000);
    expect(link.congested).toBe(false);
    await peer.waitFrames(sent, 20_000);
    expect(link.stats()).toMatchObject({ txFrames: sent, dropped: 0 });
    peer.close();
    server.close();
  });

  it('congestion follows the link\'s own watermarks: on at half the cap, off (onDrain) once the backlog is down to a quarter', async () => {
    const limit = 8 * 1024 * 1024;
    const { link, peer, server } = await attachedPair('qemu', { txQueueLimit: limit });
    expect(link.highWater).toBe(limit / 2);
    peer.socket.pause();
    let drainedAt = -1;
    link.onDrain = () => { drainedAt = link.backlog; };
    // A sender that honours `congested`, as the TCP stack does, never reaches the cap.
    const sent = await sendUntilCongested(link, testFrame(2, 1514), 4000);
    expect(link.congested).toBe(true);
    expect(link.backlog).toBeGreaterThanOrEqual(limit / 2);
    expect(link.backlog).toBeLessThan(limit / 2 + 64 * 1520);
    peer.socket.resume();
    await waitFor(() => drainedAt >= 0, 10_000);
    expect(drainedAt).toBeLessThanOrEqual(limit / 4);
    expect(link.congested).toBe(false);
    await peer.waitFrames(sent, 20_000);
    expect(link.stats()).toMatchObject({ txFrames: sent, dropped: 0 });
    peer.close();
    server.close();
  });

  it('past txQueueLimit frames are dropped and counted instead of buffered', async () => {
    const limit = 512 * 1024;
    const { link, sock, peer, server } = await attachedPair('qemu', { txQueueLimit: limit });
    peer.socket.pause();
    const f = testFrame(1, 1514);
    let peak = 0;
    for (let turn = 0; turn < 400; turn++) {
      for (let i = 0; i < 64; i++) link.send(f, 0, f.length);
      link.flush();
      peak = Math.max(peak, sock.writableLength);
      await new Promise((r) => setImmediate(r));
    }
    const st = link.stats();
    expect(st.dropped).toBeGreaterThan(0);
    expect(st.txFrames + st.dropped).toBe(400 * 64);
    expect(peak).toBeLessThanOrEqual(limit);
    peer.socket.resume();
    await peer.waitFrames(st.txFrames, 20_000);
    expect(peer.frames.length).toBe(st.txFrames);
    peer.close();
    server.close();
  });
});

describe('pause / resume (reading from the VM)', () => {
  it('pause inside onFrame holds the rest of the chunk; resume delivers it in order', async () => {
    const { link, peer, server } = await attachedPair('qemu');
    const got: number[] = [];
    link.onFrame = (b, o) => {
      got.push(b[o + 17]);
      if (got.length === 3) link.pause();
    };
    const frames = Array.from({ length: 10 }, (_, i) => testFrame(i));
    peer.send(...frames); // one write, very likely one chunk
    await waitFor(() => got.length >= 3);
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toEqual([0, 1, 2]);
    peer.send(testFrame(10)); // arrives while paused: must come after 3..9
    await new Promise((r) => setTimeout(r, 30));
    expect(got.length).toBe(3);
    link.resume();
    await waitFor(() => got.length === 11);
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    peer.close();
    server.close();
  });
});

describe('listeners read into their link reader', () => {
  it('the accepted socket reads into the space its reader was given, and the server still closes', async () => {
    const server = net.createServer({ pauseOnConnect: true });
    const sockPath = path.join(dir, 'adopt.sock');
    await new Promise<void>((r) => server.listen(sockPath, () => r()));
    const reader = new StreamReader(4096 + READ_MIN);
    const mine = new HeapReadSpace(4096 + READ_MIN);
    reader.use(mine);
    const seen: Buffer[] = [];
    const bufs = new Set<ArrayBufferLike>();
    let adopted: net.Socket | undefined;
    let own = false;
    reader.consume = (b, s, e) => {
      bufs.add(b.buffer);
      seen.push(Buffer.from(b.subarray(s, e)));
      return e;
    };
    server.on('connection', (acc) => {
      adopted = adoptWithReadBuffer(acc, reader);
      own = adopted !== acc;
    });
    const c = await rawConnect({ path: sockPath });
    const payload = Buffer.alloc(20000, 7);
    c.write(payload);
    await waitFor(() => Buffer.concat(seen).length === payload.length);
    expect(own).toBe(true);
    // Every read landed in the space the reader was given.
    expect(bufs.size).toBe(1);
    expect([...bufs][0]).toBe(mine.take(new Uint8Array(0), 0, 0, 0).buffer);
    expect(Buffer.concat(seen).equals(payload)).toBe(true);
    // Writing back works on the adopted socket.
    const back = new Promise<Buffer>((r) => c.once('data', r));
    adopted!.write(Buffer.from('pong'));
    expect((await back).toString()).toBe('pong');
    // The husk settled the server's connection count: close() completes once the adopted socket is gone.
    const closed = new Promise<void>((r) => server.close(() => r()));
    c.end();
    adopted!.destroy();
    await closed;
  });

  it('a socket without a handle to re-home is used as it is', () => {
    const bare = new net.Socket();
    expect(adoptWithReadBuffer(bare, new StreamReader(16))).toBe(bare);
    bare.destroy();
  });

  it('pausing mid-read keeps the rest of the buffer until resume, while the VM keeps writing', async () => {
    const { rec, listener } = await startEcho(`unix://${path.join(dir, 'p.sock')}`, 'qemu', {}, false);
    const peer = await StreamVmPeer.connect(targetOf(listener.url), 'qemu');
    await waitFor(() => rec.links.length === 1);
    const link = rec.links[0];
    const got: Buffer[] = [];
    let pauses = 0;
    link.onFrame = (b, o, n) => {
      got.push(Buffer.from(b.subarray(o, o + n)));
      // Pause every 7th frame and resume a little later: each pause lands inside a read.
      if (got.length % 7 === 0) {
        link.pause();
        pauses++;
        setTimeout(() => link.resume(), 2);
      }
    };
    const frames = Array.from({ length: 600 }, (_, i) => testFrame(i, 60 + ((i * 97) % 1400)));
    for (let i = 0; i < frames.length; i += 50) {
      peer.send(...frames.slice(i, i + 50));
      await new Promise((r) => setTimeout(r, 1));
    }
    await waitFor(() => got.length === frames.length, 10_000);
    expect(pauses).toBeGreaterThan(50);
    expect(got).toEqual(frames);
    peer.close();
  });
});

describe('attachStream on a {readable, writable} pair (stdio style)', () => {
  it('le16 frames in and out', async () => {
    const vmToUs = new PassThrough();
    const usToVm = new PassThrough();
    const link = attachStream({ readable: vmToUs, writable: usToVm }, { framing: 'le16' });
    const got: Buffer[] = [];
    link.onFrame = (b, o, n) => got.push(Buffer.from(b.subarray(o, o + n)));
    vmToUs.write(Buffer.concat([encodeFrame('le16', testFrame(1)), encodeFrame('le16', testFrame(2)).subarray(0, 5)]));
    vmToUs.write(encodeFrame('le16', testFrame(2)).subarray(5));
    await waitFor(() => got.length === 2);
    expect(got).toEqual([testFrame(1), testFrame(2)]);
    link.send(testFrame(3), 0, 60);
    link.flush();
    const out = usToVm.read() as Buffer;
    expect(out).toEqual(encodeFrame('le16', testFrame(3)));
    let closed: unknown = 'open';
    link.onClose = (e) => (closed = e);
    vmToUs.end();
    await waitFor(() => closed !== 'open');
    expect(closed).toBeUndefined();
    expect(link.closed).toBe(true);
  });

  it("rejects framing 'dgram' on a stream", () => {
    expect(() => attachStream(new PassThrough(), { framing: 'dgram' })).toThrow(/dgram/);
  });
});

describe('close()', () => {
  it('flushes queued frames, ends the socket and calls onClose once without an error', async () => {
    const { link, peer, server } = await attachedPair('qemu');
    const closes: unknown[] = [];
    link.onClose = (e) => closes.push(e);
    link.send(testFrame(1), 0, 60);
    link.close('test');
    link.close('again');
    await peer.waitClose();
    expect(peer.frames).toEqual([testFrame(1)]);
    expect(closes).toEqual([undefined]);
    link.send(testFrame(2), 0, 60);
    expect(link.stats().dropped).toBe(1);
    server.close();
  });
});

describe('listeners', () => {
  it('unix: removes a stale socket file, refuses a live one and a regular file, chmods, close() removes the file', async () => {
    const p = path.join(dir, 'l.sock');
    // A stale socket: bound by a server whose handle went away without unlinking.
    const stale = net.createServer();
    await new Promise<void>((r) => stale.listen(p, () => r()));
    const fd = (stale as unknown as { _handle: { fd: number } })._handle.fd;
    expect(fd).toBeGreaterThan(0);
    // Simulate a crash: copy the inode away and back so the file outlives the server.
    fs.renameSync(p, p + '.keep');
    await new Promise<void>((r) => stale.close(() => r()));
    fs.renameSync(p + '.keep', p);
    expect(fs.lstatSync(p).isSocket()).toBe(true);

    const l = await listen(`unix://${p}`, { framing: 'qemu', mode: 0o600 }, () => {});
    expect(fs.statSync(p).mode & 0o777).toBe(0o600);
    await expect(listen(`unix://${p}`, { framing: 'qemu' }, () => {})).rejects.toMatchObject({ code: TransportErrorCodes.ADDRESS_IN_USE });
    const peer = await StreamVmPeer.connect({ path: p }, 'qemu');
    await l.close();
    await peer.waitClose();
    expect(fs.existsSync(p)).toBe(false);

    const file = path.join(dir, 'not-a-socket');
    fs.writeFileSync(file, 'keep me');
    await expect(listen(`unix://${file}`, { framing: 'qemu' }, () => {})).rejects.toMatchObject({ code: TransportErrorCodes.PATH_NOT_SOCKET });
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
  });

  it('tcp: loopback only unless allowNonLoopback; bad URLs and framing mismatches are refused', async () => {
    await expect(listen('tcp://0.0.0.0:0', { framing: 'qemu' }, () => {})).rejects.toMatchObject({ code: TransportErrorCodes.NON_LOOPBACK });
    await expect(listen('udp://10.1.2.3:0', { framing: 'dgram' }, () => {})).rejects.toMatchObject({ code: TransportErrorCodes.NON_LOOPBACK });
    const l = await listen('tcp://0.0.0.0:0', { framing: 'qemu', allowNonLoopback: true }, () => {});
    expect(l.url).toMatch(/^tcp:\/\/0\.0\.0\.0:\d+$/);
    await l.close();
    for (const u of ['http://127.0.0.1:1', 'tcp://127.0.0.1', 'tcp://127.0.0.1:70000', 'unix://']) {
      await expect(listen(u, { framing: 'qemu' }, () => {})).rejects.toMatchObject({ code: TransportErrorCodes.BAD_URL });
    }
    await expect(listen('udp://127.0.0.1:0', { framing: 'qemu' }, () => {})).rejects.toMatchObject({ code: 'ERR_VNETKIT_BAD_OPTION' });
    await expect(listen('tcp://127.0.0.1:0', { framing: 'dgram' }, () => {})).rejects.toMatchObject({ code: 'ERR_VNETKIT_BAD_OPTION' });
    const a = await listen('tcp://127.0.0.1:0', { framing: 'qemu' }, () => {});
    await expect(listen(a.url, { framing: 'qemu' }, () => {})).rejects.toMatchObject({ code: TransportErrorCodes.ADDRESS_IN_USE });
    await a.close();
  });

  it('link ids are unique and listener close() closes its links', async () => {
    const { rec, listener } = await startEcho('tcp://127.0.0.1:0', 'le16');
    const peers = await Promise.all([0, 1, 2].map(() => StreamVmPeer.connect(targetOf(listener.url), 'le16')));
    await waitFor(() => rec.links.length === 3);
    expect(new Set(rec.links.map((l) => l.id)).size).toBe(3);
    listeners.splice(listeners.indexOf(listener), 1);
    await listener.close();
    await Promise.all(peers.map((p) => p.waitClose()));
    expect([...rec.closes.values()]).toEqual([undefined, undefined, undefined]);
  });

  it('a raw client that connects and disconnects without sending is cleaned up', async () => {
    const { rec, listener } = await startEcho('tcp://127.0.0.1:0', 'qemu');
    const s = await rawConnect(targetOf(listener.url));
    await waitFor(() => rec.links.length === 1);
    s.end();
    await waitFor(() => rec.closes.get(rec.links[0].id) !== 'open');
    expect(rec.closes.get(rec.links[0].id)).toBeUndefined();
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('attachFd', () => {
  it('refuses a descriptor that is not a socket with ERR_VNETKIT_BAD_FD, naming it', () => {
    const f = path.join(os.tmpdir(), `vnetkit-fd-${process.pid}`);
    const fd = fs.openSync(f, 'w');
    try {
      let err: VnetkitError | undefined;
      try {
        attachFd(fd, { framing: 'qemu' });
      } catch (e) {
        err = e as VnetkitError;
      }
      expect(err?.code).toBe(TransportErrorCodes.BAD_FD);
      expect(err?.message).toContain(`file descriptor ${fd} is not an open stream socket`);
    } finally {
      fs.closeSync(fd);
      fs.rmSync(f, { force: true });
    }
  });
});
