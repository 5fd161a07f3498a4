/** The JS twin's view of its linear memory: the same bytes two ways. */
export interface JsMem {
  u8: Uint8Array;
  dv: DataView;
}

/** Where the JS twin's caller-owned memory starts (mirrors the WASM static-data area). */
export const JS_HEAP_BASE = 1024;
