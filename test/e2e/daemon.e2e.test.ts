/**
 * The `vnetkit` daemon with real guests (qemu TCG, busybox userland), run as
 * a user would run it: a spawned CLI process, the qemu socket it printed, and
 * its control API on the Unix socket beside it.
 *
 * Boot 1 (no arguments): DHCP at the printed socket; forwards exposed and
 * unexposed through the API reach busybox httpd (TCP) and a netcat UDP
 * responder; a duplicate expose is refused; a pcap started through the API
 * shows the guest's DHCP and TCP packets to tshark.
 * Boot 2 (flags): a static forward from --forward with
 * --source-ip-preservation: the guest's CGI sees the real client address
 * and port.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { REPO_ROOT, startGuest, type RunningGuest } from './harness.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-daemon-e2e-'));
const children = new Set<ChildProcess>();
const guests = new Set<RunningGuest>();
afterEach(() => {
  for (const g of guests) g.kill();
  guests.clear();
  for (const c of children) c.kill('SIGKILL');
  children.clear();
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// The guest serves a page, a CGI that prints who connected, and a UDP line responder.
const GUEST_SERVICES = `
tb_dhcp || exit 1
mkdir -p /www/cgi-bin
echo hello-from-guest >/www/index.html
printf '#!/bin/sh\\necho "Content-Type: text/plain"\\necho\\necho "peer=$REMOTE_ADDR:$REMOTE_PORT"\\n' >/www/cgi-bin/who
chmod +x /www/cgi-bin/who
httpd -p 80 -h /www || { tb httpd fail; exit 1; }
mkfifo /tmp/udpf
( nc.openbsd -u -l 7777 </tmp/udpf | while read l; do echo "udp-reply:$l"; done >/tmp/udpf ) &
# The engine learns a guest's address from the guest's own IP/ARP traffic (not yet from
# its DHCP lease), so a guest that only listens must say something first.
tb_ping 192.168.65.1 1 >/dev/null
tb services ok
sleep 110
`;

interface Cli {
  child: ChildProcess;
  out(): string;
  err(): string;
  waitOut(re: RegExp, ms?: number): Promise<RegExpExecArray>;
  exit: Promise<number | null>;
}

function startCli(args: string[], env: Record<string, string> = {}): Cli {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/daemon/cli.ts'), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => { children.delete(child); resolve(code); }));
  return {
    child,
    out: () => out,
    err: () => err,
    exit,
    async waitOut(re, ms = 30_000) {
      const end = Date.now() + ms;
      for (;;) {
        const m = re.exec(out);
        if (m) return m;
        if (child.exitCode !== null) throw new Error(`vnetkit exited (${child.exitCode}) before ${re}\n${out}\n${err}`);
        if (Date.now() > end) throw new Error(`timed out waiting for ${re}\n${out}\n${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

function api(sock: string, method: string, p: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request({ socketPath: sock, method, path: p, headers: data ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } : {} }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, json, text });
      });
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

/** HTTP/1.0 GET over a raw socket so the client's local address and port are ours to choose. */
function httpGet(port: number | string, p: string, opts: { host?: string; localAddress?: string; localPort?: number } = {}): Promise<{ status: number; body: string; localPort: number }> {
  return new Promise((resolve, reject) => {
    const s = typeof port === 'string' ? net.connect({ path: port }) : net.connect({ host: opts.host ?? '127.0.0.1', port, localAddress: opts.localAddress, localPort: opts.localPort });
    let raw = '';
    let lp = 0;
    s.setTimeout(30_000, () => s.destroy(new Error('HTTP request timed out')));
    s.on('connect', () => {
      lp = s.localPort ?? 0;
      s.write(`GET ${p} HTTP/1.0\r\nHost: guest\r\n\r\n`);
    });
    s.on('data', (d) => (raw += d.toString()));
    s.on('error', reject);
    s.on('close', () => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(raw);
      if (!m) return reject(new Error(`no HTTP response: ${JSON.stringify(raw.slice(0, 200))}`));
      resolve({ status: Number(m[1]), body: raw.slice(raw.indexOf('\r\n\r\n') + 4), localPort: lp });
    });
  });
}

function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

async function udpAsk(port: number, msg: string, tries = 5): Promise<string> {
  const s = dgram.createSocket('udp4');
  try {
    for (let i = 0; i < tries; i++) {
      const got = await new Promise<string | null>((resolve) => {
        const t = setTimeout(() => resolve(null), 3000);
        s.once('message', (m) => {
          clearTimeout(t);
          resolve(m.toString());
        });
        s.send(msg, port, '127.0.0.1');
      });
      if (got !== null) return got;
    }
    throw new Error('no UDP reply');
  } finally {
    s.close();
  }
}

