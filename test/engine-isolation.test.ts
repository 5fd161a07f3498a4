/**
 * The switch as a trust boundary: fake VMs on the qemu socket try to take
 * another VM's address or MAC, or pose as the gateway, and the victim must
 * keep its traffic while the others see none of the spoofs. Frames go only to
 * the gateway, the host alias, other fake VMs, or the broadcast address.
 */
import { describe, it, expect, afterEach } from 'vitest';
import dgram from 'node:dgram';
import net from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine, type Engine, type EngineOptions } from '../src/engine/engine.js';
import { GuestClient, ethType, ipProto, ipSrc, ipDst, udpPorts } from './support/guest-client.js';
import { arpFrame, udpFrame, echoFrame, ethFrame, tcpFrame } from './support/frames.js';
import { parseIPv4 } from '../src/wire/addr.js';

const GW = parseIPv4('192.168.65.1');
const HOST = parseIPv4('192.168.65.2');
const GW_MAC = new Uint8Array([0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6]);
const BCAST = new Uint8Array(6).fill(0xff);
const mac = (n: number) => new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, n]);
const macA = mac(0xa);
const macB = mac(0xb);
const macC = mac(0xc);
const ipA = parseIPv4('192.168.65.3');
const ipB = parseIPv4('192.168.65.4');
const ipC = parseIPv4('192.168.65.5');

const same = (f: Uint8Array, off: number, m: Uint8Array) => m.every((b, i) => f[off + i] === b);
const isArp = (f: Uint8Array) => ethType(f) === 0x0806;
const arpSender = (f: Uint8Array) => ((f[28] << 24) | (f[29] << 16) | (f[30] << 8) | f[31]) >>> 0;
/** An ARP request `g` sent for itself (sync and marker): the one thing of B's the others may see. */
const ownArp = (f: Uint8Array, m: Uint8Array, ip: number) => isArp(f) && f[21] === 1 && same(f, 6, m) && same(f, 22, m) && arpSender(f) === ip;
const isDhcpReply = (f: Uint8Array) => ethType(f) === 0x0800 && ipProto(f) === 17 && udpPorts(f).src === 67;

function dhcpMessage(chaddr: Uint8Array, xid: number, type: number, requested?: number): Uint8Array {
  const m = new Uint8Array(300);
  m[0] = 1; m[1] = 1; m[2] = 6;
  new DataView(m.buffer).setUint32(4, xid);
  m.set(chaddr, 28);
  m.set([0x63, 0x82, 0x53, 0x63], 236);
  const opts = [53, 1, type];
  if (requested !== undefined) opts.push(50, 4, requested >>> 24, (requested >>> 16) & 255, (requested >>> 8) & 255, requested & 255, 54, 4, 192, 168, 65, 1);
  m.set([...opts, 255], 240);
  return m;
}

const dhcpType = (f: Uint8Array) => {
  const p = udpPorts(f).payload;
  for (let i = 240; i < p.length && p[i] !== 255;) {
    if (p[i] === 0) { i++; continue; }
    if (p[i] === 53) return p[i + 2];
    i += 2 + p[i + 1];
  }
  return 0;
};
const yiaddr = (f: Uint8Array) => new DataView(udpPorts(f).payload.buffer, udpPorts(f).payload.byteOffset).getUint32(16);

/** A DHCP message from `g` with Ethernet source and chaddr `m`, broadcast as a client without an address does. */
const dhcpFrame = (m: Uint8Array, xid: number, type: number, requested?: number) =>
  udpFrame(68, 67, dhcpMessage(m, xid, type, requested), { srcMac: m, dstMac: BCAST, src: 0, dst: 0xffffffff });

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let t = 0; t < 300 && !cond(); t++) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

