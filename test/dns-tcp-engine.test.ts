/**
 * DNS over TCP on the gateway, driven as a hostile guest would: a fake VM
 * opens 192.168.65.1:53, stops reading (its window goes to zero) and streams
 * megabytes of queries. The engine must take only a bounded part of them and
 * hold a bounded amount for that flow, and a second VM must still get DNS.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { createEngine, type Engine, type EngineOptions } from '../src/engine/engine.js';
import { GuestClient, ethType, ipProto, udpPorts } from './support/guest-client.js';
import { TcpPeer, GUEST_MAC, GUEST_IP } from './support/tcp-peer.js';
import { frameTcp, DnsTcpDeframer } from '../src/services/dns.js';
import { parseIPv4 } from '../src/wire/addr.js';
import { startDnsUpstream, type DnsUpstream } from './support/dns-upstream.js';

const GW = parseIPv4('192.168.65.1');
const GW_MAC = new Uint8Array([0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6]);
const MAC_B = new Uint8Array([0x52, 0x54, 0, 0x12, 0x34, 0x57]);
const IP_B = parseIPv4('192.168.65.4');

let up: DnsUpstream;
beforeAll(async () => {
  up = await startDnsUpstream();
});
afterAll(async () => {
  await up.close();
});

let engine: Engine | null = null;
const clients: GuestClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await engine?.close();
  engine = null;
});

async function start(dnsTcp: NonNullable<EngineOptions['dns']>['tcp'] = {}): Promise<{ e: Engine; sock: string }> {
  const sock = join(mkdtempSync(join(tmpdir(), 'vnk-dns-')), 'e.sock');
  // Upstream: a responder on 127.0.0.1 only; no hosts file.
  const e = createEngine({ dns: { upstreams: [{ host: '127.0.0.1', port: up.port }], hostsFile: null, tcp: dnsTcp } });
  engine = e;
  await e.listen(`unix://${sock}`, { framing: 'qemu' });
  return { e, sock };
}

async function guest(sock: string, mac: Uint8Array): Promise<GuestClient> {
  const c = await GuestClient.connect(sock, mac);
  clients.push(c);
  return c;
}

/** Drive a fake VM's TCP endpoint in real time until `done` or `ms` pass; returns whether done. */
async function drive(g: GuestClient, peer: TcpPeer, done: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) return false;
    for (const f of g.frames.splice(0)) peer.input(f);
    peer.tick(Date.now());
    peer.pump();
    peer.flushAck();
    await new Promise((r) => setTimeout(r, 2));
  }
  return true;
}

function query(name: string, id: number): Buffer {
  return dnsPacket.encode({ id, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: 'A', class: 'IN' }] });
}

function dnsFlow(e: Engine) {
  return e.flows().find((f) => f.proto === 'tcp' && f.remote === '192.168.65.1:53');
}

describe('gateway DNS over TCP against a guest that does not read', () => {
  it('takes a bounded part of a zero-window query stream, holds a bounded amount, and keeps serving another VM', async () => {
    const { e, sock } = await start();
    const a = await guest(sock, GUEST_MAC);
    const peer = new TcpPeer((f) => a.send(f), () => Date.now(), { port: 40053, rcvBuf: 8192 });
    peer.connect(GW, 53);
    expect(await drive(a, peer, () => peer.state === 'established', 3000)).toBe(true);
    // The guest reads nothing from here on: after 8 KiB of answers its window is zero.
    peer.setReadPaused(true);
    const one = frameTcp(query('gateway.docker.internal', 0));
    const n = Math.ceil((8 << 20) / one.length);
    const stream = Buffer.alloc(n * one.length);
    for (let i = 0; i < n; i++) {
      stream.set(one, i * one.length);
      stream.writeUInt16BE(i & 0xffff, i * one.length + 2);
    }
    peer.write(stream);
    // Stream until the engine stops taking bytes (no progress for 300 ms) or everything went in.
    let lastUna = peer.sndUna;
    let still = Date.now();
    await drive(a, peer, () => {
      if (peer.sndUna !== lastUna) {
        lastUna = peer.sndUna;
        still = Date.now();
      }
      return peer.unacked === 0 || Date.now() - still > 300;
    }, 15_000);

    const flow = dnsFlow(e)!;
    expect(flow).toBeDefined();
    const dns = e.stats().dns;
    // The guest offered 8 MiB; the engine took at most its window plus what answers had room for.
    expect(peer.unacked).toBeGreaterThan(stream.length / 2);
    expect(flow.bytesIn).toBeLessThan(3 << 20);
    // Held for this flow: the guest's bytes not yet split into queries (the window), the answers the
    // stack has not had acknowledged (its send buffer) and those the session holds (its budget).
    const unsplit = flow.bytesIn - dns.queries_tcp * one.length;
    const unacked = flow.bytesOut - peer.received;
    expect(unsplit).toBeLessThanOrEqual(2 << 20);
    expect(unacked).toBeLessThanOrEqual((1 << 20) + (256 << 10));
    expect(dns.tcp_held_bytes).toBeLessThanOrEqual(256 << 10);
    expect(dns.tcp_backpressured).toBeGreaterThanOrEqual(1);
    expect(dns.tcp_open).toBe(1);

    // Another VM's DNS over UDP is answered meanwhile.
    const b = await guest(sock, MAC_B);
    b.send(b.udpFrame(GW_MAC, IP_B, 5353, GW, 53, query('host.docker.internal', 77)));
    const r = await b.next((f) => ethType(f) === 0x0800 && ipProto(f) === 17 && udpPorts(f).src === 53);
    const ans = dnsPacket.decode(Buffer.from(udpPorts(r).payload));
    expect(ans.id).toBe(77);
    expect(ans.answers?.[0]).toMatchObject({ type: 'A', data: '192.168.65.2' });

    // The guest reads again: the stream moves on where it stopped.
    const before = e.stats().dns.queries_tcp;
    peer.setReadPaused(false);
    expect(await drive(a, peer, () => e.stats().dns.queries_tcp > before + 5000, 10_000)).toBe(true);

    // It resets the connection: nothing is left held.
    peer.abort();
    expect(await drive(a, peer, () => e.stats().dns.tcp_open === 0, 3000)).toBe(true);
    expect(e.stats().dns.tcp_held_bytes).toBe(0);
    void GUEST_IP;
  });

  it('closes a session left idle: the guest gets our FIN after idleMs', async () => {
    const { e, sock } = await start({ idleMs: 200 });
    const a = await guest(sock, GUEST_MAC);
    const peer = new TcpPeer((f) => a.send(f), () => Date.now(), { port: 40054, keep: true });
    peer.connect(GW, 53);
    expect(await drive(a, peer, () => peer.state === 'established', 3000)).toBe(true);
    peer.write(frameTcp(query('gateway.docker.internal', 5)));
    const d = new DnsTcpDeframer();
    expect(await drive(a, peer, () => peer.received > 0 && d.push(Buffer.concat(peer.keep.splice(0))).length > 0, 3000)).toBe(true);
    // Then the guest says nothing.
    expect(await drive(a, peer, () => peer.finRcvd, 3000)).toBe(true);
    expect(e.stats().dns.tcp_idle_closed).toBe(1);
    peer.end();
    expect(await drive(a, peer, () => e.stats().dns.tcp_open === 0 && dnsFlow(e) === undefined, 3000)).toBe(true);
  });
});
