/**
 * Engine options as a user writes them, and their validated numeric form.
 * Defaults follow vpnkit: 192.168.65.0/24, gateway .1, host alias .2 (the
 * host's 127.0.0.1), DHCP pool from .3, MTU 1500, gateway MAC f6:16:36:bc:f9:c6.
 */
import { VnetkitError, ErrorCodes } from '../errors.js';
import { parseCidr, parseIPv4, parseMac, inSubnet } from '../wire/addr.js';
import type { BackendName } from '../kernels/types.js';
import type { Logger } from '../log.js';
import type { DnsZone } from '../services/dns.js';
import type { TcpOptions } from './tcp/options.js';
import type { Pinger } from './icmp-proxy.js';

export interface EngineOptions {
  /** Virtual subnet (default '192.168.65.0/24'). */
  subnet?: string;
  /** The engine's own address: gateway, DHCP and DNS server (default .1). */
  gatewayIp?: string;
  /** The host alias: the guest reaches the host's 127.0.0.1 through it (default .2). */
  hostIp?: string;
  /** First DHCP address (default .3); the pool runs to the end of the subnet. */
  dhcpStart?: string;
  /** Last DHCP address (default: last usable address of the subnet). */
  dhcpEnd?: string;
  /** Link MTU offered to guests, 576..65520 (default 1500). */
  mtu?: number;
  /** MAC of the gateway and every virtual service address. */
  gatewayMac?: string;
  /** DHCP option 15. */
  domainName?: string;
  /** DHCP option 119. */
  searchDomains?: string[];
  /** DHCP lease time in seconds (default 86400). */
  leaseSeconds?: number;
  /** Fixed addresses by MAC. */
  staticLeases?: { mac: string; ip: string }[];
  dns?: {
    /** Upstream resolvers (default: the host's /etc/resolv.conf). */
    upstreams?: { host: string; port?: number }[];
    zones?: DnsZone[];
    /** Hosts file whose entries are served (default /etc/hosts; null for none). */
    hostsFile?: string | null;
    /** Extra names answered with an address, e.g. VM names. */
    names?: Record<string, string>;
  };
  /** Let the guest reach the host's loopback through hostIp (default true). */
  hostLoopback?: boolean;
  /** Destinations the guest may never reach (default ['169.254.0.0/16']). */
  blockedSubnets?: string[];
  /** UDP NAT: idle expiry in ms (default 60000) and the binding cap (default 4096). */
  udpIdleMs?: number;
  maxUdpFlows?: number;
  /** Cap on learned MAC addresses across all ports (default 1024). */
  maxMacs?: number;
  /** How echo requests to other addresses are tried for real (default: the system `ping`). */
  pinger?: Pinger;
  /** TCP tunables (buffers, timeouts, caps): see src/engine/tcp/options.ts. */
  tcp?: TcpOptions;
  /** Kernel backend (default: VNETKIT_BACKEND, else the fastest available). */
  backend?: BackendName;
  /**
   * Kernel linear memory in bytes (default 56 MiB + txRingBytes + 1 MiB per TCP read
   * reservation up to 32 + 8 MiB of read areas for two VM links, 88 MiB in all). Less leaves
   * the TCP stack fewer kernel slabs (stats().tcp.kernelSlabs) and then the links fewer read
   * areas (stats().rx.readAreas); too little for the tables and the ring fails with
   * ERR_VNETKIT_KERNEL_MEMORY.
   */
  memoryBytes?: number;
  /**
   * Ring in kernel memory that frames for the VMs are built in and written from, in bytes
   * (default 8 MiB, 256 KiB to 1 GiB; it comes out of memoryBytes). Frames stay in it until
   * their link has written them; when links hold all of it (VMs not reading), the engine
   * builds in a small scratch region and copies, as `stats().tx.ringFullBatches` counts.
   */
  txRingBytes?: number;
  log?: Logger;
}

