/**
 * Port-forward descriptions at the edge: the flag/config string form and the
 * API's {local, remote, protocol} (gvisor-tap-vsock's shape), checked and put
 * into one canonical form so duplicates are recognised however they were
 * spelled. Returns reason strings; nothing here throws.
 */
import net from 'node:net';
import path from 'node:path';
import { formatIPv4, inSubnet, parseIPv4 } from '../wire/addr.js';

export type ForwardProtocol = 'tcp' | 'udp' | 'unix';

/** A forward as the API and config speak it. local: "127.0.0.1:8080", "[::1]:8080" or "/abs/path" (unix). */
export interface ForwardRequest {
  local: string;
  remote: string;
  protocol: ForwardProtocol;
}

export interface HostAddr {
  host: string;
  port: number;
}

/** Unix socket paths longer than this do not fit sockaddr_un on Linux. */
const MAX_UNIX_PATH = 107;

/** "127.0.0.1:8080" / "[::1]:8080" / ":8080" / "8080" → host and port; a missing host is 127.0.0.1 (never all interfaces by accident). */
export function parseHostPort(s: string): HostAddr | string {
  if (typeof s !== 'string' || s.length === 0) return 'address is empty';
  let host: string;
  let portS: string;
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(s);
  if (v6 !== null) {
    host = v6[1];
    portS = v6[2];
    if (!net.isIPv6(host)) return `${JSON.stringify(s)}: ${host} is not an IPv6 address`;
  } else {
    const c = s.lastIndexOf(':');
    host = c < 0 ? '' : s.slice(0, c);
    portS = c < 0 ? s : s.slice(c + 1);
    if (host.includes(':')) return `${JSON.stringify(s)}: write an IPv6 host in brackets, [::1]:PORT`;
    if (host === '' || host === 'localhost') host = '127.0.0.1';
    if (!net.isIPv4(host)) return `${JSON.stringify(s)}: ${JSON.stringify(host)} is not an IP address`;
  }
  if (!/^\d{1,5}$/.test(portS) || Number(portS) > 65535) return `${JSON.stringify(s)}: port must be 0..65535`;
  return { host, port: Number(portS) };
}

export function formatHostPort(a: HostAddr): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Canonical local for a protocol, or a reason. */
export function canonicalLocal(protocol: ForwardProtocol, local: string): string {
  if (protocol === 'unix') return path.normalize(local);
  const hp = parseHostPort(local);
  return typeof hp === 'string' ? local : formatHostPort(hp);
}

export function checkLocal(protocol: ForwardProtocol, local: unknown): string | null {
  if (typeof local !== 'string' || local.length === 0) return 'local must be a non-empty string';
  if (protocol === 'unix') {
    if (!path.isAbsolute(local)) return `local ${JSON.stringify(local)} must be an absolute socket path for protocol unix`;
    if (Buffer.byteLength(local) > MAX_UNIX_PATH) return `local ${JSON.stringify(local)} is longer than ${MAX_UNIX_PATH} bytes (sockaddr_un limit)`;
    if (local.includes('\0')) return 'local contains a NUL byte';
    return null;
  }
  const hp = parseHostPort(local);
  return typeof hp === 'string' ? `local ${hp}` : null;
}

export interface SubnetView {
  network: number;
  prefix: number;
  broadcast: number;
  gatewayIp: number;
  hostIp: number;
}

/** The guest address:port of a forward, or a reason: it must be a guest address of the virtual subnet. */
export function parseRemote(remote: unknown, s: SubnetView): { ip: number; port: number } | string {
  if (typeof remote !== 'string' || remote.length === 0) return 'remote must be a non-empty string "GUESTIP:PORT"';
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(remote);
  if (m === null) return `remote ${JSON.stringify(remote)} must be GUESTIP:PORT with an IPv4 guest address`;
  let ip: number;
  try {
    ip = parseIPv4(m[1]);
  } catch {
    return `remote ${JSON.stringify(remote)}: ${m[1]} is not an IPv4 address`;
  }
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return `remote ${JSON.stringify(remote)}: port must be 1..65535`;
  const sub = `${formatIPv4(s.network)}/${s.prefix}`;
  if (!inSubnet(ip, s.network, s.prefix)) return `remote ${remote} is outside the virtual subnet ${sub}`;
  if (ip === s.network || ip === s.broadcast) return `remote ${remote} is the ${ip === s.network ? 'network' : 'broadcast'} address of ${sub}, not a guest`;
  if (ip === s.gatewayIp) return `remote ${remote} is the gateway, not a guest`;
  if (ip === s.hostIp) return `remote ${remote} is the host alias, not a guest`;
  return { ip, port };
}

export function checkRemote(remote: unknown, s: SubnetView): string | null {
  const r = parseRemote(remote, s);
  return typeof r === 'string' ? r : null;
}

/**
 * A forward from a flag or config entry: "tcp:[HOST:]PORT:GUESTIP:GUESTPORT",
 * "udp:…", "unix:/PATH:GUESTIP:GUESTPORT", or an object {local, remote, protocol}.
 * Guest fields are taken from the right so a unix path may contain ':'.
 */
export function parseForwardSpec(spec: unknown): ForwardRequest | string {
  if (typeof spec === 'object' && spec !== null && !Array.isArray(spec)) {
    const o = spec as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!['local', 'remote', 'protocol'].includes(k)) return `unknown field ${JSON.stringify(k)} (want local, remote, protocol)`;
    const protocol = o.protocol ?? 'tcp';
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'unix') return `protocol must be tcp, udp or unix, got ${JSON.stringify(protocol)}`;
    const bad = checkLocal(protocol, o.local);
    if (bad !== null) return bad;
    if (typeof o.remote !== 'string') return 'remote must be a string "GUESTIP:PORT"';
    return { protocol, local: canonicalLocal(protocol, o.local as string), remote: o.remote };
  }
  if (typeof spec !== 'string') return `must be a string like tcp:127.0.0.1:8080:192.168.65.3:80 or a {local, remote, protocol} mapping`;
  const m = /^(tcp|udp|unix):(.+):(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(spec);
  if (m === null) return `${JSON.stringify(spec)} is not PROTO:[HOST:]PORT:GUESTIP:GUESTPORT (PROTO tcp, udp or unix:/PATH)`;
  const protocol = m[1] as ForwardProtocol;
  const local = m[2];
  const bad = checkLocal(protocol, local);
  if (bad !== null) return `${JSON.stringify(spec)}: ${bad}`;
  return { protocol, local: canonicalLocal(protocol, local), remote: `${m[3]}:${m[4]}` };
}
