/**
 * A udp:// VM listener on loopback is reachable from guests through the host
 * alias: datagrams from the engine's own UDP NAT sockets are a guest talking,
 * never a new VM.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { GuestClient } from './support/guest-client.js';
import { UdpVmPeer, targetOf, testFrame } from './support/vm-peer.js';
import { parseIPv4 } from '../src/wire/addr.js';

const HOST = parseIPv4('192.168.65.2');
const GW_MAC = new Uint8Array([0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6]);
const macA = new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const ipA = parseIPv4('192.168.65.3');

describe('dgram VM listener and the engine\'s own NAT sockets', () => {
  let engine: Engine | undefined;
  let guest: GuestClient | undefined;
  let peer: UdpVmPeer | undefined;
  afterEach(async () => {
    guest?.close();
    await peer?.close();
    await engine?.close();
    engine = guest = peer = undefined;
  });

  // With 4 bindings per VM the guest's sockets are closed as fast as it opens them: their datagrams may land after.
  it.each([1024, 4])('70 guest UDP sockets sending to udp://127.0.0.1:P through the host alias make no VM link; a real dgram VM still attaches (%i bindings per VM)', async (perVm) => {
    const sock = join(mkdtempSync(join(tmpdir(), 'vnk-')), 'e.sock');
    engine = createEngine({ limits: { udpBindingsPerVm: perVm }, dns: { upstreams: [{ host: '127.0.0.1', port: 9 }], hostsFile: null } });
    await engine.listen(`unix://${sock}`, { framing: 'qemu' });
    // allowGuestReachable: this is the guest-reachable set-up the own-socket check must still hold in.
    const l = await engine.listen('udp://127.0.0.1:0', { framing: 'dgram', allowGuestReachable: true });
    const target = targetOf(l.url) as { host: string; port: number };
    guest = await GuestClient.connect(sock, macA);
    const sockets = 70;
    const dropped = () => engine!.stats().drops['dgram-from-own-nat-socket'] ?? 0;
    // Each datagram reaches the listener (dropped there, or a new link) before the guest's next
    // socket: with 4 bindings per VM that one replaces it, and a datagram still waiting for its
    // socket to connect would go with it.
    const arrived = () => dropped() + engine!.stats().vms - 1;
    for (let i = 0; i < sockets; i++) {
      guest.send(guest.udpFrame(GW_MAC, ipA, 40000 + i, HOST, target.port, testFrame(i)));
      for (let t = 0; t < 200 && arrived() <= i; t++) await new Promise((r) => setTimeout(r, 2));
    }
    // Let any stray datagram land before counting VMs.
    await new Promise((r) => setTimeout(r, 50));
    expect(engine.stats().vms).toBe(1);
    expect(dropped()).toBe(sockets);
    expect(engine.stats().udp.flows).toBe(Math.min(sockets, perVm));

    peer = await UdpVmPeer.open(target);
    await peer.send(testFrame(1, 60));
    for (let t = 0; t < 300 && engine.stats().vms < 2; t++) await new Promise((r) => setTimeout(r, 10));
    expect(engine.stats().vms).toBe(2);
    expect(engine.vms().some((v) => v.framing === 'dgram' && v.peer === `127.0.0.1:${peer!.port}`)).toBe(true);
  });
});
