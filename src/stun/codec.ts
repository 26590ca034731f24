/**
 * STUN message codec (pure: no I/O, no timers, no randomness — callers pass transaction IDs).
 *
 * Follows spec/derp.md §15 (Tailscale's 40-byte `tailnode` request, derper's acceptance rules and its
 * XOR-MAPPED-ADDRESS-only response, the client's lenient response parsing) and RFC 5389 §6, §15 for generic
 * Binding requests/responses. The only import beyond this package is node:zlib's `crc32` (CRC-32/IEEE, pure).
 *
 * Error policy: request parsing never throws — `parseRequest` returns null for anything a server must ignore
 * silently (the server only needs "answer or not"). Response parsing throws a WiremeshError whose code
 * (`StunErrorCode`) says why, because a client logs/counts the reason. Encoders throw `stun_bad_argument` on a
 * transaction ID that is not 12 bytes or an address that is not an IP literal. No parser reads past the input.
 */
import { crc32 } from 'node:zlib';
import { WiremeshError } from '../errors.ts';
import type { AddrPort } from '../net/packet.ts';
import {
  Attr, AddressFamily, ATTR_HEADER_LEN, FINGERPRINT_ATTR_LEN, FINGERPRINT_XOR, HEADER_LEN, MAGIC_COOKIE,
  MAGIC_COOKIE_BYTES, MAX_SOFTWARE_LEN, MAX_UNKNOWN_ATTRIBUTES, MessageType, StunErrorCode, TAILNODE_SOFTWARE, TXID_LEN,
} from './constants.ts';
import { formatIp, isV4Mapped, parseIp } from '../net/ip.ts';

export type RequestKind = 'tailnode' | 'rfc5389';

/** A Binding request the server should answer. */
export interface StunRequest {
  /** Copy of the 12-byte transaction ID. */
  txid: Uint8Array;
  /** `tailnode`: passes derper's exact checks (answered exactly like derper); `rfc5389`: any other valid request. */
  kind: RequestKind;
  /** The request carried a (correct) FINGERPRINT; RFC 5389 servers mirror it in the response. */
  fingerprint: boolean;
  /** Comprehension-required attribute types we don't understand (RFC 5389 §7.3.1: answer 420). rfc5389 only. */
  unknownAttributes: number[];
}

export interface StunResponse {
  txid: Uint8Array;
  /** The reflexive address; IPv4-mapped IPv6 is unmapped. */
  address: AddrPort;
}

const TAILNODE_BYTES = new TextEncoder().encode(TAILNODE_SOFTWARE);
const textEncoder = new TextEncoder();

/** Comprehension-required attributes of RFC 5389 itself: understood (auth ones ignored; we run no auth). */
const KNOWN_REQUIRED = new Set<number>([
  Attr.MappedAddress, Attr.Username, Attr.MessageIntegrity, Attr.ErrorCode, Attr.UnknownAttributes, Attr.Realm,
  Attr.Nonce, Attr.XorMappedAddress,
]);

const u16 = (b: Uint8Array, o: number): number => (b[o]! << 8) | b[o + 1]!;
const u32 = (b: Uint8Array, o: number): number => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}
const pad4 = (n: number): number => (n + 3) & ~3;

/** CRC-32(IEEE) XOR "STUN" over `b` (RFC 5389 §15.5). */
export function fingerprint(b: Uint8Array): number {
  return (crc32(b) ^ FINGERPRINT_XOR) >>> 0;
}

function checkTxid(txid: Uint8Array): void {
  if (txid.length !== TXID_LEN) throw new WiremeshError(StunErrorCode.BadArgument, `transaction ID must be ${TXID_LEN} bytes, got ${txid.length}`);
}

/** STUN's "Is": ≥ 20 bytes, top two bits of byte 0 zero, magic cookie present (derper's first test). */
export function isStunMessage(b: Uint8Array): boolean {
  return b.length >= HEADER_LEN && (b[0]! & 0xc0) === 0 && u32(b, 4) === MAGIC_COOKIE;
}

/** A fresh copy of the txid (`new Uint8Array(view)` copies even when `b` is a Node Buffer, unlike Buffer#slice). */
function copyTxid(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.subarray(8, 8 + TXID_LEN));
}

/** The transaction ID of a message that passed `isStunMessage` (a view, not a copy). */
export function txidOf(b: Uint8Array): Uint8Array {
  return b.subarray(8, 8 + TXID_LEN);
}

