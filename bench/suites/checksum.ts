import { rng, sink, type RowSpec } from '../lib.js';
import type { Kernels } from '../../src/kernels/index.js';
import {
  TX_SIZE, T_PROTO, T_TCP_FLAGS, T_OPT_FLAGS, T_SRC_IP, T_DST_IP, T_SRC_PORT, T_DST_PORT, T_SEQ, T_ACK,
  T_WINDOW, T_TS_VAL, T_TS_ECR, T_PAYLOAD_PTR, T_PAYLOAD_LEN, T_IP_ID, T_TTL, T_DST_MAC, T_SRC_MAC,
  FRAME_ENTRY_SIZE, OPT_TS,
} from '../../assembly/layout.js';

/**
 * A pool of distinct random buffers of `size` bytes inside kernel memory,
 * each starting at a different alignment (0..15, odd ones included), so a
 * row measures neither one hot cache line nor only the aligned case.
 */
function bufferPool(k: Kernels, size: number, seed: number): number[] {
  // Enough buffers to cover about 2 MiB (more than L2), at least 8.
  const count = Math.max(8, Math.min(256, Math.floor((2 << 20) / size)));
  const r = rng(seed);
  const ptrs: number[] = [];
  for (let i = 0; i < count; i++) {
    const p = k.alloc(size + 16, 16) + (i * 7) % 16;
    for (let j = 0; j < size; j++) k.u8[p + j] = (r() * 256) | 0;
    ptrs.push(p);
  }
  return ptrs;
}

function csumRow(size: number, name: string): RowSpec {
  return {
    group: 'checksum',
    name,
    unit: 'GB/s',
    memoryBytes: 8 << 20,
    setup(k) {
      const ptrs = bufferPool(k, size, size);
      const n = ptrs.length;
      const csum = k.k.csumPartial;
      // Several calls per iteration so the harness overhead does not dominate small sizes.
      const calls = size < 1000 ? 64 : size < 10000 ? 8 : 1;
      let i = 0;
      return {
        per: size * calls,
        run() {
          let acc = 0;
          for (let c = 0; c < calls; c++) {
            acc = (acc + csum(ptrs[i], size, 0)) | 0;
            i = i + 1 === n ? 0 : i + 1;
          }
          sink.value = (sink.value ^ acc) | 0;
        },
      };
    },
  };
}

/**
 * TCP data segments with the timestamp option, like a bulk download turn: each payload is
 * copied into its frame in the pass that sums it (T_PAYLOAD_PTR outside the output region,
 * as host bytes read into kernel slabs are).
 */
function emitRow(PAYLOAD: number, BATCH: number, unit: 'Mpps' | 'GB/s'): RowSpec {
  return {
    group: 'emit',
    name: `TCP ${PAYLOAD} B x${BATCH}`,
    unit,
    memoryBytes: 64 << 20,
    setup(k) {
      const r = rng(1460);
      const dv = k.dv;
      // Several batches of descriptors over distinct payloads, rotated per call.
      const POOLS = 16;
      const txPools: number[] = [];
      for (let b = 0; b < POOLS; b++) {
        const txs = k.alloc(TX_SIZE * BATCH, 64);
        for (let i = 0; i < BATCH; i++) {
          const payload = k.alloc(PAYLOAD, 16) + ((b + i) & 3);
          for (let j = 0; j < PAYLOAD; j++) k.u8[payload + j] = (r() * 256) | 0;
          const t = txs + i * TX_SIZE;
          k.u8.fill(0, t, t + TX_SIZE);
          dv.setUint8(t + T_PROTO, 6);
          dv.setUint8(t + T_TCP_FLAGS, 0x18);
          dv.setUint8(t + T_OPT_FLAGS, OPT_TS);
          dv.setUint32(t + T_SRC_IP, 0x5db8d822, true);
          dv.setUint32(t + T_DST_IP, 0xc0a84102, true);
          dv.setUint16(t + T_SRC_PORT, 443, true);
          dv.setUint16(t + T_DST_PORT, 40000 + b, true);
          dv.setUint32(t + T_SEQ, (r() * 2 ** 32) >>> 0, true);
          dv.setUint32(t + T_ACK, (r() * 2 ** 32) >>> 0, true);
          dv.setUint16(t + T_WINDOW, 502, true);
          dv.setUint32(t + T_TS_VAL, (r() * 2 ** 32) >>> 0, true);
          dv.setUint32(t + T_TS_ECR, (r() * 2 ** 32) >>> 0, true);
          dv.setUint32(t + T_PAYLOAD_PTR, payload, true);
          dv.setUint32(t + T_PAYLOAD_LEN, PAYLOAD, true);
          dv.setUint16(t + T_IP_ID, i, true);
          dv.setUint8(t + T_TTL, 64);
          k.u8.set([0x52, 0x54, 0x00, 0x12, 0x34, 0x56], t + T_DST_MAC);
          k.u8.set([0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd], t + T_SRC_MAC);
        }
        txPools.push(txs);
      }
      const outCap = BATCH * (PAYLOAD + 140);
      const out = k.alloc(outCap, 64);
      const table = k.alloc(BATCH * FRAME_ENTRY_SIZE, 64);
      const build = k.k.buildFrames;
      let i = 0;
      return {
        per: unit === 'Mpps' ? BATCH : BATCH * PAYLOAD,
        run() {
          const built = build(txPools[i], BATCH, out, outCap, table);
          i = i + 1 === POOLS ? 0 : i + 1;
          // Fold a checksum byte of the last frame too, so the work is observed.
          sink.value = (sink.value ^ built ^ dv.getUint32(table + (BATCH - 1) * FRAME_ENTRY_SIZE + 4, true) ^ k.u8[out + 50]) | 0;
        },
      };
    },
  };
}

export function rows(): RowSpec[] {
  return [
    csumRow(64, '64 B'),
    csumRow(576, '576 B'),
    csumRow(1514, '1514 B'),
    csumRow(9000, '9000 B'),
    csumRow(65535, '65535 B'),
    emitRow(1460, 32, 'Mpps'),
    emitRow(65480, 8, 'GB/s'),
  ];
}
