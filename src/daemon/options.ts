/**
 * The daemon's options: one table drives the command line, the config file
 * (JSON or YAML, keys spelled like the long flags) and --help, so the three
 * can never disagree about a name or a type.
 *
 * Precedence: built-in defaults < config file < command line. A list given on
 * the command line replaces the file's list for that key (override, not
 * append), so a flag always means exactly what it says.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { VnetkitError, ErrorCodes } from '../errors.js';
import { resolveConfig, resolveLimits, type EngineLimits, type EngineOptions } from '../engine/config.js';
import { guestReachable } from '../transport/listen.js';
import { zoneFromJson, type DnsZone } from '../services/dns.js';
import { parseCidr, parseIPv4 } from '../wire/addr.js';
import type { LogLevel } from '../log.js';
import type { BackendName } from '../kernels/types.js';
import { parseForwardSpec, checkRemote, type ForwardRequest } from './forward-spec.js';
import { MAX_SEND_BUFFER_BYTES, MIN_SEND_BUFFER_BYTES } from '../transport/send-buffer.js';

export type OptionType = 'string' | 'int' | 'bool' | 'list' | 'map';

interface OptionDef {
  name: string;
  type: OptionType;
  arg?: string;
  help: string;
  /** Not accepted in a config file (meta options). */
  cliOnly?: boolean;
  /** Only in a config file (a mapping has no flag form); --help lists it under the config file. */
  fileOnly?: boolean;
  short?: string;
}