function writeHeader(out: Uint8Array, type: number, bodyLen: number, txid: Uint8Array): void {
  put16(out, 0, type);
  put16(out, 2, bodyLen);
  out.set(MAGIC_COOKIE_BYTES, 4);
  out.set(txid, 8);
}

/** Appends FINGERPRINT over out[0..off) (the header length must already count it); returns the new end. */
function writeFingerprint(out: Uint8Array, off: number): number {
  put16(out, off, Attr.Fingerprint);
  put16(out, off + 2, 4);
  put32(out, off + 4, fingerprint(out.subarray(0, off)));
  return off + FINGERPRINT_ATTR_LEN;
}

/** Tailscale's 40-byte request: header, SOFTWARE `tailnode`, FINGERPRINT (spec/derp.md §15). */
export function buildTailnodeRequest(txid: Uint8Array): Uint8Array {
  return buildBindingRequest(txid, { software: TAILNODE_SOFTWARE, fingerprint: true });
}

/** A generic RFC 5389 Binding request, optionally with SOFTWARE and/or FINGERPRINT. */
export function buildBindingRequest(txid: Uint8Array, opts: { software?: string; fingerprint?: boolean } = {}): Uint8Array {
  checkTxid(txid);
  const sw = opts.software === undefined ? null : textEncoder.encode(opts.software);
  if (sw !== null && sw.length > MAX_SOFTWARE_LEN) throw new WiremeshError(StunErrorCode.BadArgument, 'SOFTWARE too long');
  const bodyLen = (sw === null ? 0 : ATTR_HEADER_LEN + pad4(sw.length)) + (opts.fingerprint ? FINGERPRINT_ATTR_LEN : 0);
  const out = new Uint8Array(HEADER_LEN + bodyLen);
  writeHeader(out, MessageType.BindingRequest, bodyLen, txid);
  let off = HEADER_LEN;
  if (sw !== null) {
    put16(out, off, Attr.Software);
    put16(out, off + 2, sw.length);
    out.set(sw, off + ATTR_HEADER_LEN);
    off += ATTR_HEADER_LEN + pad4(sw.length);
  }
  if (opts.fingerprint) writeFingerprint(out, off);
  return out;
}

/**
 * derper's exact acceptance test (spec/derp.md §15): STUN, type Binding request, attributes parse with 4-byte
 * padding over the whole datagram (the header length is not checked), some SOFTWARE equals `tailnode`, and
 * the last attribute is FINGERPRINT with the correct value. Returns a copy of the txid, or null.
 */
export function parseTailnodeRequest(b: Uint8Array): Uint8Array | null {
  if (!isStunMessage(b) || u16(b, 0) !== MessageType.BindingRequest) return null;
  let softwareOK = false;
  let lastAttr = -1;
  let gotFP = 0;
  for (let off = HEADER_LEN; off < b.length; ) {
    if (b.length - off < ATTR_HEADER_LEN) return null;
    const type = u16(b, off);
    const len = u16(b, off + 2);
    const start = off + ATTR_HEADER_LEN;
    if (pad4(len) > b.length - start) return null;
    lastAttr = type;
    if (type === Attr.Software && len === TAILNODE_BYTES.length && equalAt(b, start, TAILNODE_BYTES)) softwareOK = true;
    if (type === Attr.Fingerprint && len === 4) gotFP = u32(b, start);
    off = start + pad4(len);
  }
  if (!softwareOK || lastAttr !== Attr.Fingerprint) return null;
  if (gotFP !== fingerprint(b.subarray(0, b.length - FINGERPRINT_ATTR_LEN))) return null;
  return copyTxid(b);
}

function equalAt(b: Uint8Array, off: number, want: Uint8Array): boolean {
  for (let i = 0; i < want.length; i++) if (b[off + i] !== want[i]) return false;
  return true;
}

/**
 * A generic RFC 5389 Binding request (§7.3): header length a multiple of 4 that covers the datagram exactly
 * (one message per datagram, §7.1; so bytes after a FINGERPRINT make it "not last"), attributes well-formed inside it, and FINGERPRINT — if present — last and
 * correct. MESSAGE-INTEGRITY/USERNAME are accepted and ignored (this server runs no authentication).
 */
