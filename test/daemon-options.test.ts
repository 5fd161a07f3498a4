import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { OPTIONS, OptionError, buildConfig, checkConfigObject, helpText, loadConfigFile, parseArgs, resolveCli } from '../src/daemon/options.js';
import { parseForwardSpec, parseHostPort, parseRemote } from '../src/daemon/forward-spec.js';
import { resolveConfig } from '../src/engine/config.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-opt-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function writeTmp(name: string, text: string): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, text);
  return p;
}

function errOf(fn: () => unknown): OptionError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(OptionError);
    return e as OptionError;
  }
  throw new Error('expected an OptionError');
}

describe('parseArgs', () => {
  it('reads --k v, --k=v, repeated lists, booleans and --no-', () => {
    const r = parseArgs(['--mtu', '9000', '--subnet=10.9.0.0/16', '--forward', 'tcp:8080:10.9.0.3:80', '--forward=udp:53:10.9.0.3:53', '--listen-stdio', '--no-host-loopback', '--source-ip-preservation=false']);
    expect(r).toEqual({
      mtu: '9000',
      subnet: '10.9.0.0/16',
      forward: ['tcp:8080:10.9.0.3:80', 'udp:53:10.9.0.3:53'],
      'listen-stdio': true,
      'host-loopback': false,
      'source-ip-preservation': false,
    });
  });

  it('short -h and -V', () => {
    expect(parseArgs(['-h'])).toEqual({ help: true });
    expect(parseArgs(['-V'])).toEqual({ version: true });
  });

  it('unknown option names it and suggests the near one', () => {
    const e = errOf(() => parseArgs(['--subnt', 'x']));
    expect(e.key).toBe('--subnt');
    expect(e.message).toContain('did you mean --subnet?');
  });

  it('a value-taking option at the end needs its value', () => {
    expect(errOf(() => parseArgs(['--mtu'])).message).toBe('--mtu: needs a value (N)');
  });

  it('positionals and bool values other than true/false are refused', () => {
    expect(errOf(() => parseArgs(['foo'])).message).toContain('unexpected argument');
    expect(errOf(() => parseArgs(['--listen-stdio=yes'])).key).toBe('--listen-stdio');
    expect(errOf(() => parseArgs(['--no-host-loopback=1'])).key).toBe('--no-host-loopback');
    // --no- only applies to booleans
    expect(errOf(() => parseArgs(['--no-mtu'])).key).toBe('--no-mtu');
  });
});

