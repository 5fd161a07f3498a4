/**
 * The vpnkit "vmnet" handshake, byte exact (moby/vpnkit src/hostnet/vmnet.ml;
 * see docs in /work/shared/research/vpnkit.md §1):
 *
 *   C→S Init 49 bytes: "VMN3T", u32 LE version (22), 40 opaque commit bytes
 *   S→C Init 49 bytes (sent even on a version mismatch, then the server closes)
 *   C→S Command 41 bytes: u8 type, 36-byte ASCII UUID, 4 bytes (pad, or the
 *       preferred IPv4 as u32 LE of the host-order integer for type 8)
 *   S→C Response 258 bytes: Vif (type 1: mtu u16 LE, max_packet_size u16 LE,
 *       6-byte MAC) or Disconnect (type 2: u8 length, reason), zero padded
 *   then frames with a u16 LE length prefix.
 *
 * Pure functions over bytes so the server (link.ts) and the test peer share
 * one definition of the layout.
 */
import { randomUUID } from 'node:crypto';
import type { VpnkitNegotiator, VpnkitRequest, VpnkitDecision } from './types.js';

export const VPNKIT_MAGIC = 'VMN3T';
export const VPNKIT_VERSION = 22;
export const VPNKIT_INIT_LEN = 49;
export const VPNKIT_COMMAND_LEN = 41;
export const VPNKIT_RESPONSE_LEN = 258;
export const VPNKIT_CMD_ETHERNET = 1;
export const VPNKIT_CMD_BIND_IPV4 = 6;
export const VPNKIT_CMD_PREFERRED_IPV4 = 8;
export const VPNKIT_RESP_VIF = 1;
export const VPNKIT_RESP_DISCONNECT = 2;
/** vpnkit's OCaml server always sends this commit string; clients treat it as opaque. */
export const VPNKIT_SERVER_COMMIT = '0123456789012345678901234567890123456789';
/** max_packet_size = mtu + 50 in every vpnkit release. */
export const VPNKIT_MAX_PACKET_EXTRA = 50;

/** Exact reason texts from vpnkit's slirp.ml, so existing clients' log parsing keeps working. */
export const VpnkitReasons = {
  OUT_OF_RANGE: 'Preferred IP address out of range.',
  alreadyUsed: (ip: string) => `Preferred IP address ${ip} already used.`,
  NO_ADDRESSES: 'No IP addresses available.',
  UUID_OTHER_IP: 'UUID already assigned to a different IP than the IP requested by the client',
  BIND_UNSUPPORTED: 'Unsupported command Bind_ipv4',
} as const;

export function encodeInit(version = VPNKIT_VERSION, commit = VPNKIT_SERVER_COMMIT): Buffer {
  const b = Buffer.alloc(VPNKIT_INIT_LEN);
  b.write(VPNKIT_MAGIC, 0, 'latin1');
  b.writeUInt32LE(version >>> 0, 5);
  b.write(commit.slice(0, 40), 9, 'latin1');
  return b;
}

export interface ParsedInit {
  magicOk: boolean;
  version: number;
}

/** Reads a 49-byte Init at `off`. Like vpnkit, callers check only the version. */
export function parseInit(b: Uint8Array, off = 0): ParsedInit {
  const magicOk = b[off] === 0x56 && b[off + 1] === 0x4d && b[off + 2] === 0x4e && b[off + 3] === 0x33 && b[off + 4] === 0x54;
  const version = (b[off + 5] | (b[off + 6] << 8) | (b[off + 7] << 16) | (b[off + 8] << 24)) >>> 0;
  return { magicOk, version };
}

export type ParsedCommand =
  | { ok: true; command: 'ethernet' | 'preferred-ipv4'; uuid: string; generated: boolean; preferredIp?: number }
  | { ok: true; command: 'bind-ipv4' }
  | { ok: false; error: string };

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/**
 * Reads a 41-byte Command at `off`. Errors carry vpnkit's texts ("Invalid
 * UUID: …", "Unknown command: N"); vpnkit sends no reply for them.
 */