function parseGenericRequest(b: Uint8Array): StunRequest | null {
  if (!isStunMessage(b) || u16(b, 0) !== MessageType.BindingRequest) return null;
  const bodyLen = u16(b, 2);
  if (bodyLen % 4 !== 0 || HEADER_LEN + bodyLen !== b.length) return null;
  const end = HEADER_LEN + bodyLen;
  let fp = false;
  const unknown: number[] = [];
  for (let off = HEADER_LEN; off < end; ) {
    if (end - off < ATTR_HEADER_LEN) return null;
    const type = u16(b, off);
    const len = u16(b, off + 2);
    const start = off + ATTR_HEADER_LEN;
    if (pad4(len) > end - start) return null;
    const next = start + pad4(len);
    if (type === Attr.Fingerprint) {
      if (len !== 4 || next !== end) return null;
      if (u32(b, start) !== fingerprint(b.subarray(0, off))) return null;
      fp = true;
    } else if (type < 0x8000 && !KNOWN_REQUIRED.has(type) && unknown.length < MAX_UNKNOWN_ATTRIBUTES && !unknown.includes(type)) {
      unknown.push(type);
    }
    off = next;
  }
  return { txid: copyTxid(b), kind: 'rfc5389', fingerprint: fp, unknownAttributes: unknown };
}

/**
 * Classifies a datagram a STUN server received: a tailnode request (derper's rules), else a valid generic RFC
 * 5389 Binding request, else null (not STUN, not a Binding request, malformed, or bad FINGERPRINT: ignore).
 */
export function parseRequest(b: Uint8Array): StunRequest | null {
  const txid = parseTailnodeRequest(b);
  if (txid !== null) return { txid, kind: 'tailnode', fingerprint: true, unknownAttributes: [] };
  return parseGenericRequest(b);
}

/** Address bytes and family for a response; IPv4 and IPv4-mapped IPv6 both become family 1. */
function familyBytes(address: string): Uint8Array {
  const ip = parseIp(address);
  if (ip === null) throw new WiremeshError(StunErrorCode.BadArgument, `not an IP address: ${JSON.stringify(address)}`);
  return isV4Mapped(ip) ? ip.subarray(12) : ip;
}

/** XOR-MAPPED-ADDRESS value (RFC 5389 §15.2) at out[off..]; returns bytes written (8 or 20). */
function writeXorMapped(out: Uint8Array, off: number, txid: Uint8Array, ip: Uint8Array, port: number): number {
  out[off] = 0;
  out[off + 1] = ip.length === 4 ? AddressFamily.IPv4 : AddressFamily.IPv6;
  put16(out, off + 2, (port ^ (MAGIC_COOKIE >>> 16)) & 0xffff);
  for (let i = 0; i < ip.length; i++) {
    const key = i < 4 ? MAGIC_COOKIE_BYTES[i]! : txid[i - 4]!;
    out[off + 4 + i] = ip[i]! ^ key;
  }
  return 4 + ip.length;
}

/**
 * A Binding success response carrying only XOR-MAPPED-ADDRESS (exactly derper's, spec/derp.md §15), plus a
 * FINGERPRINT when `opts.fingerprint` (RFC 5389 servers mirror a request's FINGERPRINT).
 */
export function buildResponse(txid: Uint8Array, addr: AddrPort, opts: { fingerprint?: boolean } = {}): Uint8Array {
  checkTxid(txid);
  if (!Number.isInteger(addr.port) || addr.port < 0 || addr.port > 0xffff) throw new WiremeshError(StunErrorCode.BadArgument, `bad port ${addr.port}`);
  const ip = familyBytes(addr.address);
  const attrLen = 4 + ip.length;
  const bodyLen = ATTR_HEADER_LEN + attrLen + (opts.fingerprint ? FINGERPRINT_ATTR_LEN : 0);
  const out = new Uint8Array(HEADER_LEN + bodyLen);
  writeHeader(out, MessageType.BindingSuccessResponse, bodyLen, txid);
  put16(out, HEADER_LEN, Attr.XorMappedAddress);
  put16(out, HEADER_LEN + 2, attrLen);
  const off = HEADER_LEN + ATTR_HEADER_LEN + writeXorMapped(out, HEADER_LEN + ATTR_HEADER_LEN, txid, ip, addr.port);
  if (opts.fingerprint) writeFingerprint(out, off);
  return out;
}

/**
 * A Binding error response (RFC 5389 §15.6): ERROR-CODE, then UNKNOWN-ATTRIBUTES when given (code 420), then
 * FINGERPRINT when asked.
 */
