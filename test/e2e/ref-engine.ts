/**
 * Reference engine for validating the harness itself: a guest-less qemu whose
 * slirp (-netdev user) is joined through a hub to a stream or dgram netdev the
 * test guest connects to. It speaks the same wire protocol vnetkit must speak,
 * so a harness problem can be told apart from an engine problem.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';

export interface RefEngine {
  close(): Promise<void>;
}

export interface RefEngineOptions {
  /** listen on this unix stream socket (qemu server=on) */
  socket?: string;
  /** exchange datagrams on 127.0.0.1: bind `port`, send to the guest's `peerPort` */
  dgram?: { port: number; peerPort: number };
  /** slirp options, e.g. net=192.168.65.0/24,host=192.168.65.2,dhcpstart=192.168.65.3 */
  slirp?: string;
  log?: string;
  /** hard limit enforced by coreutils timeout, so a crashed test run leaves nothing behind (default 600 s) */
  maxSeconds?: number;
}

export async function startRefEngine(o: RefEngineOptions): Promise<RefEngine> {
  let side: string;
  if (o.socket) {
    fs.rmSync(o.socket, { force: true });
    side = `stream,id=s0,server=on,addr.type=unix,addr.path=${o.socket}`;
  } else if (o.dgram) {
    side =
      `dgram,id=s0,local.type=inet,local.host=127.0.0.1,local.port=${o.dgram.port},` +
      `remote.type=inet,remote.host=127.0.0.1,remote.port=${o.dgram.peerPort}`;
  } else {
    throw new Error('startRefEngine needs socket or dgram');
  }
  const args = [
    '-M', 'none', '-accel', 'tcg', '-display', 'none', '-nodefaults', '-no-user-config',
    '-netdev', `user,id=u0${o.slirp ? ',' + o.slirp : ''}`,
    '-netdev', side,
    '-netdev', 'hubport,id=h0,hubid=0,netdev=u0',
    '-netdev', 'hubport,id=h1,hubid=0,netdev=s0',
  ];
  const out = o.log ? fs.openSync(o.log, 'w') : 'ignore';
  const child: ChildProcess = spawn('timeout', ['-s', 'KILL', String(o.maxSeconds ?? 600), 'qemu-system-x86_64', ...args], {
    stdio: ['ignore', out, out],
  });
  if (typeof out === 'number') fs.closeSync(out);
  const exited = new Promise<void>((res) => child.once('close', () => res()));
  // TERM is forwarded to qemu by timeout; KILL would only kill timeout and orphan qemu
  const kill = () => child.kill('SIGTERM');
  process.once('exit', kill);

  // readiness: the unix socket appears once qemu listens; dgram has no signal, and
  // qemu sets up netdevs before it would ever answer, so a short grace suffices
  const deadline = Date.now() + 10_000;
  if (o.socket) {
    while (!fs.existsSync(o.socket)) {
      if (child.exitCode !== null || Date.now() > deadline) {
        kill();
        throw new Error(`reference engine did not listen on ${o.socket} (log ${o.log ?? 'none'})`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } else {
    await new Promise((r) => setTimeout(r, 300));
    if (child.exitCode !== null) throw new Error(`reference engine exited early (log ${o.log ?? 'none'})`);
  }
  return {
    async close() {
      process.removeListener('exit', kill);
      kill();
      await exited;
    },
  };
}
