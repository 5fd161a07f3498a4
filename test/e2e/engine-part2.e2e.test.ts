/**
 * vnetkit's TCP with real Linux guests (qemu TCG, busybox wget/nc): what the
 * guest's own tools print is the assertion, checked against what the host-side
 * servers saw. Part 2: 64 MiB each way with matching hashes (at MTU 1500 and
 * 65520), 200 simultaneous connections, refused connections failing fast, a
 * half-closed connection still receiving, and an idle connection surviving a
 * pause longer than every engine timer.
 *
 * Three boots, one kernel backend each (wasm-simd, wasm, js), so every backend
 * carries real guest TCP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createEngine, type EngineOptions } from '../../src/index.js';
import { context, startGuest, type GuestResult, type TestbedLine } from './harness.js';
import { startUdpEcho, type UdpEcho } from './host-services.js';
import {
  closedPort, MemoryCapture, startBlobServer, startLineEcho, startSinkServer, startTokenServer, tcpPayloadStats,
  type BlobServer, type LineEchoServer, type SinkServer, type TokenServer,
} from './tcp-services.js';

type Engine = ReturnType<typeof createEngine>;

const GW = '192.168.65.1';
const HOST = '192.168.65.2';
const MIB = 1 << 20;
const BULK_MIB = 64;
const PARALLEL = 200;
/** Longer than every timer the engine has once configured below (UDP idle 1 s, connect 2 s, RTO ≤ 60 s only with data outstanding). */
const PAUSE_S = 15;

function engineOptions(backend: 'wasm-simd' | 'wasm' | 'js', mtu: number, extra: Partial<EngineOptions> = {}): EngineOptions {
  return {
    backend,
    subnet: '192.168.65.0/24',
    gatewayIp: GW,
    hostIp: HOST,
    dhcpStart: '192.168.65.3',
    mtu,
    // names the guest needs (host.docker.internal) are the engine's own; nothing goes upstream
    dns: { upstreams: [], zones: [], hostsFile: null },
    ...extra,
  };
}

const field = (l: TestbedLine | undefined, k: string) => l?.fields[k];
const num = (l: TestbedLine | undefined, k: string) => Number(l?.fields[k] ?? NaN);

