import { afterEach, describe, expect, it } from 'vitest';
import type { VnetkitError } from '../src/errors.js';
import { listen, type Listener, type VmLink } from '../src/transport/index.js';
import { listenDgram } from '../src/transport/dgram.js';
import { UdpVmPeer, targetOf, testFrame } from './support/vm-peer.js';

const listeners: Listener[] = [];
const peers: UdpVmPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  for (const l of listeners.splice(0)) await l.close();
});

async function start(extra: Record<string, unknown> = {}) {
  const links: VmLink[] = [];
  const frames = new Map<number, Buffer[]>();
  const closes = new Map<number, VnetkitError | undefined | 'open'>();
  const l = await listen('udp://127.0.0.1:0', { framing: 'dgram', ...extra }, (link) => {
    links.push(link);
    frames.set(link.id, []);
    closes.set(link.id, 'open');
    link.onFrame = (b, o, n) => {
      frames.get(link.id)!.push(Buffer.from(b.subarray(o, o + n)));
      link.send(b, o, n);
    };
    link.onClose = (e) => closes.set(link.id, e);
  });
  listeners.push(l);
  const t = targetOf(l.url) as { host: string; port: number };
  return { links, frames, closes, listener: l, target: t };
}

async function peer(target: { host: string; port: number }) {
  const p = await UdpVmPeer.open(target);
  peers.push(p);
  return p;
}

describe('dgram framing over UDP loopback', () => {
  it('one frame per datagram both ways; replies go to the address learned from the first datagram', async () => {
    const { links, frames, target, listener } = await start({ mtu: 9000 });
    expect(listener.url).toMatch(/^udp:\/\/127\.0\.0\.1:\d+$/);
    const p = await peer(target);
    const sent = [testFrame(1, 42), testFrame(2, 1514), testFrame(3, 9014)];
    for (const f of sent) await p.send(f);
    expect(await p.waitFrames(3)).toEqual(sent);
    expect(links.length).toBe(1);
    expect(links[0].peer).toBe(`127.0.0.1:${p.port}`);
    expect(links[0].framing).toBe('dgram');
    expect(links[0].congested).toBe(false);
    expect(frames.get(links[0].id)).toEqual(sent);
    expect(links[0].stats()).toMatchObject({ rxFrames: 3, txFrames: 3, rxBytes: 42 + 1514 + 9014, dropped: 0 });
  });

  it('each remote address:port is its own link', async () => {
    const { links, target } = await start();
    const a = await peer(target);
    const b = await peer(target);
    await a.send(testFrame(1));
    await b.send(testFrame(2));
    await a.send(testFrame(3));
    expect(await a.waitFrames(2)).toEqual([testFrame(1), testFrame(3)]);
    expect(await b.waitFrames(1)).toEqual([testFrame(2)]);
    expect(links.length).toBe(2);
    expect(links[0].id).not.toBe(links[1].id);
  });

  it('many frames sent in one turn all arrive as separate datagrams', async () => {
    const { links, target } = await start();
    const p = await peer(target);
    await p.send(testFrame(0));
    await p.waitFrames(1);
    const link = links[0];
    for (let i = 1; i <= 100; i++) link.send(testFrame(i, 100), 0, 100);
    link.flush();
    const got = await p.waitFrames(101);
    expect(got.slice(1).map((f) => f[17])).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  it('oversize and empty datagrams are dropped and counted, the link stays up; oversize sends are dropped', async () => {
    const { links, closes, frames, target } = await start({ maxFrame: 1514 });
    const p = await peer(target);
    await p.send(testFrame(1));
    await p.waitFrames(1);
    await p.send(Buffer.alloc(1515));
    await p.send(Buffer.alloc(0));
    await p.send(testFrame(2));
    await p.waitFrames(2);
    const link = links[0];
    expect(frames.get(link.id)).toEqual([testFrame(1), testFrame(2)]);
    expect(link.stats().dropped).toBe(2);
    expect(closes.get(link.id)).toBe('open');
    link.send(Buffer.alloc(1515), 0, 1515);
    expect(link.stats().dropped).toBe(3);
  });

  it('datagrams arriving while paused are dropped and counted', async () => {
    const { links, frames, target } = await start();
    const p = await peer(target);
    await p.send(testFrame(1));
    await p.waitFrames(1);
    links[0].pause();
    await p.send(testFrame(2));
    await new Promise((r) => setTimeout(r, 50));
    links[0].resume();
    await p.send(testFrame(3));
    await p.waitFrames(2);
    expect(frames.get(links[0].id)).toEqual([testFrame(1), testFrame(3)]);
    expect(links[0].stats().dropped).toBe(1);
  });

  it('idle links are closed after idleTimeoutMs; a new datagram makes a new link', async () => {
    const { links, closes, target } = await start({ idleTimeoutMs: 100 });
    const p = await peer(target);
    await p.send(testFrame(1));
    await p.waitFrames(1);
    await waitFor(() => closes.get(links[0].id) !== 'open', 3000);
    expect(closes.get(links[0].id)).toBeUndefined();
    expect(links[0].closed).toBe(true);
    await p.send(testFrame(2));
    await p.waitFrames(2);
    expect(links.length).toBe(2);
  });

  it('maxLinks bounds the number of peers', async () => {
    const { links, target } = await start({ maxLinks: 1 });
    const a = await peer(target);
    const b = await peer(target);
    await a.send(testFrame(1));
    await a.waitFrames(1);
    await b.send(testFrame(2));
    await new Promise((r) => setTimeout(r, 50));
    expect(links.length).toBe(1);
    expect(b.frames.length).toBe(0);
  });

  it('datagrams from a source isOwnSocket claims never become links, are counted, and do not use up maxLinks', async () => {
    const own = await UdpVmPeer.open({ host: '127.0.0.1', port: 0 });
    peers.push(own);
    const asked: string[] = [];
    const links: VmLink[] = [];
    const h = await listenDgram('127.0.0.1', 0, {
      framing: 'dgram', maxLinks: 1,
      isOwnSocket: (address, port) => {
        asked.push(`${address}:${port}`);
        return port === own.port;
      },
    }, (link) => links.push(link));
    try {
      const target = { host: '127.0.0.1', port: h.port };
      // The "own" socket is the one whose port the predicate names: send from it.
      for (let i = 0; i < 5; i++) await new Promise<void>((r) => own.socket.send(testFrame(i), h.port, '127.0.0.1', () => r()));
      const vm = await peer(target);
      await vm.send(testFrame(9));
      await waitFor(() => links.length === 1);
      expect(links[0].peer).toBe(`127.0.0.1:${vm.port}`);
      expect(h.ownSocketDrops).toBe(5);
      expect(h.maxLinkDrops).toBe(0);
      expect(asked).toContain(`127.0.0.1:${own.port}`);
    } finally {
      await h.close();
    }
  });

  it('listener close() closes every link', async () => {
    const { links, closes, target, listener } = await start();
    const p = await peer(target);
    await p.send(testFrame(1));
    await p.waitFrames(1);
    listeners.splice(listeners.indexOf(listener), 1);
    await listener.close();
    expect(closes.get(links[0].id)).toBeUndefined();
    expect(links[0].closed).toBe(true);
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
