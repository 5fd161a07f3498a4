/**
 * The harness checked against a known-good network stack (qemu's slirp behind
 * the same stream/dgram wire protocol vnetkit speaks), so that a failing
 * vnetkit e2e test points at the engine, not at the testbed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bootGuest, context, freeUdpPort, parseTestbedLine, startGuest, type GuestResult } from './harness.js';
import { startRefEngine, type RefEngine } from './ref-engine.js';
import { startUdpEcho, type UdpEcho } from './host-services.js';

const SLIRP =
  'net=192.168.65.0/24,host=192.168.65.2,dhcpstart=192.168.65.3,dns=192.168.65.1,' +
  'domainname=vnetkit.test,dnssearch=vnetkit.test,dnssearch=corp.example';

describe('TESTBED line parser', () => {
  it('strips the console reset sequences that precede the first line', () => {
    const l = parseTestbedLine('\x1bc\x1b[?7l\x1b[2JTESTBED: init up uptime=1.79 kernel=6.1.0\r');
    expect(l).toEqual({
      raw: 'TESTBED: init up uptime=1.79 kernel=6.1.0',
      what: 'init',
      status: null,
      args: ['up'],
      fields: { uptime: '1.79', kernel: '6.1.0' },
    });
  });

  it('splits status, positional words and key=value fields', () => {
    const l = parseTestbedLine('TESTBED: dhcp ok 192.168.65.3 prefix=24 search=a.test,b.test');
    expect(l?.status).toBe('ok');
    expect(l?.args).toEqual(['192.168.65.3']);
    expect(l?.fields).toEqual({ prefix: '24', search: 'a.test,b.test' });
  });

  it('ignores lines that only contain the marker somewhere', () => {
    expect(parseTestbedLine('[    3.7] oops TESTBED: exit 0')).toBeNull();
    expect(parseTestbedLine('reboot: Power down')).toBeNull();
  });
});

describe('guest harness against the slirp reference engine', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-harness-'));
  let echo: UdpEcho;
  const refs: RefEngine[] = [];

  beforeAll(async () => {
    echo = await startUdpEcho();
  });
  afterAll(async () => {
    await Promise.all(refs.map((r) => r.close()));
    await echo.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('boots over a unix stream socket: DHCP, ping, UDP, env, files and the exit code', async () => {
    const sock = path.join(dir, 'ref-stream.sock');
    refs.push(await startRefEngine({ socket: sock, slirp: SLIRP, log: path.join(dir, 'ref-stream.log') }));
    const r: GuestResult = await bootGuest({
      name: 'harness-stream',
      socket: sock,
      mac: '52:54:00:e2:00:01',
      env: { UDP_PORT: String(echo.port), GREETING: "it's a test" },
      files: { '/opt/data/note.txt': 'file-from-host', '/opt/run.sh': { data: 'echo TESTBED: ran ok\n', mode: 0o755 } },
      script: `
        tb_dhcp || exit 1
        tb_link
        tb_ping 192.168.65.2 2
        tb_udp 192.168.65.2 "$UDP_PORT" harness-probe
        tb env greeting="$(echo "$GREETING" | tr ' ' _)" note="$(cat /opt/data/note.txt)"
        /opt/run.sh
        exit 7`,
    });
    expect(r.exitCode, context(r)).toBe(7);
    expect(r.timedOut).toBe(false);
    expect(r.find('nic', 'ok')?.fields.mac).toBe('52:54:00:e2:00:01');
    const dhcp = r.find('dhcp', 'ok');
    expect(dhcp?.args[0], context(r)).toBe('192.168.65.3');
    expect(dhcp?.fields).toMatchObject({
      prefix: '24', router: '192.168.65.2', dns: '192.168.65.1',
      domain: 'vnetkit.test', search: 'vnetkit.test,corp.example',
    });
    expect(r.find('link', 'ok')?.fields).toMatchObject({ mtu: '1500', addr: '192.168.65.3/24' });
    expect(r.find('ping', 'ok')?.fields).toMatchObject({ sent: '2', recv: '2' });
    expect(r.find('udp', 'ok')?.fields.reply, context(r)).toBe('echo:harness-probe');
    expect(echo.seen.map((s) => s.data)).toContain('harness-probe');
    expect(r.find('env')?.fields).toEqual({ greeting: "it's_a_test", note: 'file-from-host' });
    expect(r.find('ran', 'ok')).toBeDefined();
    expect(fs.readFileSync(r.logFile, 'utf8')).toContain('TESTBED: exit 7');
  });

  it('boots over -netdev dgram (UDP on 127.0.0.1)', async () => {
    const enginePort = await freeUdpPort();
    const guestPort = await freeUdpPort();
    refs.push(await startRefEngine({ dgram: { port: enginePort, peerPort: guestPort }, slirp: SLIRP }));
    const r = await bootGuest({
      name: 'harness-dgram',
      dgram: { port: enginePort, localPort: guestPort },
      mac: '52:54:00:e2:00:02',
      script: 'tb_dhcp || exit 1; tb_ping 192.168.65.2 2 || exit 2',
    });
    expect(r.exitCode, context(r)).toBe(0);
    expect(r.find('dhcp', 'ok')?.args[0]).toBe('192.168.65.3');
    expect(r.find('ping', 'ok')?.fields.recv).toBe('2');
  });

  it('kills a guest that overruns its timeout and reports it', async () => {
    const sock = path.join(dir, 'ref-timeout.sock');
    refs.push(await startRefEngine({ socket: sock, slirp: SLIRP }));
    const g = await startGuest({ name: 'harness-timeout', socket: sock, script: 'tb sleeping; sleep 300', timeoutMs: 2500 });
    const r = await g.result;
    expect(r.timedOut).toBe(true);
    expect(r.exitCode).toBeNull();
    expect(r.wallMs).toBeLessThan(6000);
    await expect(g.waitFor((l) => l.what === 'never')).rejects.toThrow(/guest ended/);
  });

  it('refuses to boot against a socket nobody listens on (qemu would fail silently)', async () => {
    await expect(bootGuest({ socket: path.join(dir, 'nobody.sock'), script: 'exit 0' })).rejects.toThrow(/no unix socket/);
  });
});
