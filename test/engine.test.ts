import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import dgram from 'node:dgram';
import net from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { GuestClient, ethType, ipProto, ipSrc, ipDst, udpPorts } from './support/guest-client.js';
import { parseIPv4 } from '../src/wire/addr.js';
import { TcpPeer, GUEST_MAC } from './support/tcp-peer.js';
import { fragmentUdp } from './support/frames.js';

const GW = parseIPv4('192.168.65.1');
const HOST = parseIPv4('192.168.65.2');
const GW_MAC = new Uint8Array([0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6]);
const BCAST = new Uint8Array(6).fill(0xff);
const macA = new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const macB = new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x57]);

function dhcpDiscover(mac: Uint8Array, xid: number): Uint8Array {
  const m = new Uint8Array(300);
  m[0] = 1; m[1] = 1; m[2] = 6;
  new DataView(m.buffer).setUint32(4, xid);
  m.set(mac, 28);
  m.set([0x63, 0x82, 0x53, 0x63], 236);
  m.set([53, 1, 1, 55, 4, 1, 3, 6, 26, 255], 240);
  return m;
}


function dhcpOption(reply: Uint8Array, code: number): Uint8Array | undefined {
  let i = 240;
  while (i < reply.length && reply[i] !== 255) {
    if (reply[i] === 0) { i++; continue; }
    const len = reply[i + 1];
    if (reply[i] === code) return reply.subarray(i + 2, i + 2 + len);
    i += 2 + len;
  }
  return undefined;
}

describe('TX ring option', () => {
  it('sizes the ring from txRingBytes, gives a bigger ring its own kernel memory, and refuses sizes out of range', async () => {
    const opts = { dns: { upstreams: [], hostsFile: null } };
    for (const bad of [1000, 256 * 1024 - 1, 1.5, 2 ** 31]) {
      expect(() => createEngine({ ...opts, txRingBytes: bad })).toThrow(expect.objectContaining({ code: 'ERR_VNETKIT_BAD_OPTION', message: expect.stringContaining('txRingBytes') }));
    }
    const small = createEngine({ ...opts, txRingBytes: 256 * 1024 });
    const def = createEngine(opts);
    const big = createEngine({ ...opts, txRingBytes: 32 * 1024 * 1024 });
    // The TCP stack's kernel slabs (one MiB per read reservation, up to 32) come with their own memory too.
    const noSlabs = createEngine({ ...opts, tcp: { readReservations: 0 } });
    const manySlabs = createEngine({ ...opts, tcp: { readReservations: 100 } });
    // An embedder's own memoryBytes that leaves less room shrinks the pool instead of failing.
    const tight = createEngine({ ...opts, memoryBytes: 50 * 1024 * 1024 });
    try {
      expect(def.kernels.memoryBytes).toBe(88 * 1024 * 1024);
      expect(big.kernels.memoryBytes).toBe(112 * 1024 * 1024);
      expect(small.kernels.memoryBytes).toBe(80 * 1024 * 1024 + 256 * 1024);
      expect(noSlabs.kernels.memoryBytes).toBe(72 * 1024 * 1024);
      expect(manySlabs.kernels.memoryBytes).toBe(104 * 1024 * 1024);
      expect(def.stats().tcp.kernelSlabs).toBe(16);
      expect(noSlabs.stats().tcp.kernelSlabs).toBe(0);
      expect(manySlabs.stats().tcp.kernelSlabs).toBe(32);
      expect(tight.stats().tcp.kernelSlabs).toBeLessThan(16);
      // The links' read areas (two of 2 x 2 MiB) come with their own memory as well, and go first when it is tight.
      expect(def.stats().rx.readAreas).toBe(2);
      expect(tight.stats().rx.readAreas).toBe(0);
      // The ring and the slabs take exactly their size: every engine is left the same room for the rest.
      expect(big.kernels.available()).toBe(def.kernels.available());
      expect(small.kernels.available()).toBe(def.kernels.available());
      expect(noSlabs.kernels.available()).toBe(def.kernels.available());
      // An explicit memoryBytes too small for the ring is a clear error, not a broken engine.
      expect(() => createEngine({ ...opts, txRingBytes: 32 * 1024 * 1024, memoryBytes: 32 * 1024 * 1024 }))
        .toThrow(expect.objectContaining({ code: 'ERR_VNETKIT_KERNEL_MEMORY' }));
    } finally {
      await Promise.all([small.close(), def.close(), big.close(), noSlabs.close(), manySlabs.close(), tight.close()]);
    }
  });
});

