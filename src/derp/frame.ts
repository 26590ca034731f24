/**
 * DERP frame codec (spec/derp.md §4): pure encoders for every frame type and an incremental reader that
 * accepts any TCP chunking, checks the length against a limit *before* buffering, and copies only the bytes of a
 * frame that straddles chunks.
 */
import { WiremeshError } from '../errors.ts';
import { ByteQueue } from '../net/byte-queue.ts';
import {
  DISCO_MAGIC, DISCO_MIN_LEN, FRAME_HEADER_LEN, FrameType, KEY_LEN, MAGIC, PEER_PRESENT_LEN, type FrameTypeValue,
  type PeerGoneReasonValue,
} from './constants.ts';

/** A copy of bytes [start, end) as a plain Uint8Array (Buffer#slice would be a view that pins the chunk). */
function copyBytes(p: Uint8Array, start: number, end: number): Uint8Array {
  return Uint8Array.from(p.subarray(start, end));
}

export interface Frame {
  type: number;
  /** The payload; a view that is only valid until the next push() unless copied. */
  payload: Uint8Array;
}

/** Writes a frame header into `out` at `offset`. */
export function writeHeader(out: Uint8Array, offset: number, type: number, length: number): void {
  out[offset] = type;
  out[offset + 1] = length >>> 24;
  out[offset + 2] = (length >>> 16) & 0xff;
  out[offset + 3] = (length >>> 8) & 0xff;
  out[offset + 4] = length & 0xff;
}

