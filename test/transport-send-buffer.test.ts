import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { attachFd, listen, setSendBuffer, type Listener, type VmLink } from '../src/transport/index.js';
import { sendBufferHandleCount } from '../src/transport/send-buffer.js';
import { testFrame } from './support/vm-peer.js';

// The kernel's own limits decide what a request turns into: read them rather than assume a machine.
const procBytes = (name: string): number => Number(fs.readFileSync(`/proc/sys/net/core/${name}`, 'utf8').trim());
const wmemMax = procBytes('wmem_max');
const wmemDefault = procBytes('wmem_default');
const granted = (asked: number): number => 2 * Math.min(asked, wmemMax);

let dir: string;
const listeners: Listener[] = [];
const sockets: net.Socket[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-sb-'));
});
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const l of listeners.splice(0)) await l.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A listener and one VM that connects and never reads. */
async function linkWithIdleVm(url: string, extra: Record<string, unknown>): Promise<VmLink> {
  let got!: (l: VmLink) => void;
  const p = new Promise<VmLink>((r) => (got = r));
  const l = await listen(url, { framing: 'qemu', mtu: 1500, txQueueLimit: 16 * 1024 * 1024, ...extra }, (link) => {
    link.onFrame = () => {};
    link.onClose = () => {};
    got(link);
  });
  listeners.push(l);
  const vm = url.startsWith('unix://') ? net.connect(url.slice('unix://'.length)) : net.connect(Number(l.url.split(':').pop()), '127.0.0.1');
  vm.pause();
  sockets.push(vm);
  return p;
}

/** Bytes the kernel took off the link's hands for a VM that reads nothing: sent minus what Node still holds. */
async function kernelHeld(link: VmLink, total: number): Promise<number> {
  const f = testFrame(1, 1514);
  let sent = 0;
  while (sent < total) {
    for (let i = 0; i < 64; i++, sent += f.length + 4) link.send(f, 0, f.length);
    link.flush();
    await new Promise((r) => setImmediate(r));
  }
  // Let libuv retry until the kernel says EAGAIN for good.
  await new Promise((r) => setTimeout(r, 50));
  expect(link.stats().dropped).toBe(0);
  return sent - link.backlog;
}

