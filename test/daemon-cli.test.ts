/**
 * The CLI as a user runs it: a spawned process (from source through tsx),
 * its printed qemu arguments, its sockets, and a clean stop on signals.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readPcap } from '../src/wire/pcap.js';
import { main } from '../src/daemon/cli.js';
import { GuestClient, ethType } from './support/guest-client.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const GUEST_MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
const GUEST = 0xc0a84103;
const GATEWAY = 0xc0a84101;

interface Cli {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  waitOut(re: RegExp, ms?: number): Promise<RegExpExecArray>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();
afterEach(() => {
  for (const c of running) c.kill('SIGKILL');
  running.clear();
});

function startCli(args: string[], env: Record<string, string | undefined> = {}, via: 'tsx' | 'bin' = 'tsx', inherit: net.Socket[] = []): Cli {
  const argv = via === 'tsx' ? ['--import', 'tsx', path.join(ROOT, 'src/daemon/cli.ts'), ...args] : [path.join(ROOT, 'bin/vnetkit.js'), ...args];
  const fullEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete fullEnv[k];
  const child = spawn(process.execPath, argv, { cwd: ROOT, env: fullEnv, stdio: ['pipe', 'pipe', 'pipe', ...inherit] });
  running.add(child);
  let out = '';
  let err = '';
  const waiters: (() => void)[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString('latin1');
    for (const w of [...waiters]) w();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      for (const w of [...waiters]) w();
      resolve({ code, signal });
    }),
  );
  return {
    child,
    out: () => out,
    err: () => err,
    exit,
    waitOut(re, ms = 20_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = re.exec(out);
          if (m !== null) {
            waiters.splice(waiters.indexOf(check), 1);
            clearTimeout(t);
            resolve(m);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            clearTimeout(t);
            reject(new Error(`CLI exited before printing ${re}; stdout:\n${out}\nstderr:\n${err}`));
          }
        };
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${re}; stdout:\n${out}\nstderr:\n${err}`)), ms);
        waiters.push(check);
        check();
      });
    },
  };
}

describe('vnetkit CLI (spawned)', () => {
  it('with no arguments: private runtime dir, qemu args naming a live socket, API socket 0600; SIGTERM leaves no socket files', async () => {
    const xdg = fs.mkdtempSync(path.join(tmp, 'xdg-'));
    const cli = startCli([], { XDG_RUNTIME_DIR: xdg });
    const m = await cli.waitOut(/^qemu args: (-netdev stream,id=n0,server=off,addr\.type=unix,addr\.path=(\S+) -device virtio-net-pci,netdev=n0)$/m);
    await cli.waitOut(/^vnetkit: ready$/m);
    const sock = m[2];
    const dir = path.join(xdg, 'vnetkit');
    expect(sock).toBe(path.join(dir, 'qemu.sock'));
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(sock).isSocket()).toBe(true);
    const api = path.join(dir, 'api.sock');
    expect(cli.out()).toContain(`control API on unix://${api}`);
    expect(fs.statSync(api).mode & 0o777).toBe(0o600);

    // The printed socket accepts a VM: it gets ARP answers and the daemon logs the connect.
    const guest = await GuestClient.connect(sock, GUEST_MAC);
    guest.send(guest.arpRequest(GUEST, GATEWAY));
    await guest.next((f) => ethType(f) === 0x0806);
    await waitFor(() => /vm connected/.test(cli.err()));
    guest.close();
    await waitFor(() => /vm disconnected/.test(cli.err()));

    cli.child.kill('SIGTERM');
    const e = await cli.exit;
    expect(e.code).toBe(0);
    expect(fs.existsSync(sock)).toBe(false);
    expect(fs.existsSync(api)).toBe(false);
    expect(cli.err()).toContain('vnetkit stopped');
  });

  it('without XDG_RUNTIME_DIR the default dir is per-user under the temp dir; SIGINT stops it too', async () => {
    const t = fs.mkdtempSync(path.join(tmp, 'tmpdir-'));
    const cli = startCli([], { XDG_RUNTIME_DIR: undefined, TMPDIR: t });
    const m = await cli.waitOut(/addr\.path=(\S+) /);
    await cli.waitOut(/^vnetkit: ready$/m);
    const uid = process.getuid!();
    expect(m[1]).toBe(path.join(t, `vnetkit-${uid}`, 'qemu.sock'));
    expect(fs.statSync(path.join(t, `vnetkit-${uid}`)).mode & 0o777).toBe(0o700);
    cli.child.kill('SIGINT');
    expect((await cli.exit).code).toBe(0);
    expect(fs.readdirSync(path.join(t, `vnetkit-${uid}`))).toEqual([]);
  });

  it('--pcap: the capture holds the VM\'s frames and is flushed on SIGTERM; explicit listeners, forwards and API', async () => {
    const q = path.join(tmp, 'p-qemu.sock');
    const a = path.join(tmp, 'p-api.sock');
    const pcap = path.join(tmp, 'cli.pcap');
    const fwdSock = path.join(tmp, 'p-fwd.sock');
    const cli = startCli(['--listen-qemu', `unix://${q}`, '--listen', `unix://${a}`, '--pcap', pcap, '--snaplen', '96', '--forward', `unix:${fwdSock}:192.168.65.3:22`, '--log-format', 'json']);
    await cli.waitOut(/^vnetkit: ready$/m);
    expect(cli.out()).toContain(`addr.path=${q} `);
    expect(fs.statSync(fwdSock).isSocket()).toBe(true);
    const guest = await GuestClient.connect(q, GUEST_MAC);
    guest.send(guest.arpRequest(GUEST, GATEWAY));
    await guest.next((f) => ethType(f) === 0x0806);
    guest.close();
    cli.child.kill('SIGTERM');
    expect((await cli.exit).code).toBe(0);
    for (const p of [q, a, fwdSock]) expect(fs.existsSync(p), p).toBe(false);
    const file = readPcap(fs.readFileSync(pcap));
    expect(file.error).toBe('');
    expect(file.snaplen).toBe(96);
    expect(file.linkType).toBe(1);
    expect(file.records.filter((r) => r.data[12] === 0x08 && r.data[13] === 0x06).length).toBe(2);
    // JSON log lines, one of them the VM connect
    const lines = cli.err().trim().split('\n').map((l) => JSON.parse(l) as { msg: string });
    expect(lines.some((l) => l.msg === 'vm connected')).toBe(true);
  });

  it('--listen-stdio: frames on stdin/stdout with 2-byte LE length; stdin EOF stops the daemon', async () => {
    const a = path.join(tmp, 's-api.sock');
    const cli = startCli(['--listen-stdio', '--listen', `unix://${a}`]);
    // Messages go to stderr: stdout carries frames only.
    await waitFor(() => /vnetkit: ready/.test(cli.err()));
    const probe = new GuestClientLike();
    const arp = probe.arp();
    const hdr = Buffer.alloc(2);
    hdr.writeUInt16LE(arp.length, 0);
    cli.child.stdin!.write(Buffer.concat([hdr, arp]));
    await waitFor(() => cli.out().length >= 2 + 42);
    const raw = Buffer.from(cli.out(), 'latin1');
    const n = raw.readUInt16LE(0);
    expect(n).toBeGreaterThanOrEqual(42);
    expect(raw.readUInt16BE(2 + 12)).toBe(0x0806);
    expect(raw.readUInt16BE(2 + 20)).toBe(2); // ARP reply
    cli.child.stdin!.end();
    expect((await cli.exit).code).toBe(0);
    expect(fs.existsSync(a)).toBe(false);
  });

  it('--fd: a VM on an inherited connected socket with qemu framing; its disconnect stops the daemon', async () => {
    const a = path.join(tmp, 'fd-api.sock');
    const p = path.join(tmp, 'fd-pair.sock');
    // A connected pair, as a launcher's socketpair: this end plays the VM, the other goes to the child as fd 3.
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(p, r));
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const vm = net.connect(p);
    const daemonEnd = await accepted;
    server.close();
    const cli = startCli(['--fd', '3', '--listen', `unix://${a}`], {}, 'tsx', [daemonEnd]);
    // Only the child may hold the daemon's end, or the VM's close would not reach it.
    daemonEnd.destroy();
    await cli.waitOut(/vnetkit: ready/);
    expect(cli.out()).toContain('vnetkit: qemu VM attached on fd 3');
    // --fd names a VM, so no default qemu socket is made.
    expect(cli.out()).not.toContain('listening for qemu');
    let got = Buffer.alloc(0);
    vm.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
    const arp = new GuestClientLike().arp();
    const hdr = Buffer.alloc(4);
    hdr.writeUInt32BE(arp.length, 0);
    vm.write(Buffer.concat([hdr, arp]));
    await waitFor(() => got.length >= 4 + 42);
    expect(got.readUInt32BE(0)).toBeGreaterThanOrEqual(42);
    expect(got.readUInt16BE(4 + 12)).toBe(0x0806);
    expect(got.readUInt16BE(4 + 20)).toBe(2); // ARP reply
    vm.end();
    expect((await cli.exit).code).toBe(0);
    expect(fs.existsSync(a)).toBe(false);
  });

  it('--fd that is not an open socket exits 1 naming the descriptor; below 3 is bad usage', async () => {
    const c1 = startCli(['--fd', '900', '--log-level', 'silent']);
    expect((await c1.exit).code).toBe(1);
    expect(c1.err()).toContain('vnetkit: --fd: file descriptor 900 is not an open stream socket');
    const c2 = startCli(['--fd', '1']);
    expect((await c2.exit).code).toBe(2);
    expect(c2.err()).toContain('vnetkit: --fd: must be from 3 to');
  });

  it('bad usage exits 2 naming the flag; a bad config key exits 2 naming the key', async () => {
    const c1 = startCli(['--mtu', '70000']);
    expect((await c1.exit).code).toBe(2);
    expect(c1.err()).toContain('vnetkit: --mtu: must be from 576 to 65520, got 70000');
    const cfg = path.join(tmp, 'bad.yaml');
    fs.writeFileSync(cfg, 'subnet: 10.0.0.0/24\nlisten_qemu: x\n');
    const c2 = startCli(['--config', cfg]);
    expect((await c2.exit).code).toBe(2);
    expect(c2.err()).toContain('bad.yaml: key "listen_qemu": unknown key');
  });

  it('a startup failure exits 1 with the reason and leaves nothing behind', async () => {
    const a = path.join(tmp, 'f-api.sock');
    const notSock = path.join(tmp, 'plain-file');
    fs.writeFileSync(notSock, 'x');
    const cli = startCli(['--listen', `unix://${a}`, '--listen-qemu', `unix://${notSock}`]);
    expect((await cli.exit).code).toBe(1);
    expect(cli.err()).toMatch(/vnetkit: .*plain-file exists and is not a socket/);
    expect(fs.existsSync(a)).toBe(false);
    expect(fs.readFileSync(notSock, 'utf8')).toBe('x');
  });

  it('bin/vnetkit.js runs the CLI from a checkout (--help, --version)', async () => {
    const h = startCli(['--help'], {}, 'bin');
    expect((await h.exit).code).toBe(0);
    expect(h.out()).toContain('Usage: vnetkit [options]');
    expect(h.out()).toContain('--listen-qemu URL');
    const v = startCli(['--version'], {}, 'bin');
    expect((await v.exit).code).toBe(0);
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(v.out().trim()).toBe(`vnetkit ${pkg.version}`);
  });
});

describe('main() in process', () => {
  it('stops on the injected signal and reports exit 0', async () => {
    const handlers = new Map<string, () => void>();
    const q = path.join(tmp, 'm-qemu.sock');
    const out: string[] = [];
    const done = main(['--listen-qemu', `unix://${q}`, '--log-level', 'silent'], {
      out: { write: (s: string) => out.push(s) },
      err: { write: () => true },
      signals: { once: (sig, fn) => handlers.set(sig, fn), off: (sig) => handlers.delete(sig) },
    });
    await waitFor(() => out.join('').includes('vnetkit: ready'));
    expect(fs.existsSync(q)).toBe(true);
    handlers.get('SIGTERM')!();
    expect(await done).toBe(0);
    expect(fs.existsSync(q)).toBe(false);
    expect(handlers.size).toBe(0);
  });
});

describe('main(): guest-reachable VM listeners', () => {
  it('--listen-qemu tcp://127.0.0.1:0 is refused at start (exit 2, nothing bound) unless --allow-guest-reachable-vm-listeners', async () => {
    const err: string[] = [];
    const out: string[] = [];
    const code = await main(['--listen-qemu', 'tcp://127.0.0.1:0', '--log-level', 'silent'], { out: { write: (s: string) => out.push(s) }, err: { write: (s: string) => err.push(s) } });
    expect(code).toBe(2);
    expect(err.join('')).toContain('vnetkit: --listen-qemu: tcp://127.0.0.1:0: guests reach the host\'s loopback through the host alias');
    expect(out.join('')).not.toContain('listening');

    const handlers = new Map<string, () => void>();
    const lines: string[] = [];
    const done = main(['--listen-qemu', 'tcp://127.0.0.1:0', '--allow-guest-reachable-vm-listeners', '--log-level', 'silent'], {
      out: { write: (s: string) => lines.push(s) },
      err: { write: () => true },
      signals: { once: (sig, fn) => handlers.set(sig, fn), off: (sig) => handlers.delete(sig) },
    });
    await waitFor(() => lines.join('').includes('vnetkit: ready'));
    expect(lines.join('')).toMatch(/listening for qemu VMs on tcp:\/\/127\.0\.0\.1:\d+/);
    handlers.get('SIGTERM')!();
    expect(await done).toBe(0);
  });
});

describe('main() signal during startup', () => {
  it('a SIGTERM that arrives before the daemon is up still stops it cleanly once it is', async () => {
    const handlers = new Map<string, () => void>();
    const q = path.join(tmp, 'early-qemu.sock');
    const done = main(['--listen-qemu', `unix://${q}`, '--log-level', 'silent'], {
      out: { write: () => true },
      err: { write: () => true },
      signals: { once: (sig, fn) => handlers.set(sig, fn), off: (sig) => handlers.delete(sig) },
    });
    handlers.get('SIGTERM')!();
    expect(await done).toBe(0);
    expect(fs.existsSync(q)).toBe(false);
  });
});

/** An Ethernet ARP request from the guest for the gateway, built by hand (independent of the code under test). */
class GuestClientLike {
  arp(): Buffer {
    const b = Buffer.alloc(42);
    b.fill(0xff, 0, 6);
    Buffer.from(GUEST_MAC).copy(b, 6);
    b.writeUInt16BE(0x0806, 12);
    b.writeUInt16BE(1, 14);
    b.writeUInt16BE(0x0800, 16);
    b[18] = 6;
    b[19] = 4;
    b.writeUInt16BE(1, 20);
    Buffer.from(GUEST_MAC).copy(b, 22);
    b.writeUInt32BE(GUEST, 28);
    b.writeUInt32BE(GATEWAY, 38);
    return b;
  }
}

async function waitFor(pred: () => boolean, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
