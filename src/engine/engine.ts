/**
 * The engine: the VMs' switch, gateway, DHCP and DNS server, and the NAT
 * that turns their flows into host sockets.
 *
 * Frames from every VM link are copied into the RX batch; once per turn the
 * batch is classified by one kernel call, then each descriptor is switched
 * (learning L2 switch between VMs) or handled locally (ARP, ICMP, DHCP, DNS,
 * UDP NAT, TCP). Outbound segments are built by one kernel call per turn.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { Duplex, Readable, Writable } from 'node:stream';
import { createKernels, type Kernels } from '../kernels/index.js';
import {
  D_KIND, D_REASON, D_SRC_IP, D_DST_IP, D_SRC_PORT, D_DST_PORT, D_PAYLOAD_OFF, D_PAYLOAD_LEN,
  D_L3_OFF, D_ICMP_TYPE, D_ETHERTYPE,
  KIND_INVALID, KIND_ARP, KIND_ICMP, KIND_UDP, KIND_TCP, KIND_FRAGMENT, KIND_IPV6, KIND_OTHER,
  CF_INSERT_TCP_SYN, FR_PENDING, FR_OVERLAP, FR_TOO_BIG, FR_FULL, FR_TOO_MANY_PIECES,
} from '../../assembly/layout.js';
import { pseudoHeader } from '../wire/checksum.js';
import { resolveConfig, type EngineConfig, type EngineOptions } from './config.js';
import { RxBatch } from './rx-batch.js';
import { READ_AREA_BUFFERS, READ_AREA_BYTES, READ_AREAS } from './read-area.js';
import { TxBatch, type TxSink } from './tx-batch.js';
import { MacTable, macKey, LEARNED, KNOWN, OWNED_ELSEWHERE, PORT_FULL } from './switch.js';
import { UdpNat, type UdpBinding } from './udp-nat.js';
import { reasonName } from './reasons.js';
import { buildArpReply, buildIcmpEchoReply, buildPortUnreachable, buildUdpPortUnreachable, buildUdpFragments, readArp } from './replies.js';
import { DhcpServer } from '../services/dhcp.js';
import { DnsServer } from '../services/dns.js';
import { attachFd, attachStream, listen as listenTransport, createSimpleNegotiator, checkSendBufferBytes, type VmLink, type FrameHold, type Framing, type Listener, type VpnkitRequest } from '../transport/index.js';
import { guestReachable, isLoopback } from '../transport/listen.js';
import { nullLogger, type Logger } from '../log.js';
import { ErrorCodes, VnetkitError } from '../errors.js';
import { PcapWriter } from '../wire/pcap.js';
import { TcpStack, type TcpOptions, type TcpPort } from './tcp/index.js';
import { kernelSlabsFor } from './tcp/options.js';
import { SLAB_BYTES } from './tcp/slabs.js';
import { openDnsTcpSession } from './gateway-dns-tcp.js';
import { IcmpProxy, systemPing } from './icmp-proxy.js';
import { Quota, type QuotaStats } from './quota.js';
import type net from 'node:net';
import { formatIPv4, formatMac, inSubnet, parseIPv4 } from '../wire/addr.js';

export type { EngineOptions } from './config.js';

const BROADCAST_MAC = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
/** The DHCP message type (option 53) of a reply, 0 if absent. */
function dhcpMessageType(m: Uint8Array): number {
  for (let i = 240; i + 1 < m.length && m[i] !== 255;) {
    if (m[i] === 0) {
      i++;
      continue;
    }
    if (m[i] === 53 && m[i + 1] === 1) return m[i + 2] ?? 0;
    i += 2 + m[i + 1];
  }
  return 0;
}

/**
 * IPv4 datagrams in reassembly at once (each up to 64 KiB of kernel memory), and how long one may
 * take. Each VM may start limits.fragmentSlotsPerVm of them (default 4), so one VM leaves the rest
 * to the others; with the defaults four busy VMs fill it and a fifth waits for a slot.
 */
const FRAG_SLOTS = 16;
const FRAG_TIMEOUT_MS = 30_000;

function readU32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

function fragDropName(code: number): string {
  switch (code) {
    case FR_OVERLAP: return 'fragment-overlap';
    case FR_TOO_BIG: return 'fragment-too-big';
    case FR_FULL: return 'fragment-table-full';
    case FR_TOO_MANY_PIECES: return 'fragment-too-many-pieces';
    default: return 'fragment-bad';
  }
}

/** Where every frame crossing the switch is shown (pcap capture). */
export type FrameTap = (buf: Uint8Array, off: number, len: number) => void;

/** One VM connection: a link plus what the switch learned about it. All output to the VM goes through send(). */
export class VmPort implements TxSink {
  /** The first MAC seen from (or assigned to) this VM. */
  mac?: Uint8Array;
  ips = new Set<number>();
  uuid?: string;
  readonly connectedAt = Date.now();
  /** The MAC this port last learned and the table version then (see handleFrame). */
  learnedMac = -1;
  learnedVersion = -1;
  /** The source IP this port's frames last passed the guest-table check with, and the table version then (see learnGuestIp). */
  checkedIp = -1;
  checkedIpVersion = -1;

  /** The TCP stack's handle on this port: its segments go through send() (and so through the capture tap). */
  readonly tcp: TcpPort;

  constructor(readonly id: number, readonly link: VmLink, private readonly tap: { fn?: FrameTap; frames: number; bytes: number }) {
    this.tcp = { id, link: this };
  }

  send(buf: Uint8Array, off: number, len: number): void {
    this.tap.frames++;
    this.tap.bytes += len;
    this.tap.fn?.(buf, off, len);
    this.link.send(buf, off, len);
  }

  get framePrefix(): number {
    return this.link.framePrefix ?? 0;
  }

  sendInPlace(buf: Uint8Array, off: number, len: number, hold: FrameHold): void {
    this.tap.frames++;
    this.tap.bytes += len;
    this.tap.fn?.(buf, off, len);
    this.link.sendInPlace!(buf, off, len, hold);
  }

  flush(): void {
    this.link.flush();
  }

  get congested(): boolean {
    return this.link.congested;
  }

  get backlog(): number {
    return this.link.backlog;
  }

  get highWater(): number {
    return this.link.highWater;
  }
}

export interface VmInfo {
  id: number;
  framing: Framing;
  peer: string;
  mac?: string;
  uuid?: string;
  ips: string[];
  /**
   * The VM connection's own counters. `dropped`: frames the link refused (over its
   * txQueueLimit because the VM stopped reading, or too big for its MTU) or malformed on
   * receive; `backlog`: bytes written toward the VM that it has not read yet, at most
   * `txQueueLimit`; `sendBuffer`: the kernel send buffer of vnetkit's end of a Unix socket, where
   * vnetkit set it (AttachOptions.sendBufferBytes).
   */
  link: { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; dropped: number; backlog: number; txQueueLimit: number; sendBuffer?: number };
}