/** Every option, in --help order. */
export const OPTIONS: readonly OptionDef[] = [
  { name: 'listen-qemu', type: 'list', arg: 'URL', help: 'Accept qemu VMs (4-byte big-endian length framing, qemu -netdev stream): unix:///path or tcp://127.0.0.1:PORT. Repeatable.' },
  { name: 'listen-vpnkit', type: 'list', arg: 'URL', help: 'Accept vpnkit-protocol clients (handshake, then 2-byte little-endian framing), e.g. Docker Desktop / hyperkit: unix:///path. Repeatable.' },
  { name: 'listen-stdio', type: 'bool', help: 'Attach one VM on stdin/stdout with 2-byte little-endian framing (as gvproxy/vpnkit stdio). The daemon exits when stdin closes. Messages then go to stderr only.' },
  { name: 'fd', type: 'int', arg: 'N', help: 'Attach one VM on an inherited, already connected stream socket, file descriptor N (qemu framing; as passt --fd): e.g. one end of a socketpair whose other end the launcher gives to qemu -netdev stream,addr.type=fd. The launcher can size its SO_SNDBUF first, which Node cannot. The daemon exits when that VM disconnects.', cliOnly: true },
  { name: 'listen-dgram', type: 'list', arg: 'URL', help: 'Accept VMs over UDP datagrams, one frame each (qemu -netdev dgram): udp://127.0.0.1:PORT. Repeatable.' },
  { name: 'allow-guest-reachable-vm-listeners', type: 'bool', help: 'Accept tcp:// and udp:// VM listeners (--listen-qemu, --listen-vpnkit, --listen-dgram) while guests reach the host\'s loopback through the host alias. Dangerous: a guest can then connect to the listener and join the switch as another VM (or take the datagram listener\'s links), with its own addresses and MACs. Without it such listeners need --no-host-loopback; unix:// sockets are always safe.' },
  { name: 'listen', type: 'list', arg: 'URL', help: 'Control API (HTTP+JSON, gvisor-tap-vsock paths): unix:///path (mode 0600, no token). tcp://127.0.0.1:PORT needs a bearer token on every request (see --api-token-file) and is accepted only with --no-host-loopback or --allow-guest-api, because guests reach the host\'s loopback through the host alias. Repeatable.' },
  { name: 'api-token-file', type: 'string', arg: 'FILE', help: 'Token a tcp:// control API requires as "Authorization: Bearer TOKEN" (16..512 visible characters; surrounding whitespace ignored). Else $VNETKIT_API_TOKEN, else a random token written (mode 0600) to api-PORT.token in the runtime directory ($XDG_RUNTIME_DIR/vnetkit or <tmpdir>/vnetkit-UID), named in the log and on stdout.' },
  { name: 'allow-guest-api', type: 'bool', help: 'Permit a tcp:// control API while guests can reach host loopback (they could then call it, with the token).' },
  { name: 'capture-dir', type: 'string', arg: 'DIR', help: 'Directory POST /capture/start creates its files in (default: captures/ in the runtime directory, created 0700). The API takes a plain file name there, creates it new with mode 0600, and never overwrites or follows a symlink.' },
  { name: 'mtu', type: 'int', arg: 'N', help: 'Link MTU announced to guests, 576..65520 (default 1500).' },
  { name: 'vm-send-buffer', type: 'int', arg: 'BYTES', help: 'SO_SNDBUF vnetkit asks for on its end of each Unix-socket VM connection, 65536..268435456, or 0 for the system default (default 1048576). The kernel doubles it and caps it at twice net.core.wmem_max. At jumbo MTUs the system default starves the VM between writes.' },
  { name: 'vm-tx-queue-limit', type: 'int', arg: 'BYTES', help: 'Bytes each VM connection may hold toward a VM that is not reading, 131072..1073741824 (default 4194304). Past it frames are dropped and counted (/vms link.dropped, /stats linkDrops); TCP flows stop sending at half of it.' },
  { name: 'subnet', type: 'string', arg: 'CIDR', help: 'Virtual subnet (default 192.168.65.0/24).' },
  { name: 'gateway-ip', type: 'string', arg: 'IP', help: 'Gateway, DHCP and DNS server address (default: .1 of the subnet).' },
  { name: 'host-ip', type: 'string', arg: 'IP', help: 'Host alias: guests reach the host\'s 127.0.0.1 through it (default: .2 of the subnet).' },
  { name: 'dns-zone', type: 'list', arg: 'SPEC', help: 'Local DNS: NAME=IP (one name), or a zone as JSON in gvisor-tap-vsock\'s shape {"Name":"x.internal.","Records":[{"Name":"a","IP":"192.168.65.9"}],"DefaultIP":""}. Repeatable. In a config file a zone may be a mapping.' },
  { name: 'forward', type: 'list', arg: 'SPEC', help: 'Static port forward, host to guest: tcp:[HOST:]PORT:GUESTIP:GUESTPORT, udp:[HOST:]PORT:GUESTIP:GUESTPORT or unix:/PATH:GUESTIP:GUESTPORT (a host Unix socket to a guest TCP port). HOST defaults to 127.0.0.1; IPv6 as [::1]. Repeatable. In a config file also {local, remote, protocol}.' },
  { name: 'source-ip-preservation', type: 'bool', help: 'Forwarded connections reach the guest from the real client\'s address and port. A loopback client appears as the host alias with its own port. Default off: the guest sees the host alias and a source port vnetkit picks from 49152-65535.' },
  { name: 'pcap', type: 'string', arg: 'FILE', help: 'Capture every frame crossing the switch to FILE (classic pcap, LINKTYPE_ETHERNET), flushed on exit. FILE is created or truncated, any path you name.' },
  { name: 'snaplen', type: 'int', arg: 'N', help: 'Bytes kept of each captured frame, 64..262144 (default 65535).' },
  { name: 'log-level', type: 'string', arg: 'LEVEL', help: 'debug, info (default), warn, error or silent.' },
  { name: 'log-format', type: 'string', arg: 'FORMAT', help: 'text (default) or json (one JSON object per line). Logs go to stderr.' },
  { name: 'backend', type: 'string', arg: 'NAME', help: 'Kernel backend: wasm-simd, wasm or js (default: VNETKIT_BACKEND, else the fastest available).' },
  { name: 'host-loopback', type: 'bool', help: 'Let guests reach the host\'s 127.0.0.1 through the host alias (default on; --no-host-loopback turns it off).' },
  { name: 'isolation', type: 'bool', help: 'Switch isolation (default on): an address belongs to the VM that leased or first claimed it; frames with another VM\'s source IP or MAC, or claiming the gateway, are dropped and counted. --no-isolation lets a bridged or multi-homed guest send from addresses it does not own, and VMs are then not protected from each other.' },
  { name: 'limit', type: 'list', arg: 'KEY=VALUE', help: `Set one of the engine's per-VM or global bounds, e.g. --limit tcpFlowsPerVm=1024 (VALUE an integer, k/M/G suffixes for 1024 powers). Repeatable. KEY: ${limitKeys().join(', ')}. In a config file also limits: {KEY: VALUE}; flags override the file key by key.` },
  { name: 'limits', type: 'map', help: 'The engine bounds as a mapping (config file only), as --limit.', fileOnly: true },
  { name: 'config', type: 'string', arg: 'FILE', help: 'Read options from a JSON or YAML file whose keys are these long option names (e.g. log-level: debug, forward: [ ... ]). Flags override it.', cliOnly: true },
  { name: 'help', type: 'bool', help: 'Show this help and exit.', cliOnly: true, short: 'h' },
  { name: 'version', type: 'bool', help: 'Print the version and exit.', cliOnly: true, short: 'V' },
];

