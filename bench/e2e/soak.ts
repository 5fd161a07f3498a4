/**
 * `npm run bench:e2e -- --soak`: issue 23's soak. One vnetkit engine (the bench's bundled
 * launcher, vnetkit-engine.ts) serves on one unix socket
 *   - two real guests: network namespaces vnksoak0/vnksoak1 whose kernels reach the engine
 *     through the bench's TAP relay (relay.c), each running soak-load.mjs's mixed load against
 *     servers on the host's 127.0.0.1 through the host alias: bulk transfers both ways with
 *     SHA-256 checks, connection churn (to probe.mjs's echo server), DNS queries to the
 *     gateway (a builtin name and one answered by an upstream responder started here on
 *     127.0.0.1), UDP request/response;
 *   - one hostile fake VM (hostile-vm.ts) on the same socket, cycling through attacks, one per
 *     interval, from the second interval on (the first is the unattacked baseline);
 *   - every interval, a fresh fake VM's DHCP DISCOVER (does a newcomer still get an offer?).
 * Every interval it records the engine's RSS and open descriptors (peak over 2 s samples and
 * at the end), each guest's throughput and errors, the hostile VM's counters and a few of
 * the engine's own, and rewrites bench/results/soak/<stem>.{json,md}, so a crash or an
 * interrupt still leaves the rows so far. The engine gets a fake pinger: the echo flood to
 * 198.51.100.x never spawns `ping` nor leaves the machine.
 */
import { closeSync, openSync, readFileSync, readSync, readdirSync, fstatSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, loadavg, release } from 'node:os';
import {
  HERE, RUN, ENGINE_BUNDLE, buildTool, die, listening, log, mkNs, mkTap, nsExists, onCleanup, prepareTree, run, sleep,
  startBg, stopBg, waitFile, waitListening, waitTransaction, type Bg, type Opts,
} from './run.js';
import { startDnsUpstream } from '../../test/support/dns-upstream.js';
import { ATTACKS, HOSTILE_IP, HostileVm, attackAt, dhcpProbe } from './hostile-vm.js';
import {
  fillRatios, guestDelta, renderSoak, soakVerdict, type EngineExcerpt, type GuestCounters, type SoakResult, type SoakRow,
} from './soak-report.js';
import { parseIPv4, parseMac } from '../../src/wire/addr.js';

/** Names and ports of their own, so a soak never meets the comparison bench's vnke2e0/5201. */
const GUESTS = [
  { id: 'guest-a', ns: 'vnksoak0', mac: '52:54:00:50:00:0a', ip: '192.168.65.10' },
  { id: 'guest-b', ns: 'vnksoak1', mac: '52:54:00:50:00:0b', ip: '192.168.65.11' },
] as const;
const PORTS = { bulk: 5310, echo: 5311, big: 5312, syn: 5313, udp: 5314 } as const;
const TARGET = '192.168.65.2';
const GATEWAY = '192.168.65.1';
const SOCK = join(RUN, 'soak-engine.sock');
const DHCP_PROBE_MAC = parseMac('52:54:00:50:00:dd');
/** The pattern issue 23 found backtracking for 44 s on a 30-character name. */
const REGEXP_ZONE = 'soak-re.test';
const BAD_REGEXP = '^([a-z0-9]+-?)+$';
const WARMUP_S = 10;

/** The last line of `file` that starts with `prefix` (reads at most the last 256 KiB). */
function lastLine(file: string, prefix: string): string | undefined {
  let fd: number;
  try { fd = openSync(file, 'r'); } catch { return undefined; }
  try {
    const size = fstatSync(fd).size;
    const n = Math.min(size, 256 << 10);
    const b = Buffer.alloc(n);
    readSync(fd, b, 0, n, size - n);
    const lines = b.toString('utf8').split('\n');
    for (let i = lines.length - 1; i >= 0; i--) if (lines[i].startsWith(prefix)) return lines[i];
    return undefined;
  } finally {
    closeSync(fd);
  }
}

function guestCounters(bg: Bg): GuestCounters | undefined {
  const l = lastLine(bg.logFile, '{"id"');
  try { return l === undefined ? undefined : JSON.parse(l) as GuestCounters; } catch { return undefined; }
}

