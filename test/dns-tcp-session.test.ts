/**
 * The gateway's DNS-over-TCP session as the TCP stack drives it: the guest's
 * bytes come in through write() (the stack offers the guest a window of
 * rcvBuf − writableLength), answers go out through 'data' and pause(). A guest
 * that never reads its answers must not make the session hold more and more.
 */
import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach, vi } from 'vitest';
import type { Duplex } from 'node:stream';
import dnsPacket from 'dns-packet';
import { DnsServer, DnsTcpDeframer, frameTcp, type DnsOptions } from '../src/services/dns.js';
import { openDnsTcpSession } from '../src/engine/gateway-dns-tcp.js';
import { startDnsUpstream, type DnsUpstream } from './support/dns-upstream.js';

const A_IP = 0x0a000001; // 10.0.0.1

let up: DnsUpstream;
beforeAll(async () => {
  up = await startDnsUpstream();
});
afterAll(async () => {
  await up.close();
});

function server(over: Partial<DnsOptions> = {}): DnsServer {
  return new DnsServer({ upstreams: [{ host: '127.0.0.1', port: up.port }], hostsFile: null, builtins: { 'a.test': A_IP }, timeoutMs: 2000, ...over });
}

function open(dns: DnsServer): Duplex & { inflight?: number } {
  const s = openDnsTcpSession(dns) as unknown as Duplex;
  s.on('error', () => {});
  return s;
}

function query(name: string, id: number, type: dnsPacket.RecordType = 'A'): Uint8Array {
  return dnsPacket.encode({ id, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }] });
}

/** `n` framed queries for a.test back to back, ids from `firstId`. */
function queries(n: number, firstId = 0): Buffer {
  const one = frameTcp(query('a.test', 0));
  const b = Buffer.alloc(one.length * n);
  for (let i = 0; i < n; i++) {
    b.set(one, i * one.length);
    b.writeUInt16BE((firstId + i) & 0xffff, i * one.length + 2);
  }
  return b;
}

const tick = () => new Promise<void>((r) => setImmediate(r));

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** dns-packet's decoded shape, with the rcode its types leave out. */
type Answer = dnsPacket.Packet & { rcode?: string };

/** Collects and decodes every answer the session sends once flowing. */
function reader(s: Duplex): { answers: Answer[]; maxReadable: number } {
  const out = { answers: [] as Answer[], maxReadable: 0 };
  const d = new DnsTcpDeframer();
  s.on('data', (c: Buffer) => {
    out.maxReadable = Math.max(out.maxReadable, s.readableLength);
    for (const m of d.push(c)) out.answers.push(dnsPacket.decode(Buffer.from(m)) as Answer);
  });
  return out;
}