export interface EngineStats {
  backend: string;
  vms: number;
  /**
   * `framesInPlace`: frames taken where the VM link's socket read them (a read area in kernel
   * memory); `framesCopied`: frames copied into the RX arena (links beyond the read areas,
   * datagram links, bytes that arrived before a link got its area). `readAreas`: areas the
   * engine has to lend, two by default, fewer when memoryBytes is tight. `readAreaSwaps`: times a
   * link's reads moved to the start of another buffer of its area, which was free (the usual
   * way, keeping reads in warm memory). `readAreaRefills`: times a buffer was full while no
   * other was free, so the RX batch was handled early to reuse one.
   */
  rx: { frames: number; bytes: number; batches: number; framesInPlace: number; framesCopied: number; readAreas: number; readAreaSwaps: number; readAreaRefills: number };
  /**
   * `inPlace`: frames the VM links wrote straight from kernel memory, without a copy.
   * `ringFullBatches`: TX batches copied out instead, because the links still held the whole
   * TX ring (`txRingBytes`; VMs not reading); `ringPinnedBytes`: ring bytes links have yet to write.
   */
  tx: { frames: number; bytes: number; inPlace: number; ringFullBatches: number; ringPinnedBytes: number };
  /** Frames the VM links dropped (see VmInfo.link.dropped), VMs that have left included. */
  linkDrops: number;
  drops: Record<string, number>;
  /**
   * `macsRefused`: source MACs not learned because the table held maxMacs; `macsRefusedPerVm`:
   * because their VM held limits.macsPerVm; `macsOwnedElsewhere`: frames from a MAC another VM
   * owns (isolation); `guestIps`: addresses in the IP → VM table. Frames refused for isolation
   * are in `drops` by reason (spoofed-mac, spoofed-ip, spoofed-arp, spoofed-source, ...).
   */
  switch: { macs: number; forwarded: number; flooded: number; unknownUnicast: number; macsRefused: number; macsRefusedPerVm: number; macsOwnedElsewhere: number; guestIps: number };
  udp: { flows: number } & Record<string, number>;
  tcp: Record<string, number>;
  icmp: { echoReplies: number } & Record<string, number>;
  fragments: { reassembled: number; pending: number };
  dhcp: Record<string, number>;
  dns: Record<string, number>;
  /** Each bounded resource: in use, its global and per-VM bounds, and refusals at each. */
  limits: Record<string, QuotaStats>;
}

export interface AttachOptions {
  framing: Framing;
  /**
   * Bytes a VM link may hold toward a VM that is not reading (ours plus the socket's buffer),
   * default 4 MiB, at least 128 KiB. Past it frames are dropped and counted in
   * VmInfo.link.dropped; TCP flows stop sending at half of it, so only traffic without flow
   * control (UDP, floods) is ever dropped.
   */
  txQueueLimit?: number;
  /** Framing 'vpnkit': how long a client has to complete the handshake (default 10 000 ms). */
  handshakeTimeoutMs?: number;
  /**
   * SO_SNDBUF to ask for on vnetkit's end of a Unix-socket VM link it accepts (listen) or adopts
   * (attachFd): default 1 MiB, 0 keeps the system default, else 65536..268435456. The kernel
   * doubles it, capped at twice net.core.wmem_max. Needed for host→guest speed at jumbo MTUs.
   */
  sendBufferBytes?: number;
}

export class Engine extends EventEmitter {
  readonly config: EngineConfig;
  readonly kernels: Kernels;
  readonly log: Logger;
  readonly dhcp: DhcpServer;
  readonly dns: DnsServer;
  readonly tcp: TcpStack;
  /** Host sockets (TCP and UDP) opened for guests: shared by the TCP stack and the UDP NAT. */
  readonly hostSockets: Quota;
  private readonly ports = new Map<number, VmPort>();
  private readonly macs: MacTable<VmPort>;
  /**
   * Guest IPv4 → the port that owns it and the MAC it was claimed with. With isolation an
   * entry belongs to its port until the port leaves (see admitIp); without, it follows the
   * port that sent from the address last.
   */
  private readonly guests = new Map<number, { port: VmPort; mac: Uint8Array }>();
  /** Bumped on every change to guests (VmPort.checkedIp). */
  private guestsVersion = 0;
  /** The port handleFrame found last. */
  private lastPort?: VmPort;
  private readonly rx: RxBatch;
  private readonly tx: TxBatch;
  private readonly udp: UdpNat<VmPort>;
  private readonly uuids: ReturnType<typeof createSimpleNegotiator>;
  private readonly vmListeners = new Set<Listener>();
  /** Port-forwarded UDP: (guest ip:port, source ip:port) → where the guest's replies go. */
  private readonly udpChannels = new Map<string, (data: Buffer) => void>();
  private readonly flowTable: number;
  private readonly fragTable: number;
  private readonly fragTimer: NodeJS.Timeout;
  private fragmentsReassembled = 0;
  /**
   * Datagrams in reassembly by the VM that started them, keyed like the kernel's shared table by
   * (src, dst, id, proto): the kernel knows nothing of VMs. An entry lives as long as the kernel's
   * slot does (until completion, a drop of the datagram, or the kernel's timeout, mirrored in
   * fragTimer), also after its VM left, since the slot is held until then.
   */
  private readonly fragOwners = new Map<string, { vm: number; firstSeenMs: number }>();
  private readonly fragSlots: Quota;
  private readonly dnsTcp = { open: () => openDnsTcpSession(this.dns) };
  private readonly icmp: IcmpProxy;
  private readonly gatewayMacKey: number;
  /** Shared by every port: the capture tap (set while a pcap capture runs) and cumulative output counters. */
  private readonly tap: { fn?: FrameTap; frames: number; bytes: number } = { frames: 0, bytes: 0 };
  private capture?: { writer: PcapWriter; stream: Writable };
  private turnScheduled = false;
  private closed = false;
  private readonly t0 = performance.now();
  private readonly counters = {
    rxFrames: 0, rxBytes: 0, rxBatches: 0, txFrames: 0, txBytes: 0,
    forwarded: 0, flooded: 0, unknownUnicast: 0, echoReplies: 0,
  };
  private readonly drops = new Map<string, number>();
  /** Link drops of VMs that have left, so stats().linkDrops never goes down. */
  private leftLinkDrops = 0;

