import type { Kernels } from '../../src/kernels/index.js';
import { FRAME_ENTRY_SIZE, DESC_SIZE, D_KIND, D_FLOW_ID, D_REASON, KIND_TCP, KIND_UDP, FLOW_FOUND, D_FLOW_STATUS } from '../../assembly/layout.js';
import { emitEthernet, ETHERTYPE_IPV4 } from '../../src/wire/ethernet.js';
import { emitIpv4, IP_PROTO_TCP, IP_PROTO_UDP } from '../../src/wire/ipv4.js';
import { emitTcp, tcpHeaderLen, type TcpRepr } from '../../src/wire/tcp.js';
import { emitUdp } from '../../src/wire/udp.js';
import { rng, sink, type RowSpec } from '../lib.js';

const GUEST_MAC = new Uint8Array([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const GW_MAC = new Uint8Array([0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd]);
// Frames per measured iteration, whatever the batch size, so tinybench's
// per-iteration overhead weighs the same in every row.
const FRAMES_PER_RUN = 1024;
const FLOW_CAPACITY = 4096;

/**
 * One valid guest frame of exactly `size` bytes: 2/3 TCP (data segments with
 * the timestamp option, as Linux sends them), 1/3 UDP, each with its own
 * 5-tuple and random payload, all checksums right.
 */
function makeFrame(size: number, i: number, r: () => number): { bytes: Uint8Array; proto: number; src: number; sport: number; dst: number; dport: number } {
  const f = new Uint8Array(size);
  emitEthernet({ dst: GW_MAC, src: GUEST_MAC, ethertype: ETHERTYPE_IPV4 }, f, 0);
  const src = (0xc0a84100 | (2 + (i & 0x7f))) >>> 0;
  const dst = (Math.floor(r() * 0xffffffff) | 1) >>> 0;
  const sport = 32768 + (i % 28000);
  const dport = i % 3 === 2 ? 53 : 443;
  const proto = i % 3 === 2 ? IP_PROTO_UDP : IP_PROTO_TCP;
  const l4 = size - 34;
  emitIpv4({ src, dst, protocol: proto, payloadLen: l4, ttl: 64, ident: i & 0xffff, dontFrag: true }, f, 14);
  if (proto === IP_PROTO_TCP) {
    const base: TcpRepr = {
      srcPort: sport, dstPort: dport, seq: Math.floor(r() * 0xffffffff), ack: Math.floor(r() * 0xffffffff), flags: 0x18,
      window: 502, sackPermitted: false, sackBlocks: [], tsVal: i * 1000, tsEcr: i * 999, payload: new Uint8Array(0),
    };
    // A 64-byte frame has room for only 10 payload bytes behind a bare header, so drop the option there.
    const repr = l4 - tcpHeaderLen(base) >= 0 ? base : { ...base, tsVal: undefined, tsEcr: undefined };
    const payload = new Uint8Array(l4 - tcpHeaderLen(repr));
    for (let j = 0; j < payload.length; j++) payload[j] = (r() * 256) | 0;
    emitTcp({ ...repr, payload }, f, 34, src, dst);
  } else {
    const payload = new Uint8Array(l4 - 8);
    for (let j = 0; j < payload.length; j++) payload[j] = (r() * 256) | 0;
    emitUdp({ srcPort: sport, dstPort: dport, payload }, f, 34, src, dst);
  }
  return { bytes: f, proto, src, sport, dst, dport };
}

function classifyRow(size: number, batch: number): RowSpec {
  return {
    group: 'classify',
    name: `${size} B x${batch}`,
    unit: 'Mpps',
    memoryBytes: 16 << 20,
    setup(k: Kernels) {
      // 2048 distinct frames: 3 MiB of 1514-byte frames (beyond L2), and every flow in the table.
      const count = Math.max(2048, Math.min(4096, Math.floor((2 << 20) / size)));
      const r = rng(size * 31 + batch);
      const table = k.alloc(count * FRAME_ENTRY_SIZE, 8);
      const descs = k.alloc(batch * DESC_SIZE, 64);
      const ft = k.alloc(k.k.flowTableBytes(FLOW_CAPACITY), 64);
      k.k.flowInit(ft, FLOW_CAPACITY, 0x5eed);
      for (let i = 0; i < count; i++) {
        const fr = makeFrame(size, i, r);
        const p = k.alloc(size, 2); // 2-byte aligned like a real ring (14-byte Ethernet header puts IPv4 at +2 mod 4)
        k.u8.set(fr.bytes, p);
        k.dv.setUint32(table + i * FRAME_ENTRY_SIZE, p, true);
        k.dv.setUint32(table + i * FRAME_ENTRY_SIZE + 4, size, true);
        // Established flows: the steady state the engine sees is lookups that hit.
        if (i < FLOW_CAPACITY) k.k.flowInsert(ft, fr.proto, fr.src, fr.sport, fr.dst, fr.dport, 0);
      }
      const insertedAll = count <= FLOW_CAPACITY;
      // Sanity: one batch must classify as valid TCP/UDP with found flows, or the row measures the wrong path.
      k.k.classify(table, Math.min(batch, count), descs, ft, 1, 0);
      for (let i = 0; i < Math.min(batch, count); i++) {
        const d = descs + i * DESC_SIZE;
        const kind = k.u8[d + D_KIND];
        if ((kind !== KIND_TCP && kind !== KIND_UDP) || k.u8[d + D_REASON] !== 0 || (insertedAll && k.u8[d + D_FLOW_STATUS] !== FLOW_FOUND)) {
          throw new Error(`bench setup: frame ${i} classified as kind ${kind} reason ${k.u8[d + D_REASON]} flow ${k.u8[d + D_FLOW_STATUS]}`);
        }
      }
      const classify = k.k.classify;
      const calls = Math.max(1, Math.floor(FRAMES_PER_RUN / batch));
      const windows = Math.floor(count / batch);
      let w = 0;
      let now = 1;
      return {
        per: calls * batch,
        run() {
          let acc = 0;
          for (let c = 0; c < calls; c++) {
            classify(table + w * batch * FRAME_ENTRY_SIZE, batch, descs, ft, now, 0);
            acc = (acc + k.u8[descs + D_KIND] + k.dv.getInt32(descs + (batch - 1) * DESC_SIZE + D_FLOW_ID, true)) | 0;
            w = w + 1 === windows ? 0 : w + 1;
          }
          now = (now + 1) >>> 0;
          sink.value = (sink.value ^ acc) | 0;
        },
      };
    },
  };
}

export function rows(): RowSpec[] {
  const out: RowSpec[] = [];
  for (const size of [64, 1514]) for (const batch of [1, 32, 256]) out.push(classifyRow(size, batch));
  return out;
}
