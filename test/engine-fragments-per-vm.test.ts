/**
 * IPv4 reassembly slots per VM: the kernel's table is shared, so a VM that
 * sends only first fragments may hold fragmentSlotsPerVm of them and no more;
 * another VM's fragmented datagram still finds a slot.
 */
import { describe, it, expect, afterEach } from 'vitest';
import dgram from 'node:dgram';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { GuestClient, ethType, ipProto, udpPorts } from './support/guest-client.js';
import { fragmentUdp } from './support/frames.js';
import { parseIPv4 } from '../src/wire/addr.js';

const HOST = parseIPv4('192.168.65.2');
const GW_MAC = new Uint8Array([0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6]);
const macA = new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const macB = new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x57]);
const ipA = parseIPv4('192.168.65.3');
const ipB = parseIPv4('192.168.65.4');


describe.each(['wasm-simd', 'js'] as const)('fragment slots per VM (%s backend)', (backend) => {
  let engine: Engine | undefined;
  const clients: GuestClient[] = [];
  let server: dgram.Socket | undefined;
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    server?.close();
    server = undefined;
    await engine?.close();
    engine = undefined;
  });

  async function setup(isolation = true) {
    const sock = join(mkdtempSync(join(tmpdir(), 'vnk-')), 'e.sock');
    engine = createEngine({ backend, isolation, dns: { upstreams: [{ host: '127.0.0.1', port: 9 }], hostsFile: null } });
    await engine.listen(`unix://${sock}`, { framing: 'qemu' });
    server = dgram.createSocket('udp4');
    await new Promise<void>((r) => server!.bind(0, '127.0.0.1', () => r()));
    const got: Buffer[] = [];
    server.on('message', (m, rinfo) => {
      got.push(m);
      server!.send(Buffer.from(`echo:${m.length}`), rinfo.port, rinfo.address);
    });
    const guest = async (mac: Uint8Array) => {
      const c = await GuestClient.connect(sock, mac);
      clients.push(c);
      return c;
    };
    return { a: await guest(macA), b: await guest(macB), port: server.address().port, got };
  }

  const isUdpWith = (body: string) => (f: Uint8Array) => ethType(f) === 0x0800 && ipProto(f) === 17 && Buffer.from(udpPorts(f).payload).toString() === body;

  it('a VM sending only first fragments holds fragmentSlotsPerVm slots; another VM\'s fragmented datagram is still reassembled and delivered', async () => {
    const { a, b, port, got } = await setup();
    const payload = new Uint8Array(3000).map((_, i) => (i * 13) & 0xff);
    // A: the first fragment of 50 datagrams, never the rest.
    for (let id = 1; id <= 50; id++) a.send(fragmentUdp(macA, GW_MAC, ipA, 30000, HOST, port, payload, { ident: id })[0]);
    // Its frames are handled before B's: a round trip through the gateway says so.
    a.send(a.echoFrame(GW_MAC, ipA, parseIPv4('192.168.65.1'), 1, 1, new Uint8Array(4)));
    await a.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1);

    for (const f of fragmentUdp(macB, GW_MAC, ipB, 31000, HOST, port, payload, { ident: 0x77 })) b.send(f);
    await b.next(isUdpWith('echo:3000'), 2000);
    expect(got).toHaveLength(1);
    expect(Buffer.compare(got[0], Buffer.from(payload))).toBe(0);

    const st = engine!.stats();
    expect(st.drops['fragment-vm-limit']).toBe(46);
    expect(st.drops['fragment-table-full']).toBeUndefined();
    expect(st.fragments).toMatchObject({ reassembled: 1, pending: 4 });
    expect(st.limits.fragmentSlots).toMatchObject({ used: 4, total: 16, perVm: 4, maxVmUsed: 4 });
  });

  it('a slot comes back when its datagram completes, is dropped, or times out (the kernel\'s timeout, mirrored)', async () => {
    const { a, port, got } = await setup();
    const payload = new Uint8Array(3000).map((_, i) => i & 0xff);
    const slots = () => engine!.stats().limits.fragmentSlots;
    const settle = async () => {
      a.send(a.echoFrame(GW_MAC, ipA, parseIPv4('192.168.65.1'), 1, 1, new Uint8Array(4)));
      await a.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1);
    };
    const frags = (id: number) => fragmentUdp(macA, GW_MAC, ipA, 30000, HOST, port, payload, { ident: id });
    for (let id = 1; id <= 4; id++) a.send(frags(id)[0]);
    await settle();
    expect(slots().used).toBe(4);
    // Completing datagram 1 frees its slot for a new one.
    for (const f of frags(1).slice(1)) a.send(f);
    await a.next(isUdpWith('echo:3000'));
    expect(got).toHaveLength(1);
    expect(slots().used).toBe(3);
    // An overlapping fragment makes the kernel drop datagram 2: its slot comes back too.
    a.send(frags(2)[0]);
    await settle();
    expect(engine!.stats().drops['fragment-overlap']).toBe(1);
    expect(slots().used).toBe(2);
    // The rest wait for the kernel's timeout: the engine forgets them at the same moment.
    (engine as unknown as { expireFragments(now: number): void }).expireFragments(engine!.now() + 30_001);
    expect(engine!.stats().drops['fragment-timeout']).toBe(2);
    expect(engine!.stats().fragments.pending).toBe(0);
    expect(slots().used).toBe(0);
    for (let id = 10; id < 14; id++) a.send(frags(id)[0]);
    await settle();
    expect(slots().used).toBe(4);
    expect(engine!.stats().drops['fragment-vm-limit']).toBeUndefined();
  });

  it('another VM cannot add fragments to a datagram it did not start (even with isolation off, where it may send from that address)', async () => {
    const { a, b, port, got } = await setup(false);
    const payload = new Uint8Array(3000).map((_, i) => i & 0xff);
    const mine = fragmentUdp(macA, GW_MAC, ipA, 30000, HOST, port, payload, { ident: 0x55 });
    a.send(mine[0]);
    a.send(a.echoFrame(GW_MAC, ipA, parseIPv4('192.168.65.1'), 1, 1, new Uint8Array(4)));
    await a.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1);
    // B sends the rest under A's address and IP id: refused, A's datagram untouched.
    for (const f of fragmentUdp(macB, GW_MAC, ipA, 30000, HOST, port, payload, { ident: 0x55 }).slice(1)) b.send(f);
    b.send(b.echoFrame(GW_MAC, ipB, parseIPv4('192.168.65.1'), 1, 1, new Uint8Array(4)));
    await b.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1);
    expect(engine!.stats().drops['fragment-other-vm']).toBe(mine.length - 1);
    expect(got).toHaveLength(0);
    for (const f of mine.slice(1)) a.send(f);
    await a.next(isUdpWith('echo:3000'));
    expect(got).toHaveLength(1);
  });
});