  constructor(options: EngineOptions = {}) {
    super();
    this.config = resolveConfig(options);
    this.log = options.log ?? nullLogger;
    const cfg = this.config;
    // With default tables everything but the TX ring, the TCP stack's kernel slabs and the links'
    // read areas fits in 56 MiB, so a bigger ring or more read reservations bring their own memory.
    this.kernels = createKernels({
      backend: options.backend,
      memoryBytes: options.memoryBytes ?? 56 * 1024 * 1024 + cfg.txRingBytes + kernelSlabsFor(options.tcp) * SLAB_BYTES + READ_AREAS * READ_AREA_BUFFERS * READ_AREA_BYTES,
    });
    const k = this.kernels;
    this.hostSockets = new Quota('hostSockets', cfg.limits.hostSockets, cfg.limits.hostSocketsPerVm);
    const maxTcpFlows = 16384;
    this.flowTable = k.alloc(k.k.flowTableBytes(maxTcpFlows), 64);
    // The hash seed keeps a guest from aiming flows at one probe chain.
    k.k.flowInit(this.flowTable, maxTcpFlows, randomBytes(4).readUInt32LE(0));
    this.fragTable = k.alloc(k.k.fragBytes(FRAG_SLOTS, 65515), 64);
    k.k.fragInit(this.fragTable, FRAG_SLOTS, 65515, FRAG_TIMEOUT_MS);
    this.macs = new MacTable<VmPort>(cfg.maxMacs, cfg.limits.macsPerVm, cfg.isolation);
    this.gatewayMacKey = macKey(cfg.gatewayMac, 0);
    const classify = (table: number, n: number, descs: number) => {
      k.k.classify(table, n, descs, this.flowTable, this.now(), CF_INSERT_TCP_SYN);
    };
    this.rx = new RxBatch(k, { maxFrames: 256, arenaBytes: 2 * 1024 * 1024 }, classify,
      (i, portId, ptr, len, d) => this.handleFrame(portId, ptr, len, d),
      () => this.afterBatch(),
      () => this.clockMs());
    this.tx = new TxBatch(k, 1024, cfg.txRingBytes, cfg.gatewayMac);
    // A vpnkit UUID keeps its MAC and IP across reconnects; its IP is pinned in the DHCP server.
    this.uuids = createSimpleNegotiator({
      mtu: cfg.mtu,
      lowestIp: cfg.dhcpStart,
      highestIp: cfg.dhcpEnd,
      reserved: [cfg.gatewayIp, cfg.hostIp],
      maxClients: cfg.dhcpEnd - cfg.dhcpStart + 1,
      isTaken: (ip) => this.dhcp.isAllocated(ip),
      onAssign: (mac, ip) => this.dhcp.reserve(formatMac(mac), ip),
    });
    this.icmp = new IcmpProxy({
      pinger: options.pinger ?? systemPing,
      ratePerSecond: cfg.limits.echoProbesPerSecond,
      burst: cfg.limits.echoProbeBurst,
      now: () => this.clockMs(),
    });
    this.dhcp = new DhcpServer({
      serverIp: cfg.gatewayIp,
      prefix: cfg.prefix,
      router: cfg.gatewayIp,
      dnsServers: [cfg.gatewayIp],
      domainName: cfg.domainName,
      searchDomains: cfg.searchDomains,
      mtu: cfg.mtu,
      leaseSeconds: cfg.leaseSeconds,
      poolStart: cfg.dhcpStart,
      poolEnd: cfg.dhcpEnd,
      staticLeases: cfg.staticLeases,
      reservedIps: [cfg.gatewayIp, cfg.hostIp],
      maxLeasesPerVm: cfg.limits.dhcpLeasesPerVm,
      mayHold: (ip, vm) => this.mayHoldIp(ip, vm),
      log: this.log.child({ svc: 'dhcp' }),
    });
    const names: Record<string, number> = {
      'host.docker.internal': cfg.hostIp,
      'gateway.docker.internal': cfg.gatewayIp,
      'host.containers.internal': cfg.hostIp,
      'gateway.containers.internal': cfg.gatewayIp,
    };
    for (const [n, ip] of Object.entries(options.dns?.names ?? {})) names[n] = parseIPv4(ip);
    this.dns = new DnsServer({
      upstreams: options.dns?.upstreams?.map((u) => ({ host: u.host, port: u.port ?? 53 })),
      builtins: names,
      zones: options.dns?.zones,
      hostsFile: options.dns?.hostsFile,
      tcp: { ...options.dns?.tcp, sessionBytes: cfg.limits.dnsTcpSessionBytes, totalBytes: cfg.limits.dnsTcpBytes },
      log: this.log.child({ svc: 'dns' }),
    });
    this.tcp = new TcpStack({
      kernels: k,
      flowTable: this.flowTable,
      tx: this.tx,
      arena: this.rx,
      scheduleTx: () => this.scheduleTurnEnd(),
      now: () => this.now(),
      log: this.log.child({ svc: 'tcp' }),
      mtu: cfg.mtu,
      resolveDestination: (ip, port) => this.hostAddressFor(ip, port),
      hostSockets: this.hostSockets,
      limits: cfg.limits,
      flowCapacity: maxTcpFlows,
    }, options.tcp);
    // Last, like the stack's slab pool: a tight memoryBytes leaves fewer areas (links then
    // keep heap buffers and their frames are copied), not a failed start.
    this.rx.addReadAreas(Math.min(READ_AREAS, Math.floor(k.available() / (READ_AREA_BUFFERS * READ_AREA_BYTES))), READ_AREA_BYTES);
    // Started only once every kernel allocation has succeeded: a constructor that throws for
    // want of memory leaves no timer behind.
    this.fragSlots = new Quota('fragmentSlots', FRAG_SLOTS, cfg.limits.fragmentSlotsPerVm);
    this.fragTimer = setInterval(() => this.expireFragments(this.now()), 1000);
    this.fragTimer.unref();
    this.udp = new UdpNat<VmPort>({
      idleMs: cfg.udpIdleMs,
      maxFlows: cfg.maxUdpFlows,
      perVm: cfg.limits.udpBindingsPerVm,
      vmOf: (p) => p.id,
      sockets: this.hostSockets,
      hostIp: cfg.hostIp,
      log: this.log.child({ svc: 'udp' }),
      now: () => this.now(),
      deliver: (b, srcIp, srcPort, data) => this.udpToGuest(b.port, b.guestMac, srcIp, srcPort, b.guestIp, b.guestPort, data),
      refused: (b) => {
        const f = buildUdpPortUnreachable(cfg.gatewayMac, b.guestMac, b.guestIp, b.guestPort, cfg.hostIp, b.loopbackPort ?? 0, b.lastLen);
        if (this.ports.has(b.port.id)) {
          b.port.send(f, 0, f.length);
          b.port.flush();
        }
      },
    });
  }

  /**
   * Milliseconds since the engine started (the kernels' clock; u32 wrap is
   * handled by the kernels). Inside an RX batch, the time the batch started.
   */
  now(): number {
    const b = this.rx.batchNow;
    return b >= 0 ? b : this.clockMs();
  }

  private clockMs(): number {
    return Math.floor(performance.now() - this.t0);
  }

  // ---- VM connections -----------------------------------------------------

  /** Attach a VM over any duplex stream (stdio, a socket, a vsock proxy). */
  attach(stream: Duplex | { readable: Readable; writable: Writable }, options: AttachOptions): VmInfo {
    const link = attachStream(stream, this.linkOptions(options));
    return this.addLink(link);
  }

  /**
   * Attach the VM on an inherited, connected stream socket (a launcher's
   * socketpair): its creator may have sized SO_SNDBUF, which Node cannot.
   * Throws ERR_VNETKIT_BAD_FD when `fd` is not an open socket.
   */
  attachFd(fd: number, options: AttachOptions): VmInfo {
    return this.addLink(attachFd(fd, this.linkOptions(options)));
  }

  /**
   * Listen for VMs: unix:///path, tcp://127.0.0.1:port, udp://127.0.0.1:port (framing 'dgram').
   *
   * A tcp:// or udp:// listener is refused (ERR_VNETKIT_GUEST_REACHABLE) when guests could
   * reach it: on loopback while hostLoopback is on (the host alias leads there), and on any
   * other address always (guest flows to host addresses are relayed). A guest connecting to
   * it would become another VM on the switch, or take the datagram listener's links.
   * `allowGuestReachable: true` accepts it anyway.
   */
  async listen(url: string, options: AttachOptions & { allowNonLoopback?: boolean; allowGuestReachable?: boolean }): Promise<Listener> {
    const reach = options.allowGuestReachable ? null : guestReachable(url, this.config.hostLoopback);
    if (reach !== null) {
      throw new VnetkitError(ErrorCodes.GUEST_REACHABLE, `refusing to listen for VMs on ${url}: ${reach === 'loopback'
        ? `guests reach the host's loopback through the host alias ${formatIPv4(this.config.hostIp)}`
        : 'guests reach host addresses through the engine\'s NAT'}, so a guest could connect to it and pose as another VM; use a unix:// socket, turn hostLoopback off (loopback addresses only), or pass allowGuestReachable: true`);
    }
    const l = await listenTransport(url, { ...this.linkOptions(options), allowNonLoopback: options.allowNonLoopback, isOwnSocket: this.isOwnNatSocket },
      (link) => this.addLink(link));
    this.vmListeners.add(l);
    return {
      url: l.url,
      address: l.address,
      close: async () => {
        this.vmListeners.delete(l);
        await l.close();
      },
    };
  }