describe('config validation names the key and the reason', () => {
  it('unknown key in a file', () => {
    const e = errOf(() => checkConfigObject({ subnett: '10.0.0.0/24' }, 'vm.yaml'));
    expect(e.message).toBe('vm.yaml: key "subnett": unknown key; did you mean subnet?');
  });

  it('meta options are not config keys', () => {
    expect(errOf(() => checkConfigObject({ config: 'x.yaml' }, 'c.yaml')).message).toContain('command line only');
    // An inherited descriptor belongs to one launch, not to a file reused across launches.
    expect(errOf(() => checkConfigObject({ fd: 3 }, 'c.yaml')).message).toContain('command line only');
  });

  it('wrong types in a file', () => {
    expect(errOf(() => checkConfigObject({ mtu: 'big' }, 'c.yaml')).message).toBe('c.yaml: key "mtu": must be an integer, got the string "big"');
    expect(errOf(() => checkConfigObject({ mtu: 1500.5 }, 'c.yaml')).message).toContain('key "mtu": must be an integer');
    expect(errOf(() => checkConfigObject({ 'listen-stdio': 'yes' }, 'c.yaml')).message).toContain('key "listen-stdio": must be true or false');
    expect(errOf(() => checkConfigObject({ subnet: 24 }, 'c.yaml')).message).toContain('key "subnet": must be a string, got number 24');
    expect(errOf(() => checkConfigObject({ forward: 5 }, 'c.yaml')).message).toContain('key "forward": must be a list');
    expect(errOf(() => checkConfigObject(['a'], 'c.yaml')).message).toContain('top level must be a mapping');
  });

  it('bad CIDR from a file names the key, from a flag names the flag', () => {
    expect(errOf(() => buildConfig({ subnet: '10.0.0/8' }, {}, 'c.yaml')).message).toBe('c.yaml: key "subnet": "10.0.0/8" is not a CIDR (want a.b.c.d/n, e.g. 192.168.65.0/24)');
    expect(errOf(() => buildConfig({}, { subnet: '10.0.0.0/33' })).message).toContain('--subnet: "10.0.0.0/33" is not a CIDR');
    expect(errOf(() => buildConfig({}, { subnet: '10.0.0.0/30' })).message).toContain('--subnet: "10.0.0.0/30": the prefix must be /29 or wider');
  });

  it('range, enum and address errors', () => {
    expect(errOf(() => buildConfig({}, { mtu: '100' })).message).toBe('--mtu: must be from 576 to 65520, got 100');
    expect(errOf(() => buildConfig({}, { mtu: 'x' })).message).toContain('--mtu: must be an integer');
    expect(errOf(() => buildConfig({}, { 'log-level': 'loud' })).key).toBe('--log-level');
    expect(errOf(() => buildConfig({ 'log-format': 'xml' }, {}, 'c.yaml')).message).toContain('c.yaml: key "log-format": must be text or json');
    expect(errOf(() => buildConfig({}, { backend: 'gpu' })).key).toBe('--backend');
    expect(errOf(() => buildConfig({}, { 'gateway-ip': '1.2.3' })).message).toBe('--gateway-ip: "1.2.3" is not an IPv4 address');
    expect(errOf(() => buildConfig({}, { snaplen: '10' })).key).toBe('--snaplen');
    expect(errOf(() => buildConfig({}, { 'vm-tx-queue-limit': '65536' })).message).toBe('--vm-tx-queue-limit: must be from 131072 to 1073741824, got 65536');
    expect(buildConfig({ 'vm-tx-queue-limit': 1048576 }, {}, 'c.yaml').vmTxQueueLimit).toBe(1048576);
    expect(buildConfig({}, {}).vmTxQueueLimit).toBeUndefined();
    expect(buildConfig({}, { 'vm-send-buffer': '0' }).vmSendBuffer).toBe(0);
    expect(buildConfig({ 'vm-send-buffer': 4194304 }, {}, 'c.yaml').vmSendBuffer).toBe(4194304);
    expect(buildConfig({}, {}).vmSendBuffer).toBeUndefined();
    expect(errOf(() => buildConfig({}, { 'vm-send-buffer': '4096' })).message).toBe('--vm-send-buffer: must be 0 or from 65536 to 268435456, got 4096');
    expect(errOf(() => buildConfig({}, { 'vm-send-buffer': '300000000' })).message).toBe('--vm-send-buffer: must be from 0 to 268435456, got 300000000');
  });

  it('cross-field engine errors are reported against our key', () => {
    const e = errOf(() => buildConfig({}, { subnet: '10.1.0.0/24', 'gateway-ip': '192.168.65.1' }));
    expect(e.key).toBe('--gateway-ip');
    expect(e.message).toContain('is not a host address of 10.1.0.0/24');
    // a subnet change that leaves the default host alias outside it
    const e2 = errOf(() => buildConfig({}, { subnet: '10.1.0.0/24', 'host-ip': '10.1.0.1' }));
    expect(e2.key).toBe('--host-ip');
  });

  it('forwards: syntax and outside-subnet errors name the entry', () => {
    expect(errOf(() => buildConfig({}, { forward: ['tcp:8080:10.0.0.3:80'] })).message).toBe('--forward: entry 0: remote 10.0.0.3:80 is outside the virtual subnet 192.168.65.0/24');
    expect(errOf(() => buildConfig({}, { forward: ['tcp:8080:192.168.65.3:80', 'sctp:1:192.168.65.3:1'] })).message).toContain('--forward: entry 1: "sctp:1:192.168.65.3:1" is not PROTO:');
    expect(errOf(() => buildConfig({}, { forward: ['tcp:8080:192.168.65.1:80'] })).message).toContain('is the gateway, not a guest');
    expect(errOf(() => buildConfig({ forward: [{ local: '127.0.0.1:1', remote: '192.168.65.3:1', protocol: 'sctp' }] }, {}, 'c.yaml')).message).toContain('c.yaml: key "forward": entry 0: protocol must be tcp, udp or unix');
    expect(errOf(() => buildConfig({}, { forward: ['unix:relative.sock:192.168.65.3:22'] })).message).toContain('must be an absolute socket path');
  });

  it('dns-zone entries: NAME=IP, zone JSON, and errors', () => {
    const c = buildConfig({ 'dns-zone': [{ Name: 'vm.internal.', Records: [{ Name: 'web', IP: '192.168.65.3' }] }] }, {}, 'c.yaml');
    expect(c.engine.dns?.zones).toEqual([{ name: 'vm.internal.', records: [{ name: 'web', ip: '192.168.65.3' }] }]);
    const f = buildConfig({}, { 'dns-zone': ['Web.Local=192.168.65.9', '{"Name":"z.","Records":[],"DefaultIP":"192.168.65.10"}'] });
    expect(f.engine.dns?.names).toEqual({ 'web.local': '192.168.65.9' });
    expect(f.engine.dns?.zones).toEqual([{ name: 'z.', records: [], defaultIp: '192.168.65.10' }]);
    expect(errOf(() => buildConfig({}, { 'dns-zone': ['web=1.2.3'] })).message).toContain('--dns-zone: entry 0 "web=1.2.3": "1.2.3" is not an IPv4 address');
    expect(errOf(() => buildConfig({}, { 'dns-zone': ['{"Name":'] })).message).toContain('--dns-zone: entry 0 is not valid JSON');
    expect(errOf(() => buildConfig({}, { 'dns-zone': ['{"Name":"z.","Records":[{"Name":"a","IP":"x"}]}'] })).key).toBe('--dns-zone');
    expect(errOf(() => buildConfig({}, { 'dns-zone': ['justaname'] })).message).toContain('want NAME=IP');
  });

  it('listen URLs: scheme per option, tcp API refused while guests reach host loopback', () => {
    expect(errOf(() => buildConfig({}, { 'listen-qemu': ['udp://127.0.0.1:1'] })).message).toContain('--listen-qemu: "udp://127.0.0.1:1" is not a unix:// or tcp:// URL');
    expect(errOf(() => buildConfig({}, { 'listen-dgram': ['tcp://127.0.0.1:1'] })).key).toBe('--listen-dgram');
    expect(errOf(() => buildConfig({}, { 'listen-qemu': ['unix://'] })).message).toContain('has no socket path');
    expect(errOf(() => buildConfig({}, { 'listen-qemu': ['tcp://127.0.0.1'] })).message).toContain('needs HOST:PORT');
    const e = errOf(() => buildConfig({}, { listen: ['tcp://127.0.0.1:7777'] }));
    expect(e.key).toBe('--listen');
    expect(e.message).toContain('reachable from inside them');
    expect(buildConfig({}, { listen: ['tcp://127.0.0.1:7777'], 'host-loopback': false }).listen).toEqual(['tcp://127.0.0.1:7777']);
    expect(buildConfig({}, { listen: ['tcp://127.0.0.1:7777'], 'allow-guest-api': true }).allowGuestApi).toBe(true);
    expect(errOf(() => buildConfig({}, { listen: ['tcp://0.0.0.0:7777'], 'allow-guest-api': true })).message).toContain('loopback or a unix socket only');
  });

  it('VM listeners guests could reach (tcp://, udp:// while host loopback is on) are refused unless explicitly allowed', () => {
    for (const [name, url] of [['listen-qemu', 'tcp://127.0.0.1:0'], ['listen-vpnkit', 'tcp://[::1]:5000'], ['listen-dgram', 'udp://127.0.0.1:0']] as const) {
      const e = errOf(() => buildConfig({}, { [name]: [url] }));
      expect(e.key).toBe(`--${name}`);
      expect(e.code).toBe('ERR_VNETKIT_BAD_OPTION');
      expect(e.message).toContain('a guest could connect to this listener');
      expect(e.message).toContain('--allow-guest-reachable-vm-listeners');
      const ok = buildConfig({}, { [name]: [url], 'allow-guest-reachable-vm-listeners': true });
      expect(ok.allowGuestReachableVmListeners).toBe(true);
      expect(buildConfig({}, { [name]: [url], 'host-loopback': false }).allowGuestReachableVmListeners).toBe(false);
    }
    // From a file too, naming the key.
    expect(errOf(() => buildConfig({ 'listen-qemu': ['tcp://127.0.0.1:9'] }, {}, 'vm.yaml')).message).toMatch(/^vm\.yaml: key "listen-qemu": tcp:\/\/127\.0\.0\.1:9: guests reach/);
    // Unix sockets need nothing.
    expect(buildConfig({}, { 'listen-qemu': ['unix:///tmp/q.sock'] }).listenQemu).toEqual(['unix:///tmp/q.sock']);
  });

  it('--api-token-file and --capture-dir are taken as given; empty is refused', () => {
    const c = buildConfig({}, { 'api-token-file': '/x/tok', 'capture-dir': '/x/caps' });
    expect(c.apiTokenFile).toBe('/x/tok');
    expect(c.captureDir).toBe('/x/caps');
    expect(errOf(() => buildConfig({}, { 'api-token-file': '' })).key).toBe('--api-token-file');
    expect(errOf(() => buildConfig({}, { 'capture-dir': '' })).key).toBe('--capture-dir');
  });
});