export function parseCommand(b: Uint8Array, off = 0): ParsedCommand {
  const type = b[off];
  if (type === VPNKIT_CMD_BIND_IPV4) return { ok: true, command: 'bind-ipv4' };
  if (type !== VPNKIT_CMD_ETHERNET && type !== VPNKIT_CMD_PREFERRED_IPV4) return { ok: false, error: `Unknown command: ${type}` };
  let allZero = true;
  for (let i = 1; i <= 36; i++) {
    if (b[off + i] !== 0) {
      allZero = false;
      break;
    }
  }
  let uuid: string;
  let generated = false;
  if (allZero) {
    uuid = randomUUID();
    generated = true;
  } else {
    uuid = Buffer.from(b.buffer, b.byteOffset + off + 1, 36).toString('latin1');
    if (!UUID_RE.test(uuid)) return { ok: false, error: `Invalid UUID: ${JSON.stringify(uuid)}` };
    uuid = uuid.toLowerCase();
  }
  if (type === VPNKIT_CMD_ETHERNET) return { ok: true, command: 'ethernet', uuid, generated };
  const p = off + 37;
  const preferredIp = (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
  return { ok: true, command: 'preferred-ipv4', uuid, generated, preferredIp };
}

/** Client side: a 41-byte Command. `uuid` null sends 36 NULs (ask the server to generate one). */
export function encodeCommand(command: 'ethernet' | 'preferred-ipv4' | 'bind-ipv4', uuid: string | null, preferredIp = 0): Buffer {
  const b = Buffer.alloc(VPNKIT_COMMAND_LEN);
  b[0] = command === 'ethernet' ? VPNKIT_CMD_ETHERNET : command === 'preferred-ipv4' ? VPNKIT_CMD_PREFERRED_IPV4 : VPNKIT_CMD_BIND_IPV4;
  if (uuid !== null) b.write(uuid.slice(0, 36), 1, 'latin1');
  if (command === 'preferred-ipv4') b.writeUInt32LE(preferredIp >>> 0, 37);
  return b;
}

export function encodeVif(mtu: number, mac: Uint8Array): Buffer {
  const b = Buffer.alloc(VPNKIT_RESPONSE_LEN);
  b[0] = VPNKIT_RESP_VIF;
  b.writeUInt16LE(mtu, 1);
  b.writeUInt16LE(mtu + VPNKIT_MAX_PACKET_EXTRA, 3);
  b.set(mac.subarray(0, 6), 5);
  return b;
}

export function encodeDisconnect(reason: string): Buffer {
  const b = Buffer.alloc(VPNKIT_RESPONSE_LEN);
  b[0] = VPNKIT_RESP_DISCONNECT;
  // The length is one byte: longer reasons are cut at 255 bytes.
  const n = b.write(reason, 2, 255, 'utf8');
  b[1] = n;
  return b;
}

export type ParsedResponse =
  | { kind: 'vif'; mtu: number; maxPacketSize: number; mac: Uint8Array }
  | { kind: 'disconnect'; reason: string }
  | { kind: 'unknown'; type: number };

/** Client side: reads a 258-byte Response. */
export function parseResponse(b: Uint8Array, off = 0): ParsedResponse {
  const type = b[off];
  if (type === VPNKIT_RESP_VIF) {
    return {
      kind: 'vif',
      mtu: b[off + 1] | (b[off + 2] << 8),
      maxPacketSize: b[off + 3] | (b[off + 4] << 8),
      mac: Uint8Array.from(b.subarray(off + 5, off + 11)),
    };
  }
  if (type === VPNKIT_RESP_DISCONNECT) {
    const n = b[off + 1];
    return { kind: 'disconnect', reason: Buffer.from(b.buffer, b.byteOffset + off + 2, n).toString('utf8') };
  }
  return { kind: 'unknown', type };
}

/** The largest MTU whose max_packet_size (mtu + 50) still fits the u16 field. */
export const VPNKIT_MAX_MTU = 0xffff - VPNKIT_MAX_PACKET_EXTRA;

function formatIp(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

export interface SimpleNegotiatorOptions {
  mtu?: number;
  /** Inclusive address range handed to clients (host-order integers). Without it no IP is assigned. */
  lowestIp?: number;
  highestIp?: number;
  /** Addresses never handed out (gateway, host, DNS). */
  reserved?: Iterable<number>;
  /** Most UUIDs remembered; vpnkit never prunes its table, we refuse past this bound instead (default 4096). */
  maxClients?: number;
  /** Addresses taken by someone else (e.g. a DHCP lease), checked on top of this negotiator's own. */
  isTaken?: (ip: number) => boolean;
  /** Called when a new UUID is given an address (e.g. to pin it in the DHCP server). */
  onAssign?: (mac: Uint8Array, ip: number) => void;
}

/**
 * vpnkit's allocation semantics (slirp.ml connect_client_by_uuid_ip): a known
 * UUID gets its MAC and IP back; a new one gets MAC 02:50:xx:xx:xx:xx whose
 * low 32 bits count clients from 1, and the preferred IP when it is in range
 * and free, else the first free IP from the bottom of the range.
 */
export function createSimpleNegotiator(opts: SimpleNegotiatorOptions = {}): VpnkitNegotiator & { clients(): number; ipOf(uuid: string): number | undefined } {
  const mtu = opts.mtu ?? 1500;
  const lo = opts.lowestIp === undefined ? undefined : opts.lowestIp >>> 0;
  const hi = opts.highestIp === undefined ? undefined : opts.highestIp >>> 0;
  const reserved = new Set<number>(opts.reserved ?? []);
  const maxClients = opts.maxClients ?? 4096;
  const byUuid = new Map<string, { mac: Uint8Array; ip?: number }>();
  const usedIps = new Set<number>();
  let nextId = 1;

  const taken = (ip: number): boolean => usedIps.has(ip) || (opts.isTaken?.(ip) ?? false);
  const makeMac = (id: number): Uint8Array => new Uint8Array([0x02, 0x50, (id >>> 24) & 255, (id >>> 16) & 255, (id >>> 8) & 255, id & 255]);

  return {
    clients: () => byUuid.size,
    ipOf: (uuid: string) => byUuid.get(uuid)?.ip,
    negotiate(req: VpnkitRequest): VpnkitDecision {
      const known = byUuid.get(req.uuid);
      if (known) {
        if (req.preferredIp !== undefined && known.ip !== undefined && known.ip !== req.preferredIp >>> 0) {
          return { reason: VpnkitReasons.UUID_OTHER_IP };
        }
        return { mac: known.mac, mtu, ip: known.ip };
      }
      let ip: number | undefined;
      if (lo !== undefined && hi !== undefined) {
        if (req.preferredIp !== undefined) {
          const want = req.preferredIp >>> 0;
          if (want < lo || want > hi || reserved.has(want)) return { reason: VpnkitReasons.OUT_OF_RANGE };
          if (taken(want)) return { reason: VpnkitReasons.alreadyUsed(formatIp(want)) };
          ip = want;
        } else {
          for (let a = lo; a <= hi; a++) {
            if (!taken(a) && !reserved.has(a)) {
              ip = a;
              break;
            }
          }
          if (ip === undefined) return { reason: VpnkitReasons.NO_ADDRESSES };
        }
      } else if (req.preferredIp !== undefined) {
        // No range configured: honour the client's choice, still one IP per client.
        const want = req.preferredIp >>> 0;
        if (taken(want)) return { reason: VpnkitReasons.alreadyUsed(formatIp(want)) };
        ip = want;
      }
      if (byUuid.size >= maxClients) return { reason: VpnkitReasons.NO_ADDRESSES };
      const entry = { mac: makeMac(nextId++), ip };
      byUuid.set(req.uuid, entry);
      if (ip !== undefined) {
        usedIps.add(ip);
        opts.onAssign?.(entry.mac, ip);
      }
      return { mac: entry.mac, mtu, ip };
    },
  };
}
