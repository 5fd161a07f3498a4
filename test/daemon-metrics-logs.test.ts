import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { escapeLabelValue, renderFamilies, renderMetrics } from '../src/daemon/metrics.js';
import { startDaemon } from '../src/daemon/daemon.js';
import { buildConfig } from '../src/daemon/options.js';
import { linkBufferHint, readSysctlBytes } from '../src/daemon/link-buffer-hint.js';
import { GuestClient } from './support/guest-client.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vnetkit-ml-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('Prometheus text format', () => {
  it('HELP, TYPE and samples, labels escaped', () => {
    const text = renderFamilies([
      { name: 'x_total', type: 'counter', help: 'A\\B\nC', samples: [{ labels: { reason: 'a"b\\c\nd' }, value: 3 }, { value: 4 }] },
      { name: 'empty', type: 'gauge', help: 'never shown', samples: [] },
      { name: 'g', type: 'gauge', help: 'g', samples: [{ value: NaN }, { value: Infinity }, { value: -Infinity }, { value: 1.5 }] },
    ]);
    expect(text).toBe(
      '# HELP x_total A\\\\B\\nC\n# TYPE x_total counter\nx_total{reason="a\\"b\\\\c\\nd"} 3\nx_total 4\n' +
        '# HELP g g\n# TYPE g gauge\ng NaN\ng +Inf\ng -Inf\ng 1.5\n',
    );
    expect(escapeLabelValue('plain')).toBe('plain');
  });

  it('refuses invalid metric and label names (a bug, never input)', () => {
    expect(() => renderFamilies([{ name: 'bad-name', type: 'gauge', help: '', samples: [{ value: 1 }] }])).toThrow(/bad metric name/);
    expect(() => renderFamilies([{ name: 'ok', type: 'gauge', help: '', samples: [{ labels: { 'bad-label': 'x' }, value: 1 }] }])).toThrow(/bad label name/);
  });

  it('engine stats map to fixed families; unknown sections become gauges; drop reasons are label values', () => {
    const text = renderMetrics({
      stats: {
        backend: 'js',
        vms: 2,
        rx: { frames: 10, bytes: 1000, batches: 3, framesInPlace: 8, framesCopied: 2 },
        tx: { frames: 9, bytes: 900 },
        drops: { 'short-frame': 2, 'weird "reason"': 1 },
        switch: { macs: 2, forwarded: 1, flooded: 0, unknownUnicast: 0, macsRefused: 0 },
        udp: { flows: 1, created: 5 },
        icmp: { echoReplies: 7 },
        dhcp: { leases: 1, acks: 2 },
        dns: { inflight: 0, queries: 3 },
        tcp: { flows: 4, resets: 1, nested: { a: 1 } },
      },
      flows: [{ proto: 'tcp' }, { proto: 'tcp' }, { proto: 'udp' }],
      forwards: [{ protocol: 'unix' }],
      capturing: true,
      uptimeSeconds: 12,
    });
    const lines = text.split('\n');
    expect(lines).toContain('vnetkit_vms 2');
    expect(lines).toContain('vnetkit_rx_frames_total 10');
    expect(lines).toContain('vnetkit_rx_in_place_frames_total 8');
    expect(lines).toContain('vnetkit_rx_copied_frames_total 2');
    expect(lines).toContain('vnetkit_drops_total{reason="short-frame"} 2');
    expect(lines).toContain('vnetkit_drops_total{reason="weird \\"reason\\""} 1');
    expect(lines).toContain('vnetkit_udp_flows 1');
    expect(lines).toContain('vnetkit_udp_events_total{event="created"} 5');
    expect(lines).toContain('vnetkit_dhcp_leases 1');
    expect(lines).toContain('vnetkit_dhcp_events_total{event="acks"} 2');
    expect(lines).toContain('# TYPE vnetkit_tcp gauge');
    expect(lines).toContain('vnetkit_tcp{field="nested.a"} 1');
    expect(lines).toContain('vnetkit_flows{proto="tcp"} 2');
    expect(lines).toContain('vnetkit_flows{proto="udp"} 1');
    expect(lines).toContain('vnetkit_forwards{protocol="unix"} 1');
    expect(lines).toContain('vnetkit_forwards{protocol="tcp"} 0');
    expect(lines).toContain('vnetkit_capture_active 1');
    expect(lines).toContain('vnetkit_info{backend="js"} 1');
    // one TYPE per family
    const types = lines.filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
    expect(new Set(types).size).toBe(types.length);
  });

  it('bounded resources: use, both bounds and refusals at each, labelled by resource', () => {
    const text = renderMetrics({
      stats: {
        backend: 'js',
        limits: {
          hostSockets: { used: 7, total: 896, perVm: 448, refusedVm: 3, refusedTotal: 1, maxVmUsed: 5 },
          udpBindings: { used: 0, total: 4096, perVm: 1024, refusedVm: 0, refusedTotal: 0, maxVmUsed: 0 },
        },
      },
    });
    const lines = text.split('\n');
    expect(lines).toContain('vnetkit_limit_used{resource="hostSockets"} 7');
    expect(lines).toContain('vnetkit_limit_max_vm_used{resource="hostSockets"} 5');
    expect(lines).toContain('vnetkit_limit_bound{resource="hostSockets",scope="global"} 896');
    expect(lines).toContain('vnetkit_limit_bound{resource="udpBindings",scope="vm"} 1024');
    expect(lines).toContain('vnetkit_limit_refused_total{resource="hostSockets",scope="vm"} 3');
    expect(lines).toContain('vnetkit_limit_refused_total{resource="hostSockets",scope="global"} 1');
    expect(lines).toContain('# TYPE vnetkit_limit_refused_total counter');
    expect(text).not.toContain('vnetkit_limits{');
  });
});

