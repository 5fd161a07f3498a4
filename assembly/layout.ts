// Byte layouts shared by the AssemblyScript kernels and their TypeScript twins.
// This file is compiled by both asc and tsc, so it holds only untyped integer
// constants (asc infers i32, tsc infers number). All multi-byte fields in these
// in-memory records are little-endian (WebAssembly's native order); packet
// bytes themselves stay in network order.

// ---- Frame table: the ring of frames handed to a batch kernel -------------
// One entry per frame: u32 ptr (absolute offset in linear memory), u32 len.
export const FRAME_ENTRY_SIZE = 8;
export const FE_PTR = 0;
export const FE_LEN = 4;

// ---- RX descriptor: written by classify(), one per frame -------------------
export const DESC_SIZE = 64;
export const D_KIND = 0; //        u8  KIND_*
export const D_REASON = 1; //      u8  R_* (0 = valid)
export const D_PROTO = 2; //       u8  IPv4 protocol number
export const D_TCP_FLAGS = 3; //   u8  TCP flags byte (FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128)
export const D_FLOW_STATUS = 4; // u8  FLOW_*
export const D_OPT_FLAGS = 5; //   u8  OPT_* bits of TCP options present
export const D_WSCALE = 6; //      u8  window scale shift (valid when OPT_WSCALE)
export const D_SACK_COUNT = 7; //  u8  number of SACK blocks in the options
export const D_L3_OFF = 8; //      u16 offset of the IPv4/ARP header from frame start (14 or 18)
export const D_L4_OFF = 10; //     u16 offset of the TCP/UDP/ICMP header from frame start
export const D_PAYLOAD_OFF = 12; // u32 offset of L4 payload from frame start
export const D_PAYLOAD_LEN = 16; // u32 L4 payload length (from IP total length, not frame length)
export const D_SRC_IP = 20; //     u32 source IPv4 as an integer (192.168.65.1 = 0xc0a84101); ARP: sender IP
export const D_DST_IP = 24; //     u32 destination IPv4; ARP: target IP
export const D_SRC_PORT = 28; //   u16 TCP/UDP source port; ICMP echo: identifier; ARP: opcode
export const D_DST_PORT = 30; //   u16 TCP/UDP destination port; ICMP echo: sequence
export const D_SEQ = 32; //        u32 TCP sequence number
export const D_ACK = 36; //        u32 TCP acknowledgment number
export const D_WINDOW = 40; //     u16 TCP window (unscaled, as on the wire)
export const D_MSS = 42; //        u16 TCP MSS option (valid when OPT_MSS)
export const D_TS_VAL = 44; //     u32 TCP timestamp value (valid when OPT_TS)
export const D_TS_ECR = 48; //     u32 TCP timestamp echo reply
export const D_FLOW_ID = 52; //    i32 the flow's id in the flow table (0..capacity-1), -1 if none
export const D_RESERVED = 56; //   u32 zero
export const D_ETHERTYPE = 60; //  u16 ethertype after an optional 802.1Q tag
export const D_ICMP_TYPE = 62; //  u8
export const D_ICMP_CODE = 63; //  u8

// Frame kinds.
export const KIND_INVALID = 0; //  dropped: see reason
export const KIND_ARP = 1;
export const KIND_ICMP = 2;
export const KIND_UDP = 3;
export const KIND_TCP = 4;
export const KIND_FRAGMENT = 5; // IPv4 fragment (MF set or offset > 0): feed to the fragment kernel
export const KIND_IPV6 = 6;
export const KIND_OTHER = 7; //    another ethertype, or IPv4 carrying another protocol

