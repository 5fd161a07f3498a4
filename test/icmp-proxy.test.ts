import { describe, it, expect, afterEach } from 'vitest';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { systemPing, IcmpProxy } from '../src/engine/icmp-proxy.js';
import { GuestClient, ethType, ipProto, ipSrc } from './support/guest-client.js';
import { parseIPv4 } from '../src/wire/addr.js';

const GW_MAC = new Uint8Array([0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6]);
const mac = new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const me = parseIPv4('192.168.65.3');

describe('ICMP echo beyond the engine', () => {
  let engine: Engine | undefined;
  let client: GuestClient | undefined;
  afterEach(async () => {
    client?.close();
    await engine?.close();
  });

  async function setup(answers: (ip: number) => boolean) {
    const asked: number[] = [];
    const sock = join(mkdtempSync(join(tmpdir(), 'vnk-')), 'e.sock');
    engine = createEngine({ pinger: async (ip) => { asked.push(ip); return answers(ip); }, dns: { upstreams: [{ host: '127.0.0.1', port: 9 }], hostsFile: null } });
    await engine.listen(`unix://${sock}`, { framing: 'qemu' });
    client = await GuestClient.connect(sock, mac);
    return asked;
  }

  it('replies only after the destination really answered', async () => {
    const reachable = parseIPv4('203.0.113.5');
    const asked = await setup((ip) => ip === reachable);
    client!.send(client!.echoFrame(GW_MAC, me, reachable, 3, 1, new Uint8Array([9, 9, 9])));
    const r = await client!.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1);
    expect(ipSrc(r)).toBe(reachable);
    expect(r[34]).toBe(0);
    expect([...r.subarray(42)]).toEqual([9, 9, 9]);
    const silent = parseIPv4('203.0.113.6');
    client!.send(client!.echoFrame(GW_MAC, me, silent, 3, 2, new Uint8Array([1])));
    await expect(client!.next((f) => ethType(f) === 0x0800 && ipProto(f) === 1, 500)).rejects.toThrow();
    expect(asked).toEqual([reachable, silent]);
    expect(engine!.stats().icmp).toMatchObject({ sent: 2, answered: 1, unanswered: 1 });
  });

  it('never probes forbidden destinations (link-local, loopback, the virtual subnet)', async () => {
    const asked = await setup(() => true);
    for (const dst of ['169.254.169.254', '127.0.0.1', '192.168.65.77']) {
      client!.send(client!.echoFrame(GW_MAC, me, parseIPv4(dst), 4, 1, new Uint8Array([1])));
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(asked).toEqual([]);
    expect(engine!.stats().drops['icmp-blocked-destination']).toBe(3);
  });

  it('caps probes in flight and counts the rest', async () => {
    let release!: () => void;
    const gate = new Promise<boolean>((r) => { release = () => r(true); });
    const proxy = new IcmpProxy({ pinger: () => gate, maxInflight: 2 });
    let replies = 0;
    for (let i = 0; i < 5; i++) proxy.probe(7, 100 + i, () => replies++);
    expect(proxy.counters).toMatchObject({ sent: 2, overCap: 3 });
    release();
    await new Promise((r) => setTimeout(r, 10));
    expect(replies).toBe(2);
  });

  it('the system ping reaches the host loopback', async () => {
    // Without a ping binary systemPing can only say "no answer": say why instead.
    const found = process.env.PATH?.split(':').some((d) => d !== '' && existsSync(join(d, 'ping')));
    expect(found, 'no `ping` on PATH: run scripts/testbed/install-deps.sh (package iputils-ping)').toBe(true);
    expect(await systemPing(0x7f000001, 2000)).toBe(true);
  });
});
