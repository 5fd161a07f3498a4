import type { VnetkitError } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * How Ethernet frames are delimited on a VM transport:
 * - 'qemu'   4-byte big-endian length + frame (qemu -netdev stream / socket)
 * - 'le16'   2-byte little-endian length + frame (gvisor-tap-vsock stdio and /connect, vpnkit data phase)
 * - 'vpnkit' vpnkit's Init/Command/Response handshake, then 'le16'
 * - 'dgram'  one frame per datagram (qemu -netdev dgram over UDP)
 */
export type Framing = 'qemu' | 'vpnkit' | 'le16' | 'dgram';

export interface LinkStats {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  /** Frames dropped in either direction: oversize or over the queue cap on send, datagrams while paused or malformed on receive. */
  dropped: number;
}

/**
 * Memory a stream link receives into, holding bytes until they are whole
 * frames. A link has its own on the heap; the engine lends it one in kernel
 * memory (VmLink.useReadSpace), where the RX batch then takes frames where the
 * socket put them instead of copying them.
 */
export interface ReadSpace {
  /**
   * A buffer for more bytes: its first end - start bytes are prev[start, end)
   * (left where they lie when there is room behind them, else moved), and at
   * least `room` bytes follow them. Frames in the buffers it returns must stay
   * valid until the consumer has handled them.
   */
  take(prev: Uint8Array, start: number, end: number, room: number): Uint8Array;
  /**
   * Ask take() before every read, not only when the room behind the held
   * bytes runs short: the space keeps reads near the start of its buffers,
   * where the cache is warm.
   */
  readonly askEveryRead?: boolean;
  /** The link is done with it: closed, and reading no more. */
  release(): void;
}

/** A pin on memory a link writes frames from without copying them (VmLink.sendInPlace). */
export interface FrameHold {
  retain(): void;
  readonly release: () => void;
}

export interface VmLink {
  /** Unique per process. */
  readonly id: number;
  readonly framing: Framing;
  /** Human-readable remote (socket path, addr:port). */
  readonly peer: string;
  /** Set once a vpnkit handshake has completed. */
  readonly vpnkit?: { uuid: string; mac: Uint8Array; ip?: number };
  /** Largest frame accepted from the VM. */
  readonly maxFrameIn: number;
  /** Largest frame send() accepts (MTU + 14; the negotiated MTU for vpnkit). */
  readonly maxFrameOut: number;
  /** Set by the engine. Called per received frame; (buf, off, len) is valid only during the call. */
  onFrame: (buf: Uint8Array, off: number, len: number) => void;
  /** Set by the engine. Called exactly once when the link ends; `err` is set when it ended on bad input or a transport error. */
  onClose: (err?: VnetkitError) => void;
  /** Set by the engine. Called when a congested link has drained. */
  onDrain: () => void;
  /** Queue one frame (copied now). Everything queued in one event-loop turn leaves in one socket write. Oversize frames, and frames over the queue cap, are dropped and counted. */
  send(buf: Uint8Array, off: number, len: number): void;
  /**
   * Framing bytes written in front of each frame by sendInPlace (the stream
   * links' length prefix). Absent on links that copy every frame (datagrams).
   */
  readonly framePrefix?: number;
  /**
   * Queue the frame buf[off, off+len) where it lies, without copying: the link
   * writes its length prefix into buf[off - framePrefix, off) and, at flush,
   * a view of the bytes. Consecutive frames that are adjacent in `buf` leave
   * as one view. The link calls hold.retain() for each view it keeps and
   * hold.release() once that view is written or dropped; the caller must not
   * touch the bytes until then. Refused frames are dropped and counted as in send().
   */
  sendInPlace?(buf: Uint8Array, off: number, len: number, hold: FrameHold): void;
  /** Write out everything queued now (a setImmediate flush is the fallback). */
  flush(): void;
  /**
   * Receive into `space` from the next read on (stream links). The link
   * releases it when it closes. Bytes already received move into it.
   */
  useReadSpace?(space: ReadSpace): void;
  /** True from the moment the backlog reaches highWater until it has fallen to half of that (then onDrain). */
  readonly congested: boolean;
  /** Bytes queued toward the VM and not yet taken by its transport (ours plus the socket's own buffer). */
  readonly backlog: number;
  /** Backlog at which the link turns congested: senders stop adding new data there (half the queue cap). */
  readonly highWater: number;
  /** The queue cap (LinkOptions.txQueueLimit as applied): frames that would take the backlog past it are dropped. */
  readonly txQueueLimit: number;
  /** SO_SNDBUF of vnetkit's end as the kernel reported it after LinkOptions.sendBufferBytes was applied; absent when vnetkit did not set it. */
  readonly sendBuffer?: number;
  /** Stop / restart delivering frames from the VM. Frames after the one during which pause() was called are held, not lost. */
  pause(): void;
  resume(): void;
  readonly closed: boolean;
  /** True once frames flow: immediately for framings without a handshake, after the Vif for 'vpnkit'. */
  readonly ready: boolean;
  /**
   * Run `ready` when the data phase starts (at once if it has), or `fail` if
   * the link dies first. Only attachStream(…, {framing: 'vpnkit'}) links can
   * be not-yet-ready: listen() hands out vpnkit links after the handshake.
   */
  whenReady(ready: (link: VmLink) => void, fail?: (err: VnetkitError) => void): void;
  stats(): LinkStats;
  /** End the link: queued frames are flushed, the socket is ended, onClose() fires without an error. */
  close(reason?: string): void;
}

export interface VpnkitRequest {
  /** The client's UUID, lower-cased; a generated v4 UUID if the client sent 36 NULs. */
  uuid: string;
  /** Host-order IPv4 for a Preferred_ipv4 command. */
  preferredIp?: number;
  command: 'ethernet' | 'preferred-ipv4';
  /** True when `uuid` was generated on the client's behalf. */
  generated?: boolean;
}

export type VpnkitDecision = { mac: Uint8Array; mtu: number; ip?: number } | { reason: string };

export interface VpnkitNegotiator {
  /** Decide a client's MAC/MTU/IP, or return a Disconnect reason (use vpnkit's texts, see VpnkitReasons). */
  negotiate(req: VpnkitRequest): VpnkitDecision;
}

export interface LinkOptions {
  framing: Framing;
  /** Largest frame accepted from the VM (default 65550; 'le16'/'vpnkit' cannot exceed 65535). */
  maxFrame?: number;
  /** MTU toward the VM: send() drops frames above mtu + 14 (default 1500; vpnkit uses the negotiated MTU). */
  mtu?: number;
  /** Required for framing 'vpnkit' (a createSimpleNegotiator() is used if absent). */
  vpnkit?: VpnkitNegotiator;
  log?: Logger;
  /** vpnkit handshake deadline (default 10 000 ms). */
  handshakeTimeoutMs?: number;
  /** Hard cap on bytes queued toward the VM (ours plus the socket's buffer), default 4 MiB; frames beyond it are dropped and counted. */
  txQueueLimit?: number;
  /**
   * SO_SNDBUF asked for on vnetkit's end of a Unix-socket link that vnetkit accepts or adopts
   * (listen('unix://…'), attachFd), default 1 MiB; 0 keeps the system default. The kernel
   * doubles it and caps it at twice net.core.wmem_max; a bigger buffer already there is kept.
   * At jumbo MTUs the default buffer (208 KiB) holds three frames and starves the VM.
   * 65536..268435456 or 0. See send-buffer.ts for how and when it can be set.
   */
  sendBufferBytes?: number;
}