describe('engine limits and isolation', () => {
  it('--limit KEY=VALUE sets EngineLimits keys (integers, k/M/G suffixes); repeatable, last wins', () => {
    const c = buildConfig({}, parseArgs(['--limit', 'tcpFlowsPerVm=1024', '--limit=tcpBufferBytesPerVm=32M', '--limit', 'echoProbeBurst=20', '--limit', 'tcpFlowsPerVm=2048']));
    expect(c.engine.limits).toEqual({ tcpFlowsPerVm: 2048, tcpBufferBytesPerVm: 32 * 1024 * 1024, echoProbeBurst: 20 });
    expect(resolveConfig(c.engine).limits.tcpFlowsPerVm).toBe(2048);
    expect(buildConfig({}, {}).engine.limits).toBeUndefined();
  });

  it('an unknown limit key is refused with the list of valid keys', () => {
    const e = errOf(() => buildConfig({}, { limit: ['tcpFlows=5'] }));
    expect(e.key).toBe('--limit');
    expect(e.message).toContain('unknown limit "tcpFlows"; valid keys: hostSockets, hostSocketsPerVm, tcpFlowsPerVm');
    expect(e.message).toContain('echoProbeBurst');
  });

  it('bad values name the key and the range', () => {
    expect(errOf(() => buildConfig({}, { limit: ['tcpFlowsPerVm'] })).message).toContain('want KEY=VALUE');
    expect(errOf(() => buildConfig({}, { limit: ['=5'] })).message).toContain('want KEY=VALUE');
    expect(errOf(() => buildConfig({}, { limit: ['tcpFlowsPerVm=lots'] })).message).toContain('tcpFlowsPerVm must be an integer, got the string "lots"');
    expect(errOf(() => buildConfig({}, { limit: ['tcpFlowsPerVm=-1'] })).message).toContain('must be an integer');
    expect(errOf(() => buildConfig({}, { limit: ['tcpFlowsPerVm=0'] })).message).toBe('--limit: tcpFlowsPerVm: must be an integer from 1 to 16384, got 0');
    expect(errOf(() => buildConfig({}, { limit: ['tcpBufferBytes=8M', 'tcpBufferBytesPerVm=16M'] })).message).toContain('tcpBufferBytesPerVm: must be an integer from 4194304 to 8388608');
  });

  it('a config file\'s limits mapping, overridden key by key by --limit', () => {
    const f = writeTmp('limits.yaml', 'limits:\n  tcpFlowsPerVm: 100\n  udpBindingsPerVm: 64\n  tcpBufferBytesPerVm: 8M\nisolation: false\n');
    const c = resolveCli(['--config', f, '--limit', 'udpBindingsPerVm=128']).config!;
    expect(c.engine.limits).toEqual({ tcpFlowsPerVm: 100, udpBindingsPerVm: 128, tcpBufferBytesPerVm: 8 * 1024 * 1024 });
    expect(c.engine.isolation).toBe(false);
    expect(errOf(() => buildConfig(checkConfigObject({ limits: { nope: 1 } }, 'c.yaml'), {}, 'c.yaml')).message).toMatch(/^c\.yaml: key "limits\.nope": unknown limit "nope"; valid keys: /);
    expect(errOf(() => checkConfigObject({ limits: [1] }, 'c.yaml')).message).toBe('c.yaml: key "limits": must be a mapping, got a list');
    expect(errOf(() => buildConfig(checkConfigObject({ limits: { tcpFlowsPerVm: 1.5 } }, 'c.yaml'), {}, 'c.yaml')).message).toContain('tcpFlowsPerVm must be an integer');
    // A mapping has no flag form.
    expect(errOf(() => parseArgs(['--limits', 'x'])).key).toBe('--limits');
  });

  it('--no-isolation turns switch isolation off; it is on by default', () => {
    expect(buildConfig({}, parseArgs(['--no-isolation'])).engine.isolation).toBe(false);
    expect(resolveConfig(buildConfig({}, {}).engine).isolation).toBe(true);
    expect(resolveConfig(buildConfig({}, parseArgs(['--no-isolation'])).engine).isolation).toBe(false);
  });
});