  /**
   * A datagram from one of the UDP NAT's own sockets: a guest reaching a loopback udp:// VM
   * listener through the host alias. It is a guest talking, never a new VM (dropped and counted).
   */
  private readonly isOwnNatSocket = (address: string, port: number): boolean => {
    // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
    if (!isLoopback(address.startsWith('::ffff:') ? address.slice(7) : address) || !this.udp.ownsLocalPort(port)) return false;
    this.drop('dgram-from-own-nat-socket');
    return true;
  };

  private linkOptions(options: AttachOptions) {
    const { framing, txQueueLimit, handshakeTimeoutMs, sendBufferBytes } = options;
    checkSendBufferBytes(sendBufferBytes);
    // A NaN or negative limit would silently disable the cap that keeps a stuck VM's memory bounded.
    if (txQueueLimit !== undefined && (!Number.isInteger(txQueueLimit) || txQueueLimit < 128 * 1024 || txQueueLimit > 1024 ** 3)) {
      throw new VnetkitError(ErrorCodes.BAD_OPTION, `option txQueueLimit: must be an integer from ${128 * 1024} to ${1024 ** 3} bytes, got ${txQueueLimit}`);
    }
    if (handshakeTimeoutMs !== undefined && (!Number.isInteger(handshakeTimeoutMs) || handshakeTimeoutMs < 1 || handshakeTimeoutMs > 600_000)) {
      throw new VnetkitError(ErrorCodes.BAD_OPTION, `option handshakeTimeoutMs: must be an integer from 1 to 600000, got ${handshakeTimeoutMs}`);
    }
    return {
      framing,
      txQueueLimit,
      handshakeTimeoutMs,
      sendBufferBytes,
      mtu: this.config.mtu,
      log: this.log.child({ svc: 'transport' }),
      vpnkit: {
        negotiate: (req: VpnkitRequest) => this.uuids.negotiate(req),
      },
    };
  }

  private addLink(link: VmLink): VmInfo {
    const port = new VmPort(link.id, link, this.tap);
    // attach() returns before a vpnkit handshake completes; listen() only after.
    link.whenReady(() => {
      if (link.vpnkit) {
        port.uuid = link.vpnkit.uuid;
        port.mac = link.vpnkit.mac;
      }
    });
    if (this.closed) {
      link.close('engine closed');
      return this.info(port);
    }
    this.ports.set(port.id, port);
    // Reads into kernel memory: the batch takes this link's frames where they land.
    if (link.useReadSpace !== undefined) {
      const area = this.rx.takeReadArea();
      if (area !== undefined) link.useReadSpace(area);
    }
    link.onFrame = (buf, off, len) => {
      this.counters.rxFrames++;
      this.counters.rxBytes += len;
      if (!this.rx.push(port.id, buf, off, len)) this.drop('rx-batch-full');
      this.scheduleTurnEnd();
    };
    link.onClose = (err) => this.removePort(port, err);
    // The VM caught up: flows that held data for it may send again.
    link.onDrain = () => this.tcp.portDrained(port.id);
    const info = this.info(port);
    this.log.info('vm connected', { vm: port.id, framing: link.framing, peer: link.peer, uuid: port.uuid, sendBuffer: link.sendBuffer });
    this.emit('vm-connected', info);
    return info;
  }

  private removePort(port: VmPort, err?: Error): void {
    if (!this.ports.delete(port.id)) return;
    this.leftLinkDrops += port.link.stats().dropped;
    // Frames of this port still in the RX batch are ignored: handleFrame finds no port.
    if (this.lastPort === port) this.lastPort = undefined;
    this.macs.purge(port);
    for (const [ip, g] of this.guests) if (g.port === port) this.guests.delete(ip);
    this.guestsVersion++;
    this.udp.purge(port);
    this.tcp.purge(port.id);
    // Its leases go back to the pool (a vpnkit UUID's reserved address stays pinned to its MAC).
    this.dhcp.releaseVm(port.id);
    const info = this.info(port);
    if (err) this.log.warn('vm disconnected', { vm: port.id, peer: port.link.peer, error: err.message, code: (err as { code?: string }).code });
    else this.log.info('vm disconnected', { vm: port.id, peer: port.link.peer });
    this.emit('vm-disconnected', info);
  }

  private info(port: VmPort): VmInfo {
    return {
      id: port.id,
      framing: port.link.framing,
      peer: port.link.peer,
      mac: port.mac ? formatMac(port.mac) : undefined,
      uuid: port.uuid,
      ips: [...port.ips].map(formatIPv4),
      link: { ...port.link.stats(), backlog: port.link.backlog, txQueueLimit: port.link.txQueueLimit, sendBuffer: port.link.sendBuffer },
    };
  }

  vms(): VmInfo[] {
    return [...this.ports.values()].map((p) => this.info(p));
  }

  // ---- batch pipeline -----------------------------------------------------

  /**
   * Frames from VMs are handled, and frames produced outside a batch (host
   * sockets, DNS answers) go out, at the end of the turn, in one pass: RX
   * first, whose TX flush then carries both. Two separate callbacks wrote a
   * VM link twice in a turn whenever host data came in before VM frames, and
   * every link write wakes the VM side.
   */
  private scheduleTurnEnd(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    setImmediate(this.endTurn);
  }

  private readonly endTurn = (): void => {
    this.turnScheduled = false;
    if (this.rx.pending > 0) this.rx.flush();
    else this.flushTx();
  };

  private afterBatch(): void {
    this.counters.rxBatches++;
    this.flushTx();
  }

  private flushTx(): void {
    this.tcp.flush();
    const built = this.tx.pending;
    this.tx.flush();
    for (const p of this.ports.values()) p.link.flush();
    // The VM has frames to answer now: spare work costs it no latency.
    if (built > 0) this.tcp.prepareSpare();
  }