/** VmRSS (MiB) and open descriptors of a live process, or undefined once it is gone. */
function procUsage(pid: number): { rssMiB: number; fds: number } | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { rssMiB: Math.round(Number(m?.[1] ?? 0) / 102.4) / 10, fds: readdirSync(`/proc/${pid}/fd`).length };
  } catch {
    return undefined;
  }
}

/** SIGUSR2 makes the launcher print "stats {json}"; a few of them are kept per interval. */
async function engineExcerpt(engine: Bg): Promise<EngineExcerpt | undefined> {
  if (engine.done) return undefined;
  const before = lastLine(engine.logFile, 'stats ');
  engine.proc.kill('SIGUSR2');
  for (let i = 0; i < 20; i++) {
    await sleep(100);
    const l = lastLine(engine.logFile, 'stats ');
    if (l !== undefined && l !== before) {
      try {
        const s = JSON.parse(l.slice(6));
        const mib = (n: unknown) => Math.round(Number(n ?? 0) / 104857.6) / 10;
        const memory = s.memory === undefined ? undefined
          : { heapUsedMiB: mib(s.memory.heapUsed), heapTotalMiB: mib(s.memory.heapTotal), arrayBuffersMiB: mib(s.memory.arrayBuffers), externalMiB: mib(s.memory.external) };
        return { vms: s.vms, tcpFlows: s.tcp?.flows, udpFlows: s.udp?.flows, dhcpLeases: s.dhcp?.leases, fakePings: s.fakePings, drops: s.drops, limits: s.limits, memory };
      } catch { return undefined; }
    }
  }
  return undefined;
}

