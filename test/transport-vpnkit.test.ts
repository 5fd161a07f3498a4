import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VnetkitError } from '../src/errors.js';
import { listen, type Listener, type VmLink, type VpnkitNegotiator, type VpnkitRequest } from '../src/transport/index.js';
import { TransportErrorCodes } from '../src/transport/errors.js';
import {
  createSimpleNegotiator,
  encodeCommand,
  encodeDisconnect,
  encodeInit,
  encodeVif,
  parseCommand,
  parseInit,
  parseResponse,
  VpnkitReasons,
} from '../src/transport/vpnkit.js';
import { ExactReader, StreamVmPeer, rawConnect, testFrame } from './support/vm-peer.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const UUID = 'c0ffee00-1234-4abc-8def-0123456789ab';

describe('vpnkit codec (vpnkit.md §1.8 worked example)', () => {
  it('our Init is VMN3T, version 22, "0123456789"×4', () => {
    expect(encodeInit()).toEqual(Buffer.concat([hex('564d4e3354 16000000'), Buffer.from('0123456789'.repeat(4))]));
    expect(parseInit(hex('564d4e3354 16000000' + '00'.repeat(40)))).toEqual({ magicOk: true, version: 22 });
    expect(parseInit(hex('564d4e4554 01000000' + '00'.repeat(40)))).toEqual({ magicOk: false, version: 1 });
  });

  it('Ethernet command bytes parse to the UUID', () => {
    const cmd = hex('01 63 30 66 66 65 65 30 30 2d 31 32 33 34 2d 34 61 62 63 2d 38 64 65 66 2d 30 31 32 33 34 35 36 37 38 39 61 62 00 00 00 00');
    expect(cmd.length).toBe(41);
    expect(encodeCommand('ethernet', UUID)).toEqual(cmd);
    expect(parseCommand(cmd)).toEqual({ ok: true, command: 'ethernet', uuid: UUID, generated: false });
  });

  it('Preferred_ipv4 carries the IP as u32 LE of the host-order integer (192.168.65.3 = 03 41 a8 c0)', () => {
    const cmd = encodeCommand('preferred-ipv4', UUID, 0xc0a84103);
    expect(cmd[0]).toBe(8);
    expect([...cmd.subarray(37)]).toEqual([0x03, 0x41, 0xa8, 0xc0]);
    expect(parseCommand(cmd)).toEqual({ ok: true, command: 'preferred-ipv4', uuid: UUID, generated: false, preferredIp: 0xc0a84103 });
  });

  it('Vif for mtu 1500 and 02:50:00:00:00:01 is exactly 01 dc 05 0e 06 02 50 00 00 00 01 + 247 zeros', () => {
    const vif = encodeVif(1500, new Uint8Array([2, 0x50, 0, 0, 0, 1]));
    expect(vif).toEqual(Buffer.concat([hex('01 dc05 0e06 025000000001'), Buffer.alloc(247)]));
    expect(parseResponse(vif)).toEqual({ kind: 'vif', mtu: 1500, maxPacketSize: 1550, mac: new Uint8Array([2, 0x50, 0, 0, 0, 1]) });
  });

  it('Disconnect is 02, length, reason, zero padded to 258', () => {
    const d = encodeDisconnect(VpnkitReasons.OUT_OF_RANGE);
    expect(d.length).toBe(258);
    expect(d.subarray(0, 2)).toEqual(hex('02 22'));
    expect(d.subarray(2, 2 + 0x22).toString()).toBe('Preferred IP address out of range.');
    expect(d.subarray(2 + 0x22).every((b) => b === 0)).toBe(true);
    expect(encodeDisconnect('x'.repeat(400))[1]).toBe(255);
  });

  it('rejects bad UUIDs and unknown commands with vpnkit texts; 36 NULs generates a v4 UUID', () => {
    const bad = encodeCommand('ethernet', 'not-a-uuid-at-all-xxxxxxxxxxxxxxxxxx');
    expect(parseCommand(bad)).toMatchObject({ ok: false, error: expect.stringMatching(/^Invalid UUID: /) });
    const unknown = Buffer.alloc(41);
    unknown[0] = 7;
    expect(parseCommand(unknown)).toEqual({ ok: false, error: 'Unknown command: 7' });
    expect(parseCommand(encodeCommand('bind-ipv4', UUID))).toEqual({ ok: true, command: 'bind-ipv4' });
    const gen = parseCommand(encodeCommand('ethernet', null));
    expect(gen).toMatchObject({ ok: true, generated: true });
    if (gen.ok && gen.command !== 'bind-ipv4') expect(gen.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('createSimpleNegotiator (vpnkit allocation semantics)', () => {
  const range = { lowestIp: 0xc0a84103, highestIp: 0xc0a84105 };
  it('assigns 02:50:00:00:00:NN and the first free IP; a known UUID gets the same answer', () => {
    const n = createSimpleNegotiator(range);
    const a = n.negotiate({ uuid: 'a', command: 'ethernet' });
    const b = n.negotiate({ uuid: 'b', command: 'ethernet' });
    expect(a).toEqual({ mac: new Uint8Array([2, 0x50, 0, 0, 0, 1]), mtu: 1500, ip: 0xc0a84103 });
    expect(b).toEqual({ mac: new Uint8Array([2, 0x50, 0, 0, 0, 2]), mtu: 1500, ip: 0xc0a84104 });
    expect(n.negotiate({ uuid: 'a', command: 'ethernet' })).toEqual(a);
  });
  it('gives the exact vpnkit reasons', () => {
    const n = createSimpleNegotiator(range);
    expect(n.negotiate({ uuid: 'a', command: 'preferred-ipv4', preferredIp: 0xc0a84109 })).toEqual({ reason: 'Preferred IP address out of range.' });
    n.negotiate({ uuid: 'a', command: 'preferred-ipv4', preferredIp: 0xc0a84104 });
    expect(n.negotiate({ uuid: 'b', command: 'preferred-ipv4', preferredIp: 0xc0a84104 })).toEqual({ reason: 'Preferred IP address 192.168.65.4 already used.' });
    expect(n.negotiate({ uuid: 'a', command: 'preferred-ipv4', preferredIp: 0xc0a84105 })).toEqual({
      reason: 'UUID already assigned to a different IP than the IP requested by the client',
    });
    n.negotiate({ uuid: 'c', command: 'ethernet' });
    n.negotiate({ uuid: 'd', command: 'ethernet' });
    expect(n.negotiate({ uuid: 'e', command: 'ethernet' })).toEqual({ reason: 'No IP addresses available.' });
  });
});

describe('vpnkit handshake over a unix socket', () => {
  let dir: string;
  let listener: Listener | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-vpnkit-'));
  });
  afterEach(async () => {
    await listener?.close();
    listener = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  interface Rec {
    links: VmLink[];
    requests: VpnkitRequest[];
    closes: Array<VnetkitError | undefined>;
  }
  async function start(negotiate?: VpnkitNegotiator['negotiate'], extra: { handshakeTimeoutMs?: number } = {}) {
    const rec: Rec = { links: [], requests: [], closes: [] };
    const base = createSimpleNegotiator({ mtu: 1500 });
    const negotiator: VpnkitNegotiator = {
      negotiate(req) {
        rec.requests.push(req);
        return (negotiate ?? base.negotiate)(req);
      },
    };
    const sock = path.join(dir, 'vpnkit.sock');
    listener = await listen(`unix://${sock}`, { framing: 'vpnkit', vpnkit: negotiator, ...extra }, (link) => {
      rec.links.push(link);
      link.onClose = (e) => rec.closes.push(e);
    });
    return { rec, target: { path: sock } };
  }

  it('good Ethernet command: our Init, then the exact Vif bytes, then le16 frames both ways', async () => {
    const { rec, target } = await start();
    const s = await rawConnect(target);
    const r = new ExactReader(s);
    s.write(Buffer.concat([hex('564d4e3354 16000000'), Buffer.alloc(40)]));
    expect(await r.read(49)).toEqual(encodeInit());
    s.write(encodeCommand('ethernet', UUID));
    expect(await r.read(258)).toEqual(Buffer.concat([hex('01 dc05 0e06 025000000001'), Buffer.alloc(247)]));
    await waitFor(() => rec.links.length === 1);
    const link = rec.links[0];
    expect(link.vpnkit).toEqual({ uuid: UUID, mac: new Uint8Array([2, 0x50, 0, 0, 0, 1]) });
    expect(link.maxFrameOut).toBe(1514);
    expect(rec.requests).toEqual([{ uuid: UUID, command: 'ethernet', preferredIp: undefined, generated: false }]);

    const got: Buffer[] = [];
    link.onFrame = (b, o, l) => got.push(Buffer.from(b.subarray(o, o + l)));
    // The §1.8 ARP who-has, framed with a LE16 length 0x2a.
    const arp = hex('2a00 ffffffffffff 025000000001 0806 0001 0800 06 04 0001 025000000001 c0a84103 000000000000 c0a84101');
    s.write(arp);
    await waitFor(() => got.length === 1);
    expect(got[0]).toEqual(arp.subarray(2));

    link.send(testFrame(1), 0, 60);
    link.flush();
    const echoed = await r.read(62);
    expect(echoed.readUInt16LE(0)).toBe(60);
    expect(echoed.subarray(2)).toEqual(testFrame(1));
    // Frames above the negotiated MTU + 14 are dropped, like vpnkit.
    link.send(new Uint8Array(1515), 0, 1515);
    expect(link.stats().dropped).toBe(1);
    s.destroy();
    await waitFor(() => rec.closes.length === 1);
    expect(rec.closes[0]).toBeUndefined();
  });

  it('wrong version: replies with our Init and closes without anything else', async () => {
    const { rec, target } = await start();
    const s = await rawConnect(target);
    const r = new ExactReader(s);
    s.write(Buffer.concat([hex('564d4e3354 15000000'), Buffer.alloc(40)]));
    const all = await r.readToEnd();
    expect(all).toEqual(encodeInit());
    expect(rec.links).toEqual([]);
    expect(rec.requests).toEqual([]);
  });

  it('unparseable UUID: closes with no reply after our Init', async () => {
    const { rec, target } = await start();
    const s = await rawConnect(target);
    const r = new ExactReader(s);
    s.write(encodeInit(22, '\0'.repeat(40)));
    s.write(encodeCommand('ethernet', 'zzzzzzzz-1234-4abc-8def-0123456789ab'));
    expect(await r.readToEnd()).toEqual(encodeInit());
    expect(rec.requests).toEqual([]);
    expect(rec.links).toEqual([]);
  });

  it('unknown command and Bind_ipv4: close with no reply', async () => {
    const { rec, target } = await start();
    for (const cmd of [Buffer.concat([Buffer.from([9]), Buffer.alloc(40)]), encodeCommand('bind-ipv4', UUID)]) {
      const s = await rawConnect(target);
      const r = new ExactReader(s);
      s.write(Buffer.concat([encodeInit(22, '\0'.repeat(40)), cmd]));
      expect(await r.readToEnd()).toEqual(encodeInit());
    }
    expect(rec.requests).toEqual([]);
  });

  it('Preferred_ipv4 refused: Disconnect with the reason text, then close', async () => {
    const n = createSimpleNegotiator({ lowestIp: 0xc0a84103, highestIp: 0xc0a84110 });
    const { rec, target } = await start(n.negotiate);
    const peer = await StreamVmPeer.connect(target, 'vpnkit', { command: 'preferred-ipv4', preferredIp: 0xc0a84102 });
    expect(peer.response).toEqual({ kind: 'disconnect', reason: 'Preferred IP address out of range.' });
    await peer.waitClose();
    expect(rec.requests).toEqual([{ uuid: UUID, command: 'preferred-ipv4', preferredIp: 0xc0a84102, generated: false }]);
    expect(rec.links).toEqual([]);
    // An accepted preferred IP reaches the link.
    const ok = await StreamVmPeer.connect(target, 'vpnkit', { command: 'preferred-ipv4', preferredIp: 0xc0a84105 });
    expect(ok.response).toMatchObject({ kind: 'vif', mtu: 1500, maxPacketSize: 1550 });
    await waitFor(() => rec.links.length === 1);
    expect(rec.links[0].vpnkit?.ip).toBe(0xc0a84105);
    ok.close();
  });

  it('zero UUID: a generated v4 UUID is passed to negotiate and stored on the link', async () => {
    const { rec, target } = await start();
    const peer = await StreamVmPeer.connect(target, 'vpnkit', { uuid: null });
    expect(peer.response?.kind).toBe('vif');
    await waitFor(() => rec.links.length === 1);
    expect(rec.requests.length).toBe(1);
    expect(rec.requests[0].generated).toBe(true);
    expect(rec.requests[0].uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(rec.links[0].vpnkit?.uuid).toBe(rec.requests[0].uuid);
    peer.close();
  });

  it('handshake byte by byte (every chunk boundary) still completes', async () => {
    const { rec, target } = await start();
    const s = await rawConnect(target);
    s.setNoDelay(true);
    const r = new ExactReader(s);
    const bytes = Buffer.concat([encodeInit(22, '\0'.repeat(40)), encodeCommand('ethernet', UUID)]);
    for (let i = 0; i < bytes.length; i++) {
      s.write(bytes.subarray(i, i + 1));
      if (i % 7 === 0) await new Promise((res) => setImmediate(res));
    }
    await r.read(49);
    expect(parseResponse(await r.read(258)).kind).toBe('vif');
    await waitFor(() => rec.links.length === 1);
    s.destroy();
  });

  it('a handshake that stalls is closed after handshakeTimeoutMs', async () => {
    const { rec, target } = await start(undefined, { handshakeTimeoutMs: 150 });
    const s = await rawConnect(target);
    const r = new ExactReader(s);
    s.write(encodeInit(22, '\0'.repeat(40)));
    const t0 = Date.now();
    expect(await r.readToEnd(3000)).toEqual(encodeInit());
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    expect(rec.links).toEqual([]);
  });

  it('frames queued before the handshake completes go out after the Vif (attachStream)', async () => {
    const { attachStream } = await import('../src/transport/index.js');
    const net = await import('node:net');
    const sockPath = path.join(dir, 'attach.sock');
    let link: ReturnType<typeof attachStream> | undefined;
    const readyUuids: Array<string | undefined> = [];
    let readyAtAttach: boolean | undefined;
    const server = net.createServer((c) => {
      link = attachStream(c, { framing: 'vpnkit', vpnkit: createSimpleNegotiator() });
      readyAtAttach = link.ready;
      link.whenReady((l) => readyUuids.push(l.vpnkit?.uuid));
      link.send(testFrame(5), 0, 60);
      link.flush();
    });
    await new Promise<void>((res) => server.listen(sockPath, () => res()));
    try {
      const peer = await StreamVmPeer.connect({ path: sockPath }, 'vpnkit');
      expect(peer.response?.kind).toBe('vif');
      const frames = await peer.waitFrames(1);
      expect(frames[0]).toEqual(testFrame(5));
      expect(link!.vpnkit?.uuid).toBe(UUID);
      expect(readyAtAttach).toBe(false);
      expect(readyUuids).toEqual([UUID]);
      expect(link!.ready).toBe(true);
      peer.close();
    } finally {
      server.close();
    }
  });

  it('closing onClose carries HANDSHAKE codes for links that die in the handshake (attachStream)', async () => {
    const { attachStream } = await import('../src/transport/index.js');
    const net = await import('node:net');
    const sockPath = path.join(dir, 'attach2.sock');
    const errs: Array<VnetkitError | undefined> = [];
    const failCodes: string[] = [];
    const server = net.createServer((c) => {
      const l = attachStream(c, { framing: 'vpnkit' });
      l.onClose = (e) => errs.push(e);
      l.whenReady(
        () => failCodes.push('ready?!'),
        (e) => failCodes.push(e.code),
      );
    });
    await new Promise<void>((res) => server.listen(sockPath, () => res()));
    try {
      const a = await rawConnect({ path: sockPath });
      a.write(encodeInit(3, '\0'.repeat(40)));
      const b = await rawConnect({ path: sockPath });
      b.write(Buffer.concat([encodeInit(22, '\0'.repeat(40)), encodeCommand('ethernet', 'bad')]));
      const c = await rawConnect({ path: sockPath });
      c.write(encodeInit(22, '\0'.repeat(40)).subarray(0, 10));
      await waitFor(() => errs.length >= 2);
      c.destroy();
      await waitFor(() => errs.length === 3);
      expect(errs.map((e) => e?.code).sort()).toEqual(
        [TransportErrorCodes.HANDSHAKE_VERSION, TransportErrorCodes.HANDSHAKE, TransportErrorCodes.HANDSHAKE_EOF].sort(),
      );
      expect(failCodes.sort()).toEqual(errs.map((e) => e?.code).sort());
    } finally {
      server.close();
    }
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
