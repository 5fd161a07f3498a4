import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { readPcap, writePcap, pcapHeader, pcapRecord, PcapWriter, PCAP_MAGIC_NS, LINKTYPE_ETHERNET } from '../src/wire/pcap.js';
import { FIXTURE_PATH } from './support/frames.js';

describe('pcap', () => {
  it('reads the committed guest capture', () => {
    const raw = readFileSync(FIXTURE_PATH);
    expect(raw.length).toBeLessThan(50 * 1024);
    const p = readPcap(raw);
    expect(p.error).toBe('');
    expect(p.linkType).toBe(LINKTYPE_ETHERNET);
    expect(p.records.length).toBe(17);
    expect(p.records[0].data.length).toBe(342); // DHCP DISCOVER, unpadded
    expect(p.records[3].data.length).toBe(42); // ARP, unpadded
    for (const r of p.records) expect(r.origLen).toBe(r.data.length);
    for (let i = 1; i < p.records.length; i++) expect(p.records[i].ts).toBeGreaterThanOrEqual(p.records[i - 1].ts);
  });

  it('writes what it reads (µs timestamps, snaplen cut)', () => {
    const frames = [
      { data: Uint8Array.of(1, 2, 3), timeMs: 1700000000123.456 },
      { data: new Uint8Array(100).fill(7), timeMs: 1700000001000 },
    ];
    const out = writePcap(frames, 64);
    expect(out.length).toBe(24 + 16 + 3 + 16 + 64);
    const p = readPcap(out);
    expect(p.error).toBe('');
    expect(p.snaplen).toBe(64);
    expect(p.nanos).toBe(false);
    expect(p.records[0]).toMatchObject({ tsSec: 1700000000, tsNsec: 123456000, origLen: 3, data: Uint8Array.of(1, 2, 3) });
    expect(p.records[1].data.length).toBe(64);
    expect(p.records[1].origLen).toBe(100);
  });

  it('reads big-endian and nanosecond files', () => {
    const b = new Uint8Array(24 + 16 + 2);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, PCAP_MAGIC_NS, false);
    dv.setUint16(4, 2, false);
    dv.setUint16(6, 4, false);
    dv.setUint32(16, 65535, false);
    dv.setUint32(20, 1, false);
    dv.setUint32(24, 5, false);
    dv.setUint32(28, 999999999, false);
    dv.setUint32(32, 2, false);
    dv.setUint32(36, 2, false);
    b[40] = 0xab;
    const p = readPcap(b);
    expect(p).toMatchObject({ error: '', littleEndian: false, nanos: true, snaplen: 65535, linkType: 1 });
    expect(p.records[0]).toMatchObject({ tsSec: 5, tsNsec: 999999999, origLen: 2 });
    expect(Array.from(p.records[0].data)).toEqual([0xab, 0]);
  });

  it('reports bad input instead of throwing, keeping whole records', () => {
    expect(readPcap(new Uint8Array(10)).error).toBe('short-header');
    expect(readPcap(new Uint8Array(24)).error).toBe('bad-magic');
    const good = writePcap([{ data: new Uint8Array(10), timeMs: 0 }, { data: new Uint8Array(10), timeMs: 1 }]);
    for (const cut of [good.length - 1, good.length - 11, 24 + 26 + 5]) {
      const p = readPcap(good.subarray(0, cut));
      expect(p.error).toBe('truncated-record');
      expect(p.records.length).toBe(1);
    }
    // A record claiming 4 GB stops the reader rather than allocating.
    const lie = good.slice();
    new DataView(lie.buffer).setUint32(24 + 8, 0xffffffff, true);
    expect(readPcap(lie)).toMatchObject({ error: 'truncated-record', records: [] });
  });

  it('streams through a sink with a fake clock', () => {
    const chunks: Uint8Array[] = [];
    const w = new PcapWriter((c) => chunks.push(c), { now: () => 2500 });
    const frame = Uint8Array.of(9, 9);
    w.write(frame);
    frame[0] = 0; // the writer copied it
    expect(chunks.length).toBe(2);
    expect(chunks[0]).toEqual(pcapHeader());
    expect(chunks[1]).toEqual(pcapRecord(Uint8Array.of(9, 9), 2500));
    expect(w.frames).toBe(1);
    expect(w.bytes).toBe(24 + 18);
    const p = readPcap(Buffer.concat(chunks));
    expect(p.records[0]).toMatchObject({ tsSec: 2, tsNsec: 500000000 });
  });
});