describe('VM link options', () => {
  it('bounds what a VM that stops reading can hold: frames past txQueueLimit are dropped and counted per VM and in stats()', async () => {
    const limit = 128 * 1024;
    const sock = join(mkdtempSync(join(tmpdir(), 'vnk-')), 'e.sock');
    const engine = createEngine({ dns: { upstreams: [], hostsFile: null } });
    try {
      await expect(engine.listen(`unix://${sock}`, { framing: 'qemu', txQueueLimit: 1000 })).rejects.toMatchObject({ code: 'ERR_VNETKIT_BAD_OPTION' });
      expect(() => engine.attach(new net.Socket(), { framing: 'qemu', txQueueLimit: Number.NaN })).toThrow(/txQueueLimit/);
      expect(() => engine.attach(new net.Socket(), { framing: 'vpnkit', handshakeTimeoutMs: 0 })).toThrow(/handshakeTimeoutMs/);
      await engine.listen(`unix://${sock}`, { framing: 'qemu', txQueueLimit: limit });
      const a = await GuestClient.connect(sock, macA);
      const b = await GuestClient.connect(sock, macB);
      b.socket.pause();
      await new Promise((r) => setTimeout(r, 50));
      // Broadcasts of an unassigned ethertype: flooded to B, ignored by the gateway, no flow control.
      const f = new Uint8Array(1514);
      f.set(BCAST, 0);
      f.set(macA, 6);
      f[12] = 0x88; f[13] = 0xb5;
      for (let i = 0; i < 4000; i++) a.send(f);
      const vmB = () => engine.vms().sort((x, y) => y.id - x.id)[0];
      for (let t = 0; t < 200 && vmB().link.dropped === 0; t++) await new Promise((r) => setTimeout(r, 10));
      const info = vmB();
      expect(info.link.dropped).toBeGreaterThan(0);
      expect(info.link.backlog).toBeLessThanOrEqual(limit);
      expect(info.link.txQueueLimit).toBe(limit);
      expect(info.link.txFrames + info.link.dropped).toBeLessThanOrEqual(4000);
      expect(engine.stats().linkDrops).toBe(info.link.dropped);
      const dropped = info.link.dropped;
      b.close();
      for (let t = 0; t < 200 && engine.stats().vms > 1; t++) await new Promise((r) => setTimeout(r, 10));
      expect(engine.stats().vms).toBe(1);
      // The count survives the VM that caused it.
      expect(engine.stats().linkDrops).toBeGreaterThanOrEqual(dropped);
      a.close();
    } finally {
      await engine.close();
    }
  });
});