describe('DNS over TCP session', () => {
  it('stops taking queries while its answers are unread: bounded answers, bounded work, the guest\'s bytes left in writableLength', async () => {
    const dns = server();
    const s = open(dns);
    const perChunk = 1500;
    const chunks = 32;
    const chunk = queries(perChunk);
    let refused = 0;
    // Like the stack: write what the guest sent, whatever write() returns (it sizes the guest's window from writableLength).
    for (let i = 0; i < chunks; i++) {
      if (!s.write(chunk)) refused++;
      await tick();
    }
    await until(() => dns.stats().inflight === 0 && (s.inflight ?? 0) === 0, 'queries resolved');
    for (let i = 0; i < 5; i++) await tick();
    const st = dns.stats();
    // Nobody read: what the session holds is bounded by its options, not by what was sent.
    expect(s.readableLength).toBeLessThanOrEqual(256 * 1024);
    expect(st.tcp_held_bytes).toBe(s.readableLength);
    // It took queries only while there was room for their answers: not even the first chunk...
    expect(st.queries_tcp).toBeLessThan(perChunk);
    expect(st.tcp_backpressured).toBe(1);
    // ...and the rest waits as the stack's own writes, so the guest's window is closed.
    expect(s.writableLength).toBeGreaterThan((chunks - 1) * chunk.length);
    expect(refused).toBeGreaterThan(chunks - 2);

    // The guest reads again: every query is answered, in bounded steps.
    const r = reader(s);
    const total = chunks * perChunk;
    await until(() => r.answers.length === total, `all ${total} answers`, 8000);
    expect(r.maxReadable).toBeLessThanOrEqual(256 * 1024);
    const ids = new Set(r.answers.map((a) => a.id));
    expect(ids.size).toBe(perChunk);
    expect(r.answers.every((a) => a.rcode === 'NOERROR' && (a.answers?.[0] as { data?: string })?.data === '10.0.0.1')).toBe(true);
    expect(s.writableLength).toBe(0);
    // The guest closes its side: ours follows, and the book is balanced.
    s.end();
    await until(() => s.destroyed, 'session closed');
    expect(dns.stats()).toMatchObject({ tcp_sessions: 1, tcp_open: 0, tcp_held_bytes: 0, queries_tcp: total });
  });

  it('resolves at most 16 queries at once per session; the next ones wait in the stream', async () => {
    const dns = server();
    const s = open(dns);
    // slow.test is never answered upstream: each waits out timeoutMs.
    const slow = Buffer.concat(Array.from({ length: 40 }, (_, i) => frameTcp(query('slow.test', i))));
    let released = false;
    s.write(slow, () => {
      released = true;
    });
    await until(() => dns.stats().inflight === 16, '16 forwarded');
    await new Promise((r) => setTimeout(r, 50));
    expect(dns.stats().inflight).toBe(16);
    expect(dns.stats().queries_tcp).toBe(16);
    expect(released).toBe(false);
    s.destroy();
    // The held write's callback runs at destroy: the stack frees the buffer it wrote from there.
    await until(() => released, 'write callback after destroy');
    dns.close();
  });

  describe('idle timeout (fake clock)', () => {
    beforeEach(() => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    });
    afterEach(() => {
      vi.useRealTimers();
    });

    /** Real event-loop turns (setImmediate is not faked) until `cond`. */
    async function settle(cond: () => boolean, what: string): Promise<void> {
      for (let i = 0; i < 2000 && !cond(); i++) await tick();
      if (!cond()) throw new Error(`never: ${what}`);
    }

    it('closes an idle session: FIN when nothing is pending, and a reset when answers sit unread', async () => {
      const dns = server({ tcp: { idleMs: 1000 } });
      // A client that asked, read its answer and went quiet.
      const quiet = open(dns);
      const r = reader(quiet);
      let ended = false;
      quiet.on('end', () => {
        ended = true;
      });
      quiet.write(frameTcp(query('a.test', 7)));
      await settle(() => r.answers.length === 1, 'answer');
      expect(r.answers[0].id).toBe(7);
      await vi.advanceTimersByTimeAsync(900);
      await tick();
      expect(ended).toBe(false);
      await vi.advanceTimersByTimeAsync(200);
      await settle(() => ended, 'our FIN after idleMs');
      expect(dns.stats().tcp_idle_closed).toBe(1);
      // Queries after our FIN are dropped and counted, never answered.
      quiet.write(frameTcp(query('a.test', 8)));
      await tick();
      expect(dns.stats().tcp_late_input).toBe(1);
      expect(r.answers.length).toBe(1);
      // The guest closes too: the session is gone.
      quiet.end();
      await settle(() => quiet.destroyed, 'closed');

      // A client that never reads: its session is reset (error → the stack answers the guest with RST).
      const stuck = openDnsTcpSession(dns) as unknown as Duplex;
      let err: Error | null = null;
      stuck.once('error', (e) => {
        err = e;
      });
      stuck.write(frameTcp(query('a.test', 9)));
      await settle(() => dns.stats().queries_tcp === 2, 'asked');
      await vi.advanceTimersByTimeAsync(1100);
      await settle(() => err !== null, 'reset');
      expect(err!.message).toMatch(/idle/);
      expect(stuck.destroyed).toBe(true);
      expect(dns.stats()).toMatchObject({ tcp_idle_closed: 2, tcp_open: 0, tcp_held_bytes: 0 });

      // A client that keeps its side open after our FIN is reset one idleMs later.
      const lingering = open(dns);
      reader(lingering);
      let lingerEnded = false;
      lingering.on('end', () => {
        lingerEnded = true;
      });
      await vi.advanceTimersByTimeAsync(1100);
      await settle(() => lingerEnded, 'FIN');
      expect(lingering.destroyed).toBe(false);
      await vi.advanceTimersByTimeAsync(1100);
      await settle(() => lingering.destroyed, 'reset after FIN');
    });

    it('gives a guest that asked and closed its side a full idleMs to read the last answers', async () => {
      const dns = server({ tcp: { idleMs: 1000 } });
      const s = openDnsTcpSession(dns) as unknown as Duplex;
      let err: Error | null = null;
      s.on('error', (e) => {
        err = e;
      });
      await vi.advanceTimersByTimeAsync(990);
      s.end(frameTcp(query('a.test', 31)));
      await settle(() => s.readableLength > 0, 'answered');
      // The timer armed at the start comes due now: not a reason to cut off the answer.
      await vi.advanceTimersByTimeAsync(500);
      await tick();
      expect(err).toBeNull();
      const r = reader(s);
      await settle(() => s.destroyed, 'closed after the answer was read');
      expect(err).toBeNull();
      expect(r.answers.map((a) => a.id)).toEqual([31]);
      expect(dns.stats().tcp_idle_closed ?? 0).toBe(0);
    });

    it('keeps a session open past idleMs while it asks, and while its own query is being resolved', async () => {
      const dns = server({ tcp: { idleMs: 1000 } });
      const s = open(dns);
      const r = reader(s);
      // One query every 500 ms for 5 s: never idle.
      for (let i = 0; i < 10; i++) {
        s.write(frameTcp(query('a.test', i)));
        await settle(() => r.answers.length === i + 1, 'answer');
        await vi.advanceTimersByTimeAsync(500);
      }
      expect(s.readableEnded).toBe(false);
      // slow.test is never answered upstream: it waits out timeoutMs (2000), twice idleMs.
      s.write(frameTcp(query('slow.test', 99)));
      await settle(() => dns.stats().inflight === 1, 'forwarded');
      await vi.advanceTimersByTimeAsync(1900);
      await tick();
      expect(s.readableEnded).toBe(false);
      expect(dns.stats().tcp_idle_closed ?? 0).toBe(0);
      await vi.advanceTimersByTimeAsync(200);
      await settle(() => r.answers.length === 11, 'SERVFAIL after the upstream timeout');
      expect(r.answers[10]).toMatchObject({ id: 99, rcode: 'SERVFAIL' });
      // Only then does idleness count.
      await vi.advanceTimersByTimeAsync(1100);
      await settle(() => s.readableEnded, 'FIN');
      expect(dns.stats().tcp_idle_closed).toBe(1);
      s.destroy();
    });
  });

  it('resets a session whose length prefix is beyond maxQueryBytes, and counts it', async () => {
    const dns = server();
    const s = openDnsTcpSession(dns) as unknown as Duplex;
    const err = new Promise<Error>((res) => s.once('error', res));
    // 0xffff bytes announced: a stream that would make us hold 64 KiB for a "query".
    s.write(Buffer.from([0xff, 0xff, 0, 0, 0, 0]));
    expect((await err).message).toMatch(/65535 bytes/);
    expect(dns.stats()).toMatchObject({ tcp_oversize: 1, tcp_open: 0 });
    // The limit is an option; the framing's own 65535 is its ceiling.
    const big = server({ tcp: { maxQueryBytes: 65535 } });
    const ok = open(big);
    const rd = reader(ok);
    const q = query('a.test', 3);
    const padded = new Uint8Array(5000);
    padded.set(q);
    ok.write(frameTcp(padded));
    await until(() => rd.answers.length === 1, 'answer to a long message');
    ok.destroy();
  });

  it('answers SERVFAIL instead of what would take a session past its byte budget', async () => {
    // big.test's TXT answer is > 1200 bytes; 16 of them resolving at once overshoot a 4 KiB session.
    const dns = server({ tcp: { sessionBytes: 4096 } });
    const s = open(dns);
    s.write(Buffer.concat(Array.from({ length: 16 }, (_, i) => frameTcp(query('big.test', i, 'TXT')))));
    await until(() => dns.stats().queries_tcp === 16 && dns.stats().inflight === 0, 'all resolved');
    await tick();
    expect(s.readableLength).toBeLessThanOrEqual(4096 + 16 * 32);
    const r = reader(s);
    await until(() => r.answers.length === 16, '16 answers');
    const full = r.answers.filter((a) => a.rcode === 'NOERROR');
    const failed = r.answers.filter((a) => a.rcode === 'SERVFAIL');
    expect(full.length).toBeGreaterThanOrEqual(1);
    expect(full.length + failed.length).toBe(16);
    expect(failed.length).toBe(dns.stats().tcp_over_budget);
    expect(new Set(r.answers.map((a) => a.id)).size).toBe(16);
    // The substitute answers the question it was asked.
    expect(failed[0].questions?.[0]).toMatchObject({ name: 'big.test', type: 'TXT' });
    s.destroy();

    s.destroy();
  });

  it('keeps all sessions within totalBytes by resetting the ones that hold the most unread answers, never a reader', async () => {
    const shared = server({ tcp: { sessionBytes: 4096, totalBytes: 4096 } });
    // A client that reads its answers as they come, asking all along.
    const honest = open(shared);
    const hr = reader(honest);
    let honestAsked = 0;
    const ask = () => honest.write(frameTcp(query('a.test', 9000 + honestAsked++)));
    // Clients that never read: each fills its own budget (about 1.8 KiB of answers at 4096 sessionBytes).
    const stuck = Array.from({ length: 5 }, () => openDnsTcpSession(shared) as unknown as Duplex);
    const reset: number[] = [];
    stuck.forEach((x, k) => x.on('error', () => reset.push(k)));
    let maxHeld = 0;
    for (const [k, x] of stuck.entries()) {
      x.write(queries(40, k * 100));
      ask();
      await until(() => shared.stats().inflight === 0, 'resolved');
      await tick();
      maxHeld = Math.max(maxHeld, shared.stats().tcp_held_bytes);
    }
    await until(() => hr.answers.length === honestAsked, 'the reader\'s answers');
    // Never past the total; the oldest big holders went first, the reader never.
    expect(maxHeld).toBeLessThanOrEqual(4096);
    expect(shared.stats().tcp_evicted).toBeGreaterThanOrEqual(2);
    expect(reset.length).toBe(shared.stats().tcp_evicted);
    expect(reset).toContain(0);
    expect(honest.destroyed).toBe(false);
    expect(hr.answers.every((a) => a.rcode === 'NOERROR')).toBe(true);
    expect(shared.stats().tcp_open).toBe(1 + 5 - reset.length);
    for (const x of [honest, ...stuck]) x.destroy();
    expect(shared.stats()).toMatchObject({ tcp_open: 0, tcp_held_bytes: 0 });
  });
});
