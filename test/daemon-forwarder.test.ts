import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Forwarder, ForwardError, bindErrorText, type ForwardEngine } from '../src/daemon/forwarder.js';
import { resolveConfig } from '../src/engine/config.js';

const HOST_ALIAS = 0xc0a84102;
const GUEST = 0xc0a84103;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-fwd-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Records what the forwarder hands over; TCP sockets are echoed back, UDP channels reply "re:<data>". */
function fakeEngine(opts: { refuse?: boolean } = {}) {
  const tcp: { guestIp: number; guestPort: number; srcIp?: number; srcPort?: number; socket: net.Socket }[] = [];
  const udp: { guestIp: number; guestPort: number; srcIp: number; srcPort: number; sent: Buffer[]; closed: boolean }[] = [];
  const engine: ForwardEngine = {
    config: resolveConfig({}),
    openTcpToGuest(guestIp, guestPort, socket, o = {}) {
      tcp.push({ guestIp, guestPort, srcIp: o.srcIp, srcPort: o.srcPort, socket });
      if (opts.refuse) {
        socket.destroy();
        return false;
      }
      socket.pipe(socket);
      return true;
    },
    openUdpToGuest(guestIp, guestPort, srcIp, srcPort, onReply) {
      const ch = { guestIp, guestPort, srcIp, srcPort, sent: [] as Buffer[], closed: false };
      udp.push(ch);
      return {
        send(data) {
          ch.sent.push(Buffer.from(data));
          setImmediate(() => onReply(Buffer.concat([Buffer.from('re:'), data])));
          return true;
        },
        close() {
          ch.closed = true;
        },
      };
    },
  };
  return { engine, tcp, udp };
}

const open: Forwarder[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((f) => f.close()));
});
function forwarder(engine: ForwardEngine, o: ConstructorParameters<typeof Forwarder>[1] = {}): Forwarder {
  const f = new Forwarder(engine, o);
  open.push(f);
  return f;
}

async function rejectsWith(p: Promise<unknown>, status: number, text: string | RegExp): Promise<ForwardError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ForwardError);
    const fe = e as ForwardError;
    expect(fe.status).toBe(status);
    if (typeof text === 'string') expect(fe.message).toContain(text);
    else expect(fe.message).toMatch(text);
    return fe;
  }
  throw new Error('expected a ForwardError');
}

function roundTrip(port: number, data: string, host = '127.0.0.1', localAddress?: string): Promise<{ echoed: string; localPort: number }> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port, host, localAddress }, () => c.write(data));
    let got = '';
    c.on('data', (d) => {
      got += d.toString();
      if (got.length >= data.length) {
        const localPort = c.localPort!;
        c.end();
        resolve({ echoed: got, localPort });
      }
    });
    c.on('error', reject);
  });
}

async function freeTcpPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