describe('VM link send buffer', () => {
  // First in the file: a descriptor number that has been through setSendBuffer keeps its handle and is not checked again.
  it('refuses a descriptor the loop already watches, and the socket keeps working', async () => {
    const p = path.join(dir, 'e.sock');
    const server = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => server.listen(p, () => r()));
    try {
      const c = net.connect(p);
      sockets.push(c);
      await new Promise<void>((r) => c.once('connect', () => r()));
      const r = setSendBuffer((c as unknown as { _handle: { fd: number } })._handle.fd, 1024 * 1024);
      expect(r.ok).toBe(false);
      expect(!r.ok && r.reason).toMatch(/uv_udp_open failed/);
      const echoed = new Promise<string>((res) => c.once('data', (d) => res(String(d))));
      c.write('still here');
      expect(await echoed).toBe('still here');
    } finally {
      server.close();
    }
  });

  it('a Unix socket accepted by listen() gets the buffer it asked for, as the kernel grants it, and the kernel then holds that much', async () => {
    const link = await linkWithIdleVm(`unix://${path.join(dir, 'a.sock')}`, { sendBufferBytes: 1024 * 1024 });
    expect(link.sendBuffer).toBe(granted(1024 * 1024));
    const held = await kernelHeld(link, 6 * 1024 * 1024);
    expect(held).toBeGreaterThanOrEqual(link.sendBuffer! / 2);
    expect(held).toBeLessThanOrEqual(link.sendBuffer!);
  });

  it('sendBufferBytes 0 keeps the system default, and the kernel holds only about that much', async () => {
    const link = await linkWithIdleVm(`unix://${path.join(dir, 'b.sock')}`, { sendBufferBytes: 0 });
    expect(link.sendBuffer).toBeUndefined();
    const held = await kernelHeld(link, 4 * 1024 * 1024);
    expect(held).toBeLessThanOrEqual(wmemDefault);
    expect(held).toBeGreaterThan(wmemDefault / 4);
  });

  it('is raised by default (1 MiB asked) and left alone on TCP links, whose buffer grows by itself', async () => {
    const unix = await linkWithIdleVm(`unix://${path.join(dir, 'c.sock')}`, {});
    expect(unix.sendBuffer).toBe(granted(1024 * 1024));
    const tcp = await linkWithIdleVm('tcp://127.0.0.1:0', {});
    expect(tcp.sendBuffer).toBeUndefined();
  });

  it('attachFd raises an inherited socket\'s buffer before reading it, and keeps a bigger one a launcher set', async () => {
    // A connected socket nobody watches yet, as a launcher would pass it: taken from a paused accept.
    const p = path.join(dir, 'd.sock');
    const fds: number[] = [];
    let accepted!: () => void;
    const two = new Promise<void>((r) => (accepted = r));
    const server = net.createServer({ pauseOnConnect: true }, (s) => {
      const h = (s as unknown as { _handle: { fd: number } | null })._handle!;
      fds.push(h.fd);
      // Orphan the handle (never closed) so destroying the husk leaves the descriptor open for attachFd.
      (s as unknown as { _handle: unknown })._handle = null;
      s.destroy();
      if (fds.length === 2) accepted();
    });
    await new Promise<void>((r) => server.listen(p, () => r()));
    try {
      for (let i = 0; i < 2; i++) {
        const c = net.connect(p);
        c.pause();
        sockets.push(c);
      }
      await two;
      const launcher = setSendBuffer(fds[0], 2 * 1024 * 1024);
      expect(launcher).toEqual({ ok: true, bytes: granted(2 * 1024 * 1024) });
      const kept = attachFd(fds[0], { framing: 'qemu', sendBufferBytes: 65536 });
      expect(kept.sendBuffer).toBe(granted(2 * 1024 * 1024));
      const raised = attachFd(fds[1], { framing: 'qemu' });
      expect(raised.sendBuffer).toBe(granted(1024 * 1024));
      kept.close();
      raised.close();
    } finally {
      server.close();
    }
  });

  it('keeps one handle per descriptor number, however many links come and go', async () => {
    const before = sendBufferHandleCount();
    for (let i = 0; i < 40; i++) {
      const link = await linkWithIdleVm(`unix://${path.join(dir, `g${i}.sock`)}`, {});
      expect(link.sendBuffer).toBe(granted(1024 * 1024));
      for (const s of sockets.splice(0)) s.destroy();
      for (const l of listeners.splice(0)) await l.close();
    }
    // Closed links free their numbers and the next link gets one of them again.
    expect(sendBufferHandleCount() - before).toBeLessThanOrEqual(4);
  });

  it('leaves a TCP socket alone, so the kernel keeps growing its buffer by itself', async () => {
    let got!: (fd: number) => void;
    const fdP = new Promise<number>((r) => (got = r));
    const server = net.createServer({ pauseOnConnect: true }, (s) => {
      sockets.push(s);
      got((s as unknown as { _handle: { fd: number } })._handle.fd);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      sockets.push(net.connect((server.address() as net.AddressInfo).port, '127.0.0.1'));
      const r = setSendBuffer(await fdP, 1024 * 1024);
      expect(r).toEqual({ ok: false, reason: 'not a Unix socket (IPv4)' });
    } finally {
      server.close();
    }
  });

  it('rejects a size outside 0 or 65536..268435456 with ERR_VNETKIT_BAD_OPTION', async () => {
    await expect(listen(`unix://${path.join(dir, 'f.sock')}`, { framing: 'qemu', sendBufferBytes: 1000 }, () => {})).rejects.toMatchObject({
      code: 'ERR_VNETKIT_BAD_OPTION',
      message: expect.stringContaining('sendBufferBytes'),
    });
    expect(() => attachFd(0, { framing: 'qemu', sendBufferBytes: 1.5e9 })).toThrow(/sendBufferBytes/);
    expect(fs.existsSync(path.join(dir, 'f.sock'))).toBe(false);
  });
});
