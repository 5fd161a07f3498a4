/**
 * Prometheus text exposition (format 0.0.4) of the engine's counters.
 * Metric and label names are fixed here; only label *values* come from
 * runtime data (drop reasons, counter names), and those are escaped, so a
 * surprising name can never break the format.
 */

export interface Sample {
  labels?: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: 'counter' | 'gauge';
  help: string;
  samples: Sample[];
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Render families; families with no samples are left out; a bad metric or label name throws (a bug here, not input). */
export function renderFamilies(families: Family[]): string {
  let out = '';
  for (const f of families) {
    if (f.samples.length === 0) continue;
    if (!NAME_RE.test(f.name)) throw new Error(`bad metric name ${f.name}`);
    out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
    for (const s of f.samples) {
      let labels = '';
      if (s.labels !== undefined) {
        const parts: string[] = [];
        for (const [k, v] of Object.entries(s.labels)) {
          if (!LABEL_RE.test(k)) throw new Error(`bad label name ${k}`);
          parts.push(`${k}="${escapeLabelValue(v)}"`);
        }
        if (parts.length > 0) labels = `{${parts.join(',')}}`;
      }
      out += `${f.name}${labels} ${formatValue(s.value)}\n`;
    }
  }
  return out;
}

type NumRecord = Record<string, unknown>;

export interface MetricsInput {
  stats: NumRecord;
  flows?: { proto: string }[];
  forwards?: { protocol: string }[];
  forwarder?: Record<string, number>;
  capturing?: boolean;
  uptimeSeconds?: number;
  /** Control API connections and guard events. */
  api?: { connections: number; events: Record<string, number> };
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

function labelled(rec: unknown, label: string, gauges: Set<string>): { counters: Sample[]; gauges: Sample[] } {
  const counters: Sample[] = [];
  const g: Sample[] = [];
  if (typeof rec === 'object' && rec !== null) {
    for (const [k, v] of Object.entries(rec)) {
      if (typeof v !== 'number') continue;
      (gauges.has(k) ? g : counters).push({ labels: { [label]: k }, value: v });
    }
  }
  return { counters, gauges: g };
}

/** Engine stats (+ flows, forwards) → Prometheus text. */
export function renderMetrics(m: MetricsInput): string {
  const s = m.stats;
  const sec = (k: string): NumRecord => (typeof s[k] === 'object' && s[k] !== null ? (s[k] as NumRecord) : {});
  const rx = sec('rx');
  const tx = sec('tx');
  const sw = sec('switch');
  const fams: Family[] = [
    { name: 'vnetkit_vms', type: 'gauge', help: 'VM connections attached to the switch.', samples: [{ value: num(s.vms) }] },
    { name: 'vnetkit_rx_frames_total', type: 'counter', help: 'Frames received from VMs.', samples: [{ value: num(rx.frames) }] },
    { name: 'vnetkit_rx_bytes_total', type: 'counter', help: 'Bytes of frames received from VMs.', samples: [{ value: num(rx.bytes) }] },
    { name: 'vnetkit_rx_batches_total', type: 'counter', help: 'Receive batches classified (one kernel call each).', samples: [{ value: num(rx.batches) }] },
    { name: 'vnetkit_rx_in_place_frames_total', type: 'counter', help: 'Frames from VMs handled where the link read them into kernel memory, without a copy.', samples: [{ value: num(rx.framesInPlace) }] },
    { name: 'vnetkit_rx_copied_frames_total', type: 'counter', help: 'Frames from VMs copied into the RX arena (links without a read area).', samples: [{ value: num(rx.framesCopied) }] },
    { name: 'vnetkit_tx_frames_total', type: 'counter', help: 'Frames sent to connected VMs.', samples: [{ value: num(tx.frames) }] },
    { name: 'vnetkit_tx_bytes_total', type: 'counter', help: 'Bytes of frames sent to connected VMs.', samples: [{ value: num(tx.bytes) }] },
    { name: 'vnetkit_tx_in_place_frames_total', type: 'counter', help: 'Frames written to VM links straight from kernel memory, without a copy.', samples: [{ value: num(tx.inPlace) }] },
    { name: 'vnetkit_tx_ring_full_batches_total', type: 'counter', help: 'TX batches copied out because VM links held the whole TX ring.', samples: [{ value: num(tx.ringFullBatches) }] },
    {
      name: 'vnetkit_drops_total', type: 'counter', help: 'Frames or packets dropped, by reason.',
      samples: Object.entries(sec('drops')).filter(([, v]) => typeof v === 'number').map(([k, v]) => ({ labels: { reason: k }, value: v as number })),
    },
    { name: 'vnetkit_switch_macs', type: 'gauge', help: 'MAC addresses learned by the switch.', samples: [{ value: num(sw.macs) }] },
    {
      name: 'vnetkit_switch_frames_total', type: 'counter', help: 'Frames switched between VMs, by outcome.',
      samples: (['forwarded', 'flooded', 'unknownUnicast', 'macsRefused'] as const).map((k) => ({ labels: { outcome: k }, value: num(sw[k]) })),
    },
    { name: 'vnetkit_icmp_echo_replies_total', type: 'counter', help: 'ICMP echo replies sent for the gateway and host alias.', samples: [{ value: num(sec('icmp').echoReplies) }] },
  ];
  const sections: [string, string, Set<string>][] = [
    ['udp', 'UDP NAT', new Set(['flows'])],
    ['dhcp', 'DHCP server', new Set(['leases', 'leaseRecords'])],
    ['dns', 'DNS server', new Set(['inflight', 'tcp_open', 'tcp_held_bytes'])],
  ];
  for (const [k, what, gaugeKeys] of sections) {
    const l = labelled(s[k], 'event', gaugeKeys);
    fams.push({ name: `vnetkit_${k}_events_total`, type: 'counter', help: `${what} counters, by event.`, samples: l.counters });
    for (const g of l.gauges) fams.push({ name: `vnetkit_${k}_${snake(g.labels!.event)}`, type: 'gauge', help: `${what}: ${g.labels!.event}.`, samples: [{ value: g.value }] });
  }
  fams.push(...limitFamilies(sec('limits')));
  // Sections the engine may add later (TCP...) are exported as gauges: we cannot know they only grow.
  const known = new Set(['backend', 'vms', 'rx', 'tx', 'drops', 'switch', 'udp', 'icmp', 'dhcp', 'dns', 'limits']);
  for (const [k, v] of Object.entries(s)) {
    if (known.has(k) || typeof v !== 'object' || v === null || !LABEL_RE.test(k)) continue;
    const samples = flatten(v as NumRecord, '').map(([field, value]) => ({ labels: { field }, value }));
    fams.push({ name: `vnetkit_${snake(k)}`, type: 'gauge', help: `Engine ${k} statistics, by field.`, samples });
  }
  if (m.flows !== undefined) {
    const by = new Map<string, number>([['tcp', 0], ['udp', 0]]);
    for (const f of m.flows) by.set(f.proto, (by.get(f.proto) ?? 0) + 1);
    fams.push({ name: 'vnetkit_flows', type: 'gauge', help: 'Active NAT and forwarded flows, by protocol.', samples: [...by].map(([p, n]) => ({ labels: { proto: p }, value: n })) });
  }
  if (m.forwards !== undefined) {
    const by = new Map<string, number>([['tcp', 0], ['udp', 0], ['unix', 0]]);
    for (const f of m.forwards) by.set(f.protocol, (by.get(f.protocol) ?? 0) + 1);
    fams.push({ name: 'vnetkit_forwards', type: 'gauge', help: 'Host-to-guest port forwards, by protocol.', samples: [...by].map(([p, n]) => ({ labels: { protocol: p }, value: n })) });
  }
  if (m.forwarder !== undefined) {
    fams.push({
      name: 'vnetkit_forwarder_events_total', type: 'counter', help: 'Port forwarder counters, by event.',
      samples: Object.entries(m.forwarder).map(([k, v]) => ({ labels: { event: k }, value: v })),
    });
  }
  if (m.api !== undefined) {
    fams.push({ name: 'vnetkit_api_connections', type: 'gauge', help: 'Control API connections open.', samples: [{ value: m.api.connections }] });
    fams.push({
      name: 'vnetkit_api_events_total', type: 'counter', help: 'Control API connections evicted, refused or timed out, and requests refused, by event.',
      samples: Object.entries(m.api.events).map(([k, v]) => ({ labels: { event: k }, value: v })),
    });
  }
  if (m.capturing !== undefined) fams.push({ name: 'vnetkit_capture_active', type: 'gauge', help: '1 while a pcap capture runs.', samples: [{ value: m.capturing ? 1 : 0 }] });
  if (m.uptimeSeconds !== undefined) fams.push({ name: 'vnetkit_uptime_seconds', type: 'gauge', help: 'Seconds since the daemon started.', samples: [{ value: m.uptimeSeconds }] });
  fams.push({ name: 'vnetkit_info', type: 'gauge', help: 'Constant 1, labelled with the kernel backend.', samples: [{ labels: { backend: String(s.backend ?? '') }, value: 1 }] });
  return renderFamilies(fams);
}

/** stats().limits (one QuotaStats per resource) as use, bounds and refusals labelled by resource. */
function limitFamilies(limits: NumRecord): Family[] {
  const used: Sample[] = [];
  const maxVm: Sample[] = [];
  const bound: Sample[] = [];
  const refused: Sample[] = [];
  for (const [resource, q] of Object.entries(limits)) {
    if (typeof q !== 'object' || q === null) continue;
    const r = q as NumRecord;
    used.push({ labels: { resource }, value: num(r.used) });
    maxVm.push({ labels: { resource }, value: num(r.maxVmUsed) });
    bound.push({ labels: { resource, scope: 'global' }, value: num(r.total) }, { labels: { resource, scope: 'vm' }, value: num(r.perVm) });
    refused.push({ labels: { resource, scope: 'global' }, value: num(r.refusedTotal) }, { labels: { resource, scope: 'vm' }, value: num(r.refusedVm) });
  }
  return [
    { name: 'vnetkit_limit_used', type: 'gauge', help: 'Units of a bounded resource in use by all VMs.', samples: used },
    { name: 'vnetkit_limit_max_vm_used', type: 'gauge', help: 'Units of a bounded resource held by the VM holding the most.', samples: maxVm },
    { name: 'vnetkit_limit_bound', type: 'gauge', help: 'Bound of a resource, for all VMs (global) or for each VM (vm).', samples: bound },
    { name: 'vnetkit_limit_refused_total', type: 'counter', help: 'Requests refused because a bound was reached, by resource and which bound.', samples: refused },
  ];
}

function snake(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[^a-zA-Z0-9_]/g, '_').toLowerCase();
}

function flatten(o: NumRecord, prefix: string, out: [string, number][] = [], depth = 0): [string, number][] {
  for (const [k, v] of Object.entries(o)) {
    const name = prefix ? `${prefix}.${k}` : k;
    if (typeof v === 'number') out.push([name, v]);
    else if (typeof v === 'object' && v !== null && depth < 3) flatten(v as NumRecord, name, out, depth + 1);
  }
  return out;
}
