/** Stable names for the classifier's reason codes: they are the keys of stats().drops. */
import * as L from '../../assembly/layout.js';

const NAMES: string[] = [];
NAMES[L.R_OK] = 'ok';
NAMES[L.R_SHORT_FRAME] = 'short-frame';
NAMES[L.R_SHORT_ARP] = 'short-arp';
NAMES[L.R_BAD_ARP] = 'bad-arp';
NAMES[L.R_SHORT_IPV4] = 'short-ipv4';
NAMES[L.R_BAD_IP_VERSION] = 'bad-ip-version';
NAMES[L.R_BAD_IHL] = 'bad-ihl';
NAMES[L.R_BAD_TOTAL_LENGTH] = 'bad-total-length';
NAMES[L.R_BAD_IP_CHECKSUM] = 'bad-ip-checksum';
NAMES[L.R_SHORT_L4] = 'short-l4';
NAMES[L.R_BAD_TCP_OFFSET] = 'bad-tcp-offset';
NAMES[L.R_BAD_L4_CHECKSUM] = 'bad-l4-checksum';
NAMES[L.R_BAD_UDP_LENGTH] = 'bad-udp-length';
NAMES[L.R_BAD_TCP_OPTIONS] = 'bad-tcp-options';
NAMES[L.R_BAD_TCP_FLAGS] = 'bad-tcp-flags';

export function reasonName(code: number): string {
  return NAMES[code] ?? `reason-${code}`;
}
