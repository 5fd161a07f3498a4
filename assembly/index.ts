// The WebAssembly module: every kernel in one binary, exported as raw
// functions over pointers into linear memory (no generated bindings, which
// would copy). Built with the stub runtime: no kernel allocates managed
// objects; all state lives in regions the caller carves out above heapBase().

export function heapBase(): usize {
  return __heap_base;
}

export { csumPartial } from './checksum';
export { classify } from './classify';
export { buildFrames } from './emit';
export {
  flowTableBytes, flowInit, flowInsert, flowLookup, flowTouch, flowRemove, flowCount,
  flowIdle, flowLookupBatch, flowClear, flowLastSeen, flowKeyOf,
} from './flow';
export {
  reasmBytes, reasmInit, reasmWrite, reasmReadable, reasmReadPtr, reasmReadChunk,
  reasmConsume, reasmWindow, reasmHoles, reasmHeld, reasmReset,
} from './reasm';
export {
  fragBytes, fragInit, fragInsert, fragDatagramPtr, fragDatagramLen, fragRelease,
  fragExpire, fragPending,
} from './frag';