describe('vnetkit engine TCP with real guests (part 2)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-e2e2-'));
  const engines: Engine[] = [];
  const closers: (() => Promise<void>)[] = [];
  let blob: BlobServer;

  beforeAll(async () => {
    blob = await startBlobServer(BULK_MIB * MIB, 2);
    closers.push(blob.close);
  });
  afterAll(async () => {
    await Promise.all(engines.map((e) => e.close()));
    await Promise.all(closers.map((c) => c()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function engineOn(name: string, opts: EngineOptions): Promise<{ engine: Engine; sock: string }> {
    const engine = createEngine(opts);
    engines.push(engine);
    const sock = path.join(dir, `${name}.sock`);
    await engine.listen(`unix://${sock}`, { framing: 'qemu' });
    return { engine, sock };
  }

  describe('MTU 1500, SIMD WASM: 64 MiB down through host.docker.internal, 64 MiB up, an idle connection across a 15 s pause', () => {
    let engine: Engine;
    let r: GuestResult;
    let sink: SinkServer;
    let echo: LineEchoServer;
    let udp: UdpEcho;
    let requestsBefore = 0;
    const pause: Record<'start' | 'end', { tcp: Record<string, number>; udpFlows: number; udpExpired: number; held: string[] } | undefined> = {
      start: undefined,
      end: undefined,
    };

    beforeAll(async () => {
      let sock: string;
      ({ engine, sock } = await engineOn('bulk1500', engineOptions('wasm-simd', 1500, { udpIdleMs: 1000, tcp: { connectTimeoutMs: 2000 } })));
      sink = await startSinkServer();
      echo = await startLineEcho();
      udp = await startUdpEcho();
      closers.push(sink.close, echo.close, udp.close);
      requestsBefore = blob.requests.length;
      const snap = () => {
        const s = engine.stats();
        return {
          tcp: { ...s.tcp },
          udpFlows: s.udp.flows,
          udpExpired: s.udp.expired,
          held: engine.flows().filter((f) => f.proto === 'tcp' && f.remote.endsWith(`:${echo.port}`)).map((f) => f.state),
        };
      };
      const g = await startGuest({
        name: 'part2-bulk1500',
        socket: sock,
        mac: '52:54:00:e2:40:01',
        timeoutMs: 150_000,
        env: {
          BLOB_PORT: String(blob.port),
          SINK_PORT: String(sink.port),
          ECHO_PORT: String(echo.port),
          UDP_PORT: String(udp.port),
        },
        // the snapshots are taken as the lines arrive: the guest prints them only
        // after everything before has been acknowledged (a 1 s settle covers delayed ACKs)
        onLine: (l) => {
          if (l.what === 'pause' && (l.args[0] === 'start' || l.args[0] === 'end')) pause[l.args[0]] = snap();
        },
        script: `
          tb_dhcp || exit 1
          tb_link
          tb_dns host.docker.internal
          tb_fetch_md5 "http://host.docker.internal:$BLOB_PORT/blob" || exit 2
          tb_gen /tmp/up ${BULK_MIB} || exit 3
          tb_send upload ${HOST} "$SINK_PORT" /tmp/up || exit 4
          rm -f /tmp/up
          tb_hold_open ${HOST} "$ECHO_PORT" || exit 5
          tb_hold_send idle-1 echo:idle-1 || exit 6
          # a UDP binding made just before the pause must expire during it (udpIdleMs 1 s):
          # proof that the engine's timers ran while the TCP connection sat idle
          tb_udp ${HOST} "$UDP_PORT" before-pause
          sleep 1
          tb pause start at=$(tb_cs)
          sleep ${PAUSE_S}
          tb pause end at=$(tb_cs)
          tb_hold_send idle-2 echo:idle-2 || exit 7
          tb_hold_close || exit 8
          exit 0`,
      });
      r = await g.result;
    });

    it('the guest script ran to the end', () => {
      expect(r.exitCode, context(r)).toBe(0);
      expect(engine.stats().backend).toBe('wasm-simd');
    });

    it('64 MiB download: the guest resolves host.docker.internal, wget streams it and md5sum matches the host', () => {
      const d = r.find('dns');
      expect(d?.status, context(r)).toBe('ok');
      expect(d!.args[0]).toBe('host.docker.internal');
      expect(field(d, 'addr')).toBe(HOST);
      const f = r.find('fetch');
      expect(f?.status, context(r)).toBe('ok');
      expect(f!.args[0]).toBe(`http://host.docker.internal:${blob.port}/blob`);
      expect(field(f, 'md5')).toBe(blob.md5);
      const reqs = blob.requests.slice(requestsBefore);
      expect(reqs).toHaveLength(1);
      // the engine's host side of the connection is the loopback socket it opened
      expect(reqs[0]).toMatchObject({ url: '/blob', remote: '127.0.0.1', finished: true });
      expect(reqs[0].bytesWritten).toBeGreaterThan(BULK_MIB * MIB);
    });

    it('64 MiB upload: the host receives every byte with the md5 the guest computed, and says so after EOF', () => {
      const gen = r.find('gen', 'ok');
      expect(gen, context(r)).toBeDefined();
      expect(num(gen, 'bytes')).toBe(BULK_MIB * MIB);
      const up = r.find('upload');
      expect(up?.status, context(r)).toBe('ok');
      expect(field(up, 'reply')).toBe(`bytes=${BULK_MIB * MIB}_md5=${field(gen, 'md5')}_head=${sink.uploads[0]?.head}`);
      expect(sink.uploads).toHaveLength(1);
      expect(sink.uploads[0]).toMatchObject({ bytes: BULK_MIB * MIB, md5: field(gen, 'md5'), sawEof: true, replied: true, remote: '127.0.0.1' });
    });

    it(`an idle connection survives a ${PAUSE_S} s pause with no segment either way, then carries data both ways`, () => {
      const sends = r.findAll('hold-send');
      expect(sends.map((s) => `${s.status}:${s.args[0]}`), context(r)).toEqual(['ok:idle-1', 'ok:idle-2']);
      const close = r.find('hold-close');
      expect(close?.status, context(r)).toBe('ok');
      expect(field(close, 'received')).toBe('echo:idle-1|echo:idle-2|bye|');
      // one host connection carried both lines, PAUSE_S+ apart
      expect(echo.conns).toHaveLength(1);
      const c = echo.conns[0];
      expect(c.lines.map((l) => l.text)).toEqual(['idle-1', 'idle-2']);
      expect(c.sawEof).toBe(true);
      expect(c.lines[1].at - c.lines[0].at).toBeGreaterThanOrEqual(PAUSE_S * 1000);
      const start = r.findAll('pause').find((l) => l.args[0] === 'start');
      const end = r.findAll('pause').find((l) => l.args[0] === 'end');
      expect(num(end, 'at') - num(start, 'at')).toBeGreaterThanOrEqual(PAUSE_S * 100);
      // the engine held the flow established through the pause and exchanged nothing on it
      expect(pause.start?.held).toEqual(['established']);
      expect(pause.end?.held).toEqual(['established']);
      expect(pause.end!.tcp.segmentsIn - pause.start!.tcp.segmentsIn).toBe(0);
      expect(pause.end!.tcp.segmentsOut - pause.start!.tcp.segmentsOut).toBe(0);
      expect(pause.end!.tcp.aborted).toBe(pause.start!.tcp.aborted);
      expect(pause.end!.tcp.gaveUp).toBe(pause.start!.tcp.gaveUp);
    });

    it('while it sat idle, the 1 s UDP idle timer did fire', () => {
      expect(r.find('udp')?.status, context(r)).toBe('ok');
      expect(pause.start?.udpFlows).toBeLessThanOrEqual(1);
      expect(pause.end?.udpFlows).toBe(0);
      expect(pause.end!.udpExpired).toBeGreaterThanOrEqual(1);
    });
  });

  describe('MTU 65520, scalar WASM: 64 MiB both ways in large segments', () => {
    let engine: Engine;
    let r: GuestResult;
    let sink: SinkServer;
    let requestsBefore = 0;
    let guestIp = '';
    // headers only: ~100 bytes per segment, a few MB for both transfers
    const down = new MemoryCapture();
    const up = new MemoryCapture();

    beforeAll(async () => {
      let sock: string;
      ({ engine, sock } = await engineOn('bulk65520', engineOptions('wasm', 65520)));
      sink = await startSinkServer();
      closers.push(sink.close);
      requestsBefore = blob.requests.length;
      const captures: Record<string, MemoryCapture> = { down, up };
      const g = await startGuest({
        name: 'part2-bulk65520',
        socket: sock,
        mac: '52:54:00:e2:50:01',
        timeoutMs: 120_000,
        env: { BLOB_PORT: String(blob.port), SINK_PORT: String(sink.port) },
        onLine: (l) => {
          if (l.what !== 'capture') return;
          const c = captures[l.args[0]];
          if (c) engine.startCapture(c, { snaplen: 128 });
          else void engine.stopCapture();
        },
        script: `
          tb_dhcp || exit 1
          tb_link
          tb_gen /tmp/up ${BULK_MIB} || exit 2
          tb capture down
          sleep 1
          tb_fetch_md5 "http://${HOST}:$BLOB_PORT/blob" || exit 3
          tb capture up
          sleep 1
          tb_send upload ${HOST} "$SINK_PORT" /tmp/up || exit 4
          sleep 1
          tb capture stop
          exit 0`,
      });
      r = await g.result;
      await engine.stopCapture();
      guestIp = r.find('dhcp', 'ok')?.args[0] ?? '';
    });

    it('the guest script ran to the end with the 65520 MTU from DHCP applied', () => {
      expect(r.exitCode, context(r)).toBe(0);
      expect(field(r.find('dhcp', 'ok'), 'mtu'), context(r)).toBe('65520');
      expect(field(r.find('link', 'ok'), 'mtu'), context(r)).toBe('65520');
      expect(engine.stats().backend).toBe('wasm');
    });

    it('64 MiB download with a matching md5, carried in segments up to the 65480-byte MSS', () => {
      const f = r.find('fetch');
      expect(f?.status, context(r)).toBe('ok');
      expect(field(f, 'md5')).toBe(blob.md5);
      const reqs = blob.requests.slice(requestsBefore);
      expect(reqs).toHaveLength(1);
      expect(reqs[0]).toMatchObject({ url: '/blob', remote: '127.0.0.1', finished: true });
      const s = tcpPayloadStats(down.bytes(), HOST);
      const msg = JSON.stringify(s);
      expect(s.pcapError, msg).toBe('');
      expect(down.dropped, msg).toBe(0);
      // body plus the HTTP header (and any retransmission) went engine → guest
      expect(s.payloadBytes, msg).toBeGreaterThan(BULK_MIB * MIB);
      expect(s.maxPayload, msg).toBeLessThanOrEqual(65480);
      expect(s.maxPayload, msg).toBeGreaterThan(32768);
      // the engine cuts segments from what the host socket delivered, so nearly all
      // bytes go in large ones; at MTU 1500 nothing could exceed 1460 bytes
      expect(s.bytesInLarge / s.payloadBytes, msg).toBeGreaterThan(0.9);
    });

    it('64 MiB upload with a matching md5, carried in segments up to the 65480-byte MSS', () => {
      const gen = r.find('gen', 'ok');
      const u = r.find('upload');
      expect(u?.status, context(r)).toBe('ok');
      expect(field(u, 'reply')).toContain(`bytes=${BULK_MIB * MIB}_md5=${field(gen, 'md5')}_`);
      expect(sink.uploads).toHaveLength(1);
      expect(sink.uploads[0]).toMatchObject({ bytes: BULK_MIB * MIB, md5: field(gen, 'md5'), sawEof: true });
      const s = tcpPayloadStats(up.bytes(), guestIp);
      const msg = JSON.stringify(s);
      expect(s.pcapError, msg).toBe('');
      expect(up.dropped, msg).toBe(0);
      expect(s.payloadBytes, msg).toBeGreaterThanOrEqual(BULK_MIB * MIB);
      expect(s.maxPayload, msg).toBeLessThanOrEqual(65480);
      expect(s.maxPayload, msg).toBeGreaterThan(32768);
      // how busybox nc's writes coalesce depends on ACK timing (Nagle), so some
      // segments are small (seen: 12% of the bytes); at MTU 1500 the share would be 0
      expect(s.bytesInLarge / s.payloadBytes, msg).toBeGreaterThan(0.5);
    });
  });

  describe('MTU 1500, JS kernels: 200 simultaneous connections, refused ports, half-close', () => {
    let engine: Engine;
    let r: GuestResult;
    let tokens: TokenServer;
    let half: SinkServer;
    let closed: number;
    let flowsAtBarrier = -1;

    beforeAll(async () => {
      let sock: string;
      ({ engine, sock } = await engineOn('conns', engineOptions('js', 1500)));
      // replies wait until all 200 are open at once (or 30 s: then the count shows the loss)
      tokens = await startTokenServer(PARALLEL, 30_000);
      void tokens.barrier.then(() => (flowsAtBarrier = engine.stats().tcp.flows));
      half = await startSinkServer(1000);
      closed = await closedPort();
      closers.push(tokens.close, half.close);
      const g = await startGuest({
        name: 'part2-conns',
        socket: sock,
        mac: '52:54:00:e2:60:01',
        timeoutMs: 120_000,
        env: { TOKEN_PORT: String(tokens.port), HALF_PORT: String(half.port), CLOSED_PORT: String(closed) },
        script: `
          tb_dhcp || exit 1
          tb_tcp_parallel ${HOST} "$TOKEN_PORT" ${PARALLEL} 60
          tb_tcp_refused ${HOST} "$CLOSED_PORT" nc
          tb_tcp_refused ${HOST} "$CLOSED_PORT" wget
          tb_say half ${HOST} "$HALF_PORT" half-close-probe
          exit 0`,
      });
      r = await g.result;
    });

    it('the guest script ran to the end', () => {
      expect(r.exitCode, context(r)).toBe(0);
      expect(engine.stats().backend).toBe('js');
    });

    it(`${PARALLEL} parallel guest connections were all open at once and all got their own token`, () => {
      const p = r.find('parallel');
      expect(p?.status, context(r)).toBe('ok');
      expect(p!.fields).toMatchObject({ n: String(PARALLEL), ok: String(PARALLEL), distinct: String(PARALLEL), errs: '0' });
      expect(tokens.accepted).toBe(PARALLEL);
      expect(tokens.maxOpen).toBe(PARALLEL);
      expect(tokens.replied).toBe(PARALLEL);
      expect(new Set(tokens.tokens.values()).size).toBe(PARALLEL);
      expect(flowsAtBarrier).toBeGreaterThanOrEqual(PARALLEL);
      // the flows were torn down afterwards, not leaked
      expect(engine.stats().tcp.flows).toBe(0);
    });

    it('a closed host port is refused at once: nc and wget print "Connection refused" well under 1 s', () => {
      const ref = r.findAll('refused');
      expect(ref.map((l) => `${l.status}:${l.fields.tool}`), context(r)).toEqual(['ok:nc', 'ok:wget']);
      for (const l of ref) {
        expect(l.args[0]).toBe(`${HOST}:${closed}`);
        expect(l.fields.err).toMatch(/can't_connect_to_remote_host.*Connection_refused/);
        expect(num(l, 'ms')).toBeLessThan(500);
      }
      expect(engine.stats().tcp.refused).toBeGreaterThanOrEqual(2);
    });

    it('after the guest half-closes, the reply the host sends a second later still arrives', () => {
      const h = r.find('half');
      expect(h?.status, context(r)).toBe('ok');
      expect(field(h, 'reply')).toMatch(/^bytes=16_md5=[0-9a-f]{32}_head=half-close-probe$/);
      expect(num(h, 'ms')).toBeGreaterThanOrEqual(1000);
      expect(half.uploads).toHaveLength(1);
      expect(half.uploads[0]).toMatchObject({ bytes: 16, head: 'half-close-probe', sawEof: true, replied: true });
    });
  });
});