// Validation reasons (stable: they name counters in stats()).
export const R_OK = 0;
export const R_SHORT_FRAME = 1; //        shorter than an Ethernet header (or VLAN tag)
export const R_SHORT_ARP = 2;
export const R_BAD_ARP = 3; //            not Ethernet/IPv4 ARP
export const R_SHORT_IPV4 = 4;
export const R_BAD_IP_VERSION = 5;
export const R_BAD_IHL = 6;
export const R_BAD_TOTAL_LENGTH = 7; //   total length < IHL, or beyond the frame
export const R_BAD_IP_CHECKSUM = 8;
export const R_SHORT_L4 = 9; //           L4 header truncated
export const R_BAD_TCP_OFFSET = 10; //    data offset < 5 or beyond the segment
export const R_BAD_L4_CHECKSUM = 11;
export const R_BAD_UDP_LENGTH = 12;
export const R_BAD_TCP_OPTIONS = 13; //   an option's length runs past the header or is < 2
export const R_BAD_TCP_FLAGS = 14; //     SYN+FIN, SYN+RST, or no flag at all
export const R_COUNT = 15;

// Flow lookup outcome.
export const FLOW_NONE = 0; //  not looked up (not TCP/UDP, invalid, or no table)
export const FLOW_FOUND = 1;
export const FLOW_NEW = 2; //   inserted by this call
export const FLOW_FULL = 3; //  insert wanted but the table is full
export const FLOW_MISS = 4; //  not found and not inserted

// classify() flags.
export const CF_INSERT_TCP_SYN = 1; // insert unknown flows whose first segment is a bare SYN
export const CF_INSERT_UDP = 2; //     insert unknown UDP flows

// TCP option presence bits (D_OPT_FLAGS and TX T_OPT_FLAGS).
export const OPT_MSS = 1;
export const OPT_WSCALE = 2;
export const OPT_SACK_PERM = 4;
export const OPT_TS = 8;
export const OPT_SACK = 16;

// ---- TX descriptor: read by buildFrames(), one per outbound frame ----------
export const TX_SIZE = 72;
export const T_PROTO = 0; //       u8  6 = TCP, 17 = UDP
export const T_TCP_FLAGS = 1; //   u8
export const T_OPT_FLAGS = 2; //   u8  OPT_MSS | OPT_WSCALE | OPT_SACK_PERM | OPT_TS
export const T_WSCALE = 3; //      u8
export const T_SRC_IP = 4; //      u32
export const T_DST_IP = 8; //      u32
export const T_SRC_PORT = 12; //   u16
export const T_DST_PORT = 14; //   u16
export const T_SEQ = 16; //        u32
export const T_ACK = 20; //        u32
export const T_WINDOW = 24; //     u16 (already scaled down by the sender's shift)
export const T_MSS = 26; //        u16
export const T_TS_VAL = 28; //     u32
export const T_TS_ECR = 32; //     u32
export const T_PAYLOAD_PTR = 36; // u32 absolute pointer of the payload in linear memory
export const T_PAYLOAD_LEN = 40; // u32
export const T_IP_ID = 44; //      u16
export const T_TTL = 46; //        u8
export const T_RESERVED = 47; //   u8
export const T_DST_MAC = 48; //    6 bytes
export const T_SRC_MAC = 54; //    6 bytes
export const T_FRAME_LEN = 60; //  u32 written back by buildFrames: the built frame's length
export const T_COPY_FROM = 64; //  u32 0, or where the payload is copied from into T_PAYLOAD_PTR while it is summed
//                                     (one pass over bytes that lie elsewhere in linear memory); 68..71 unused

// ---- Flow-table batch lookup key -------------------------------------------
export const KEY_SIZE = 16;
export const K_PROTO = 0; //  u8
export const K_SRC_PORT = 2; // u16
export const K_DST_PORT = 4; // u16
export const K_SRC_IP = 8; //  u32
export const K_DST_IP = 12; // u32

// Flow-table results. Ids are dense (0..capacity-1) and stable for a flow's
// lifetime, so JS can keep its per-flow objects in a plain array indexed by id.
export const FT_MISS = -1;
export const FT_FULL = -2;
export const FT_EXISTS = -3;

// TCP reassembly results.
export const RA_OUTSIDE_WINDOW = -1;
export const RA_TOO_MANY_HOLES = -2;

// IPv4 fragment reassembly results.
export const FR_PENDING = -1;
export const FR_OVERLAP = -2;
export const FR_TOO_BIG = -3;
export const FR_FULL = -4;
export const FR_BAD = -5;
export const FR_TOO_MANY_PIECES = -6;