/** The keys --limit takes: EngineLimits' (resolveLimits fills every one of them). */
export function limitKeys(): string[] {
  return Object.keys(resolveLimits({}));
}

/** An integer with an optional binary k/M/G suffix (`64M` = 67108864), or NaN. */
function parseSize(v: string): number {
  const m = /^\s*(\d+)\s*([kKmMgG])?\s*$/.exec(v);
  if (m === null) return NaN;
  const mul = m[2] === undefined ? 1 : 1024 ** ('kmg'.indexOf(m[2].toLowerCase()) + 1);
  return Number(m[1]) * mul;
}

const BY_NAME = new Map(OPTIONS.map((o) => [o.name, o]));
const BY_SHORT = new Map(OPTIONS.filter((o) => o.short).map((o) => [o.short!, o]));

export type RawValue = string | number | boolean | string[] | unknown[] | Record<string, unknown>;
/** Option values as given (strings from argv, any JSON type from a file), keyed by long name. */
export type RawOptions = Record<string, RawValue>;

/** A bad option: `key` names the flag or config key, the message says why. */
export class OptionError extends VnetkitError {
  constructor(readonly key: string, readonly reason: string, readonly source = '') {
    super(ErrorCodes.BAD_OPTION, `${source ? `${source}: ` : ''}${key}: ${reason}`);
    this.name = 'OptionError';
  }
}

/** Parse argv (without node and script). Throws OptionError for unknown flags, missing values and positionals. */
export function parseArgs(argv: readonly string[]): RawOptions {
  const out: RawOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    let name: string;
    let value: string | undefined;
    let negated = false;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      value = eq >= 0 ? a.slice(eq + 1) : undefined;
      if (!BY_NAME.has(name) && name.startsWith('no-') && BY_NAME.get(name.slice(3))?.type === 'bool') {
        name = name.slice(3);
        negated = true;
        if (value !== undefined) throw new OptionError(`--no-${name}`, 'takes no value');
      }
    } else if (/^-[A-Za-z]$/.test(a)) {
      const o = BY_SHORT.get(a[1]);
      if (o === undefined) throw new OptionError(a, 'unknown option (see --help)');
      name = o.name;
    } else {
      throw new OptionError(JSON.stringify(a), 'unexpected argument; every option starts with -- (see --help)');
    }
    const def = BY_NAME.get(name);
    if (def === undefined || def.fileOnly) throw new OptionError(`--${name}`, `unknown option${suggest(name)} (see --help)`);
    const flag = `--${name}`;
    if (def.type === 'bool') {
      if (negated) out[name] = false;
      else if (value === undefined || value === 'true') out[name] = true;
      else if (value === 'false') out[name] = false;
      else throw new OptionError(flag, `takes no value or =true/=false, got ${JSON.stringify(value)}`);
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new OptionError(flag, `needs a value (${def.arg ?? 'VALUE'})`);
      value = argv[++i];
    }
    if (def.type === 'list') {
      const prev = out[name];
      out[name] = Array.isArray(prev) ? [...prev, value] : [value];
    } else {
      out[name] = value;
    }
  }
  return out;
}

function suggest(name: string): string {
  let best = '';
  let bestD = 3;
  for (const o of OPTIONS) {
    if (o.fileOnly) continue;
    const d = editDistance(name, o.name);
    if (d < bestD) {
      bestD = d;
      best = o.name;
    }
  }
  return best ? `; did you mean --${best}?` : '';
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 99;
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const t = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = t;
    }
  }
  return prev[b.length];
}