describe('config files and precedence', () => {
  it('YAML file: values, lists and mappings', () => {
    const p = writeTmp('a.yaml', [
      'subnet: 10.7.0.0/24',
      'mtu: 4000',
      'log-level: debug',
      'listen-qemu: unix:///tmp/x.sock',
      'forward:',
      '  - tcp:127.0.0.1:8080:10.7.0.3:80',
      '  - { local: "127.0.0.1:5353", remote: "10.7.0.3:53", protocol: udp }',
      'source-ip-preservation: true',
    ].join('\n'));
    const r = resolveCli(['--config', p]);
    const c = r.config!;
    expect(c.engine.subnet).toBe('10.7.0.0/24');
    expect(c.engine.mtu).toBe(4000);
    expect(c.logLevel).toBe('debug');
    expect(c.listenQemu).toEqual(['unix:///tmp/x.sock']);
    expect(c.defaultListeners).toBe(false);
    expect(c.sourceIpPreservation).toBe(true);
    expect(c.forwards).toEqual([
      { protocol: 'tcp', local: '127.0.0.1:8080', remote: '10.7.0.3:80' },
      { protocol: 'udp', local: '127.0.0.1:5353', remote: '10.7.0.3:53' },
    ]);
  });

  it('JSON file by extension, and flags override (a list flag replaces the file list)', () => {
    const p = writeTmp('b.json', JSON.stringify({ mtu: 4000, forward: ['tcp:1111:192.168.65.3:1'], 'log-format': 'json' }));
    const c = resolveCli(['--config', p, '--mtu', '9000', '--forward', 'tcp:2222:192.168.65.3:2']).config!;
    expect(c.engine.mtu).toBe(9000);
    expect(c.logFormat).toBe('json');
    expect(c.forwards.map((f) => f.local)).toEqual(['127.0.0.1:2222']);
  });

  it('a flag fixes what a file got wrong, and the error names the file key otherwise', () => {
    const p = writeTmp('c.yaml', 'mtu: 10\n');
    expect(resolveCli(['--config', p, '--mtu', '1500']).config!.engine.mtu).toBe(1500);
    expect(errOf(() => resolveCli(['--config', p])).message).toBe('c.yaml: key "mtu": must be from 576 to 65520, got 10');
  });

  it('unreadable, unparsable and non-mapping files', () => {
    expect(errOf(() => loadConfigFile(path.join(tmp, 'nope.yaml'))).message).toContain('--config: cannot read');
    expect(errOf(() => loadConfigFile(writeTmp('bad.json', '{"mtu": '))).message).toContain('is not valid JSON');
    expect(errOf(() => loadConfigFile(writeTmp('bad.yaml', 'a: [1, 2\n'))).message).toContain('is not valid YAML');
    expect(errOf(() => loadConfigFile(writeTmp('list.yaml', '- 1\n- 2\n'))).message).toContain('top level must be a mapping');
    expect(loadConfigFile(writeTmp('empty.yaml', ''))).toEqual({});
    expect(errOf(() => loadConfigFile(tmp)).message).toContain('is not a regular file');
  });

  it('no options at all means default listeners', () => {
    const c = resolveCli([]).config!;
    expect(c.defaultListeners).toBe(true);
    expect(c.engine.hostLoopback).toBe(true);
    expect(c.logLevel).toBe('info');
    expect(resolveCli(['--listen-stdio']).config!.defaultListeners).toBe(false);
    const f = resolveCli(['--fd', '3']).config!;
    expect(f.fd).toBe(3);
    expect(f.defaultListeners).toBe(false);
  });
});

