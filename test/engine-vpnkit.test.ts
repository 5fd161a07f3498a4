/**
 * The engine behind the vpnkit protocol: a UUID keeps its MAC and IP across
 * reconnects, the DHCP server offers exactly the address the handshake gave,
 * and refusals use vpnkit's texts.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { StreamVmPeer } from './support/vm-peer.js';
import { parseIPv4 } from '../src/wire/addr.js';
import { emitEthernet, ETHERTYPE_IPV4 } from '../src/wire/ethernet.js';
import { emitIpv4 } from '../src/wire/ipv4.js';
import { emitUdp } from '../src/wire/udp.js';

const UUID = 'c0ffee00-1234-4abc-8def-0123456789ab';

function discover(mac: Uint8Array): Uint8Array {
  const m = new Uint8Array(300);
  m[0] = 1; m[1] = 1; m[2] = 6;
  m.set(mac, 28);
  m.set([0x63, 0x82, 0x53, 0x63, 53, 1, 1, 255], 236);
  const f = new Uint8Array(42 + m.length);
  let o = emitEthernet({ dst: new Uint8Array(6).fill(0xff), src: mac, ethertype: ETHERTYPE_IPV4 }, f, 0);
  o += emitIpv4({ src: 0, dst: 0xffffffff, protocol: 17, payloadLen: 8 + m.length, ttl: 64 }, f, o);
  emitUdp({ srcPort: 68, dstPort: 67, payload: m }, f, o, 0, 0xffffffff);
  return f;
}

async function offeredIp(peer: StreamVmPeer, mac: Uint8Array): Promise<string> {
  peer.send(discover(mac));
  const [f] = await peer.waitFrames(1);
  return [...f.subarray(42 + 16, 42 + 20)].join('.');
}

describe('engine with vpnkit clients', () => {
  let engine: Engine;
  const peers: StreamVmPeer[] = [];
  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    await engine.close();
  });

  async function start(): Promise<string> {
    const path = join(mkdtempSync(join(tmpdir(), 'vnk-')), 'vpnkit.sock');
    engine = createEngine({ dns: { upstreams: [{ host: '127.0.0.1', port: 9 }], hostsFile: null } });
    await engine.listen(`unix://${path}`, { framing: 'vpnkit' });
    return path;
  }

  it('gives a UUID its preferred IP, offers it over DHCP, and the same MAC and IP after a reconnect', async () => {
    const path = await start();
    const a = await StreamVmPeer.connect({ path }, 'vpnkit', { uuid: UUID, command: 'preferred-ipv4', preferredIp: parseIPv4('192.168.65.9') });
    peers.push(a);
    expect(a.response).toMatchObject({ kind: 'vif', mtu: 1500 });
    const mac = (a.response as { mac: Uint8Array }).mac;
    expect([...mac]).toEqual([0x02, 0x50, 0, 0, 0, 1]);
    expect(await offeredIp(a, mac)).toBe('192.168.65.9');
    a.close();
    await a.waitClose();
    const b = await StreamVmPeer.connect({ path }, 'vpnkit', { uuid: UUID, command: 'ethernet' });
    peers.push(b);
    expect([...(b.response as { mac: Uint8Array }).mac]).toEqual([...mac]);
    expect(await offeredIp(b, mac)).toBe('192.168.65.9');
  });

  it('refuses a preferred IP that is out of range or already taken, with vpnkit\'s reasons', async () => {
    const path = await start();
    const a = await StreamVmPeer.connect({ path }, 'vpnkit', { uuid: UUID, command: 'preferred-ipv4', preferredIp: parseIPv4('192.168.65.9') });
    peers.push(a);
    const other = 'c0ffee00-1234-4abc-8def-0123456789ac';
    const taken = await StreamVmPeer.connect({ path }, 'vpnkit', { uuid: other, command: 'preferred-ipv4', preferredIp: parseIPv4('192.168.65.9') });
    peers.push(taken);
    expect(taken.response).toMatchObject({ kind: 'disconnect', reason: 'Preferred IP address 192.168.65.9 already used.' });
    const out = await StreamVmPeer.connect({ path }, 'vpnkit', { uuid: other, command: 'preferred-ipv4', preferredIp: parseIPv4('10.0.0.1') });
    peers.push(out);
    expect(out.response).toMatchObject({ kind: 'disconnect', reason: 'Preferred IP address out of range.' });
    const fine = await StreamVmPeer.connect({ path }, 'vpnkit', { uuid: other, command: 'ethernet' });
    peers.push(fine);
    expect(await offeredIp(fine, (fine.response as { mac: Uint8Array }).mac)).toBe('192.168.65.3');
  });
});