const MAX_CONFIG_BYTES = 1 << 20;

/** Read a JSON or YAML config file (by extension; YAML otherwise, which also reads JSON). */
export function loadConfigFile(file: string): RawOptions {
  const src = path.basename(file);
  let text: string;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new OptionError('--config', `${file} is not a regular file`);
    if (st.size > MAX_CONFIG_BYTES) throw new OptionError('--config', `${file} is larger than ${MAX_CONFIG_BYTES} bytes`);
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof OptionError) throw e;
    throw new OptionError('--config', `cannot read ${file}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { maxAliasCount: 100 });
  } catch (e) {
    throw new OptionError('--config', `${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0]}`);
  }
  return checkConfigObject(doc, src);
}

/** Check a parsed config document: a mapping of known, non-meta keys. Values are checked later, with flags. */
export function checkConfigObject(doc: unknown, source: string): RawOptions {
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new OptionError('config', `the top level must be a mapping of option names, got ${typeName(doc)}`, source);
  const out: RawOptions = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    const def = BY_NAME.get(k);
    if (def === undefined || def.cliOnly) throw new OptionError(`key "${k}"`, `unknown key${def?.cliOnly ? ' (command line only)' : suggest(k).replace('--', '')}`, source);
    const key = `key "${k}"`;
    switch (def.type) {
      case 'bool':
        if (typeof v !== 'boolean') throw new OptionError(key, `must be true or false, got ${typeName(v)}`, source);
        break;
      case 'int':
        if (typeof v !== 'number' || !Number.isInteger(v)) throw new OptionError(key, `must be an integer, got ${typeName(v)}`, source);
        break;
      case 'string':
        if (typeof v !== 'string') throw new OptionError(key, `must be a string, got ${typeName(v)}`, source);
        break;
      case 'list':
        if (!Array.isArray(v) && typeof v !== 'string' && (typeof v !== 'object' || v === null)) throw new OptionError(key, `must be a list, got ${typeName(v)}`, source);
        break;
      case 'map':
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new OptionError(key, `must be a mapping, got ${typeName(v)}`, source);
        break;
    }
    out[k] = (def.type === 'list' && !Array.isArray(v) ? [v] : v) as RawValue;
  }
  return out;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 60 ? v.slice(0, 60) + '…' : v)}`;
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${String(v)}`;
}

/** Everything the daemon needs, validated. */
export interface DaemonConfig {
  listenQemu: string[];
  listenVpnkit: string[];
  listenStdio: boolean;
  listenDgram: string[];
  /** An inherited connected stream socket to attach as one qemu-framed VM. */
  fd?: number;
  /** Every VM link's txQueueLimit (the engine's default when absent). */
  vmTxQueueLimit?: number;
  /** Every Unix-socket VM link's sendBufferBytes (the engine's default when absent, 0 = system default). */
  vmSendBuffer?: number;
  listen: string[];
  allowGuestApi: boolean;
  /** Accept tcp:// and udp:// VM listeners guests could reach. */
  allowGuestReachableVmListeners: boolean;
  /** File holding the token of tcp:// control APIs (else $VNETKIT_API_TOKEN, else generated). */
  apiTokenFile?: string;
  /** Directory of API captures (default: captures/ in the runtime directory). */
  captureDir?: string;
  engine: EngineOptions;
  forwards: ForwardRequest[];
  sourceIpPreservation: boolean;
  pcap?: string;
  snaplen?: number;
  logLevel: LogLevel | 'silent';
  logFormat: 'text' | 'json';
  /** True when neither flags nor file named any VM listener: the daemon picks its default sockets. */
  defaultListeners: boolean;
}

export interface ParsedCli {
  help: boolean;
  version: boolean;
  config?: DaemonConfig;
}

/** argv → validated config (reading --config). Throws OptionError naming the flag or key. */
export function resolveCli(argv: readonly string[]): ParsedCli {
  const flags = parseArgs(argv);
  if (flags.help === true) return { help: true, version: false };
  if (flags.version === true) return { help: false, version: true };
  const file = typeof flags.config === 'string' ? loadConfigFile(flags.config) : {};
  const source = typeof flags.config === 'string' ? path.basename(flags.config) : '';
  return { help: false, version: false, config: buildConfig(file, flags, source) };
}

/**
 * Merge file and flag values and validate each; errors name the flag
 * (`--subnet`) when the flag set the value, else the config key.
 */
export function buildConfig(file: RawOptions, flags: RawOptions, fileSource = 'config'): DaemonConfig {
  const from = (name: string): { v: RawValue | undefined; key: string; src: string } =>
    flags[name] !== undefined
      ? { v: flags[name], key: `--${name}`, src: '' }
      : { v: file[name], key: `key "${name}"`, src: fileSource };
  const fail = (name: string, why: string): never => {
    const f = from(name);
    throw new OptionError(f.key, why, f.src);
  };
  const str = (name: string): string | undefined => {
    const { v } = from(name);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') fail(name, `must be a string, got ${typeName(v)}`);
    return v as string;
  };
  const int = (name: string, min: number, max: number): number | undefined => {
    const { v } = from(name);
    if (v === undefined) return undefined;
    const n = typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n)) return fail(name, `must be an integer, got ${typeName(v)}`);
    if (n < min || n > max) fail(name, `must be from ${min} to ${max}, got ${n}`);
    return n;
  };
  const bool = (name: string, def: boolean): boolean => {
    const { v } = from(name);
    if (v === undefined) return def;
    if (typeof v !== 'boolean') fail(name, `must be true or false, got ${typeName(v)}`);
    return v as boolean;
  };
  const list = (name: string): unknown[] => {
    const { v } = from(name);
    if (v === undefined) return [];
    return Array.isArray(v) ? v : [v];
  };
  const urls = (name: string, schemes: string[]): string[] =>
    list(name).map((u, i) => {
      if (typeof u !== 'string') return fail(name, `entry ${i} must be a URL string, got ${typeName(u)}`);
      const scheme = /^([a-z]+):\/\//.exec(u)?.[1];
      if (scheme === undefined || !schemes.includes(scheme)) fail(name, `${JSON.stringify(u)} is not a ${schemes.map((s) => `${s}://`).join(' or ')} URL`);
      if (scheme === 'unix' && u.length <= 'unix://'.length) fail(name, `${JSON.stringify(u)} has no socket path`);
      if (scheme !== 'unix' && !/^[a-z]+:\/\/(\[[0-9a-fA-F:.]+\]|[^:/[\]]+):\d{1,5}\/?$/.test(u)) fail(name, `${JSON.stringify(u)} needs HOST:PORT`);
      return u;
    });

  const engine: EngineOptions = {};
  const subnet = str('subnet');
  if (subnet !== undefined) {
    try {
      const c = parseCidr(subnet);
      if (c.prefix > 29) fail('subnet', `${JSON.stringify(subnet)}: the prefix must be /29 or wider`);
    } catch (e) {
      if (e instanceof OptionError) throw e;
      fail('subnet', `${JSON.stringify(subnet)} is not a CIDR (want a.b.c.d/n, e.g. 192.168.65.0/24)`);
    }
    engine.subnet = subnet;
  }
  for (const [name, field] of [['gateway-ip', 'gatewayIp'], ['host-ip', 'hostIp']] as const) {
    const ip = str(name);
    if (ip === undefined) continue;
    try {
      parseIPv4(ip);
    } catch {
      fail(name, `${JSON.stringify(ip)} is not an IPv4 address`);
    }
    engine[field] = ip;
  }
  const mtu = int('mtu', 576, 65520);
  if (mtu !== undefined) engine.mtu = mtu;
  const backend = str('backend');
  if (backend !== undefined) {
    if (!['wasm-simd', 'wasm', 'js'].includes(backend)) fail('backend', `must be wasm-simd, wasm or js, got ${JSON.stringify(backend)}`);
    engine.backend = backend as BackendName;
  }
  engine.hostLoopback = bool('host-loopback', true);
  if (!bool('isolation', true)) engine.isolation = false;
  const limits = buildLimits(file, flags, fileSource);
  if (limits !== undefined) engine.limits = limits;

  // Cross-field checks (gateway inside the subnet, outside the DHCP pool...) live in
  // the engine's resolveConfig; run it now so the daemon fails before binding
  // anything, and translate its option names back to ours.
  let resolved: ReturnType<typeof resolveConfig>;
  try {
    resolved = resolveConfig(engine);
  } catch (e) {
    const m = /^option (\w+): (.*)$/s.exec((e as Error).message);
    const map: Record<string, string> = { gatewayIp: 'gateway-ip', hostIp: 'host-ip', subnet: 'subnet', mtu: 'mtu' };
    const name = m ? map[m[1]] : undefined;
    if (name !== undefined && from(name).v !== undefined) fail(name, m![2]);
    const culprit = ['host-ip', 'gateway-ip', 'subnet'].find((n) => from(n).v !== undefined) ?? 'subnet';
    return fail(culprit, m ? `${m[1]} ${m[2]}` : (e as Error).message);
  }

  const zones: DnsZone[] = [];
  const names: Record<string, string> = {};
  list('dns-zone').forEach((z, i) => {
    if (typeof z === 'string' && !z.trimStart().startsWith('{')) {
      const eq = z.indexOf('=');
      const name = z.slice(0, eq).trim();
      const ip = z.slice(eq + 1).trim();
      if (eq <= 0 || !/^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/.test(name)) fail('dns-zone', `entry ${i} ${JSON.stringify(z)}: want NAME=IP or a zone JSON object`);
      try {
        parseIPv4(ip);
      } catch {
        fail('dns-zone', `entry ${i} ${JSON.stringify(z)}: ${JSON.stringify(ip)} is not an IPv4 address`);
      }
      names[name.toLowerCase().replace(/\.$/, '')] = ip;
      return;
    }
    let obj: unknown = z;
    if (typeof z === 'string') {
      try {
        obj = JSON.parse(z);
      } catch (e) {
        fail('dns-zone', `entry ${i} is not valid JSON: ${(e as Error).message}`);
      }
    }
    try {
      const zone = zoneFromJson(obj);
      for (const ip of [zone.defaultIp, ...zone.records.map((r) => r.ip)]) if (ip !== undefined) parseIPv4(ip);
      zones.push(zone);
    } catch (e) {
      fail('dns-zone', `entry ${i}: ${(e as Error).message}`);
    }
  });
  if (zones.length > 0 || Object.keys(names).length > 0) engine.dns = { zones, names };

  const forwards = list('forward').map((f, i) => {
    const r = parseForwardSpec(f);
    if (typeof r === 'string') return fail('forward', `entry ${i}: ${r}`);
    const bad = checkRemote(r.remote, resolved);
    if (bad !== null) fail('forward', `entry ${i}: ${bad}`);
    return r;
  });

  const listen = urls('listen', ['unix', 'tcp']);
  const allowGuestApi = bool('allow-guest-api', false);
  if (engine.hostLoopback && !allowGuestApi) {
    const tcp = listen.find((u) => u.startsWith('tcp://'));
    if (tcp !== undefined) fail('listen', `${tcp}: guests can reach the host's loopback through the host alias, so a TCP control API would be reachable from inside them; use a unix:// socket, or add --no-host-loopback or --allow-guest-api`);
  }
  for (const u of listen) {
    const host = /^tcp:\/\/\[?([^\]]*?)\]?:\d+\/?$/.exec(u)?.[1];
    if (host !== undefined && !(host === 'localhost' || host === '::1' || host.startsWith('127.'))) fail('listen', `${u}: the control API listens on loopback or a unix socket only`);
  }

  const logLevel = str('log-level') ?? 'info';
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(logLevel)) fail('log-level', `must be debug, info, warn, error or silent, got ${JSON.stringify(logLevel)}`);
  const logFormat = str('log-format') ?? 'text';
  if (logFormat !== 'text' && logFormat !== 'json') fail('log-format', `must be text or json, got ${JSON.stringify(logFormat)}`);

  const listenQemu = urls('listen-qemu', ['unix', 'tcp']);
  const listenVpnkit = urls('listen-vpnkit', ['unix', 'tcp']);
  const listenDgram = urls('listen-dgram', ['udp']);
  const allowGuestReachableVmListeners = bool('allow-guest-reachable-vm-listeners', false);
  if (!allowGuestReachableVmListeners) {
    for (const [name, list] of [['listen-qemu', listenQemu], ['listen-vpnkit', listenVpnkit], ['listen-dgram', listenDgram]] as const) {
      for (const u of list) {
        const reach = guestReachable(u, engine.hostLoopback);
        if (reach === 'loopback') fail(name, `${u}: guests reach the host's loopback through the host alias, so a guest could connect to this listener and join the switch as another VM; use a unix:// socket, or add --no-host-loopback, or --allow-guest-reachable-vm-listeners if you accept that risk`);
        if (reach === 'address') fail(name, `${u}: VM listeners listen on loopback or a unix socket only`);
      }
    }
  }
  const apiTokenFile = str('api-token-file');
  if (apiTokenFile === '') fail('api-token-file', 'needs a file name');
  const captureDir = str('capture-dir');
  if (captureDir === '') fail('capture-dir', 'needs a directory');
  const listenStdio = bool('listen-stdio', false);
  // 0-2 are stdio, which --listen-stdio serves with its own framing.
  const fd = int('fd', 3, 2 ** 31 - 1);
  const pcap = str('pcap');
  if (pcap === '') fail('pcap', 'needs a file name');
  const vmSendBuffer = int('vm-send-buffer', 0, MAX_SEND_BUFFER_BYTES);
  if (vmSendBuffer !== undefined && vmSendBuffer !== 0 && vmSendBuffer < MIN_SEND_BUFFER_BYTES) fail('vm-send-buffer', `must be 0 or from ${MIN_SEND_BUFFER_BYTES} to ${MAX_SEND_BUFFER_BYTES}, got ${vmSendBuffer}`);
  return {
    listenQemu,
    listenVpnkit,
    listenStdio,
    listenDgram,
    fd,
    vmTxQueueLimit: int('vm-tx-queue-limit', 128 * 1024, 1024 ** 3),
    vmSendBuffer,
    listen,
    allowGuestApi,
    allowGuestReachableVmListeners,
    apiTokenFile,
    captureDir,
    engine,
    forwards,
    sourceIpPreservation: bool('source-ip-preservation', false),
    pcap,
    snaplen: int('snaplen', 64, 262144),
    logLevel: logLevel as LogLevel | 'silent',
    logFormat: logFormat as 'text' | 'json',
    defaultListeners: listenQemu.length + listenVpnkit.length + listenDgram.length === 0 && !listenStdio && fd === undefined,
  };
}