describe('switch isolation', () => {
  let engine: Engine;
  let sock: string;
  const clients: GuestClient[] = [];
  const cleanup: (() => void)[] = [];

  async function start(opts: EngineOptions = {}): Promise<void> {
    sock = join(mkdtempSync(join(tmpdir(), 'vnk-iso-')), 'e.sock');
    engine = createEngine({ dns: { upstreams: [{ host: '127.0.0.1', port: 9 }], hostsFile: null }, ...opts });
    await engine.listen(`unix://${sock}`, { framing: 'qemu' });
  }
  const guest = async (m: Uint8Array) => {
    const c = await GuestClient.connect(sock, m);
    clients.push(c);
    await until(() => engine.stats().vms === clients.filter((x) => !x.closed).length, 'the VM to attach');
    return c;
  };
  /** `g` announces `ip` (an ARP request to the gateway) and waits for the answer: its frames before this one are handled. */
  const sync = async (g: GuestClient, ip: number) => {
    g.send(g.arpRequest(ip, GW));
    await g.next((f) => isArp(f) && f[21] === 2 && arpSender(f) === GW);
  };
  /** A broadcast from `from` that `to` must receive: everything `from` sent earlier has reached `to` by then. */
  const marker = async (from: GuestClient, fromIp: number, to: GuestClient[]) => {
    const target = parseIPv4('192.168.65.250');
    from.send(from.arpRequest(fromIp, target));
    for (const t of to) await t.next((f) => isArp(f) && f[21] === 1 && same(f, 38, Uint8Array.of(192, 168, 65, 250)));
  };
  const drops = () => engine.stats().drops;

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const f of cleanup.splice(0)) f();
    await engine.close();
  });

  it('keeps a leased address with its VM: another VM\'s frame from it is dropped, forwards still reach the owner', async () => {
    await start();
    const a = await guest(macA);
    const b = await guest(macB);
    // A leases 192.168.65.3 and has sent nothing else yet.
    a.send(dhcpFrame(macA, 1, 1));
    const offer = await a.next(isDhcpReply);
    expect(yiaddr(offer)).toBe(ipA);
    a.send(dhcpFrame(macA, 1, 3, ipA));
    expect(dhcpType(await a.next(isDhcpReply))).toBe(5);
    // B sends one datagram from A's address, to a host server.
    const server = dgram.createSocket('udp4');
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
    cleanup.push(() => server.close());
    let serverGot = 0;
    server.on('message', () => serverGot++);
    b.send(b.udpFrame(GW_MAC, ipA, 5000, HOST, server.address().port, new TextEncoder().encode('mine now')));
    await sync(b, ipB);
    // A UDP forward and a TCP forward to A's address reach A, never B.
    const ch = engine.openUdpToGuest(ipA, 5353, HOST, 40000, () => {});
    expect(ch.send(new TextEncoder().encode('for A'))).toBe(true);
    const u = await a.next((f) => ethType(f) === 0x0800 && ipProto(f) === 17 && udpPorts(f).dst === 5353);
    expect(ipDst(u)).toBe(ipA);
    expect(drops()['spoofed-ip']).toBe(1);
    expect(serverGot).toBe(0);
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => srv.close());
    const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
    const c = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
    c.on('error', () => {});
    cleanup.push(() => c.destroy());
    const s = await accepted;
    expect(engine.openTcpToGuest(ipA, 80, s)).toBe(true);
    const syn = await a.next((f) => ethType(f) === 0x0800 && ipProto(f) === 6 && udpPorts(f).dst === 80);
    expect(ipSrc(syn)).toBe(HOST);
    expect(engine.vms().find((v) => v.mac === '52:54:00:12:34:0b')?.ips).toEqual(['192.168.65.4']);
    await marker(a, ipA, [b]);
    // B saw A's DHCP broadcasts, as any switch floods them, and nothing from the gateway.
    expect(b.frames.filter((f) => same(f, 6, GW_MAC))).toEqual([]);
  });

  it('keeps a statically configured address with the VM that claimed it first', async () => {
    await start();
    const a = await guest(macA);
    const b = await guest(macB);
    const ip = parseIPv4('192.168.65.77');
    await sync(a, ip);
    // B claims the same address in an ARP announcement, then sends from it.
    b.send(arpFrame(2, ip, ip, { srcMac: macB, senderMac: macB, dstMac: BCAST }));
    b.send(b.udpFrame(GW_MAC, ip, 5000, GW, 9, new Uint8Array(4)));
    await sync(b, ipB);
    const ch = engine.openUdpToGuest(ip, 7, HOST, 40001, () => {});
    ch.send(new Uint8Array([1]));
    const u = await a.next((f) => ethType(f) === 0x0800 && ipProto(f) === 17 && udpPorts(f).dst === 7);
    expect(same(u, 0, macA)).toBe(true);
    expect(drops()['spoofed-ip']).toBe(2);
    // A's announcement reached B; B's did not reach A.
    await marker(b, ipB, [a]);
    expect(a.frames.filter((f) => isArp(f) && arpSender(f) === ip)).toEqual([]);
  });

  it('keeps a MAC with the VM that used it first: frames to it still reach that VM, and the spoof reaches nobody', async () => {
    await start();
    const a = await guest(macA);
    const b = await guest(macB);
    const c = await guest(macC);
    await sync(a, ipA);
    await sync(c, ipC);
    // B sends as macA: a broadcast and a unicast to C.
    b.send(ethFrame(0x88b5, new Uint8Array(46).fill(0xbb), { srcMac: macA, dstMac: BCAST }));
    b.send(echoFrame(1, 1, new Uint8Array(8), { srcMac: macA, dstMac: macC, src: ipB, dst: ipC }));
    await sync(b, ipB);
    // C to macA: A gets it.
    c.send(echoFrame(7, 7, new Uint8Array(8), { srcMac: macC, dstMac: macA, src: ipC, dst: ipA }));
    const got = await a.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1);
    expect(same(got, 6, macC)).toBe(true);
    expect(drops()['spoofed-mac']).toBe(2);
    expect(engine.stats().switch.macsOwnedElsewhere).toBe(2);
    await marker(b, ipB, [a, c]);
    expect(b.frames.filter((f) => ethType(f) === 0x0800 && ipProto(f) === 1)).toEqual([]);
    expect(a.frames.filter((f) => ethType(f) === 0x88b5)).toEqual([]);
    expect(c.frames.filter((f) => ethType(f) === 0x88b5 || (ethType(f) === 0x0800 && ipProto(f) === 1))).toEqual([]);
  });

  it('never floods a VM\'s claims to be the gateway, the host alias or another VM', async () => {
    await start();
    const a = await guest(macA);
    const b = await guest(macB);
    const c = await guest(macC);
    await sync(a, ipA);
    await sync(b, ipB);
    await sync(c, ipC);
    // ARP "192.168.65.1 is-at B", "192.168.65.2 is-at B", "192.168.65.3 (A's) is-at B", a request claiming .1.
    b.send(arpFrame(2, GW, GW, { srcMac: macB, senderMac: macB, dstMac: BCAST }));
    b.send(arpFrame(2, HOST, HOST, { srcMac: macB, senderMac: macB, dstMac: BCAST }));
    b.send(arpFrame(2, ipA, ipA, { srcMac: macB, senderMac: macB, dstMac: BCAST }));
    b.send(arpFrame(1, GW, ipC, { srcMac: macB, senderMac: macB, dstMac: BCAST }));
    // Its own address with the gateway's MAC in the ARP body, and a frame from the gateway's MAC.
    b.send(arpFrame(2, ipB, ipB, { srcMac: macB, senderMac: GW_MAC, dstMac: BCAST }));
    b.send(arpFrame(2, GW, GW, { srcMac: GW_MAC, senderMac: GW_MAC, dstMac: BCAST }));
    // ICMP from the gateway's address, to everyone and to C.
    b.send(echoFrame(3, 3, new Uint8Array(8), { srcMac: macB, dstMac: BCAST, src: GW, dst: 0xffffffff }));
    b.send(echoFrame(3, 4, new Uint8Array(8), { srcMac: macB, dstMac: macC, src: HOST, dst: ipC }));
    // An outside host's address, to C (a forged answer from a public resolver), and in an ARP announcement.
    b.send(udpFrame(53, 33333, new Uint8Array(12), { srcMac: macB, dstMac: macC, src: parseIPv4('8.8.8.8'), dst: ipC }));
    b.send(arpFrame(2, parseIPv4('10.0.0.1'), parseIPv4('10.0.0.1'), { srcMac: macB, senderMac: macB, dstMac: BCAST }));
    // An ARP probe (sender 0.0.0.0) is fine, as a guest checking an address before use sends.
    b.send(arpFrame(1, 0, parseIPv4('192.168.65.251'), { srcMac: macB, senderMac: macB, dstMac: BCAST }));
    await sync(b, ipB);
    await marker(b, ipB, [a, c]);
    for (const v of [a, c]) {
      const fromB = v.frames.filter((f) => (same(f, 6, macB) && !ownArp(f, macB, ipB) && !ownArp(f, macB, 0)) || same(f, 6, GW_MAC));
      expect(fromB, 'a spoof reached another VM').toEqual([]);
      expect(v.frames.filter((f) => ownArp(f, macB, 0)).length).toBe(1);
    }
    const d = drops();
    expect(d['spoofed-arp']).toBe(4);
    expect(d['spoofed-ip']).toBe(1);
    expect(d['spoofed-gateway-mac']).toBe(1);
    expect(d['spoofed-source']).toBe(2);
    expect(d['foreign-source']).toBe(2);
  });

  it('leaves no flow-table entry behind for SYNs between VMs or SYNs it drops', async () => {
    await start();
    const a = await guest(macA);
    const b = await guest(macB);
    await sync(a, ipA);
    await sync(b, ipB);
    const entries = () => engine.kernels.k.flowCount((engine as unknown as { flowTable: number }).flowTable);
    const before = entries();
    // classify inserts a flow for every bare SYN; these never reach the TCP stack.
    for (let i = 0; i < 50; i++) a.send(tcpFrame({ srcPort: 20000 + i, dstPort: 22 }, { srcMac: macA, dstMac: macB, src: ipA, dst: ipB }));
    for (let i = 0; i < 50; i++) b.send(tcpFrame({ srcPort: 20000 + i, dstPort: 80 }, { srcMac: macB, dstMac: GW_MAC, src: ipA, dst: HOST }));
    await sync(a, ipA);
    await sync(b, ipB);
    expect(b.frames.filter((f) => ethType(f) === 0x0800 && ipProto(f) === 6).length).toBe(50);
    expect(drops()['spoofed-ip']).toBe(50);
    expect(entries()).toBe(before);
  });

  it('bounds the MACs and addresses one VM may use', async () => {
    await start({ limits: { macsPerVm: 4, ipsPerVm: 3 } });
    const a = await guest(macA);
    const b = await guest(macB);
    // macA and ipA first: then three more MACs and two more addresses fit.
    await sync(a, ipA);
    for (let i = 0; i < 10; i++) a.send(ethFrame(0x88b5, new Uint8Array(46), { srcMac: mac(0x40 + i), dstMac: BCAST }));
    for (let i = 0; i < 5; i++) a.send(a.udpFrame(GW_MAC, parseIPv4(`192.168.65.${100 + i}`), 5000, GW, 9, new Uint8Array(1)));
    await sync(a, ipA);
    const s = engine.stats();
    expect(s.drops['mac-limit']).toBe(7);
    expect(s.drops['ip-limit']).toBe(3);
    expect(s.limits.macs).toMatchObject({ perVm: 4, maxVmUsed: 4, refusedVm: 7 });
    expect(s.limits.guestIps).toMatchObject({ perVm: 3, used: 3, maxVmUsed: 3 });
    // The frames from refused MACs reached nobody.
    await marker(a, ipA, [b]);
    expect(b.frames.filter((f) => ethType(f) === 0x88b5).map((f) => f[11])).toEqual([0x40, 0x41, 0x42]);
    // A did not use B's share: B still learns and claims.
    await sync(b, ipB);
    expect(engine.vms().find((v) => v.mac === '52:54:00:12:34:0b')?.ips).toEqual(['192.168.65.4']);
  });

  it('stops one VM inventing client MACs from taking the DHCP pool, and frees its leases when it leaves', async () => {
    await start();
    const a = await guest(macA);
    const b = await guest(macB);
    // 260 made-up MACs, each a DISCOVER then a REQUEST for what it was offered.
    await sync(a, ipA);
    for (let i = 0; i < 260; i++) a.send(dhcpFrame(new Uint8Array([0x02, 0x77, 0, 0, i >> 8, i & 255]), 1000 + i, 1));
    await sync(a, ipA);
    const offers = a.frames.filter((f) => isDhcpReply(f) && dhcpType(f) === 2);
    a.frames.length = 0;
    expect(offers.length).toBeLessThanOrEqual(4);
    for (const o of offers) a.send(dhcpFrame(new Uint8Array(o.subarray(0, 6)), 1, 3, yiaddr(o)));
    await sync(a, ipA);
    expect(a.frames.filter((f) => isDhcpReply(f) && dhcpType(f) === 5).length).toBeLessThanOrEqual(4);
    const s = engine.stats();
    // macA is one of A's 16 MACs, so 15 made-up ones reached the DHCP server.
    expect(s.drops['mac-limit']).toBe(260 - 15);
    expect(s.dhcp.perVmRefused).toBe(15 - 4);
    expect(s.limits.dhcpLeases).toMatchObject({ perVm: 4, maxVmUsed: 4 });
    // B still gets an address.
    b.send(dhcpFrame(macB, 9, 1));
    const offer = await b.next(isDhcpReply);
    expect(dhcpType(offer)).toBe(2);
    b.send(dhcpFrame(macB, 9, 3, yiaddr(offer)));
    const ack = await b.next(isDhcpReply);
    expect(dhcpType(ack)).toBe(5);
    expect(engine.dhcp.leases().length).toBe(5);
    a.close();
    await until(() => engine.stats().vms === 1, 'A to leave');
    expect(engine.dhcp.leases().map((l) => l.mac)).toEqual(['52:54:00:12:34:0b']);
    expect(engine.stats().limits.dhcpLeases.used).toBe(1);
  });

  it('caps DHCP leases per VM by attachment, not by client MAC, with isolation off too', async () => {
    await start({ isolation: false });
    const a = await guest(macA);
    const b = await guest(macB);
    for (let i = 0; i < 260; i++) a.send(dhcpFrame(new Uint8Array([0x02, 0x77, 0, 0, i >> 8, i & 255]), 1000 + i, 1));
    await sync(a, ipA);
    expect(a.frames.filter((f) => isDhcpReply(f) && dhcpType(f) === 2).length).toBe(4);
    expect(engine.stats().dhcp.perVmRefused).toBe(256);
    b.send(dhcpFrame(macB, 9, 1));
    expect(dhcpType(await b.next(isDhcpReply))).toBe(2);
  });

  it('with isolation off, lets a guest send from further addresses and follows an address that moves, but never lets it be the gateway', async () => {
    await start({ isolation: false });
    const server = dgram.createSocket('udp4');
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
    cleanup.push(() => server.close());
    server.on('message', (m, rinfo) => server.send(m, rinfo.port, rinfo.address));
    const port = server.address().port;
    const a = await guest(macA);
    const b = await guest(macB);
    const c = await guest(macC);
    const isUdp = (f: Uint8Array) => ethType(f) === 0x0800 && ipProto(f) === 17;
    const round = async (g: GuestClient, m: Uint8Array, ip: number, sport: number) => {
      // Two frames: the second one is checked against what the first one left behind.
      g.send(g.udpFrame(GW_MAC, ip, sport, HOST, port, new TextEncoder().encode('one')));
      g.send(g.udpFrame(GW_MAC, ip, sport, HOST, port, new TextEncoder().encode('two')));
      for (let i = 0; i < 2; i++) {
        const r = await g.next(isUdp);
        expect(same(r, 0, m)).toBe(true);
        expect(ipDst(r)).toBe(ip);
      }
    };
    // A second address on A (a bridged or multi-homed guest), and one that moves from A to B and back.
    await round(a, macA, ipA, 41000);
    await round(a, macA, parseIPv4('192.168.65.9'), 41001);
    await round(b, macB, ipA, 41002);
    await round(a, macA, ipA, 41003);
    expect(engine.stats().drops['spoofed-ip']).toBeUndefined();
    // Still never the gateway.
    b.send(arpFrame(2, GW, GW, { srcMac: macB, senderMac: macB, dstMac: BCAST }));
    b.send(ethFrame(0x88b5, new Uint8Array(46), { srcMac: GW_MAC, dstMac: BCAST }));
    b.send(echoFrame(3, 3, new Uint8Array(8), { srcMac: macB, dstMac: BCAST, src: GW, dst: 0xffffffff }));
    await marker(b, ipB, [a, c]);
    for (const v of [a, c]) expect(v.frames.filter((f) => same(f, 6, GW_MAC) || (same(f, 6, macB) && !ownArp(f, macB, ipB)))).toEqual([]);
    const d = engine.stats().drops;
    expect(d['spoofed-arp']).toBe(1);
    expect(d['spoofed-gateway-mac']).toBe(1);
    expect(d['spoofed-source']).toBe(1);
  });
});