describe('daemon logs', () => {
  it('text lines for VM connect/disconnect, and one rate-limited line per class of rejected input', async () => {
    const q = path.join(tmp, 'q.sock');
    const logs: string[] = [];
    const d = await startDaemon(
      buildConfig({}, { 'listen-qemu': [`unix://${q}`], 'log-level': 'info' }),
      { out: { write: () => true }, err: { write: (s: string) => logs.push(s) } },
      { dropReportMs: 50 },
    );
    try {
      const g = await GuestClient.connect(q, Uint8Array.of(0x52, 0x54, 0, 0, 0, 1));
      // 200 runt frames: one class of rejected input
      for (let i = 0; i < 200; i++) g.send(Uint8Array.of(1, 2, 3, 4, 5));
      const deadline = Date.now() + 5000;
      while (!logs.some((l) => l.includes('rejected input')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200));
      g.close();
      while (!logs.some((l) => l.includes('vm disconnected')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const text = logs.join('');
      expect(text).toMatch(/^\S+ INFO {2}vm connected .*framing=qemu/m);
      expect(text).toMatch(/^\S+ INFO {2}vm disconnected /m);
      const rejected = logs.filter((l) => l.includes('rejected input'));
      // Counted per report interval, never per frame; the limiter caps the lines per key.
      expect(rejected.length).toBeGreaterThanOrEqual(1);
      expect(rejected.length).toBeLessThanOrEqual(5);
      for (const l of rejected) expect(l).toContain('reason=short-frame');
      expect(rejected.reduce((n, l) => n + Number(/count=(\d+)/.exec(l)![1]), 0)).toBe(200);
    } finally {
      await d.close();
    }
    expect(fs.existsSync(q)).toBe(false);
  });
});

describe('jumbo-MTU link buffer hint', () => {
  const MiB = 1024 * 1024;
  it('is due only above 16 KiB frames when the buffer the links will get is under 2 MiB, and names the setting that would fix it', () => {
    // vnetkit can raise SO_SNDBUF: the kernel grants twice the request, capped at twice wmem_max.
    expect(linkBufferHint(65520, { asked: MiB, canSet: true, wmemMax: 212992, wmemDefault: 212992 })).toEqual({ mtu: 65520, sendBuffer: 425984, suggest: `sysctl -w net.core.wmem_max=${MiB}` });
    expect(linkBufferHint(65520, { asked: MiB, canSet: true, wmemMax: 4 * MiB, wmemDefault: 212992 })).toBeNull();
    expect(linkBufferHint(65520, { asked: 256 * 1024, canSet: true, wmemMax: 4 * MiB })).toEqual({ mtu: 65520, sendBuffer: 512 * 1024, suggest: `--vm-send-buffer ${MiB}` });
    expect(linkBufferHint(1500, { asked: MiB, canSet: true, wmemMax: 212992 })).toBeNull();
    expect(linkBufferHint(65520, { asked: MiB, canSet: true })).toBeNull();
    // Asked for the system default, or it cannot be raised here: the default is what counts.
    expect(linkBufferHint(65520, { asked: 0, canSet: true, wmemMax: 4 * MiB, wmemDefault: 212992 })).toEqual({ mtu: 65520, sendBuffer: 212992, suggest: `--vm-send-buffer ${MiB}` });
    expect(linkBufferHint(65520, { asked: MiB, canSet: false, wmemMax: 4 * MiB, wmemDefault: 212992 })).toEqual({ mtu: 65520, sendBuffer: 212992, suggest: `sysctl -w net.core.wmem_default=${2 * MiB}` });
    expect(linkBufferHint(65520, { asked: MiB, canSet: false, wmemDefault: 8 * MiB })).toBeNull();
    expect(linkBufferHint(65520, { asked: MiB, canSet: false })).toBeNull();
    const f = path.join(tmp, 'wmem');
    fs.writeFileSync(f, '212992\n');
    expect(readSysctlBytes(f)).toBe(212992);
    fs.writeFileSync(f, 'junk');
    expect(readSysctlBytes(f)).toBeUndefined();
    expect(readSysctlBytes(path.join(tmp, 'absent'))).toBeUndefined();
  });

  async function startupLog(mtu: string, wmemMax: string, extra: Record<string, string> = {}): Promise<string> {
    const q = path.join(tmp, `h${mtu}-${wmemMax}.sock`);
    const f = path.join(tmp, `wmem-max-${wmemMax}`);
    fs.writeFileSync(f, wmemMax + '\n');
    const logs: string[] = [];
    const d = await startDaemon(
      buildConfig({}, { 'listen-qemu': [`unix://${q}`], 'log-level': 'info', mtu, ...extra }),
      { out: { write: () => true }, err: { write: (s: string) => logs.push(s) } },
      { wmemMaxPath: f, canSetSendBuffer: true },
    );
    await d.close();
    return logs.join('');
  }

  it('the daemon logs it once at start for a jumbo MTU whose links would get too small a buffer, and not otherwise', async () => {
    const small = await startupLog('65520', '212992');
    expect(small.match(/bounded by the send buffer of the VM connections/g)).toHaveLength(1);
    expect(small).toContain('sendBuffer=425984');
    expect(small).toContain('net.core.wmem_max=1048576');
    expect(await startupLog('65520', '8388608')).not.toContain('send buffer');
    expect(await startupLog('1500', '212992')).not.toContain('send buffer');
    expect(await startupLog('65520', '8388608', { 'vm-send-buffer': '131072' })).toContain('--vm-send-buffer 1048576');
  });
});