describe('forward specs', () => {
  const sub = (() => {
    const c = resolveConfig({});
    return c;
  })();

  it('string forms', () => {
    expect(parseForwardSpec('tcp:127.0.0.1:8080:192.168.65.3:80')).toEqual({ protocol: 'tcp', local: '127.0.0.1:8080', remote: '192.168.65.3:80' });
    expect(parseForwardSpec('tcp:8080:192.168.65.3:80')).toEqual({ protocol: 'tcp', local: '127.0.0.1:8080', remote: '192.168.65.3:80' });
    expect(parseForwardSpec('udp:[::1]:53:192.168.65.3:53')).toEqual({ protocol: 'udp', local: '[::1]:53', remote: '192.168.65.3:53' });
    expect(parseForwardSpec('unix:/run/a:b.sock:192.168.65.3:22')).toEqual({ protocol: 'unix', local: '/run/a:b.sock', remote: '192.168.65.3:22' });
    expect(parseForwardSpec('tcp:localhost:1:192.168.65.3:1')).toMatchObject({ local: '127.0.0.1:1' });
    expect(typeof parseForwardSpec('tcp:::1:1:192.168.65.3:1')).toBe('string');
    expect(typeof parseForwardSpec('tcp:1.2.3.4.5:1:192.168.65.3:1')).toBe('string');
    expect(typeof parseForwardSpec('tcp:70000:192.168.65.3:1')).toBe('string');
    expect(typeof parseForwardSpec({ local: '1', remote: 2 })).toBe('string');
    expect(parseForwardSpec({ local: '1', remote: '192.168.65.3:1', extra: 1 })).toContain('unknown field "extra"');
  });

  it('host:port parsing', () => {
    expect(parseHostPort(':8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseHostPort('0.0.0.0:0')).toEqual({ host: '0.0.0.0', port: 0 });
    expect(parseHostPort('[fe80::1]:9')).toEqual({ host: 'fe80::1', port: 9 });
    expect(typeof parseHostPort('[zz]:1')).toBe('string');
    expect(typeof parseHostPort('host.example:1')).toBe('string');
  });

  it('remote must be a guest address of the subnet', () => {
    expect(parseRemote('192.168.65.3:80', sub)).toEqual({ ip: 0xc0a84103, port: 80 });
    expect(parseRemote('192.168.66.3:80', sub)).toBe('remote 192.168.66.3:80 is outside the virtual subnet 192.168.65.0/24');
    expect(parseRemote('192.168.65.255:80', sub)).toContain('broadcast');
    expect(parseRemote('192.168.65.0:80', sub)).toContain('network');
    expect(parseRemote('192.168.65.2:80', sub)).toContain('host alias');
    expect(parseRemote('192.168.65.3:0', sub)).toContain('port must be 1..65535');
    expect(parseRemote('192.168.65.3', sub)).toContain('GUESTIP:PORT');
    expect(parseRemote(':80', sub)).toContain('GUESTIP:PORT');
  });
});

describe('--help', () => {
  it('documents every option and the API paths', () => {
    const h = helpText();
    for (const o of OPTIONS) {
      if (o.fileOnly) expect(h).toContain(`${o.name}:`);
      else expect(h).toContain(`--${o.name === 'host-loopback' || o.name === 'isolation' ? '[no-]' : ''}${o.name}`);
    }
    expect(h).toContain('Authorization: Bearer TOKEN');
    expect(h).toContain('tcpBufferBytesPerVm');
    for (const p of ['/services/forwarder/expose', '/services/forwarder/unexpose', '/services/forwarder/all', '/services/dhcp/leases', '/services/dns/all', '/services/dns/add', '/stats', '/flows', '/metrics', '/capture/start', '/capture/stop']) {
      expect(h).toContain(p);
    }
    expect(h).toContain('-netdev stream,id=n0,server=off,addr.type=unix');
    for (const l of h.split('\n')) expect(l.length).toBeLessThanOrEqual(130);
  });
});