/**
 * The engine bounds from the file's `limits` mapping and the `limit` list
 * (the flag's, else the file's), later keys winning; undefined when none.
 * Each value is checked by the engine's own resolveLimits, and errors name
 * the flag or key that set it.
 */
function buildLimits(file: RawOptions, flags: RawOptions, fileSource: string): EngineLimits | undefined {
  const keys = limitKeys();
  const entries: { key: string; value: unknown; where: OptionError['key']; src: string }[] = [];
  const map = file.limits;
  if (map !== undefined) {
    if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new OptionError('key "limits"', `must be a mapping, got ${typeName(map)}`, fileSource);
    for (const [k, v] of Object.entries(map)) entries.push({ key: k, value: v, where: `key "limits.${k}"`, src: fileSource });
  }
  const fromFlag = flags.limit !== undefined;
  const raw = fromFlag ? flags.limit : file.limit;
  for (const [i, e] of (raw === undefined ? [] : Array.isArray(raw) ? raw : [raw]).entries()) {
    const where = fromFlag ? '--limit' : 'key "limit"';
    const src = fromFlag ? '' : fileSource;
    if (typeof e !== 'string' || e.indexOf('=') <= 0) throw new OptionError(where, `entry ${i} ${typeof e === 'string' ? JSON.stringify(e) : typeName(e)}: want KEY=VALUE`, src);
    const eq = e.indexOf('=');
    entries.push({ key: e.slice(0, eq).trim(), value: e.slice(eq + 1), where, src });
  }
  if (entries.length === 0) return undefined;
  const out: Record<string, number> = {};
  for (const { key, value, where, src } of entries) {
    if (!keys.includes(key)) throw new OptionError(where, `unknown limit ${JSON.stringify(key)}; valid keys: ${keys.join(', ')}`, src);
    const n = typeof value === 'string' ? parseSize(value) : value;
    if (typeof n !== 'number' || !Number.isInteger(n)) throw new OptionError(where, `${key} must be an integer, got ${typeName(value)}`, src);
    try {
      resolveLimits({ ...out, [key]: n } as EngineLimits);
    } catch (e) {
      throw new OptionError(where, (e as Error).message.replace(/^option limits\./, ''), src);
    }
    out[key] = n;
  }
  return out as EngineLimits;
}