function tsharkCount(file: string, filter: string): number {
  const r = spawnSync('tshark', ['-r', file, '-Y', filter, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`tshark failed (install it: scripts/testbed/install-deps.sh): ${r.error?.message ?? r.stderr}`);
  return r.stdout.split('\n').filter((l) => l.trim() !== '').length;
}

const portOf = (local: string) => Number(local.slice(local.lastIndexOf(':') + 1));

describe('vnetkit daemon with a real guest', () => {
  it('no arguments: the guest joins at the printed socket; API forwards (tcp, unix, udp), duplicate refused, unexpose; pcap read by tshark', async () => {
    const xdg = fs.mkdtempSync(path.join(tmp, 'xdg-'));
    const cli = startCli([], { XDG_RUNTIME_DIR: xdg });
    const m = await cli.waitOut(/^qemu args: .*addr\.path=(\S+) -device virtio-net-pci,netdev=n0$/m);
    const apiSock = (await cli.waitOut(/control API on unix:\/\/(\S+)/))[1];
    await cli.waitOut(/^vnetkit: ready$/m);
    const qemuSock = m[1];
    expect(path.dirname(qemuSock)).toBe(path.join(xdg, 'vnetkit'));

    const pcap = path.join(xdg, 'vnetkit', 'captures', 'daemon.pcap');
    const cap = await api(apiSock, 'POST', '/capture/start', { file: 'daemon.pcap', snaplen: 65535 });
    expect(cap.status, cap.text).toBe(200);

    const g = await startGuest({ socket: qemuSock, name: 'daemon-noargs', script: GUEST_SERVICES, timeoutMs: 120_000 });
    guests.add(g);
    const dhcp = await g.waitFor((l) => l.what === 'dhcp');
    expect(dhcp.status, dhcp.raw).toBe('ok');
    const guestIp = dhcp.args[0];
    expect(guestIp).toMatch(/^192\.168\.65\.\d+$/);
    expect((await g.waitFor((l) => l.what === 'services' || l.what === 'httpd')).status).toBe('ok');
    expect(cli.err()).toMatch(/vm connected/);

    const leases = await api(apiSock, 'GET', '/services/dhcp/leases');
    expect(leases.json[guestIp]).toBe('52:54:00:12:34:56');

    // TCP through a forward exposed over the API
    const ex = await api(apiSock, 'POST', '/services/forwarder/expose', { local: '127.0.0.1:0', remote: `${guestIp}:80`, protocol: 'tcp' });
    expect(ex.status, ex.text).toBe(200);
    const tcpLocal = ex.json.local as string;
    const page = await httpGet(portOf(tcpLocal), '/index.html');
    expect(page.status).toBe(200);
    expect(page.body.trim()).toBe('hello-from-guest');
    // Default source: the host alias and a port from vnetkit's range, not the client's.
    const who = await httpGet(portOf(tcpLocal), '/cgi-bin/who', { localPort: 40000 + Math.floor(Math.random() * 5000) });
    expect(who.status).toBe(200);
    const peer = /peer=\[?(?:::ffff:)?([\d.]+)\]?:(\d*)/.exec(who.body);
    expect(peer, who.body).not.toBeNull();
    expect(peer![1]).toBe('192.168.65.2');
    if (peer![2] !== '') expect(Number(peer![2])).toBeGreaterThanOrEqual(49152);

    const all = await api(apiSock, 'GET', '/services/forwarder/all');
    expect(all.json).toEqual([{ local: tcpLocal, remote: `${guestIp}:80`, protocol: 'tcp' }]);
    const dup = await api(apiSock, 'POST', '/services/forwarder/expose', { local: tcpLocal, remote: `${guestIp}:80`, protocol: 'tcp' });
    expect(dup.status).toBe(409);
    expect(dup.json.error).toContain(`Bind for ${tcpLocal} failed: port is already allocated`);

    // A host Unix socket to the guest's TCP port
    const unixLocal = path.join(tmp, 'guest-http.sock');
    const uex = await api(apiSock, 'POST', '/services/forwarder/expose', { local: unixLocal, remote: `${guestIp}:80`, protocol: 'unix' });
    expect(uex.status, uex.text).toBe(200);
    const viaUnix = await httpGet(unixLocal, '/index.html');
    expect(viaUnix.body.trim()).toBe('hello-from-guest');

    // UDP through a forward
    const ux = await api(apiSock, 'POST', '/services/forwarder/expose', { local: '127.0.0.1:0', remote: `${guestIp}:7777`, protocol: 'udp' });
    expect(ux.status, ux.text).toBe(200);
    expect((await udpAsk(portOf(ux.json.local), 'ping\n')).trim()).toBe('udp-reply:ping');

    const flows = await api(apiSock, 'GET', '/flows');
    expect(Array.isArray(flows.json)).toBe(true);
    const metrics = await api(apiSock, 'GET', '/metrics');
    expect(metrics.text).toMatch(/^vnetkit_vms 1$/m);

    // Unexpose: the host port is closed again
    expect((await api(apiSock, 'POST', '/services/forwarder/unexpose', { local: tcpLocal, protocol: 'tcp' })).status).toBe(200);
    expect(await connectRefused(portOf(tcpLocal))).toBe(true);
    expect((await api(apiSock, 'POST', '/services/forwarder/unexpose', { local: tcpLocal, protocol: 'tcp' })).status).toBe(404);

    const stop = await api(apiSock, 'POST', '/capture/stop');
    expect(stop.status, stop.text).toBe(200);
    expect(tsharkCount(pcap, 'dhcp')).toBeGreaterThanOrEqual(4);
    expect(tsharkCount(pcap, 'dhcp.option.dhcp == 5')).toBeGreaterThanOrEqual(1); // ACK
    expect(tsharkCount(pcap, `tcp.port == 80 && ip.addr == ${guestIp}`)).toBeGreaterThanOrEqual(6);
    expect(tsharkCount(pcap, 'tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == 80')).toBeGreaterThanOrEqual(2);
    expect(tsharkCount(pcap, 'udp.port == 7777')).toBeGreaterThanOrEqual(2);

    g.kill();
    cli.child.kill('SIGTERM');
    expect(await cli.exit).toBe(0);
    expect(fs.existsSync(qemuSock)).toBe(false);
    expect(fs.existsSync(apiSock)).toBe(false);
    expect(fs.existsSync(unixLocal)).toBe(false);
  });

  it('--forward with --source-ip-preservation: the guest sees the client\'s own address and port', async () => {
    const qemuSock = path.join(tmp, 'pres-qemu.sock');
    const apiSock = path.join(tmp, 'pres-api.sock');
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    // A non-loopback host address, when there is one, shows the address itself is preserved.
    const ext = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
    const bindHost = ext ?? '127.0.0.1';
    const cli = startCli([
      '--listen-qemu', `unix://${qemuSock}`,
      '--listen', `unix://${apiSock}`,
      '--forward', `tcp:${bindHost}:${port}:192.168.65.3:80`,
      '--source-ip-preservation',
      '--log-level', 'debug',
    ]);
    await cli.waitOut(/^vnetkit: ready$/m);
    const g = await startGuest({ socket: qemuSock, name: 'daemon-preserve', script: GUEST_SERVICES, timeoutMs: 120_000 });
    guests.add(g);
    const dhcp = await g.waitFor((l) => l.what === 'dhcp');
    expect(dhcp.status, dhcp.raw).toBe('ok');
    expect(dhcp.args[0]).toBe('192.168.65.3');
    expect((await g.waitFor((l) => l.what === 'services' || l.what === 'httpd')).status).toBe('ok');

    const all = await api(apiSock, 'GET', '/services/forwarder/all');
    expect(all.json).toEqual([{ local: `${bindHost}:${port}`, remote: '192.168.65.3:80', protocol: 'tcp' }]);
    const clientPort = 40000 + Math.floor(Math.random() * 5000);
    const who = await httpGet(port, '/cgi-bin/who', { host: bindHost, localAddress: bindHost, localPort: clientPort });
    expect(who.status, who.body).toBe(200);
    const peer = /peer=\[?(?:::ffff:)?([\d.]+)\]?:(\d*)/.exec(who.body);
    expect(peer, who.body).not.toBeNull();
    // A loopback client has no address the guest could answer, so it shows as the host alias.
    expect(peer![1]).toBe(ext ?? '192.168.65.2');
    if (peer![2] !== '') expect(Number(peer![2])).toBe(clientPort);

    g.kill();
    cli.child.kill('SIGTERM');
    expect(await cli.exit).toBe(0);
    expect(fs.existsSync(qemuSock)).toBe(false);
  });
});