export function buildErrorResponse(
  txid: Uint8Array,
  code: number,
  reason: string,
  opts: { unknownAttributes?: readonly number[]; fingerprint?: boolean } = {},
): Uint8Array {
  checkTxid(txid);
  if (!Number.isInteger(code) || code < 300 || code > 699) throw new WiremeshError(StunErrorCode.BadArgument, `bad error code ${code}`);
  const phrase = textEncoder.encode(reason).subarray(0, MAX_SOFTWARE_LEN);
  const unknown = (opts.unknownAttributes ?? []).slice(0, MAX_UNKNOWN_ATTRIBUTES);
  const ecLen = 4 + phrase.length;
  const uaLen = unknown.length * 2;
  const bodyLen = ATTR_HEADER_LEN + pad4(ecLen) + (uaLen > 0 ? ATTR_HEADER_LEN + pad4(uaLen) : 0) + (opts.fingerprint ? FINGERPRINT_ATTR_LEN : 0);
  const out = new Uint8Array(HEADER_LEN + bodyLen);
  writeHeader(out, MessageType.BindingErrorResponse, bodyLen, txid);
  let off = HEADER_LEN;
  put16(out, off, Attr.ErrorCode);
  put16(out, off + 2, ecLen);
  out[off + 6] = Math.floor(code / 100);
  out[off + 7] = code % 100;
  out.set(phrase, off + 8);
  off += ATTR_HEADER_LEN + pad4(ecLen);
  if (uaLen > 0) {
    put16(out, off, Attr.UnknownAttributes);
    put16(out, off + 2, uaLen);
    unknown.forEach((t, i) => put16(out, off + ATTR_HEADER_LEN + 2 * i, t));
    off += ATTR_HEADER_LEN + pad4(uaLen);
  }
  if (opts.fingerprint) writeFingerprint(out, off);
  return out;
}

const malformed = (what: string): WiremeshError => new WiremeshError(StunErrorCode.MalformedAttrs, `STUN response: ${what}`);

/** (XOR-)MAPPED-ADDRESS value → address, or null for an unknown family (ignored, as Go does). */
function decodeMapped(v: Uint8Array, txid: Uint8Array | null): AddrPort | null {
  if (v.length < 4) throw malformed('mapped address shorter than 4 bytes');
  const family = v[1];
  const n = family === AddressFamily.IPv4 ? 4 : family === AddressFamily.IPv6 ? 16 : 0;
  if (v.length - 4 < n) throw malformed('mapped address truncated');
  if (n === 0) return null;
  const ip = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const key = txid === null ? 0 : i < 4 ? MAGIC_COOKIE_BYTES[i]! : txid[i - 4]!;
    ip[i] = v[4 + i]! ^ key;
  }
  const port = txid === null ? u16(v, 2) : u16(v, 2) ^ (MAGIC_COOKIE >>> 16);
  return { address: formatIp(ip, true), port };
}

/**
 * Parses a Binding success response as Tailscale's client does (spec/derp.md §15): type 0x0101; body trimmed to
 * the header length (which must fit); XOR-MAPPED-ADDRESS (0x0020 or 0x8020, last one wins) preferred over
 * MAPPED-ADDRESS; v4-mapped addresses unmapped. Throws WiremeshError (`StunErrorCode`) otherwise.
 */
export function parseResponse(b: Uint8Array): StunResponse {
  if (!isStunMessage(b)) throw new WiremeshError(StunErrorCode.NotStun, 'not a STUN message');
  const txid = copyTxid(b);
  if (u16(b, 0) !== MessageType.BindingSuccessResponse) {
    throw new WiremeshError(StunErrorCode.NotSuccessResponse, `STUN message type 0x${u16(b, 0).toString(16).padStart(4, '0')} is not a Binding success response`);
  }
  const end = HEADER_LEN + u16(b, 2);
  if (end > b.length) throw malformed('length exceeds datagram');
  let xor: AddrPort | null = null;
  let plain: AddrPort | null = null;
  for (let off = HEADER_LEN; off < end; ) {
    if (end - off < ATTR_HEADER_LEN) throw malformed('truncated attribute header');
    const type = u16(b, off);
    const len = u16(b, off + 2);
    const start = off + ATTR_HEADER_LEN;
    if (pad4(len) > end - start) throw malformed('attribute overruns message');
    const v = b.subarray(start, start + len);
    if (type === Attr.XorMappedAddress || type === Attr.XorMappedAddressAlt) xor = decodeMapped(v, txid) ?? xor;
    else if (type === Attr.MappedAddress) plain = decodeMapped(v, null) ?? plain;
    off = start + pad4(len);
  }
  const address = xor ?? plain;
  if (address === null) throw new WiremeshError(StunErrorCode.NoAddress, 'STUN response has no usable mapped address');
  return { txid, address };
}