/** A whole frame from a type and payload parts (concatenated). */
export function encodeFrame(type: FrameTypeValue | number, ...parts: Uint8Array[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = Buffer.allocUnsafe(FRAME_HEADER_LEN + len);
  writeHeader(out, 0, type, len);
  let o = FRAME_HEADER_LEN;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export const encodeServerKey = (serverPublic: Uint8Array): Buffer => encodeFrame(FrameType.ServerKey, MAGIC, serverPublic);
export const encodeSendPacket = (dst: Uint8Array, packet: Uint8Array): Buffer => encodeFrame(FrameType.SendPacket, dst, packet);
export const encodeRecvPacket = (src: Uint8Array, packet: Uint8Array): Buffer => encodeFrame(FrameType.RecvPacket, src, packet);
export const encodeForwardPacket = (src: Uint8Array, dst: Uint8Array, packet: Uint8Array): Buffer =>
  encodeFrame(FrameType.ForwardPacket, src, dst, packet);
export const encodeKeepAlive = (): Buffer => encodeFrame(FrameType.KeepAlive);
export const encodeNotePreferred = (preferred: boolean): Buffer => encodeFrame(FrameType.NotePreferred, Uint8Array.of(preferred ? 1 : 0));
export const encodePeerGone = (key: Uint8Array, reason: PeerGoneReasonValue): Buffer => encodeFrame(FrameType.PeerGone, key, Uint8Array.of(reason));
export const encodeWatchConns = (): Buffer => encodeFrame(FrameType.WatchConns);
export const encodeClosePeer = (key: Uint8Array): Buffer => encodeFrame(FrameType.ClosePeer, key);
export const encodePing = (data: Uint8Array): Buffer => encodeFrame(FrameType.Ping, data);
export const encodePong = (data: Uint8Array): Buffer => encodeFrame(FrameType.Pong, data);
export const encodeHealth = (problem: string): Buffer => encodeFrame(FrameType.Health, Buffer.from(problem, 'utf8'));

export function encodeRestarting(reconnectInMs: number, tryForMs: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(reconnectInMs, 0);
  b.writeUInt32BE(tryForMs, 4);
  return encodeFrame(FrameType.Restarting, b);
}

/** IPv4 addresses are written IPv4-mapped (`::ffff:a.b.c.d`); an unknown address is all zeros. */
export function encodePeerPresent(key: Uint8Array, ip16: Uint8Array, port: number, flags: number): Buffer {
  const b = Buffer.alloc(PEER_PRESENT_LEN);
  b.set(key, 0);
  b.set(ip16, KEY_LEN);
  b.writeUInt16BE(port, KEY_LEN + 16);
  b[KEY_LEN + 18] = flags;
  return encodeFrame(FrameType.PeerPresent, b);
}

export interface PeerPresent {
  key: Uint8Array;
  /** 16 bytes, or null when the frame carried only the key. */
  ip16: Uint8Array | null;
  port: number;
  flags: number;
}

/** Parses a PeerPresent payload: 32 bytes (key only), 50 (no flags) or 51+. */
export function decodePeerPresent(p: Uint8Array): PeerPresent {
  if (p.length < KEY_LEN) throw new WiremeshError('short_peer_present', `PeerPresent of ${p.length} bytes`);
  const key = copyBytes(p, 0, KEY_LEN);
  if (p.length < KEY_LEN + 18) return { key, ip16: null, port: 0, flags: 0 };
  const ip16 = copyBytes(p, KEY_LEN, KEY_LEN + 16);
  const port = (p[KEY_LEN + 16]! << 8) | p[KEY_LEN + 17]!;
  const flags = p.length > KEY_LEN + 18 ? p[KEY_LEN + 18]! : 0;
  return { key, ip16, port, flags };
}

export interface PeerGone {
  key: Uint8Array;
  reason: number;
}

/** Parses a PeerGone payload: 32 bytes (reason 0) or 33+. */
export function decodePeerGone(p: Uint8Array): PeerGone {
  if (p.length < KEY_LEN) throw new WiremeshError('short_peer_gone', `PeerGone of ${p.length} bytes`);
  return { key: copyBytes(p, 0, KEY_LEN), reason: p.length > KEY_LEN ? p[KEY_LEN]! : 0 };
}

export interface Restarting {
  reconnectInMs: number;
  tryForMs: number;
}

export function decodeRestarting(p: Uint8Array): Restarting {
  if (p.length < 8) throw new WiremeshError('short_restarting', `Restarting of ${p.length} bytes`);
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  return { reconnectInMs: v.getUint32(0), tryForMs: v.getUint32(4) };
}

/** Parses a ServerKey payload and returns the server key; checks the magic. */
export function decodeServerKey(p: Uint8Array): Uint8Array {
  if (p.length < MAGIC.length + KEY_LEN) throw new WiremeshError('short_server_key', `ServerKey of ${p.length} bytes`);
  for (let i = 0; i < MAGIC.length; i++) {
    if (p[i] !== MAGIC[i]) throw new WiremeshError('bad_magic', 'ServerKey without the DERP magic');
  }
  return copyBytes(p, MAGIC.length, MAGIC.length + KEY_LEN);
}

/** A payload (`packet[off, end)`) is disco when it is ≥ 62 bytes and starts with `TS💬` (spec §9.1). */
export function looksLikeDisco(packet: Uint8Array, off = 0, end = packet.length): boolean {
  if (end - off < DISCO_MIN_LEN) return false;
  for (let i = 0; i < DISCO_MAGIC.length; i++) if (packet[off + i] !== DISCO_MAGIC[i]) return false;
  return true;
}

/** Decides the largest payload allowed for a frame type before its payload is buffered. */
export type FrameLimit = (type: number) => number;

/**
 * Incremental frame reader. push() chunks as they arrive; next() returns complete frames in order, or null when
 * more bytes are needed. A header whose length exceeds the limit for its type throws `frame_too_large` before
 * any payload is buffered, so memory per connection stays bounded by the limit.
 */
export class FrameReader {
  readonly #limit: FrameLimit;
  readonly #q = new ByteQueue();

  constructor(limit: FrameLimit) {
    this.#limit = limit;
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#q.length;
  }

  push(chunk: Uint8Array): void {
    this.#q.push(chunk);
  }

  /** Peeks the type and length of the next frame once its header is complete. */
  peekHeader(): { type: number; length: number } | null {
    const q = this.#q;
    if (q.length < FRAME_HEADER_LEN) return null;
    return { type: q.at(0), length: ((q.at(1) << 24) | (q.at(2) << 16) | (q.at(3) << 8) | q.at(4)) >>> 0 };
  }

  next(): Frame | null {
    const h = this.peekHeader();
    if (h === null) return null;
    const max = this.#limit(h.type);
    if (h.length > max) {
      throw new WiremeshError('frame_too_large', `frame type 0x${h.type.toString(16)} of ${h.length} bytes exceeds ${max}`);
    }
    if (this.#q.length < FRAME_HEADER_LEN + h.length) return null;
    this.#q.discard(FRAME_HEADER_LEN);
    return { type: h.type, payload: this.#q.take(h.length) };
  }

  /** The unread bytes (for handing a stream over to another parser). */
  drain(): Buffer {
    return Buffer.from(this.#q.take(this.#q.length));
  }
}
