/**
 * vpnkit clients identify themselves by UUID; a UUID keeps its MAC and IP
 * across reconnects (vpnkit's semantics, with its exact refusal texts). The
 * table is bounded by the DHCP pool: each UUID pins one pool address, and
 * when the pool is used up new UUIDs are refused with "No IP addresses
 * available." (vpnkit never prunes either; a bounded refusal beats a leak).
 */
import { formatIPv4, formatMac } from '../wire/addr.js';
import type { EngineConfig } from './config.js';

export interface UuidPool {
  isAllocated(ip: number): boolean;
  reserve(mac: string, ip: number): void;
}

export class VpnkitUuids {
  private readonly byUuid = new Map<string, { mac: Uint8Array; ip: number }>();
  private readonly ipsTaken = new Set<number>();
  private nextClient = 1;

  constructor(private readonly cfg: EngineConfig) {}

  ipOf(uuid: string): number | undefined {
    return this.byUuid.get(uuid)?.ip;
  }

  negotiate(req: { uuid: string; preferredIp?: number }, pool: UuidPool): { mac: Uint8Array; mtu: number; ip: number } | { reason: string } {
    const cfg = this.cfg;
    const known = this.byUuid.get(req.uuid);
    if (known) {
      if (req.preferredIp !== undefined && req.preferredIp !== known.ip) {
        return { reason: 'UUID already assigned to a different IP than the IP requested by the client' };
      }
      return { mac: known.mac, mtu: cfg.mtu, ip: known.ip };
    }
    let ip: number | undefined;
    if (req.preferredIp !== undefined) {
      if (req.preferredIp < cfg.dhcpStart || req.preferredIp > cfg.dhcpEnd) return { reason: 'Preferred IP address out of range.' };
      if (this.ipsTaken.has(req.preferredIp) || pool.isAllocated(req.preferredIp)) {
        return { reason: `Preferred IP address ${formatIPv4(req.preferredIp)} already used.` };
      }
      ip = req.preferredIp;
    } else {
      for (let a = cfg.dhcpStart; a <= cfg.dhcpEnd; a++) {
        if (!this.ipsTaken.has(a) && !pool.isAllocated(a)) {
          ip = a;
          break;
        }
      }
      if (ip === undefined) return { reason: 'No IP addresses available.' };
    }
    // Locally administered 02:50:xx:xx:xx:xx with the client number in the low 32 bits, as vpnkit does.
    const n = this.nextClient++;
    const mac = new Uint8Array([0x02, 0x50, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
    this.byUuid.set(req.uuid, { mac, ip });
    this.ipsTaken.add(ip);
    pool.reserve(formatMac(mac), ip);
    return { mac, mtu: cfg.mtu, ip };
  }
}
