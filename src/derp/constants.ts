/**
 * DERP protocol constants (spec/derp.md §4, §9, §11), each with its reason. Byte layouts are on the same line
 * as the frame type.
 */

/** `DERP🔑`: the 8-byte magic at the start of the ServerKey payload. */
export const MAGIC = Uint8Array.from([0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91]);
/** v2: RecvPacket carries the 32-byte source key. */
export const PROTOCOL_VERSION = 2;
export const KEY_LEN = 32;
export const NONCE_LEN = 24;
/** type(1) ∥ length(4, big-endian); the length excludes these 5 bytes. */
export const FRAME_HEADER_LEN = 5;
/** Largest payload of SendPacket/RecvPacket/ForwardPacket (exactly 64 KiB is allowed). */
export const MAX_PACKET_SIZE = 65536;
/** A client refuses a ServerInfo plaintext longer than this. */
export const MAX_INFO_LEN = 1 << 20;
/** ClientInfo frames shorter than key+nonce are "short client info". */
export const MIN_CLIENT_INFO_LEN = KEY_LEN + NONCE_LEN;
/** ClientInfo frames longer than this are "long client info". */
export const MAX_CLIENT_INFO_LEN = 256 * 1024;
/** A client treats any received frame longer than this as fatal. */
export const CLIENT_MAX_FRAME_LEN = 1 << 20;
/** ServerKey payload bounds a client accepts. */
export const SERVER_KEY_MIN_LEN = 40;
export const SERVER_KEY_MAX_LEN = 1024;
/** NaCl box overhead as Go seals it: Poly1305 tag. The nonce travels separately in front. */
export const BOX_OVERHEAD = 16;

/** Frame types, named as in the protocol. */
export const FrameType = {
  ServerKey: 0x01, //     S→C  magic(8) ∥ server public key(32)
  ClientInfo: 0x02, //    C→S  client public key(32) ∥ nonce(24) ∥ box(JSON)
  ServerInfo: 0x03, //    S→C  nonce(24) ∥ box(JSON)
  SendPacket: 0x04, //    C→S  dst key(32) ∥ packet
  RecvPacket: 0x05, //    S→C  src key(32) ∥ packet
  KeepAlive: 0x06, //     S→C  empty
  NotePreferred: 0x07, // C→S  1 byte, non-zero = home
  PeerGone: 0x08, //      S→C  key(32) ∥ reason(1)
  PeerPresent: 0x09, //   S→C  key(32) ∥ ip(16) ∥ port(2 BE) ∥ flags(1)
  ForwardPacket: 0x0a, // mesh C→S  src(32) ∥ dst(32) ∥ packet
  WatchConns: 0x10, //    mesh C→S  empty
  ClosePeer: 0x11, //     mesh C→S  key(32)
  Ping: 0x12, //          8 bytes
  Pong: 0x13, //          the 8 bytes of the ping
  Health: 0x14, //        S→C  UTF-8 problem text, empty = healthy
  Restarting: 0x15, //    S→C  reconnectIn ms(u32 BE) ∥ tryFor ms(u32 BE)
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

export const PeerGoneReason = {
  Disconnected: 0x00,
  NotHere: 0x01,
} as const;
export type PeerGoneReasonValue = (typeof PeerGoneReason)[keyof typeof PeerGoneReason];

/** PeerPresent flag bits; IsRegular is sent only when no other bit is set. */
export const PeerPresentFlags = {
  IsRegular: 0x01,
  IsMeshPeer: 0x02,
  IsProber: 0x04,
  NotIdeal: 0x08,
} as const;

/** PeerPresent payload: key(32) + ip(16) + port(2) + flags(1). */
export const PEER_PRESENT_LEN = 51;
/** Ping payload: exactly 8 opaque bytes are echoed. */
export const PING_LEN = 8;
/** A server closes a connection sending a Ping longer than this. */
export const MAX_PING_LEN = 1000;

/** `TS💬`: the disco magic; a payload is disco when it is at least DISCO_MIN_LEN long and starts with it. */
export const DISCO_MAGIC = Uint8Array.from([0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac]);
/** magic(6) + disco key(32) + nonce(24). */
export const DISCO_MIN_LEN = 62;

/** KeepAlive every 60 s plus per-connection jitter in [0, 5 s). */
export const KEEPALIVE_INTERVAL_MS = 60_000;
export const KEEPALIVE_JITTER_MS = 5_000;