  private drop(reason: string): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
  }

  private handleFrame(portId: number, ptr: number, len: number, d: number): void {
    // A batch is mostly one VM's frames: one Map lookup per run of them.
    let port = this.lastPort;
    if (port === undefined || port.id !== portId) {
      port = this.ports.get(portId);
      if (port === undefined) return;
      this.lastPort = port;
    }
    const u8 = this.kernels.u8;
    this.tap.fn?.(u8, ptr, len);
    if (len < 14) {
      this.drop('short-frame');
      return;
    }
    // Every source check happens here, before the frame can reach another VM. Learning costs
    // a Map operation; a VM sends from the same MAC frame after frame, so skip it while
    // neither the MAC nor the table changed since this port last learned.
    const src = macKey(u8, ptr + 6);
    if ((src !== port.learnedMac || this.macs.version !== port.learnedVersion) && !this.admitMac(port, src, ptr)) {
      this.discardTcp(d);
      return;
    }
    if (!this.admitSource(port, ptr, d)) {
      this.discardTcp(d);
      return;
    }
    if (u8[ptr] & 1) {
      // Broadcast/multicast: every other VM gets it, and so does the gateway.
      for (const other of this.ports.values()) {
        if (other !== port) {
          other.send(u8, ptr, len);
          this.counters.flooded++;
        }
      }
      this.local(port, ptr, len, d);
      return;
    }
    const dst = macKey(u8, ptr);
    if (dst === this.gatewayMacKey) {
      this.local(port, ptr, len, d);
      return;
    }
    // Not for the gateway: a SYN's flow entry (classify inserts one for every bare SYN) is not ours to keep.
    this.discardTcp(d);
    const target = this.macs.lookup(dst);
    if (target !== undefined && target !== port) {
      target.send(u8, ptr, len);
      this.counters.forwarded++;
    } else {
      this.counters.unknownUnicast++;
      this.drop('unknown-unicast');
    }
  }

  /** classify may have made a flow entry for a TCP frame the stack will not see: give it back. */
  private discardTcp(d: number): void {
    if (this.kernels.u8[d + D_KIND] === KIND_TCP) this.tcp.discard(d);
  }

  /**
   * May `port` send from source MAC `src`? Never from a multicast address or the gateway's
   * MAC; with isolation, not from a MAC another VM owns, nor from more than macsPerVm MACs
   * (or a new one while the table is full). Without isolation refusals to learn only count.
   */
  private admitMac(port: VmPort, src: number, ptr: number): boolean {
    const u8 = this.kernels.u8;
    if (u8[ptr + 6] & 1) {
      this.drop('bad-source-mac');
      return false;
    }
    if (src === this.gatewayMacKey) {
      this.drop('spoofed-gateway-mac');
      return false;
    }
    const r = this.macs.learn(src, port);
    if (r === LEARNED || r === KNOWN) {
      if (port.mac === undefined) port.mac = u8.slice(ptr + 6, ptr + 12);
      port.learnedMac = src;
      port.learnedVersion = this.macs.version;
      return true;
    }
    if (!this.config.isolation) return true;
    this.drop(r === OWNED_ELSEWHERE ? 'spoofed-mac' : r === PORT_FULL ? 'mac-limit' : 'mac-table-full');
    return false;
  }

  /**
   * May `port` send this frame as far as its network-layer source goes? IPv4 (any protocol,
   * fragments too) and ARP senders are checked here, before the frame is forwarded, flooded
   * or handled: see admitIp and admitArp. With isolation on, frames the classifier refused
   * are dropped here, not forwarded: their source cannot be checked.
   */
  private admitSource(port: VmPort, ptr: number, d: number): boolean {
    const u8 = this.kernels.u8;
    const kind = u8[d + D_KIND];
    switch (kind) {
      case KIND_UDP:
      case KIND_TCP:
      case KIND_ICMP:
      case KIND_FRAGMENT:
        break;
      case KIND_ARP:
        return this.admitArp(port, ptr, d);
      case KIND_OTHER:
        // IPv4 carrying another protocol still has a source address to check.
        if (this.kernels.dv.getUint16(d + D_ETHERTYPE, true) !== 0x0800) return true;
        break;
      case KIND_INVALID:
        if (!this.config.isolation) return true;
        this.dropInvalid(port, d);
        return false;
      default:
        return true;
    }
    const srcIp = this.kernels.dv.getUint32(d + D_SRC_IP, true);
    // Frame after frame from the same address: the checks are skipped while the table is unchanged.
    if (srcIp === port.checkedIp && port.checkedIpVersion === this.guestsVersion) return true;
    return this.admitIp(port, srcIp, ptr);
  }

  /**
   * An IPv4 source address: never the gateway's or the host alias's; with isolation an
   * address of the subnet must be this port's or free to claim (see claimIp), and one from
   * outside it (other than 0.0.0.0) may only go to the gateway, so no VM can pose as an
   * outside host to another. Without isolation the address moves to the port that sent
   * from it last.
   */
  private admitIp(port: VmPort, srcIp: number, ptr: number): boolean {
    const cfg = this.config;
    if (srcIp === cfg.gatewayIp || srcIp === cfg.hostIp) {
      this.drop('spoofed-source');
      return false;
    }
    if (!this.ownable(srcIp)) {
      // Not cached: the verdict depends on where the frame goes.
      if (srcIp !== 0 && cfg.isolation && macKey(this.kernels.u8, ptr) !== this.gatewayMacKey) {
        this.drop('foreign-source');
        return false;
      }
      return true;
    }
    const refused = this.claimIp(port, srcIp, ptr, true);
    if (refused !== null) {
      this.drop(refused);
      return false;
    }
    port.checkedIp = srcIp;
    port.checkedIpVersion = this.guestsVersion;
    return true;
  }

  /**
   * An ARP message: its sender may never be the gateway, the host alias or the gateway's
   * MAC; with isolation its sender MAC is the frame's source and its sender IP this port's
   * own (or free to claim), so no VM can announce another's address. Without isolation an
   * ARP never moves an address another port holds (it is learned only when free).
   */
  private admitArp(port: VmPort, ptr: number, d: number): boolean {
    const cfg = this.config;
    const u8 = this.kernels.u8;
    const senderIp = this.kernels.dv.getUint32(d + D_SRC_IP, true);
    const senderMac = ptr + this.kernels.dv.getUint16(d + D_L3_OFF, true) + 8;
    const mac = macKey(u8, senderMac);
    if (senderIp === cfg.gatewayIp || senderIp === cfg.hostIp || mac === this.gatewayMacKey ||
      (cfg.isolation && mac !== macKey(u8, ptr + 6))) {
      this.drop('spoofed-arp');
      return false;
    }
    if (!this.ownable(senderIp)) {
      if (senderIp === 0 || !cfg.isolation) return true;
      this.drop('foreign-source');
      return false;
    }
    const refused = this.claimIp(port, senderIp, ptr, false);
    if (refused === null || !cfg.isolation) return true;
    this.drop(refused);
    return false;
  }

  /** An address of the subnet a guest can hold (not the network or broadcast address, nor 0). */
  private ownable(ip: number): boolean {
    const cfg = this.config;
    return ip !== 0 && inSubnet(ip, cfg.network, cfg.prefix) && ip !== cfg.network && ip !== cfg.broadcast;
  }

  /**
   * Make `ip` this port's, the frame at `ptr` being the claim (its source MAC is the one
   * recorded). Null when the port holds it now, else the drop reason: with isolation
   * `spoofed-ip` when another port holds it or DHCP has it for another VM or MAC (a lease,
   * an offer, a static lease, a vpnkit reservation); `ip-limit` past limits.ipsPerVm;
   * `guest-table-full` past maxMacs in all. `move`: without isolation, take the address
   * from the port that holds it (the last sender wins).
   */
  private claimIp(port: VmPort, ip: number, ptr: number, move: boolean): string | null {
    const cfg = this.config;
    const g = this.guests.get(ip);
    if (g !== undefined && g.port === port) return null;
    if (cfg.isolation) {
      if (g !== undefined || !this.dhcp.mayClaim(ip, port.id, formatMac(this.kernels.u8.subarray(ptr + 6, ptr + 12)), Date.now())) {
        return 'spoofed-ip';
      }
    } else if (g !== undefined && !move) {
      return 'spoofed-ip';
    }
    if (port.ips.size >= cfg.limits.ipsPerVm) return 'ip-limit';
    if (g === undefined && this.guests.size >= cfg.maxMacs) return 'guest-table-full';
    this.learnGuest(port, ip, this.kernels.u8.slice(ptr + 6, ptr + 12));
    return null;
  }

  /** Whether DHCP may give `ip` to VM `vm`: nobody else holds it and the VM has room for it. */
  private mayHoldIp(ip: number, vm: number): boolean {
    const g = this.guests.get(ip);
    if (g !== undefined) return g.port.id === vm;
    const port = this.ports.get(vm);
    return port !== undefined && port.ips.size < this.config.limits.ipsPerVm && this.guests.size < this.config.maxMacs;
  }

  private learnGuest(port: VmPort, ip: number, mac: Uint8Array): void {
    const prev = this.guests.get(ip);
    if (prev !== undefined && prev.port !== port) prev.port.ips.delete(ip);
    this.guests.set(ip, { port, mac });
    this.guestsVersion++;
    port.ips.add(ip);
  }

  /** A frame addressed to the gateway (or broadcast), its sources already admitted. */
  private local(port: VmPort, ptr: number, len: number, d: number): void {
    const u8 = this.kernels.u8;
    switch (u8[d + D_KIND]) {
      case KIND_INVALID:
        return this.dropInvalid(port, d);
      case KIND_ARP:
        return this.arp(port, ptr, len);
      case KIND_IPV6:
        return this.drop('ipv6');
      case KIND_OTHER:
        return this.drop('unsupported-protocol');
      case KIND_UDP:
        return this.udpFromGuest(port, ptr, len, d);
      case KIND_ICMP:
        return this.icmpFromGuest(port, ptr, len, d);
      case KIND_TCP:
        return this.tcpFromGuest(port, ptr, len, d);
      case KIND_FRAGMENT:
        return this.fragmentFromGuest(port, ptr, len, d);
    }
  }

  /** A frame the classifier refused: counted by its reason. */
  private dropInvalid(port: VmPort, d: number): void {
    const reason = reasonName(this.kernels.u8[d + D_REASON]);
    this.drop(reason);
    this.log.limited(`drop-${reason}`, 'debug', 'dropped malformed frame', { vm: port.id, reason });
  }

  private arp(port: VmPort, ptr: number, len: number): void {
    const cfg = this.config;
    const a = readArp(this.kernels.u8, ptr, len);
    if (a === null) return this.drop('bad-arp');
    if (a.op !== 1) return;
    if (a.targetIp === cfg.gatewayIp || a.targetIp === cfg.hostIp) {
      const reply = buildArpReply(cfg.gatewayMac, a.targetIp, a.senderMac, a.senderIp);
      port.send(reply, 0, reply.length);
    }
  }

  private icmpFromGuest(port: VmPort, ptr: number, len: number, d: number): void {
    const cfg = this.config;
    const u8 = this.kernels.u8;
    const dv = this.kernels.dv;
    if (u8[d + D_ICMP_TYPE] !== 8) return this.drop('icmp-not-echo');
    const dstIp = dv.getUint32(d + D_DST_IP, true);
    if (dstIp === cfg.gatewayIp || (dstIp === cfg.hostIp && cfg.hostLoopback)) {
      const reply = buildIcmpEchoReply(u8, ptr, len, dv.getUint16(d + D_L3_OFF, true), cfg.gatewayMac);
      if (reply === null) return this.drop('bad-icmp');
      port.send(reply, 0, reply.length);
      this.counters.echoReplies++;
      return;
    }
    if (dstIp === cfg.hostIp || this.blocked(dstIp)) {
      return this.drop('icmp-blocked-destination');
    }
    // Answer only after a real echo to the destination came back.
    const reply = buildIcmpEchoReply(u8, ptr, len, dv.getUint16(d + D_L3_OFF, true), cfg.gatewayMac);
    if (reply === null) return this.drop('bad-icmp');
    this.icmp.probe(port.id, dstIp, () => {
      if (!this.ports.has(port.id)) return;
      port.send(reply, 0, reply.length);
      port.flush();
      this.counters.echoReplies++;
    });
  }

  private udpFromGuest(port: VmPort, ptr: number, len: number, d: number): void {
    const dv = this.kernels.dv;
    this.routeUdp(port, this.kernels.u8.subarray(ptr + 6, ptr + 12),
      dv.getUint32(d + D_SRC_IP, true), dv.getUint16(d + D_SRC_PORT, true),
      dv.getUint32(d + D_DST_IP, true), dv.getUint16(d + D_DST_PORT, true),
      ptr + dv.getUint32(d + D_PAYLOAD_OFF, true), dv.getUint32(d + D_PAYLOAD_LEN, true),
      ptr + dv.getUint16(d + D_L3_OFF, true));
  }

  /**
   * A guest UDP datagram, from one frame or reassembled from fragments:
   * payload at kernel memory [pOff, pOff + pLen), its IPv4 header at `l3`.
   * `srcMac` is a view valid only during the call.
   */
  private routeUdp(port: VmPort, srcMac: Uint8Array, srcIp: number, srcPort: number, dstIp: number, dstPort: number,
    pOff: number, pLen: number, l3: number): void {
    const cfg = this.config;
    const u8 = this.kernels.u8;
    if (dstPort === 67 && (dstIp === 0xffffffff || dstIp === cfg.gatewayIp || dstIp === cfg.broadcast)) {
      return this.dhcpFromGuest(port, srcMac.slice(), u8.subarray(pOff, pOff + pLen));
    }
    if (dstIp === cfg.gatewayIp) {
      if (dstPort === 53) return this.dnsFromGuest(port, srcMac.slice(), srcIp, srcPort, u8.slice(pOff, pOff + pLen));
      // Nothing listens there: say so at once, as a real host would.
      const f = buildPortUnreachable(u8, l3, srcMac, cfg.gatewayMac, dstIp);
      if (f !== null) port.send(f, 0, f.length);
      return this.drop('udp-gateway-port-closed');
    }
    if (dstIp === 0xffffffff || dstIp === cfg.broadcast || dstIp >>> 28 === 0xe) return this.drop('udp-broadcast');
    if (this.udpChannels.size > 0) {
      const ch = this.udpChannels.get(udpChannelKey(srcIp, srcPort, dstIp, dstPort));
      if (ch !== undefined) return ch(Buffer.from(u8.subarray(pOff, pOff + pLen)));
    }
    let hostDst = dstIp;
    if (dstIp === cfg.hostIp) {
      if (!cfg.hostLoopback) return this.drop('host-loopback-disabled');
      hostDst = 0x7f000001;
    } else if (this.blocked(dstIp)) {
      return this.drop('blocked-destination');
    }
    const g = this.guests.get(srcIp);
    if (g === undefined) return this.drop('udp-unknown-source');
    if (!this.udp.send(port, g.mac, srcIp, srcPort, hostDst, dstPort, u8, pOff, pLen)) this.drop('udp-binding-refused');
  }

  /**
   * An IPv4 fragment: held by the fragment kernel until its datagram is
   * whole (bounded slots, timeout, overlaps refused), then handled as if it
   * had come in one frame. Only UDP is reassembled: a TCP guest never
   * fragments (DF + MSS), and large pings to the gateway are not answered.
   */
  private fragmentFromGuest(port: VmPort, ptr: number, len: number, d: number): void {
    const k = this.kernels.k;
    const u8 = this.kernels.u8;
    const l3Off = this.kernels.dv.getUint16(d + D_L3_OFF, true);
    const h = ptr + l3Off;
    const key = `${readU32(u8, h + 12)}:${readU32(u8, h + 16)}:${(u8[h + 4] << 8) | u8[h + 5]}:${u8[h + 9]}`;
    const owner = this.fragOwners.get(key);
    // A datagram belongs to the VM that started it: another cannot add to (or spoil) it.
    if (owner !== undefined && owner.vm !== port.id) return this.drop('fragment-other-vm');
    if (owner === undefined && !this.fragSlots.take(port.id)) {
      return this.drop(this.fragSlots.usedBy(port.id) >= this.fragSlots.perVm ? 'fragment-vm-limit' : 'fragment-table-full');
    }
    const now = this.now();
    const before = k.fragPending(this.fragTable);
    const slot = k.fragInsert(this.fragTable, h, len - l3Off, now);
    const after = k.fragPending(this.fragTable);
    if (owner === undefined) {
      // One fragment never completes a datagram; the slot was taken only if the kernel opened one.
      if (slot < 0 && after > before) this.fragOwners.set(key, { vm: port.id, firstSeenMs: now });
      else this.fragSlots.give(port.id);
    } else if (slot >= 0 || after < before) {
      // Complete (released below) or dropped by the kernel (overlap, too big...).
      this.fragOwners.delete(key);
      this.fragSlots.give(owner.vm);
    }
    if (slot < 0) {
      if (slot !== FR_PENDING) this.drop(fragDropName(slot));
      return;
    }
    try {
      const ip = k.fragDatagramPtr(this.fragTable, slot);
      const ipLen = k.fragDatagramLen(this.fragTable, slot);
      const ihl = (u8[ip] & 0xf) * 4;
      if (u8[ip + 9] !== 17) return this.drop('fragmented-non-udp');
      const udpLen = (u8[ip + ihl + 4] << 8) | u8[ip + ihl + 5];
      if (ihl + 8 > ipLen || udpLen < 8 || ihl + udpLen > ipLen) return this.drop('bad-udp-length');
      const srcIp = readU32(u8, ip + 12);
      const dstIp = readU32(u8, ip + 16);
      const stored = (u8[ip + ihl + 6] << 8) | u8[ip + ihl + 7];
      if (stored !== 0 && k.csumPartial(ip + ihl, udpLen, pseudoHeader(srcIp, dstIp, 17, udpLen)) !== 0xffff) {
        return this.drop('bad-l4-checksum');
      }
      this.fragmentsReassembled++;
      this.routeUdp(port, u8.subarray(ptr + 6, ptr + 12), srcIp, (u8[ip + ihl] << 8) | u8[ip + ihl + 1],
        dstIp, (u8[ip + ihl + 2] << 8) | u8[ip + ihl + 3], ip + ihl + 8, udpLen - 8, ip);
    } finally {
      k.fragRelease(this.fragTable, slot);
    }
  }

  /**
   * The kernel drops datagrams whose first fragment came more than FRAG_TIMEOUT_MS ago; the owners
   * of the same ones are forgotten by the same rule at the same `now`.
   */
  private expireFragments(now: number): void {
    const n = this.kernels.k.fragExpire(this.fragTable, now);
    if (n > 0) this.drops.set('fragment-timeout', (this.drops.get('fragment-timeout') ?? 0) + n);
    if (this.fragOwners.size === 0) return;
    const none = this.kernels.k.fragPending(this.fragTable) === 0;
    for (const [key, o] of this.fragOwners) {
      if (none || now - o.firstSeenMs > FRAG_TIMEOUT_MS) {
        this.fragOwners.delete(key);
        this.fragSlots.give(o.vm);
      }
    }
  }

  /**
   * Destinations a guest's traffic may never be relayed to on the host: the
   * virtual subnet (the gateway included), the host's loopback and 0/8 (the
   * alias is the only way in), multicast, class E and broadcast, and the
   * configured blocked subnets.
   */
  private blocked(ip: number): boolean {
    const cfg = this.config;
    if (inSubnet(ip, cfg.network, cfg.prefix)) return true;
    if (ip >>> 24 === 127 || ip >>> 24 === 0 || ip >>> 28 >= 0xe) return true;
    for (const b of cfg.blocked) if (inSubnet(ip, b.network, b.prefix)) return true;
    return false;
  }

  private dhcpFromGuest(port: VmPort, mac: Uint8Array, payload: Uint8Array): void {
    const reserved = port.uuid !== undefined ? this.uuids.ipOf(port.uuid) : undefined;
    const r = this.dhcp.handle(payload, mac, Date.now(), reserved, port.id);
    if (r === null) return;
    // An ACK binds the address to this VM now, so forwards reach a guest that has not sent
    // anything yet, and no other VM can claim it (the server asked mayHoldIp before acking).
    if (r.yiaddr !== 0 && dhcpMessageType(r.reply) === 5) {
      const g = this.guests.get(r.yiaddr);
      if (g === undefined || g.port === port || !this.config.isolation) this.learnGuest(port, r.yiaddr, mac);
    }
    const dstMac = r.broadcast ? BROADCAST_MAC : mac;
    const dstIp = r.dest;
    this.udpToGuest(port, dstMac, this.config.gatewayIp, 67, dstIp, 68, r.reply);
  }

  private dnsFromGuest(port: VmPort, mac: Uint8Array, srcIp: number, srcPort: number, query: Uint8Array): void {
    this.dns.query(query, 'udp').then(
      (answer) => {
        if (answer === null || !this.ports.has(port.id)) return;
        this.udpToGuest(port, mac, this.config.gatewayIp, 53, srcIp, srcPort, answer);
        this.scheduleTurnEnd();
      },
      (err: Error) => this.log.limited('dns-error', 'warn', 'dns query failed', { error: err.message }),
    );
  }

  /** A UDP datagram to a guest: through the TX batch, or as IPv4 fragments when it exceeds the MTU. */
  private udpToGuest(port: VmPort, dstMac: Uint8Array, srcIp: number, srcPort: number, dstIp: number, dstPort: number, data: Uint8Array): void {
    if (28 + data.length <= this.config.mtu) {
      this.tx.udp(port, dstMac, srcIp, srcPort, dstIp, dstPort, data);
    } else {
      for (const f of buildUdpFragments(this.config.gatewayMac, dstMac, srcIp, srcPort, dstIp, dstPort, data, this.config.mtu)) {
        port.send(f, 0, f.length);
      }
    }
    this.scheduleTurnEnd();
  }

  private tcpFromGuest(port: VmPort, ptr: number, len: number, d: number): void {
    this.tcp.input(port.tcp, ptr, len, d);
  }

  /**
   * Where a guest's connection or datagram to `ip` goes on the host: the
   * host alias becomes 127.0.0.1 (unless switched off); forbidden
   * destinations give null.
   */
  private hostAddressFor(ip: number, port: number): string | { open(): net.Socket } | null {
    const cfg = this.config;
    if (ip === cfg.gatewayIp && port === 53) return this.dnsTcp;
    if (ip === cfg.hostIp) return cfg.hostLoopback ? '127.0.0.1' : null;
    if (this.blocked(ip)) return null;
    return formatIPv4(ip);
  }

  // ---- host → guest (port forwarding) -------------------------------------

  /**
   * Open a TCP connection to guestIp:guestPort through the engine's stack and
   * pipe it with `socket` (an accepted host connection). The guest sees it
   * coming from srcIp:srcPort (default: the host alias and the socket's
   * remote port). Destroys the socket when the guest is unknown or the flow
   * table is full.
   */
  openTcpToGuest(guestIp: number, guestPort: number, socket: net.Socket, opts: { srcIp?: number; srcPort?: number } = {}): boolean {
    const g = this.guests.get(guestIp);
    if (g === undefined) {
      socket.destroy();
      return false;
    }
    const srcIp = opts.srcIp ?? this.config.hostIp;
    const srcPort = opts.srcPort ?? socket.remotePort ?? 0;
    return this.tcp.connectToGuest(g.port.tcp, g.mac, guestIp, guestPort, srcIp, srcPort, socket);
  }

  /**
   * A UDP channel to guestIp:guestPort from srcIp:srcPort: send() delivers a
   * datagram to the guest; the guest's datagrams back to srcIp:srcPort reach
   * onReply instead of the NAT. close() unregisters it.
   */
  openUdpToGuest(guestIp: number, guestPort: number, srcIp: number, srcPort: number, onReply: (data: Buffer) => void): { send(data: Uint8Array): boolean; close(): void } {
    const key = udpChannelKey(guestIp, guestPort, srcIp, srcPort);
    this.udpChannels.set(key, onReply);
    return {
      send: (data: Uint8Array) => {
        const g = this.guests.get(guestIp);
        if (g === undefined || !this.udpChannels.has(key)) return false;
        this.udpToGuest(g.port, g.mac, srcIp, srcPort, guestIp, guestPort, data);
        return true;
      },
      close: () => {
        this.udpChannels.delete(key);
      },
    };
  }

  /** Active TCP and UDP flows, for the control API. */
  flows(): { proto: 'tcp' | 'udp'; guest: string; remote: string; state: string; bytesIn: number; bytesOut: number; ageMs: number }[] {
    const now = this.now();
    const udp = this.udp.list().map((b) => ({
      proto: 'udp' as const,
      guest: `${formatIPv4(b.guestIp)}:${b.guestPort}`,
      remote: [...b.peers].slice(0, 4).map((p) => `${formatIPv4(Math.floor(p / 65536))}:${p % 65536}`).join(','),
      state: 'bound',
      bytesIn: b.txBytes,
      bytesOut: b.rxBytes,
      ageMs: now - b.createdAtMs,
    }));
    return [...this.tcp.flows().map(({ proto, guest, remote, state, bytesIn, bytesOut, ageMs }) => ({ proto, guest, remote, state, bytesIn, bytesOut, ageMs })), ...udp];
  }

  // ---- capture ------------------------------------------------------------

  /**
   * Write every frame crossing the switch (both directions, VM to VM
   * included) to `out` as a classic pcap, cut to `snaplen` bytes. One capture
   * at a time; a new one replaces the old.
   */
  startCapture(out: Writable, options: { snaplen?: number } = {}): void {
    this.stopCapture();
    const writer = new PcapWriter((chunk) => {
      out.write(chunk);
    }, { snaplen: options.snaplen });
    this.capture = { writer, stream: out };
    this.tap.fn = (buf, off, len) => writer.write(buf.subarray(off, off + len));
  }

  /** Stop capturing; resolves when everything written so far is flushed to the stream's destination. */
  async stopCapture(): Promise<{ frames: number; bytes: number } | undefined> {
    const c = this.capture;
    if (!c) return undefined;
    this.capture = undefined;
    this.tap.fn = undefined;
    await new Promise<void>((resolve) => c.stream.end(resolve));
    return { frames: c.writer.frames, bytes: c.writer.bytes };
  }

  // ---- introspection and shutdown ----------------------------------------

  /** One of the switch's tables as a bound (QuotaStats shape). */
  private tableStats(used: number, total: number, perVm: number, refusedVm: number, refusedTotal: number, of: (p: VmPort) => number): QuotaStats {
    let maxVmUsed = 0;
    for (const p of this.ports.values()) maxVmUsed = Math.max(maxVmUsed, of(p));
    return { used, total, perVm, refusedVm, refusedTotal, maxVmUsed };
  }

  stats(): EngineStats {
    const c = this.counters;
    const cfg = this.config;
    return {
      backend: this.kernels.backend,
      vms: this.ports.size,
      rx: { frames: c.rxFrames, bytes: c.rxBytes, batches: c.rxBatches, framesInPlace: this.rx.framesInPlace, framesCopied: this.rx.framesCopied, readAreas: this.rx.readAreas, readAreaSwaps: this.rx.readAreaSwaps, readAreaRefills: this.rx.readAreaRefills },
      tx: {
        frames: this.tap.frames, bytes: this.tap.bytes,
        inPlace: this.tx.framesInPlace, ringFullBatches: this.tx.scratchBatches, ringPinnedBytes: this.tx.pinnedBytes,
      },
      linkDrops: [...this.ports.values()].reduce((n, p) => n + p.link.stats().dropped, this.leftLinkDrops),
      drops: Object.fromEntries(this.drops),
      switch: {
        macs: this.macs.size, forwarded: c.forwarded, flooded: c.flooded, unknownUnicast: c.unknownUnicast, macsRefused: this.macs.refused,
        macsRefusedPerVm: this.macs.refusedPort, macsOwnedElsewhere: this.macs.refusedOwned, guestIps: this.guests.size,
      },
      udp: { flows: this.udp.size, ...this.udp.counters },
      tcp: this.tcp.stats(),
      icmp: { echoReplies: c.echoReplies, ...this.icmp.counters },
      fragments: { reassembled: this.fragmentsReassembled, pending: this.kernels.k.fragPending(this.fragTable) },
      dhcp: this.dhcp.stats(),
      dns: this.dns.stats(),
      limits: {
        hostSockets: this.hostSockets.stats(),
        udpBindings: this.udp.limits(),
        fragmentSlots: this.fragSlots.stats(),
        echoProbes: this.icmp.limits(),
        dhcpLeases: this.dhcp.quotaStats(),
        guestIps: this.tableStats(this.guests.size, cfg.maxMacs, cfg.limits.ipsPerVm,
          this.drops.get('ip-limit') ?? 0, this.drops.get('guest-table-full') ?? 0, (p) => p.ips.size),
        macs: this.tableStats(this.macs.size, cfg.maxMacs, cfg.limits.macsPerVm, this.macs.refusedPort, this.macs.refused, (p) => this.macs.countOf(p)),
        ...this.tcp.limitStats(),
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.vmListeners].map((l) => l.close()));
    this.vmListeners.clear();
    for (const p of [...this.ports.values()]) p.link.close('engine closed');
    await this.stopCapture();
    clearInterval(this.fragTimer);
    this.tcp.close();
    this.udp.close();
    this.dns.close();
  }
}

function udpChannelKey(guestIp: number, guestPort: number, ip: number, port: number): string {
  return `${guestIp}:${guestPort}:${ip}:${port}`;
}

export function createEngine(options: EngineOptions = {}): Engine {
  return new Engine(options);
}