/** The --help text, generated from OPTIONS so it lists every option. */
export function helpText(): string {
  const lines = [
    'Usage: vnetkit [options]',
    '',
    'Userspace network for virtual machines: switch, gateway, DHCP, DNS and NAT of guest',
    'TCP/UDP to host sockets, with host-to-guest port forwarding and a control API.',
    '',
    'With no listener options, vnetkit listens for qemu on a socket in $XDG_RUNTIME_DIR/vnetkit/',
    '(or a private per-user directory under the system temp dir), puts the control API socket',
    'beside it, and prints the qemu arguments that connect a VM.',
    '',
    'Options:',
  ];
  for (const o of OPTIONS) {
    if (o.fileOnly) continue;
    const head = `  ${o.short ? `-${o.short}, ` : ''}--${o.type === 'bool' && (o.name === 'host-loopback' || o.name === 'isolation') ? '[no-]' : ''}${o.name}${o.arg ? ` ${o.arg}` : ''}`;
    lines.push(head);
    for (const l of wrap(o.help, 72)) lines.push(`        ${l}`);
  }
  lines.push(
    '',
    'Config file: JSON (.json) or YAML with the option names above as keys, e.g.',
    '  subnet: 192.168.65.0/24',
    '  listen-qemu: [unix:///run/user/1000/vm.sock]',
    '  forward:',
    '    - tcp:127.0.0.1:8080:192.168.65.3:80',
    '    - { local: "127.0.0.1:5353", remote: "192.168.65.3:53", protocol: udp }',
    '  dns-zone:',
    '    - { Name: "vm.internal.", Records: [{ Name: web, IP: 192.168.65.3 }] }',
    '  limits: { tcpFlowsPerVm: 1024, tcpBufferBytesPerVm: 32M }',
    'Flags override the file; a list flag replaces the file\'s list (--limit overrides limits key by key).',
    '',
    'Control API (HTTP+JSON on the --listen socket), compatible with gvisor-tap-vsock clients:',
    '  POST /services/forwarder/expose   {"local":"127.0.0.1:8080","remote":"192.168.65.3:80","protocol":"tcp|udp|unix"}',
    '  POST /services/forwarder/unexpose {"local":"127.0.0.1:8080","protocol":"tcp"}',
    '  GET  /services/forwarder/all      GET /services/dhcp/leases   GET /services/dns/all',
    '  POST /services/dns/add            (zone JSON)',
    '  GET  /stats   GET /flows   GET /metrics (Prometheus)   GET /vms',
    '  POST /capture/start {"file":"x.pcap","snaplen":65535} (a name in --capture-dir)   POST /capture/stop',
    'Errors are 4xx/5xx with {"error": "...", "code": "ERR_VNETKIT_..."}; a duplicate expose is 409.',
    'Over tcp:// every request needs "Authorization: Bearer TOKEN" (401 otherwise), and POSTs',
    '"Content-Type: application/json" (415). Any request with an Origin header (a web page) is 403,',
    'as is one whose Host is not the listener\'s address. A unix:// socket needs neither token nor',
    'Content-Type (its mode 0600 lets only you connect).',
    '',
    'Example: vnetkit --listen-qemu unix:///tmp/vm.sock --listen unix:///tmp/vnetkit-api.sock \\',
    '           --forward tcp:127.0.0.1:8080:192.168.65.3:80',
    '  qemu-system-x86_64 ... -netdev stream,id=n0,server=off,addr.type=unix,addr.path=/tmp/vm.sock \\',
    '           -device virtio-net-pci,netdev=n0',
    '',
  );
  return lines.join('\n');
}

function wrap(s: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const w of s.split(' ')) {
    if (line.length > 0 && line.length + 1 + w.length > width) {
      out.push(line);
      line = w;
    } else {
      line = line.length > 0 ? `${line} ${w}` : w;
    }
  }
  if (line.length > 0) out.push(line);
  return out;
}
