// STUB: to be implemented (RFC 1071 internet checksum, SIMD and scalar).
export function csumPartial(ptr: usize, len: u32, sum: u32): u32 { return 0; }
