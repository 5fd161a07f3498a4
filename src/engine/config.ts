/**
 * Engine options as a user writes them, and their validated numeric form.
 * Defaults follow vpnkit: 192.168.65.0/24, gateway .1, host alias .2 (the
 * host's 127.0.0.1), DHCP pool from .3, MTU 1500, gateway MAC f6:16:36:bc:f9:c6.
 */
import { VnetkitError, ErrorCodes } from '../errors.js';
import { parseCidr, parseIPv4, parseMac, inSubnet } from '../wire/addr.js';
import type { BackendName } from '../kernels/types.js';
import type { Logger } from '../log.js';
import type { DnsZone, DnsTcpOptions } from '../services/dns.js';
import type { TcpOptions } from './tcp/options.js';
import type { Pinger } from './icmp-proxy.js';
import { fdLimit, hostSocketBudget } from './fd-limit.js';

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
    /**
     * DNS over TCP on the gateway: idle timeout and query size (see DnsTcpOptions); the
     * answer bytes sessions may hold are `limits.dnsTcpSessionBytes` and `limits.dnsTcpBytes`.
     */
    tcp?: Pick<DnsTcpOptions, 'idleMs' | 'maxQueryBytes'>;
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
  /**
   * Per-VM and global bounds on what guests can make the engine hold. Each has a policy
   * when full (see the README's table); defaults let one busy VM reach full speed while
   * leaving room for the others.
   */
  limits?: EngineLimits;
  /**
   * Switch isolation (default true): an address belongs to the VM that leased or first
   * claimed it, frames with another VM's source IP or MAC, or claiming the gateway's MAC
   * or the gateway/host-alias addresses, are dropped and counted. false lets a guest that
   * is deliberately bridged or multi-homed (forwarding for other machines behind it) send
   * from addresses it does not own; VMs then are not protected from each other.
   */
  isolation?: boolean;
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

export interface EngineLimits {
  /** Host sockets (TCP and UDP) for all guests (default: RLIMIT_NOFILE less a reserve of an eighth, at least 128). */
  hostSockets?: number;
  /** Host sockets one VM may hold (default: half of hostSockets). */
  hostSocketsPerVm?: number;
  /** TCP flows one VM may hold, half-open included (default 4096 of the table's 16384). */
  tcpFlowsPerVm?: number;
  /** TCP flows one VM may have in the handshake (host connect in progress or SYN-ACK unanswered) (default 256). */
  tcpHalfOpenPerVm?: number;
  /** Bytes TCP holds in send and receive buffers for all VMs (default 256 MiB). */
  tcpBufferBytes?: number;
  /** Bytes TCP holds in send and receive buffers for one VM (default 64 MiB). */
  tcpBufferBytesPerVm?: number;
  /** TCP reassembly slots one VM may hold (default half of tcp.reasmSlots, at least 1). */
  tcpReasmSlotsPerVm?: number;
  /** UDP NAT bindings one VM may hold (default 1024 of maxUdpFlows' 4096); past it the VM's own least recently active binding goes. */
  udpBindingsPerVm?: number;
  /** IPv4 datagrams one VM may have in reassembly (default 4 of the engine's 16 slots). */
  fragmentSlotsPerVm?: number;
  /** DHCP leases one VM may hold (default 4); past it the VM's new client MACs get no offer. */
  dhcpLeasesPerVm?: number;
  /** Addresses one VM may claim by sending from them or leasing them (default 16); past it frames from new addresses are dropped. */
  ipsPerVm?: number;
  /** Source MACs one VM may use (default 16; the switch holds maxMacs in all); past it frames from new MACs are dropped. */
  macsPerVm?: number;
  /** Echo probes (system ping) per VM per second, and the burst (defaults 5 and 10). */
  echoProbesPerSecond?: number;
  echoProbeBurst?: number;
  /** Answer bytes one DNS-over-TCP session on the gateway holds for a guest that does not read (default 256 KiB); past it answers become SERVFAIL. */
  dnsTcpSessionBytes?: number;
  /** Answer bytes all DNS-over-TCP sessions hold together (default 16 MiB); past it the session holding the most is reset. */
  dnsTcpBytes?: number;
}