describe.each(['wasm-simd', 'js'] as const)('engine (%s backend)', (backend) => {
  let engine: Engine;
  let sock: string;
  const clients: GuestClient[] = [];
  const guest = async (mac: Uint8Array) => {
    const c = await GuestClient.connect(sock, mac);
    clients.push(c);
    return c;
  };

  beforeEach(async () => {
    sock = join(mkdtempSync(join(tmpdir(), 'vnk-')), 'e.sock');
    engine = createEngine({ backend, domainName: 'vnetkit.test', searchDomains: ['vnetkit.test'], dns: { upstreams: [{ host: '127.0.0.1', port: 9 }], hostsFile: null } });
    await engine.listen(`unix://${sock}`, { framing: 'qemu' });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await engine.close();
  });

  it('answers ARP for the gateway and the host alias with the gateway MAC', async () => {
    const g = await guest(macA);
    for (const target of [GW, HOST]) {
      g.send(g.arpRequest(parseIPv4('192.168.65.3'), target));
      const r = await g.next((f) => ethType(f) === 0x0806);
      expect([...r.subarray(0, 6)]).toEqual([...macA]);
      expect(r[21]).toBe(2); // reply
      expect([...r.subarray(22, 28)]).toEqual([...GW_MAC]);
      expect(((r[28] << 24) | (r[29] << 16) | (r[30] << 8) | r[31]) >>> 0).toBe(target);
    }
  });

  it('takes frames where a link socket read them (two read areas, first come), copies the rest, and hands an area on when its link leaves', async () => {
    const arp = async (g: GuestClient, ip: string, n: number) => {
      // Sent as one write: the requests share reads, so some straddle them.
      const req = g.arpRequest(parseIPv4(ip), GW);
      const one = Buffer.alloc(4 + req.length);
      one.writeUInt32BE(req.length, 0);
      one.set(req, 4);
      g.sendRaw(Buffer.concat(Array.from({ length: n }, () => one)));
      // Replies only: the other guests' requests are broadcasts, flooded to every link.
      for (let i = 0; i < n; i++) await g.next((f) => ethType(f) === 0x0806 && f[21] === 2);
    };
    const mac = (i: number) => new Uint8Array([0x52, 0x54, 0, 0x12, 0x35, i]);
    const rx = () => engine.stats().rx;
    const [a, b, c] = [await guest(mac(1)), await guest(mac(2)), await guest(mac(3))];
    expect(rx().readAreas).toBe(2);
    await arp(a, '192.168.65.11', 50);
    await arp(b, '192.168.65.12', 50);
    expect(rx().framesInPlace).toBe(100);
    expect(rx().framesCopied).toBe(0);
    // The third link found no free area: its frames are copied, and still answered.
    await arp(c, '192.168.65.13', 50);
    expect(rx().framesCopied).toBe(50);
    a.close();
    for (let t = 0; t < 200 && engine.stats().vms > 2; t++) await new Promise((r) => setTimeout(r, 10));
    const d = await guest(mac(4));
    await arp(d, '192.168.65.14', 50);
    expect(rx().framesInPlace).toBe(150);
    expect(rx().framesCopied).toBe(50);
  });

  it('offers the first pool address over DHCP with router, DNS, MTU and domain', async () => {
    const g = await guest(macA);
    g.send(g.udpFrame(BCAST, 0, 68, 0xffffffff, 67, dhcpDiscover(macA, 0x1234)));
    const r = await g.next((f) => ethType(f) === 0x0800 && ipProto(f) === 17 && udpPorts(f).src === 67);
    const { payload } = udpPorts(r);
    expect(new DataView(payload.buffer, payload.byteOffset).getUint32(4)).toBe(0x1234);
    expect([...payload.subarray(16, 20)]).toEqual([192, 168, 65, 3]);
    expect([...dhcpOption(payload, 53)!]).toEqual([2]);
    expect([...dhcpOption(payload, 3)!]).toEqual([192, 168, 65, 1]);
    expect([...dhcpOption(payload, 6)!]).toEqual([192, 168, 65, 1]);
    expect([...dhcpOption(payload, 26)!]).toEqual([0x05, 0xdc]);
    expect(Buffer.from(dhcpOption(payload, 15)!).toString()).toBe('vnetkit.test');
  });

  it('binds the leased address to the VM on the DHCP ACK, before the guest sends anything else', async () => {
    const g = await guest(macA);
    g.send(g.udpFrame(BCAST, 0, 68, 0xffffffff, 67, dhcpDiscover(macA, 0x99)));
    await g.next((f) => ethType(f) === 0x0800 && ipProto(f) === 17 && udpPorts(f).src === 67);
    expect(engine.vms()[0].ips).toEqual([]);
    const req = dhcpDiscover(macA, 0x99);
    req.set([53, 1, 3, 50, 4, 192, 168, 65, 3, 54, 4, 192, 168, 65, 1, 255], 240);
    g.send(g.udpFrame(BCAST, 0, 68, 0xffffffff, 67, req));
    const r = await g.next((f) => ethType(f) === 0x0800 && ipProto(f) === 17 && udpPorts(f).src === 67);
    expect([...dhcpOption(udpPorts(r).payload, 53)!]).toEqual([5]);
    expect(engine.vms()[0].ips).toEqual(['192.168.65.3']);
  });

  it('answers ICMP echo to the gateway with the same id, sequence and data', async () => {
    const g = await guest(macA);
    const data = new Uint8Array(56).map((_, i) => i);
    g.send(g.echoFrame(GW_MAC, parseIPv4('192.168.65.3'), GW, 0x77, 5, data));
    const r = await g.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1);
    expect(ipSrc(r)).toBe(GW);
    expect(r[34]).toBe(0);
    expect((r[38] << 8) | r[39]).toBe(0x77);
    expect((r[40] << 8) | r[41]).toBe(5);
    expect([...r.subarray(42)]).toEqual([...data]);
  });

  it('relays UDP to a host server on 127.0.0.1 through the host alias, and the reply back', async () => {
    const server = dgram.createSocket('udp4');
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
    server.on('message', (m, rinfo) => server.send(Buffer.concat([Buffer.from('echo:'), m]), rinfo.port, rinfo.address));
    const port = server.address().port;
    try {
      const g = await guest(macA);
      const me = parseIPv4('192.168.65.3');
      g.send(g.udpFrame(GW_MAC, me, 40000, HOST, port, new TextEncoder().encode('ping')));
      const r = await g.next((f) => ethType(f) === 0x0800 && ipProto(f) === 17);
      expect(ipSrc(r)).toBe(HOST);
      expect(ipDst(r)).toBe(me);
      const u = udpPorts(r);
      expect(u.src).toBe(port);
      expect(u.dst).toBe(40000);
      expect(Buffer.from(u.payload).toString()).toBe('echo:ping');
    } finally {
      server.close();
    }
  });

  it('reassembles a fragmented guest datagram, relays it, and fragments the large reply to the MTU', async () => {
    const server = dgram.createSocket('udp4');
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
    const got: Buffer[] = [];
    server.on('message', (m, rinfo) => {
      got.push(m);
      server.send(Buffer.concat([Buffer.from('echo:'), m]), rinfo.port, rinfo.address);
    });
    const port = server.address().port;
    try {
      const g = await guest(macA);
      const me = parseIPv4('192.168.65.3');
      const payload = new Uint8Array(4000).map((_, i) => (i * 7) & 0xff);
      for (const f of fragmentUdp(macA, GW_MAC, me, 40001, HOST, port, payload, { mtu: 1500 })) g.send(f);
      const frags: Uint8Array[] = [];
      let total = -1;
      let have = 0;
      while (total < 0 || have < total) {
        const f = await g.next((x) => ethType(x) === 0x0800 && ipProto(x) === 17);
        expect(f.length).toBeLessThanOrEqual(1514);
        frags.push(f);
        const flags = (f[20] << 8) | f[21];
        const body = ((f[16] << 8) | f[17]) - 20;
        have += body;
        if ((flags & 0x2000) === 0) total = (flags & 0x1fff) * 8 + body;
      }
      expect(frags.length).toBe(3);
      expect(got).toHaveLength(1);
      expect(Buffer.compare(got[0], Buffer.from(payload))).toBe(0);
      const dgramBytes = new Uint8Array(total);
      for (const f of frags) dgramBytes.set(f.subarray(34, 14 + ((f[16] << 8) | f[17])), (((f[20] << 8) | f[21]) & 0x1fff) * 8);
      expect(Buffer.from(dgramBytes.subarray(8, 13)).toString()).toBe('echo:');
      expect(Buffer.compare(Buffer.from(dgramBytes.subarray(13)), Buffer.from(payload))).toBe(0);
      expect(engine.stats().fragments.reassembled).toBe(1);
    } finally {
      server.close();
    }
  });

  it('answers UDP to a closed host port with ICMP port unreachable', async () => {
    const probe = dgram.createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
    const closedPort = probe.address().port;
    probe.close();
    const g = await guest(macA);
    const me = parseIPv4('192.168.65.3');
    g.send(g.udpFrame(GW_MAC, me, 40002, HOST, closedPort, new TextEncoder().encode('anyone?')));
    const r = await g.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1);
    expect(ipSrc(r)).toBe(HOST);
    expect([r[34], r[35]]).toEqual([3, 3]);
    // The quote names the guest's datagram: its ports.
    expect((r[62] << 8) | r[63]).toBe(40002);
    expect((r[64] << 8) | r[65]).toBe(closedPort);
    expect(engine.stats().udp.refused).toBe(1);
  });

  it('answers DNS over TCP on the gateway through the TCP stack', async () => {
    const g = await guest(GUEST_MAC);
    const peer = new TcpPeer((f) => g.send(f), () => Date.now(), { port: 33333, keep: true });
    const pumpUntil = async (cond: () => boolean) => {
      const end = Date.now() + 3000;
      while (!cond()) {
        if (Date.now() > end) throw new Error('TCP exchange did not finish');
        for (const f of g.frames.splice(0)) peer.input(f);
        peer.pump();
        peer.flushAck();
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    peer.connect(GW, 53);
    await pumpUntil(() => peer.state === 'established');
    const q = dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'gateway.docker.internal' }] });
    const framed = Buffer.alloc(q.length + 2);
    framed.writeUInt16BE(q.length, 0);
    q.copy(framed, 2);
    peer.write(framed);
    peer.end();
    await pumpUntil(() => peer.finRcvd);
    const answer = Buffer.concat(peer.keep);
    expect(answer.readUInt16BE(0)).toBe(answer.length - 2);
    const msg = dnsPacket.decode(answer.subarray(2));
    expect(msg.id).toBe(7);
    expect(msg.answers?.[0]).toMatchObject({ type: 'A', data: '192.168.65.1' });
    // The stack's segments reached this stream link straight from kernel memory: this guest got
    // nothing but TCP segments (SYN-ACK, the answer, FIN at least).
    const tx = engine.stats().tx;
    expect(tx.inPlace).toBeGreaterThanOrEqual(3);
    expect(tx.inPlace).toBe(tx.frames);
    expect(tx.ringFullBatches).toBe(0);
  });

  it('answers DNS for host.docker.internal with the host alias', async () => {
    const g = await guest(macA);
    const me = parseIPv4('192.168.65.3');
    const q = dnsPacket.encode({ type: 'query', id: 99, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'host.docker.internal' }] });
    g.send(g.udpFrame(GW_MAC, me, 5353, GW, 53, q));
    const r = await g.next((f) => ethType(f) === 0x0800 && ipProto(f) === 17 && udpPorts(f).src === 53);
    const ans = dnsPacket.decode(Buffer.from(udpPorts(r).payload));
    expect(ans.id).toBe(99);
    expect(ans.answers?.[0]).toMatchObject({ type: 'A', data: '192.168.65.2' });
  });

  it('switches between two VMs: broadcast flooded, unicast forwarded after learning', async () => {
    const a = await guest(macA);
    const b = await guest(macB);
    await new Promise((r) => setTimeout(r, 50));
    a.send(a.arpRequest(parseIPv4('192.168.65.3'), parseIPv4('192.168.65.4')));
    const seen = await b.next((f) => ethType(f) === 0x0806);
    expect([...seen.subarray(6, 12)]).toEqual([...macA]);
    const data = new Uint8Array([1, 2, 3]);
    b.send(b.echoFrame(macA, parseIPv4('192.168.65.4'), parseIPv4('192.168.65.3'), 1, 1, data));
    const got = await a.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1);
    expect([...got.subarray(6, 12)]).toEqual([...macB]);
    expect(engine.stats().switch.forwarded).toBeGreaterThanOrEqual(1);
  });

  it('counts malformed frames by reason and survives a broken stream on another connection', async () => {
    const a = await guest(macA);
    const bad = a.echoFrame(GW_MAC, parseIPv4('192.168.65.3'), GW, 1, 1, new Uint8Array(8));
    bad[24] ^= 0xff; // IPv4 header checksum
    a.send(bad);
    const evil = await guest(macB);
    evil.send(new Uint8Array(20).fill(0xaa));
    evil.sendRaw(new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    await evil.waitClosed();
    a.send(a.echoFrame(GW_MAC, parseIPv4('192.168.65.3'), GW, 9, 9, new Uint8Array(8)));
    await a.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1);
    const s = engine.stats();
    expect(s.drops['bad-ip-checksum']).toBe(1);
    expect(s.vms).toBe(1);
  });
});
