/**
 * The control API over a real Unix socket with Node's http client, against a
 * real engine started by startDaemon, plus forwarded traffic reaching a
 * scripted in-process guest.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../src/daemon/daemon.js';
import { buildConfig } from '../src/daemon/options.js';
import { routes } from '../src/daemon/api.js';
import { readPcap } from '../src/wire/pcap.js';
import { GuestClient, ethType, ipDst, ipProto, ipSrc, udpPorts } from './support/guest-client.js';

const GW_MAC = Uint8Array.of(0xf6, 0x16, 0x36, 0xbc, 0xf9, 0xc6);
const GUEST_MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
const GUEST = 0xc0a84103;
const HOST_ALIAS = 0xc0a84102;
const GATEWAY = 0xc0a84101;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-api-'));
const apiSock = path.join(tmp, 'api.sock');
const qemuSock = path.join(tmp, 'qemu.sock');
const captureDir = path.join(tmp, 'captures');
let daemon: Daemon;
const out: string[] = [];
const logs: string[] = [];

interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: unknown;
}

function call(method: string, p: string, body?: unknown, raw?: string | Buffer, headers: Record<string, string> = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const data = raw ?? (body === undefined ? undefined : JSON.stringify(body));
    const req = http.request({ socketPath: apiSock, method, path: p, headers: { ...(data !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

function expectError(r: Res, status: number, text: string | RegExp): void {
  expect(r.status, r.text).toBe(status);
  expect(r.headers['content-type']).toBe('application/json');
  const e = (r.json as { error?: unknown }).error;
  expect(typeof e).toBe('string');
  if (typeof text === 'string') expect(e).toContain(text);
  else expect(e).toMatch(text);
}

beforeAll(async () => {
  const cfg = buildConfig({}, {
    'listen-qemu': [`unix://${qemuSock}`],
    listen: [`unix://${apiSock}`],
    'vm-tx-queue-limit': '262144',
    'vm-send-buffer': '524288',
    'log-format': 'json',
    'log-level': 'info',
    'capture-dir': captureDir,
  });
  daemon = await startDaemon(cfg, { out: { write: (s: string) => out.push(s) }, err: { write: (s: string) => logs.push(s) } });
});

afterAll(async () => {
  await daemon?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('daemon startup', () => {
  it('prints the listeners, the qemu arguments and a ready line', () => {
    const text = out.join('');
    expect(text).toContain(`qemu args: -netdev stream,id=n0,server=off,addr.type=unix,addr.path=${qemuSock} -device virtio-net-pci,netdev=n0`);
    expect(text).toContain(`control API on unix://${apiSock}`);
    expect(text.trimEnd().endsWith('vnetkit: ready')).toBe(true);
  });

  it('API and VM sockets are private to the user (0600)', () => {
    expect(fs.statSync(apiSock).mode & 0o777).toBe(0o600);
    expect(fs.statSync(qemuSock).mode & 0o777).toBe(0o600);
  });

  it('logs are JSON lines', () => {
    expect(logs.length).toBeGreaterThan(0);
    for (const l of logs.join('').trim().split('\n')) {
      const rec = JSON.parse(l) as { level: string; msg: string; time: string };
      expect(['debug', 'info', 'warn', 'error']).toContain(rec.level);
      expect(typeof rec.msg).toBe('string');
    }
  });
});

describe('control API: errors', () => {
  it('unknown path is 404', async () => {
    expectError(await call('GET', '/nope'), 404, 'unknown path "/nope"');
    expectError(await call('POST', '/services/forwarder'), 404, 'unknown path');
  });

  it('wrong method is 405 with Allow', async () => {
    const r = await call('GET', '/services/forwarder/expose');
    expectError(r, 405, 'method GET not allowed on /services/forwarder/expose');
    expect(r.headers.allow).toBe('POST');
    const r2 = await call('POST', '/stats', {});
    expectError(r2, 405, 'not allowed');
    expect(r2.headers.allow).toBe('GET');
    expectError(await call('DELETE', '/services/dns/all'), 405, 'DELETE');
  });

  it('bad JSON, empty body and non-object bodies are 400', async () => {
    expectError(await call('POST', '/services/forwarder/expose', undefined, '{"local": '), 400, 'request body is not valid JSON');
    expectError(await call('POST', '/services/forwarder/expose'), 400, 'request body is empty');
    expectError(await call('POST', '/services/forwarder/expose', [1, 2]), 400, 'must be a JSON object');
    expectError(await call('POST', '/services/dns/add', 'zone'), 400, 'must be a JSON object');
  });

  it('missing and mistyped fields are 400 and name the field', async () => {
    expectError(await call('POST', '/services/forwarder/expose', { remote: '192.168.65.3:80' }), 400, 'missing field "local"');
    expectError(await call('POST', '/services/forwarder/expose', { local: '127.0.0.1:0' }), 400, 'missing field "remote"');
    expectError(await call('POST', '/services/forwarder/expose', { local: '127.0.0.1:0', remote: 80 }), 400, 'field "remote" must be a string');
    expectError(await call('POST', '/services/forwarder/unexpose', { protocol: 'tcp' }), 400, 'missing field "local"');
    expectError(await call('POST', '/capture/start', {}), 400, 'missing field "file"');
    expectError(await call('POST', '/capture/start', { file: 5 }), 400, 'field "file" must be a string');
    expectError(await call('POST', '/capture/start', { file: 'x.pcap', snaplen: 'all' }), 400, 'field "snaplen" must be a number');
    expectError(await call('POST', '/capture/start', { file: 'x.pcap', snaplen: 10 }), 400, 'snaplen must be an integer from 64');
    expectError(await call('POST', '/services/dns/add', { Name: 5 }), 400, 'zone Name must be a string');
    expectError(await call('POST', '/services/dns/add', { Name: 'a.', Records: [{ Name: 'x', IP: '999.1.1.1' }] }), 400, 'is not an IPv4 address');
  });

  it('a forward outside the subnet is 400', async () => {
    expectError(await call('POST', '/services/forwarder/expose', { local: '127.0.0.1:0', remote: '10.1.2.3:80', protocol: 'tcp' }), 400, 'remote 10.1.2.3:80 is outside the virtual subnet 192.168.65.0/24');
  });

  it('a body over 1 MiB is 413', async () => {
    expectError(await call('POST', '/services/dns/add', undefined, Buffer.alloc((1 << 20) + 10, 0x20)), 413, 'over the 1048576-byte limit');
  });

  it('stop without a capture is 409', async () => {
    const r = await call('POST', '/capture/stop');
    expectError(r, 409, 'no capture is running');
    expect((r.json as { code: string }).code).toBe('ERR_VNETKIT_API_NO_CAPTURE');
  });

  it('capture names that are paths, escape the directory or are not plain names are 400 and create nothing', async () => {
    const outside = path.join(tmp, 'escaped.pcap');
    for (const file of [outside, '../escaped.pcap', 'sub/x.pcap', '..', '.', '', '.hidden', 'a..b', 'x'.repeat(129), 'bad name.pcap', 'new\nline', 'C:\\x.pcap']) {
      const r = await call('POST', '/capture/start', { file });
      expectError(r, 400, 'capture file name');
      expect((r.json as { code: string }).code, file).toBe('ERR_VNETKIT_CAPTURE_BAD_NAME');
    }
    expect(fs.existsSync(outside)).toBe(false);
    expect(fs.readdirSync(captureDir)).toEqual([]);
    expect((await call('GET', '/capture')).json).toBeNull();
  });

  it('a capture over an existing file is 409 and leaves the file untouched', async () => {
    const existing = path.join(captureDir, 'keep.pcap');
    fs.writeFileSync(existing, 'precious');
    try {
      const r = await call('POST', '/capture/start', { file: 'keep.pcap' });
      expectError(r, 409, 'already exists');
      expect((r.json as { code: string }).code).toBe('ERR_VNETKIT_CAPTURE_EXISTS');
      expect(fs.readFileSync(existing, 'utf8')).toBe('precious');
      expect((await call('GET', '/capture')).json).toBeNull();
    } finally {
      fs.rmSync(existing);
    }
  });

  it('a capture through a symlink is 409: neither the link\'s target nor a missing target is written', async () => {
    const target = path.join(tmp, 'target.txt');
    fs.writeFileSync(target, 'precious');
    const missing = path.join(tmp, 'would-be-created.txt');
    fs.symlinkSync(target, path.join(captureDir, 'link.pcap'));
    fs.symlinkSync(missing, path.join(captureDir, 'dangling.pcap'));
    try {
      expectError(await call('POST', '/capture/start', { file: 'link.pcap' }), 409, 'already exists');
      expectError(await call('POST', '/capture/start', { file: 'dangling.pcap' }), 409, 'already exists');
      expect(fs.readFileSync(target, 'utf8')).toBe('precious');
      expect(fs.existsSync(missing)).toBe(false);
    } finally {
      fs.rmSync(path.join(captureDir, 'link.pcap'));
      fs.rmSync(path.join(captureDir, 'dangling.pcap'));
    }
  });

  it('over the unix socket: a request with an Origin is 403; any Host and form-labelled JSON bodies (curl -d) are accepted', async () => {
    const o = await call('GET', '/stats', undefined, undefined, { Origin: 'http://evil.example' });
    expectError(o, 403, 'Origin');
    expect((o.json as { code: string }).code).toBe('ERR_VNETKIT_API_CROSS_ORIGIN');
    const zones = daemon.engine.dns.zones().length;
    const p = await call('POST', '/services/dns/add', { Name: 'x.' }, undefined, { Origin: 'null' });
    expectError(p, 403, 'Origin');
    expect(daemon.engine.dns.zones().length).toBe(zones);
    expect((await call('GET', '/stats', undefined, undefined, { Host: 'api' })).status).toBe(200);
    const body = JSON.stringify({ Name: 'form.internal.', Records: [{ Name: 'a', IP: '192.168.65.9' }] });
    const f = await call('POST', '/services/dns/add', undefined, body, { 'Content-Type': 'application/x-www-form-urlencoded' });
    expect(f.status, f.text).toBe(200);
  });

  it('malformed HTTP gets a 400 and the server keeps serving', async () => {
    const reply = await new Promise<string>((resolve) => {
      const s = net.connect(apiSock, () => s.write('BLAH\r\n\r\n'));
      let got = '';
      s.on('data', (d) => (got += d.toString()));
      s.on('close', () => resolve(got));
      s.on('error', () => resolve(got));
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect((await call('GET', '/stats')).status).toBe(200);
  });

  it('every route answers on its own path (table and server agree)', async () => {
    const table = routes({ engine: daemon.engine, forwarder: daemon.forwarder, capture: daemon.capture });
    for (const [p, methods] of Object.entries(table)) {
      for (const m of ['GET', 'POST']) {
        const r = await call(m, p, m === 'POST' ? {} : undefined);
        if (methods[m as 'GET' | 'POST'] === undefined) expect(r.status, `${m} ${p}`).toBe(405);
        else expect(r.status, `${m} ${p}`).not.toBe(405);
      }
    }
  });
});

describe('control API: services', () => {
  it('expose, list, duplicate (409), unexpose, unexpose again (404)', async () => {
    const r = await call('POST', '/services/forwarder/expose', { local: '127.0.0.1:0', remote: '192.168.65.3:80', protocol: 'tcp' });
    expect(r.status, r.text).toBe(200);
    const local = (r.json as { local: string }).local;
    expect(local).toMatch(/^127\.0\.0\.1:\d+$/);
    const all = await call('GET', '/services/forwarder/all');
    expect(all.json).toEqual([{ local, remote: '192.168.65.3:80', protocol: 'tcp' }]);
    expectError(await call('POST', '/services/forwarder/expose', { local, remote: '192.168.65.4:80', protocol: 'tcp' }), 409, `Bind for ${local} failed: port is already allocated`);
    expect((await call('POST', '/services/forwarder/unexpose', { local, protocol: 'tcp' })).status).toBe(200);
    expect((await call('GET', '/services/forwarder/all')).json).toEqual([]);
    expectError(await call('POST', '/services/forwarder/unexpose', { local, protocol: 'tcp' }), 404, 'proxy not found');
  });

  it('a port already taken on the host is refused with dockerd wording', async () => {
    const other = net.createServer();
    await new Promise<void>((res) => other.listen(0, '127.0.0.1', () => res()));
    const port = (other.address() as net.AddressInfo).port;
    try {
      expectError(await call('POST', '/services/forwarder/expose', { local: `127.0.0.1:${port}`, remote: '192.168.65.3:80' }), 409, `Bind for 127.0.0.1:${port} failed: port is already allocated`);
    } finally {
      other.close();
    }
  });

  it('DNS: add a zone, list it in gvisor-tap-vsock\'s shape', async () => {
    const zone = { Name: 'dynamic.internal.', Records: [{ Name: 'test', IP: '192.168.65.254' }], DefaultIP: '' };
    const r = await call('POST', '/services/dns/add', zone);
    expect(r.status, r.text).toBe(200);
    const all = (await call('GET', '/services/dns/all')).json as { Name: string; Records: { Name: string; IP: string }[]; DefaultIP: string }[];
    expect(all.find((z) => z.Name === 'dynamic.internal.')).toEqual(zone);
  });

  it('DHCP leases map IP to MAC', async () => {
    expect((await call('GET', '/services/dhcp/leases')).json).toEqual({});
    const mac = Uint8Array.of(0x02, 0, 0, 0, 0, 0x42);
    const offer = daemon.engine.dhcp.handle(dhcpMessage(mac, 1), mac, Date.now());
    expect(offer).not.toBeNull();
    const yiaddr = new DataView(offer!.reply.buffer, offer!.reply.byteOffset).getUint32(16);
    const ack = daemon.engine.dhcp.handle(dhcpMessage(mac, 3, yiaddr, GATEWAY), mac, Date.now());
    expect(ack).not.toBeNull();
    const leases = (await call('GET', '/services/dhcp/leases')).json as Record<string, string>;
    expect(leases).toEqual({ [fmt(yiaddr)]: '02:00:00:00:00:42' });
    // The address goes back: the scripted guest below configures it itself, and a live lease to another MAC would make that a spoof.
    daemon.engine.dhcp.release('02:00:00:00:00:42');
  });

  it('/vms shows each VM link\'s counters, with the cap --vm-tx-queue-limit set and the send buffer --vm-send-buffer got', async () => {
    const vm = net.connect(qemuSock);
    try {
      await new Promise<void>((r) => vm.once('connect', () => r()));
      type Vm = { framing: string; link: Record<string, number> };
      let vms: Vm[] = [];
      for (let t = 0; t < 100 && vms.length === 0; t++) {
        vms = (await call('GET', '/vms')).json as Vm[];
        if (vms.length === 0) await new Promise((r) => setTimeout(r, 10));
      }
      expect(vms).toHaveLength(1);
      expect(vms[0].framing).toBe('qemu');
      expect(vms[0].link).toMatchObject({ txQueueLimit: 262144, txFrames: 0, dropped: 0, backlog: 0 });
      // The kernel doubles the request and caps it at twice net.core.wmem_max.
      const wmemMax = Number(fs.readFileSync('/proc/sys/net/core/wmem_max', 'utf8'));
      expect(vms[0].link.sendBuffer).toBe(2 * Math.min(524288, wmemMax));
      expect((await call('GET', '/stats')).json).toMatchObject({ linkDrops: 0 });
    } finally {
      vm.destroy();
    }
    for (let t = 0; t < 100 && ((await call('GET', '/vms')).json as unknown[]).length > 0; t++) await new Promise((r) => setTimeout(r, 10));
  });

  it('stats, vms and flows are JSON', async () => {
    const s = (await call('GET', '/stats')).json as Record<string, unknown>;
    expect(typeof s.backend).toBe('string');
    expect(s).toHaveProperty('rx.frames');
    expect(s).toHaveProperty('forwarder.forwards');
    expect(Array.isArray((await call('GET', '/vms')).json)).toBe(true);
    expect(Array.isArray((await call('GET', '/flows')).json)).toBe(true);
  });

  it('metrics are Prometheus text: HELP/TYPE before samples, valid sample lines', async () => {
    const r = await call('GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    checkPrometheus(r.text);
    expect(r.text).toMatch(/^vnetkit_rx_frames_total \d+$/m);
    expect(r.text).toMatch(/^vnetkit_vms \d+$/m);
    expect(r.text).toMatch(/^vnetkit_forwards\{protocol="tcp"\} \d+$/m);
    expect(r.text).toMatch(/^vnetkit_dhcp_events_total\{event="[a-z_A-Z]+"\} \d+$/m);
    expect(r.text).toMatch(/^vnetkit_info\{backend="(wasm-simd|wasm|js)"\} 1$/m);
  });

  it('HEAD and a trailing slash and a query string reach the same route', async () => {
    expect((await call('GET', '/stats/')).status).toBe(200);
    expect((await call('GET', '/stats?x=1')).status).toBe(200);
    expect((await call('HEAD', '/stats')).status).toBe(200);
  });
});

describe('forwarding through the engine to a scripted guest', () => {
  let guest: GuestClient;
  beforeAll(async () => {
    guest = await GuestClient.connect(qemuSock, GUEST_MAC);
    // An ARP request teaches the engine where 192.168.65.3 lives.
    guest.send(guest.arpRequest(GUEST, GATEWAY));
    await guest.next((f) => ethType(f) === 0x0806);
  });
  afterAll(() => guest?.close());

  it('UDP: host datagram reaches the guest from the host alias; the guest\'s reply reaches the host client', async () => {
    const r = await call('POST', '/services/forwarder/expose', { local: '127.0.0.1:0', remote: '192.168.65.3:5353', protocol: 'udp' });
    expect(r.status, r.text).toBe(200);
    const port = Number((r.json as { local: string }).local.split(':')[1]);
    const client = dgram.createSocket('udp4');
    try {
      const reply = new Promise<string>((resolve) => client.once('message', (m) => resolve(m.toString())));
      client.send('ping', port, '127.0.0.1');
      const f = await guest.next((x) => ethType(x) === 0x0800 && ipProto(x) === 17 && udpPorts(x).dst === 5353);
      expect(ipSrc(f)).toBe(HOST_ALIAS);
      expect(ipDst(f)).toBe(GUEST);
      const srcPort = udpPorts(f).src;
      expect(srcPort).toBeGreaterThanOrEqual(49152);
      expect(Buffer.from(f.subarray(42)).toString()).toBe('ping');
      guest.send(guest.udpFrame(GW_MAC, GUEST, 5353, HOST_ALIAS, srcPort, new TextEncoder().encode('pong')));
      expect(await reply).toBe('pong');
    } finally {
      client.close();
      await call('POST', '/services/forwarder/unexpose', { local: (r.json as { local: string }).local, protocol: 'udp' });
    }
  });

  it('TCP: a host connection makes the engine send the guest a SYN from the host alias; /flows shows it', async () => {
    const r = await call('POST', '/services/forwarder/expose', { local: '127.0.0.1:0', remote: '192.168.65.3:80', protocol: 'tcp' });
    expect(r.status, r.text).toBe(200);
    const port = Number((r.json as { local: string }).local.split(':')[1]);
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    try {
      const syn = await guest.next((x) => ethType(x) === 0x0800 && ipProto(x) === 6 && udpPorts(x).dst === 80);
      expect(ipSrc(syn)).toBe(HOST_ALIAS);
      expect(syn[14 + 20 + 13] & 0x02).toBe(0x02);
      const flows = (await call('GET', '/flows')).json as { proto: string; guest: string; remote: string }[];
      expect(flows.some((fl) => fl.proto === 'tcp' && fl.guest === '192.168.65.3:80')).toBe(true);
      const m = (await call('GET', '/metrics')).text;
      expect(m).toMatch(/^vnetkit_flows\{proto="tcp"\} [1-9]\d*$/m);
    } finally {
      c.destroy();
      await call('POST', '/services/forwarder/unexpose', { local: (r.json as { local: string }).local });
    }
  });

  it('capture through the API records the guest\'s frames in a new 0600 pcap file in the capture directory', async () => {
    const file = path.join(captureDir, 'api.pcap');
    const s = await call('POST', '/capture/start', { file: 'api.pcap', snaplen: 128 });
    expect(s.status, s.text).toBe(200);
    expect(s.json).toEqual({ file, snaplen: 128 });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expectError(await call('POST', '/capture/start', { file: 'other.pcap' }), 409, 'already running');
    expect((await call('GET', '/capture')).json).toMatchObject({ file, snaplen: 128 });
    guest.send(guest.arpRequest(GUEST, GATEWAY));
    await guest.next((f) => ethType(f) === 0x0806);
    const stop = await call('POST', '/capture/stop');
    expect(stop.status).toBe(200);
    expect((stop.json as { frames: number }).frames).toBeGreaterThanOrEqual(2);
    const pcap = readPcap(fs.readFileSync(file));
    expect(pcap.records.length).toBe((stop.json as { frames: number }).frames);
    expect(pcap.records.some((rec) => rec.data.length >= 42 && rec.data[12] === 0x08 && rec.data[13] === 0x06)).toBe(true);
  });
});

function fmt(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function dhcpMessage(mac: Uint8Array, type: number, requested?: number, serverId?: number): Uint8Array {
  const opts: number[] = [53, 1, type];
  const be = (v: number) => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
  if (requested !== undefined) opts.push(50, 4, ...be(requested));
  if (serverId !== undefined) opts.push(54, 4, ...be(serverId));
  opts.push(255);
  const b = new Uint8Array(240 + opts.length);
  b[0] = 1;
  b[1] = 1;
  b[2] = 6;
  b.set([0xde, 0xad, 0xbe, 0xef], 4);
  b.set(mac, 28);
  b.set([0x63, 0x82, 0x53, 0x63], 236);
  b.set(opts, 240);
  return b;
}

/** Line-by-line check of the exposition format we emit. */
function checkPrometheus(text: string): void {
  expect(text.endsWith('\n')).toBe(true);
  const typed = new Map<string, string>();
  const sampleRe = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (-?\d+(\.\d+)?(e[+-]?\d+)?|NaN|[+-]Inf)$/;
  let lastHelp = '';
  for (const line of text.slice(0, -1).split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$/.exec(line))) {
      lastHelp = m[1];
      continue;
    }
    if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$/.exec(line))) {
      expect(m[1]).toBe(lastHelp);
      expect(typed.has(m[1]), `duplicate TYPE ${m[1]}`).toBe(false);
      typed.set(m[1], m[2]);
      continue;
    }
    const s = sampleRe.exec(line);
    expect(s, `bad sample line: ${line}`).not.toBeNull();
    expect(typed.has(s![1]), `sample before TYPE: ${line}`).toBe(true);
    if (typed.get(s![1]) === 'counter') expect(s![1].endsWith('_total')).toBe(true);
  }
}