export interface EngineConfig {
  network: number;
  prefix: number;
  mask: number;
  broadcast: number;
  gatewayIp: number;
  hostIp: number;
  dhcpStart: number;
  dhcpEnd: number;
  mtu: number;
  gatewayMac: Uint8Array;
  domainName?: string;
  searchDomains: string[];
  leaseSeconds: number;
  staticLeases: { mac: string; ip: number }[];
  hostLoopback: boolean;
  blocked: { network: number; prefix: number }[];
  udpIdleMs: number;
  maxUdpFlows: number;
  maxMacs: number;
  txRingBytes: number;
}

function bad(key: string, why: string): never {
  throw new VnetkitError(ErrorCodes.BAD_OPTION, `option ${key}: ${why}`);
}

function intIn(key: string, v: number | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || v < min || v > max) bad(key, `must be an integer from ${min} to ${max}, got ${v}`);
  return v;
}

export function resolveConfig(o: EngineOptions): EngineConfig {
  const subnet = parseCidr(o.subnet ?? '192.168.65.0/24');
  if (subnet.prefix > 29) bad('subnet', 'prefix must be /29 or wider');
  const hostBits = (~subnet.mask) >>> 0;
  const broadcast = (subnet.network | hostBits) >>> 0;
  const at = (n: number) => (subnet.network + n) >>> 0;
  const addr = (key: string, s: string | undefined, def: number) => {
    const v = s === undefined ? def : parseIPv4(s);
    if (!inSubnet(v, subnet.network, subnet.prefix) || v === subnet.network || v === broadcast) {
      bad(key, `${s} is not a host address of ${o.subnet ?? '192.168.65.0/24'}`);
    }
    return v;
  };
  const gatewayIp = addr('gatewayIp', o.gatewayIp, at(1));
  const hostIp = addr('hostIp', o.hostIp, at(2));
  if (hostIp === gatewayIp) bad('hostIp', 'must differ from gatewayIp');
  const dhcpStart = addr('dhcpStart', o.dhcpStart, at(3));
  const dhcpEnd = addr('dhcpEnd', o.dhcpEnd, (broadcast - 1) >>> 0);
  if (dhcpEnd < dhcpStart) bad('dhcpEnd', 'must not be below dhcpStart');
  for (const [key, ip] of [['gatewayIp', gatewayIp], ['hostIp', hostIp]] as const) {
    if (ip >= dhcpStart && ip <= dhcpEnd) bad(key, 'must lie outside the DHCP pool (dhcpStart..dhcpEnd)');
  }
  const blocked = (o.blockedSubnets ?? ['169.254.0.0/16']).map((s) => {
    const c = parseCidr(s);
    return { network: c.network, prefix: c.prefix };
  });
  const staticLeases = (o.staticLeases ?? []).map((l, i) => {
    parseMac(l.mac);
    return { mac: l.mac.toLowerCase().replace(/-/g, ':'), ip: addr(`staticLeases[${i}].ip`, l.ip, 0) };
  });
  return {
    network: subnet.network,
    prefix: subnet.prefix,
    mask: subnet.mask,
    broadcast,
    gatewayIp,
    hostIp,
    dhcpStart,
    dhcpEnd,
    mtu: intIn('mtu', o.mtu, 1500, 576, 65520),
    gatewayMac: parseMac(o.gatewayMac ?? 'f6:16:36:bc:f9:c6'),
    domainName: o.domainName,
    searchDomains: o.searchDomains ?? [],
    leaseSeconds: intIn('leaseSeconds', o.leaseSeconds, 86400, 60, 0x7fffffff),
    staticLeases,
    hostLoopback: o.hostLoopback ?? true,
    blocked,
    udpIdleMs: intIn('udpIdleMs', o.udpIdleMs, 60_000, 1000, 24 * 3600_000),
    maxUdpFlows: intIn('maxUdpFlows', o.maxUdpFlows, 4096, 1, 1 << 20),
    maxMacs: intIn('maxMacs', o.maxMacs, 1024, 2, 1 << 16),
    txRingBytes: intIn('txRingBytes', o.txRingBytes, 8 * 1024 * 1024, 256 * 1024, 1 << 30),
  };
}