export async function runSoak(o: Opts, logDir: string): Promise<void> {
  const t0 = Date.now();
  const mtu = o.mtus[0];
  const intervals = Math.max(2, Math.floor((o.soakMinutes * 60) / o.soakInterval));
  for (const g of GUESTS) if (await nsExists(g.ns)) die(`network namespace ${g.ns} exists: another soak running? (ip netns del ${g.ns})`);
  for (const p of Object.values(PORTS)) if (await listening(null, p)) die(`127.0.0.1:${p} is already in use`);
  const relayBin = await buildTool('relay');
  const tree = await prepareTree(o.worktree, !o.tsx);
  const notes: string[] = [];

  // Host side: servers on 127.0.0.1 and the DNS upstream (an in-process responder, never the machine's resolver).
  // The guests' servers and the attack's targets are separate processes, as an attacker's
  // servers would be other machines: the zero-window flows' big sender keeps a thousand sockets
  // busy, which in one event loop would slow the guests' downloads without the engine's doing.
  const servers = startBg('soak-servers', 'node', [join(HERE, 'soak-load.mjs'), 'servers', '--bulk', String(PORTS.bulk), '--udp', String(PORTS.udp)],
    join(logDir, 'soak-servers.log'));
  const attackServers = startBg('soak-attack-servers', 'node', [join(HERE, 'soak-load.mjs'), 'servers', '--big', String(PORTS.big), '--syn', String(PORTS.syn)],
    join(logDir, 'soak-attack-servers.log'));
  const echo = startBg('probe-server', 'node', [join(HERE, 'probe.mjs'), 'server', '--bind', '127.0.0.1', '--port', String(PORTS.echo)], join(logDir, 'soak-echo.log'));
  for (const p of [PORTS.bulk, PORTS.big, PORTS.syn, PORTS.echo]) if (!(await waitListening(null, p, 10_000))) die(`soak server on ${p} did not start (see ${logDir})`);
  const upstream = await startDnsUpstream();
  onCleanup(() => upstream.close());

  process.env.VNETKIT_BENCH_ENGINE = JSON.stringify({
    // Static guests at .10/.11 and the hostile VM at .66 stay out of the DHCP pool.
    dhcpStart: '192.168.65.100',
    dns: {
      upstreams: [{ host: '127.0.0.1', port: upstream.port }],
      zones: [{ name: REGEXP_ZONE, records: [{ name: 'svc', regexp: BAD_REGEXP, ip: TARGET }] }],
    },
  });
  rmSync(SOCK, { force: true });
  const engineLog = join(logDir, 'soak-engine.log');
  const engine = startBg('vnetkit-soak', 'node', [...(o.tsx ? ['--import', 'tsx', 'bench/e2e/vnetkit-engine.ts'] : [ENGINE_BUNDLE]),
    '--mtu', String(mtu), '--backend', 'wasm-simd', '--subnet', '192.168.65.0/24', '--fake-pinger', 'yes', '--sock', SOCK], engineLog, tree.dir);
  delete process.env.VNETKIT_BENCH_ENGINE;
  if (!(await waitFile(SOCK, 20_000, engine))) die(`engine did not create ${SOCK} (see ${engineLog})`);
  const refused = lastLine(engineLog, 'zones refused: ');
  if (refused !== undefined) notes.push(`The engine refused the regexp zone at load (${refused.slice(15)}); dns-regexp sends the long names anyway.`);

  onCleanup(async () => {
    for (const g of GUESTS) if (await nsExists(g.ns)) await run('ip', ['netns', 'del', g.ns]);
  });
  const relays: Bg[] = [];
  for (const g of GUESTS) {
    await mkNs(g.ns);
    await mkTap(g.ns, 'tap0', g.mac, `${g.ip}/24`, mtu);
    relays.push(startBg(`relay-${g.id}`, relayBin, ['--netns', g.ns, '--tap', 'tap0', '--connect', SOCK, '--wait', '10'], join(logDir, `soak-relay-${g.id}.log`)));
  }
  for (const g of GUESTS) {
    if (!(await waitTransaction(g.ns, TARGET, PORTS.echo, [engine, ...relays], 20_000))) die(`${g.id}: no TCP transaction through the engine within 20 s (see ${engineLog})`);
  }
  const loads = GUESTS.map((g) => startBg(`load-${g.id}`, 'ip', ['netns', 'exec', g.ns, 'node', join(HERE, 'soak-load.mjs'), 'guest', '--id', g.id,
    '--target', TARGET, '--dns', GATEWAY, '--bulk', String(PORTS.bulk), '--echo', String(PORTS.echo), '--udp', String(PORTS.udp),
    '--names', 'host.docker.internal,a.test', '--name-ips', `${TARGET},1.2.3.4`], join(logDir, `soak-load-${g.id}.log`)));

  const pid = engine.proc.pid!;
  const result: SoakResult = {
    meta: {
      date: new Date().toISOString(), commit: tree.commit, dirty: tree.dirty, node: process.version, kernel: release(), cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? '?', load: [loadavg()[0], 0], seconds: 0,
      options: { minutes: o.soakMinutes, interval: o.soakInterval, scale: o.soakScale, mtu },
      sample: o.soakMinutes < 30 ? true : undefined,
      engine: { pid, regexpZone: REGEXP_ZONE, regexpZoneAccepted: refused === undefined, fakePinger: true },
    },
    rows: [], final: [], verdict: soakVerdict([], [], ATTACKS.length), notes,
  };
  mkdirSync(o.out, { recursive: true });
  const write = () => {
    fillRatios(result.rows);
    result.verdict = soakVerdict(result.rows, result.final, ATTACKS.length);
    result.meta.seconds = Math.round((Date.now() - t0) / 1000);
    result.meta.load[1] = loadavg()[0];
    writeFileSync(join(o.out, `${o.soakName}.json`), JSON.stringify(result, null, 1) + '\n');
    writeFileSync(join(o.out, `${o.soakName}.md`), renderSoak(result));
  };

  const hostile = new HostileVm({
    sock: SOCK, ports: { udp: PORTS.udp, big: PORTS.big, syn: PORTS.syn },
    victim: { ip: parseIPv4(GUESTS[0].ip), mac: parseMac(GUESTS[0].mac) },
    others: GUESTS.map((g) => parseIPv4(g.ip)).filter((ip) => ip !== HOSTILE_IP),
    regexpZone: REGEXP_ZONE, scale: o.soakScale,
  });

  log(`soak: ${intervals} intervals of ${o.soakInterval} s (the first unattacked) after ${WARMUP_S} s of warm-up; logs in ${logDir}`);
  await sleep(WARMUP_S * 1000);
  let prev = loads.map(guestCounters);
  const start = Date.now();
  try {
    for (let i = 0; i < intervals; i++) {
      const rowStart = Date.now();
      const end = start + (i + 1) * o.soakInterval * 1000;
      const attack = i === 0 ? undefined : attackAt(i - 1);
      let attackRun: Promise<void> = Promise.resolve();
      if (attack !== undefined && !engine.done) {
        // A new link every cycle: what the engine holds for a VM must go when it leaves.
        if ((i - 1) % ATTACKS.length === 0) {
          hostile.disconnect();
          try { await hostile.connect(); } catch (e) { notes.push(`interval ${i}: hostile VM could not connect: ${(e as Error).message}`); }
        }
        attackRun = hostile.attack(attack, end - 1000).catch((e) => { notes.push(`interval ${i} (${attack}): ${(e as Error).message}`); });
      }
      let rssPeak = 0, fdsPeak = 0, dhcpOffer: boolean | undefined;
      const probeAt = rowStart + 0.6 * (end - rowStart);
      while (Date.now() < end) {
        const u = procUsage(pid);
        if (u !== undefined) { rssPeak = Math.max(rssPeak, u.rssMiB); fdsPeak = Math.max(fdsPeak, u.fds); }
        if (dhcpOffer === undefined && Date.now() >= probeAt && !engine.done) dhcpOffer = await dhcpProbe(SOCK, DHCP_PROBE_MAC).catch(() => false);
        await sleep(Math.min(2000, Math.max(0, end - Date.now())));
      }
      await attackRun;
      const u = procUsage(pid);
      const alive = !engine.done && u !== undefined;
      const cur = loads.map(guestCounters);
      const seconds = (Date.now() - rowStart) / 1000;
      const row: SoakRow = {
        index: i, startS: Math.round((rowStart - start) / 1000), seconds: Math.round(seconds * 10) / 10,
        phase: i === 0 ? 'baseline' : 'attack', attack,
        rssMiB: u?.rssMiB ?? 0, rssPeakMiB: Math.max(rssPeak, u?.rssMiB ?? 0), fds: u?.fds ?? 0, fdsPeak: Math.max(fdsPeak, u?.fds ?? 0),
        alive,
        guests: cur.flatMap((c, k) => (c === undefined ? [] : [guestDelta(prev[k], c, seconds)])),
        hostile: attack !== undefined ? hostile.takeCounters() : undefined,
        dhcpOffer,
        engine: await engineExcerpt(engine),
      };
      prev = cur;
      for (const [k, l] of loads.entries()) {
        if (l.done && !notes.some((n) => n.startsWith(`${GUESTS[k].id}'s load`))) notes.push(`${GUESTS[k].id}'s load process exited during interval ${i} (see ${l.logFile}).`);
      }
      result.rows.push(row);
      write();
      log(`soak #${i} ${attack ?? 'baseline'}: RSS ${row.rssMiB} MiB (peak ${row.rssPeakMiB}, JS heap ${row.engine?.memory?.heapUsedMiB ?? '?'}, buffers ${row.engine?.memory?.arrayBuffersMiB ?? '?'}), fds ${row.fds} (peak ${row.fdsPeak}), ` +
        `${row.guests.map((g) => `${g.id} ${g.mbps} Mbit/s lost ${g.lostBytes}`).join(', ')}, DHCP offer ${dhcpOffer ?? '-'}${alive ? '' : ', ENGINE DEAD'}`);
      if (!alive) {
        notes.push(`The engine died during interval ${i} (see ${engineLog}).`);
        break;
      }
    }
  } finally {
    hostile.disconnect();
    // The guests finish the transfers in hand (at most 30 s) and print their totals.
    for (const l of loads) if (!l.done) l.proc.kill('SIGTERM');
    await Promise.race([Promise.all(loads.map((l) => l.exited)), sleep(40_000)]);
    result.final = loads.map(guestCounters).filter((c): c is GuestCounters => c !== undefined);
    result.drain = result.final.map((c) => guestDelta(prev.find((p) => p?.id === c.id), c, 1));
    for (const r of relays) await stopBg(r);
    await stopBg(engine);
    const exit = lastLine(engineLog, 'vnetkit-engine: SIGTERM');
    if (exit === undefined) notes.push('The engine did not print its stats within 5 s of SIGTERM and was killed (its event loop was busy or it had died).');
    await stopBg(servers);
    await stopBg(attackServers);
    await stopBg(echo);
    write();
  }
  const md = renderSoak(result);
  console.log(md);
  log(`soak done in ${result.meta.seconds} s: ${join(o.out, o.soakName)}.{json,md}`);
}