describe('Forwarder: expose / unexpose / list', () => {
  it('exposes a TCP port (port 0 resolved), lists it, unexposes it and the port is free again', async () => {
    const { engine } = fakeEngine();
    const f = forwarder(engine);
    const r = await f.expose({ local: '127.0.0.1:0', remote: '192.168.65.3:80', protocol: 'tcp' });
    expect(r.local).toMatch(/^127\.0\.0\.1:\d+$/);
    const port = Number(r.local.split(':')[1]);
    expect(port).toBeGreaterThan(0);
    expect(f.list()).toEqual([{ local: r.local, remote: '192.168.65.3:80', protocol: 'tcp' }]);
    await f.unexpose({ local: r.local, protocol: 'tcp' });
    expect(f.list()).toEqual([]);
    const again = net.createServer();
    await new Promise<void>((res, rej) => {
      again.once('error', rej);
      again.listen(port, '127.0.0.1', () => res());
    });
    await new Promise<void>((res) => again.close(() => res()));
  });

  it('list is sorted by local like gvproxy', async () => {
    const { engine } = fakeEngine();
    const f = forwarder(engine);
    const a = await freeTcpPort();
    const b = await freeTcpPort();
    const [hi, lo] = a > b ? [a, b] : [b, a];
    await f.expose({ local: `127.0.0.1:${hi}`, remote: '192.168.65.3:1' });
    await f.expose({ local: `127.0.0.1:${lo}`, remote: '192.168.65.3:2', protocol: 'udp' });
    await f.expose({ local: path.join(tmp, 'sorted.sock'), remote: '192.168.65.3:3', protocol: 'unix' });
    const locals = f.list().map((x) => x.local);
    expect(locals).toEqual([...locals].sort());
    expect(f.list().find((x) => x.remote === '192.168.65.3:1')!.protocol).toBe('tcp');
  });

  it('duplicate expose is 409 with dockerd wording, however the local is spelled', async () => {
    const { engine } = fakeEngine();
    const f = forwarder(engine);
    const port = await freeTcpPort();
    await f.expose({ local: `127.0.0.1:${port}`, remote: '192.168.65.3:80', protocol: 'tcp' });
    await rejectsWith(f.expose({ local: `:${port}`, remote: '192.168.65.4:80', protocol: 'tcp' }), 409, `Bind for 127.0.0.1:${port} failed: port is already allocated`);
    // concurrent duplicates: exactly one wins
    const p2 = await freeTcpPort();
    const rs = await Promise.allSettled([0, 1, 2].map(() => f.expose({ local: `127.0.0.1:${p2}`, remote: '192.168.65.3:81' })));
    expect(rs.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(rs.filter((r) => r.status === 'rejected').map((r) => ((r as PromiseRejectedResult).reason as ForwardError).status)).toEqual([409, 409]);
  });

  it('a port taken by another process gives dockerd\'s bind error', async () => {
    const { engine } = fakeEngine();
    const f = forwarder(engine);
    const other = net.createServer();
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
    const port = (other.address() as net.AddressInfo).port;
    try {
      const e = await rejectsWith(f.expose({ local: `127.0.0.1:${port}`, remote: '192.168.65.3:80' }), 409, `Bind for 127.0.0.1:${port} failed: port is already allocated`);
      expect(e.message).toBe(`Bind for 127.0.0.1:${port} failed: port is already allocated`);
      const u = dgram.createSocket('udp4');
      await new Promise<void>((r) => u.bind(0, '127.0.0.1', () => r()));
      try {
        await rejectsWith(f.expose({ local: `127.0.0.1:${u.address().port}`, remote: '192.168.65.3:53', protocol: 'udp' }), 409, 'port is already allocated');
      } finally {
        u.close();
      }
    } finally {
      await new Promise<void>((r) => other.close(() => r()));
    }
    expect(f.list()).toEqual([]);
  });

  it('other bind failures read like dockerd too', () => {
    expect(bindErrorText('tcp', '10.255.255.1:80', Object.assign(new Error('x'), { code: 'EADDRNOTAVAIL' }))).toBe('listen tcp 10.255.255.1:80: bind: cannot assign requested address');
    expect(bindErrorText('tcp', '127.0.0.1:80', Object.assign(new Error('x'), { code: 'EACCES' }))).toBe('Bind for 127.0.0.1:80 failed: permission denied');
  });

  it('an unassignable local address is refused with 500', async () => {
    const { engine } = fakeEngine();
    await rejectsWith(forwarder(engine).expose({ local: '203.0.113.7:0', remote: '192.168.65.3:80' }), 500, 'listen tcp 203.0.113.7:0: bind: cannot assign requested address');
  });

  it('refuses remotes outside the virtual subnet and bad requests with 400', async () => {
    const { engine } = fakeEngine();
    const f = forwarder(engine);
    await rejectsWith(f.expose({ local: '127.0.0.1:0', remote: '10.0.0.5:80' }), 400, 'remote 10.0.0.5:80 is outside the virtual subnet 192.168.65.0/24');
    await rejectsWith(f.expose({ local: '127.0.0.1:0', remote: '192.168.65.1:80' }), 400, 'is the gateway');
    await rejectsWith(f.expose({ remote: '192.168.65.3:80' }), 400, 'missing field "local"');
    await rejectsWith(f.expose({ local: '127.0.0.1:0' }), 400, 'missing field "remote"');
    await rejectsWith(f.expose({ local: '127.0.0.1:0', remote: '192.168.65.3:80', protocol: 'sctp' }), 400, 'protocol must be tcp, udp or unix');
    await rejectsWith(f.expose({ local: 8080, remote: '192.168.65.3:80' }), 400, 'local must be a non-empty string');
    await rejectsWith(f.expose({ local: 'rel.sock', remote: '192.168.65.3:80', protocol: 'unix' }), 400, 'absolute socket path');
    await rejectsWith(f.expose({ local: '/' + 'x'.repeat(120), remote: '192.168.65.3:80', protocol: 'unix' }), 400, 'sockaddr_un');
    await rejectsWith(f.expose([1]), 400, 'JSON object');
    expect(f.list()).toEqual([]);
  });

  it('unexpose of an unknown forward is 404, of a bad request 400', async () => {
    const { engine } = fakeEngine();
    const f = forwarder(engine);
    await rejectsWith(f.unexpose({ local: '127.0.0.1:1', protocol: 'tcp' }), 404, 'no tcp forward on 127.0.0.1:1');
    await rejectsWith(f.unexpose({ protocol: 'tcp' }), 400, 'missing field "local"');
    await rejectsWith(f.unexpose({ local: '127.0.0.1:1', protocol: 'x' }), 400, 'protocol');
    await rejectsWith(f.unexpose(null), 400, 'JSON object');
  });

  it('expose after close is refused', async () => {
    const { engine } = fakeEngine();
    const f = new Forwarder(engine);
    await f.close();
    await rejectsWith(f.expose({ local: '127.0.0.1:0', remote: '192.168.65.3:80' }), 503, 'closed');
  });
});

describe('Forwarder: data paths', () => {
  it('TCP connections go to the engine from the host alias and a unique ephemeral port', async () => {
    const fe = fakeEngine();
    const f = forwarder(fe.engine);
    const r = await f.expose({ local: '127.0.0.1:0', remote: '192.168.65.3:8080' });
    const port = Number(r.local.split(':')[1]);
    const [a, b] = await Promise.all([roundTrip(port, 'hello'), roundTrip(port, 'world')]);
    expect(a.echoed).toBe('hello');
    expect(b.echoed).toBe('world');
    expect(fe.tcp).toHaveLength(2);
    for (const c of fe.tcp) {
      expect(c.guestIp).toBe(GUEST);
      expect(c.guestPort).toBe(8080);
      expect(c.srcIp).toBe(HOST_ALIAS);
      expect(c.srcPort).toBeGreaterThanOrEqual(49152);
    }
    expect(fe.tcp[0].srcPort).not.toBe(fe.tcp[1].srcPort);
    expect(f.counters.connections).toBe(2);
  });

  it('source-IP preservation: a loopback client appears as the host alias with its own port', async () => {
    const fe = fakeEngine();
    const f = forwarder(fe.engine, { sourceIpPreservation: true });
    const r = await f.expose({ local: '127.0.0.1:0', remote: '192.168.65.3:22' });
    const { localPort } = await roundTrip(Number(r.local.split(':')[1]), 'x');
    expect(fe.tcp[0].srcIp).toBe(HOST_ALIAS);
    expect(fe.tcp[0].srcPort).toBe(localPort);
  });

  it('source-IP preservation: a non-loopback client keeps its address', async () => {
    const addr = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
    if (addr === undefined) {
      // No external IPv4 interface: the loopback mapping above is then the only observable case.
      expect(Object.values(os.networkInterfaces()).flat().every((i) => !i || i.internal || i.family !== 'IPv4')).toBe(true);
      return;
    }
    const fe = fakeEngine();
    const f = forwarder(fe.engine, { sourceIpPreservation: true });
    const r = await f.expose({ local: `${addr}:0`, remote: '192.168.65.3:22' });
    const { localPort } = await roundTrip(Number(r.local.split(':')[1]), 'x', addr, addr);
    const n = addr.split('.').reduce((s, o) => s * 256 + Number(o), 0);
    expect(fe.tcp[0].srcIp).toBe(n);
    expect(fe.tcp[0].srcPort).toBe(localPort);
  });

  it('a refused guest connection is counted and the client sees the close', async () => {
    const fe = fakeEngine({ refuse: true });
    const f = forwarder(fe.engine);
    const r = await f.expose({ local: '127.0.0.1:0', remote: '192.168.65.3:80' });
    const closed = await new Promise<boolean>((resolve) => {
      const c = net.connect(Number(r.local.split(':')[1]), '127.0.0.1');
      c.on('error', () => {});
      c.on('close', () => resolve(true));
    });
    expect(closed).toBe(true);
    expect(f.counters.refused).toBe(1);
  });

  it('unexpose ends live connections', async () => {
    const fe = fakeEngine();
    const f = forwarder(fe.engine);
    const r = await f.expose({ local: '127.0.0.1:0', remote: '192.168.65.3:80' });
    const c = net.connect(Number(r.local.split(':')[1]), '127.0.0.1');
    c.on('error', () => {});
    await new Promise<void>((res) => c.once('connect', () => res()));
    await new Promise((res) => setTimeout(res, 20));
    expect(f.activeCount().connections).toBe(1);
    const closed = new Promise<void>((res) => c.once('close', () => res()));
    await f.unexpose({ local: r.local });
    await closed;
    expect(f.activeCount().connections).toBe(0);
  });

  it('UDP: one channel per client, replies go back to that client, idle clients are swept', async () => {
    const fe = fakeEngine();
    const f = forwarder(fe.engine, { udpIdleMs: 200 });
    const r = await f.expose({ local: '127.0.0.1:0', remote: '192.168.65.3:53', protocol: 'udp' });
    const port = Number(r.local.split(':')[1]);
    const ask = async (s: dgram.Socket, msg: string): Promise<string> =>
      new Promise((resolve) => {
        s.once('message', (m) => resolve(m.toString()));
        s.send(msg, port, '127.0.0.1');
      });
    const c1 = dgram.createSocket('udp4');
    const c2 = dgram.createSocket('udp4');
    try {
      expect(await ask(c1, 'a')).toBe('re:a');
      expect(await ask(c1, 'b')).toBe('re:b');
      expect(await ask(c2, 'c')).toBe('re:c');
      expect(fe.udp).toHaveLength(2);
      expect(fe.udp[0].sent.map(String)).toEqual(['a', 'b']);
      expect(fe.udp[0].srcIp).toBe(HOST_ALIAS);
      expect(fe.udp[0].srcPort).not.toBe(fe.udp[1].srcPort);
      expect(f.activeCount().udpClients).toBe(2);
      await new Promise((res) => setTimeout(res, 600));
      expect(f.activeCount().udpClients).toBe(0);
      expect(fe.udp.every((u) => u.closed)).toBe(true);
    } finally {
      c1.close();
      c2.close();
    }
  });

  it('UDP clients are bounded: the stalest is dropped', async () => {
    const fe = fakeEngine();
    const f = forwarder(fe.engine, { maxUdpClients: 2 });
    const r = await f.expose({ local: '127.0.0.1:0', remote: '192.168.65.3:53', protocol: 'udp' });
    const port = Number(r.local.split(':')[1]);
    const socks = [0, 1, 2].map(() => dgram.createSocket('udp4'));
    try {
      for (const s of socks) {
        await new Promise<void>((resolve) => {
          s.once('message', () => resolve());
          s.send('x', port, '127.0.0.1');
        });
      }
      expect(f.activeCount().udpClients).toBe(2);
      expect(fe.udp.map((u) => u.closed)).toEqual([true, false, false]);
    } finally {
      for (const s of socks) s.close();
    }
  });

  it('Unix socket forward: mode 0600, reaches the guest port, file removed on unexpose', async () => {
    const fe = fakeEngine();
    const f = forwarder(fe.engine);
    const p = path.join(tmp, 'ssh.sock');
    await f.expose({ local: p, remote: '192.168.65.3:22', protocol: 'unix' });
    expect(fs.statSync(p).isSocket()).toBe(true);
    expect(fs.statSync(p).mode & 0o777).toBe(0o600);
    const echoed = await new Promise<string>((resolve, reject) => {
      const c = net.connect(p, () => c.write('ping'));
      c.on('data', (d) => {
        c.end();
        resolve(d.toString());
      });
      c.on('error', reject);
    });
    expect(echoed).toBe('ping');
    expect(fe.tcp[0]).toMatchObject({ guestIp: GUEST, guestPort: 22, srcIp: HOST_ALIAS });
    await rejectsWith(f.expose({ local: p, remote: '192.168.65.3:23', protocol: 'unix' }), 409, 'port is already allocated');
    await f.unexpose({ local: p, protocol: 'unix' });
    expect(fs.existsSync(p)).toBe(false);
  });

  it('Unix socket forward: a stale socket is replaced, a live one or a plain file is refused', async () => {
    const fe = fakeEngine();
    const f = forwarder(fe.engine);
    const stale = path.join(tmp, 'stale.sock');
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(stale, () => r()));
    // Another process listening there: refused.
    await rejectsWith(f.expose({ local: stale, remote: '192.168.65.3:22', protocol: 'unix' }), 409, 'address already in use');
    await new Promise<void>((r) => s.close(() => r()));
    // Leave the file behind as a crash would: a process killed while listening.
    const r = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(r.signal).toBe('SIGKILL');
    expect(fs.lstatSync(stale).isSocket()).toBe(true);
    await f.expose({ local: stale, remote: '192.168.65.3:22', protocol: 'unix' });
    expect(f.list().map((x) => x.local)).toContain(stale);
    const file = path.join(tmp, 'plain');
    fs.writeFileSync(file, 'keep me');
    await rejectsWith(f.expose({ local: file, remote: '192.168.65.3:22', protocol: 'unix' }), 409, 'not a socket');
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
  });

  it('close() stops every forward and removes unix socket files', async () => {
    const fe = fakeEngine();
    const f = new Forwarder(fe.engine);
    const p = path.join(tmp, 'close.sock');
    const t = await f.expose({ local: '127.0.0.1:0', remote: '192.168.65.3:80' });
    await f.expose({ local: '127.0.0.1:0', remote: '192.168.65.3:53', protocol: 'udp' });
    await f.expose({ local: p, remote: '192.168.65.3:22', protocol: 'unix' });
    await f.close();
    expect(f.list()).toEqual([]);
    expect(fs.existsSync(p)).toBe(false);
    await expect(roundTrip(Number(t.local.split(':')[1]), 'x')).rejects.toThrow(/ECONNREFUSED/);
  });
});