export interface ResolvedLimits {
  hostSockets: number;
  hostSocketsPerVm: number;
  tcpFlowsPerVm: number;
  tcpHalfOpenPerVm: number;
  tcpBufferBytes: number;
  tcpBufferBytesPerVm: number;
  /** 0: half of the stack's reasmSlots (the stack resolves it). */
  tcpReasmSlotsPerVm: number;
  udpBindingsPerVm: number;
  fragmentSlotsPerVm: number;
  dhcpLeasesPerVm: number;
  ipsPerVm: number;
  macsPerVm: number;
  echoProbesPerSecond: number;
  echoProbeBurst: number;
  dnsTcpSessionBytes: number;
  dnsTcpBytes: number;
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
  limits: ResolvedLimits;
  isolation: boolean;
}

function bad(key: string, why: string): never {
  throw new VnetkitError(ErrorCodes.BAD_OPTION, `option ${key}: ${why}`);
}

function intIn(key: string, v: number | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || v < min || v > max) bad(key, `must be an integer from ${min} to ${max}, got ${v}`);
  return v;
}

const MIB = 1024 * 1024;

export function resolveLimits(l: EngineLimits = {}): ResolvedLimits {
  const key = (k: string) => `limits.${k}`;
  const hostSockets = intIn(key('hostSockets'), l.hostSockets, hostSocketBudget(fdLimit()), 16, 1 << 20);
  const tcpBufferBytes = intIn(key('tcpBufferBytes'), l.tcpBufferBytes, 256 * MIB, 4 * MIB, 64 * 1024 * MIB);
  return {
    hostSockets,
    hostSocketsPerVm: intIn(key('hostSocketsPerVm'), l.hostSocketsPerVm, Math.max(8, Math.floor(hostSockets / 2)), 1, hostSockets),
    tcpFlowsPerVm: intIn(key('tcpFlowsPerVm'), l.tcpFlowsPerVm, 4096, 1, 16384),
    tcpHalfOpenPerVm: intIn(key('tcpHalfOpenPerVm'), l.tcpHalfOpenPerVm, 256, 1, 16384),
    tcpBufferBytes,
    tcpBufferBytesPerVm: intIn(key('tcpBufferBytesPerVm'), l.tcpBufferBytesPerVm, Math.min(64 * MIB, tcpBufferBytes), 4 * MIB, tcpBufferBytes),
    tcpReasmSlotsPerVm: intIn(key('tcpReasmSlotsPerVm'), l.tcpReasmSlotsPerVm, 0, 1, 1024),
    udpBindingsPerVm: intIn(key('udpBindingsPerVm'), l.udpBindingsPerVm, 1024, 1, 1 << 20),
    fragmentSlotsPerVm: intIn(key('fragmentSlotsPerVm'), l.fragmentSlotsPerVm, 4, 1, 16),
    dhcpLeasesPerVm: intIn(key('dhcpLeasesPerVm'), l.dhcpLeasesPerVm, 4, 1, 1 << 16),
    ipsPerVm: intIn(key('ipsPerVm'), l.ipsPerVm, 16, 1, 1 << 16),
    macsPerVm: intIn(key('macsPerVm'), l.macsPerVm, 16, 1, 1 << 16),
    echoProbesPerSecond: intIn(key('echoProbesPerSecond'), l.echoProbesPerSecond, 5, 1, 10_000),
    echoProbeBurst: intIn(key('echoProbeBurst'), l.echoProbeBurst, 10, 1, 10_000),
    dnsTcpSessionBytes: intIn(key('dnsTcpSessionBytes'), l.dnsTcpSessionBytes, 256 * 1024, 4096, 64 * MIB),
    dnsTcpBytes: intIn(key('dnsTcpBytes'), l.dnsTcpBytes, 16 * MIB, 4096, 1024 * MIB),
  };
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
    limits: resolveLimits(o.limits),
    isolation: o.isolation ?? true,
  };
}
