/**
 * Allocation-free STUN server codec for the batched UDP path (pure: no I/O, no timers, no randomness). The
 * same rules as src/stun/codec.ts — derper's tailnode acceptance test (spec/derp.md §15) and RFC 5389 §7.3
 * generic Binding requests — but reading a request at an offset of a shared receive slab and writing the
 * Binding success response at an offset of a shared send slab, from raw family / address bytes / port, so a
 * server answering a batch allocates nothing per packet (docs/stun.md "Batched UDP path").
 *
 * Equivalence with codec.ts is a tested property (test/unit/stun/codec-at.test.ts): `classifyRequestAt` agrees
 * with `parseRequest`/`parseTailnodeRequest`, `writeBindingResponseAt` produces `buildResponse`'s bytes, and
 * `crc32At` equals node:zlib's crc32. Rare answers (420 errors) stay on codec.ts's allocating builders.
 */
import {
  Attr, AddressFamily, ATTR_HEADER_LEN, FINGERPRINT_ATTR_LEN, FINGERPRINT_XOR, HEADER_LEN, MAGIC_COOKIE, MessageType,
  TAILNODE_SOFTWARE,
} from './constants.ts';

/** What a server should do with a datagram (numbers, so classification allocates nothing). */
export const RequestClass = {
  /** Not answered: not STUN, not a Binding request, malformed, bad FINGERPRINT (counted `not_stun`). */
  Ignore: 0,
  /** Passes derper's tailnode test: XOR-MAPPED-ADDRESS only, no FINGERPRINT. */
  Tailnode: 1,
  /** Valid RFC 5389 Binding request without FINGERPRINT. */
  Rfc5389: 2,
  /** Valid RFC 5389 Binding request with a correct FINGERPRINT (mirrored in the answer). */
  Rfc5389Fingerprint: 3,
  /** Valid RFC 5389 request with unknown comprehension-required attributes: answer 420 (codec.ts builds it). */
  UnknownAttribute: 4,
} as const;
export type RequestClass = (typeof RequestClass)[keyof typeof RequestClass];

/** Largest response `writeBindingResponseAt` writes: IPv6 XOR-MAPPED-ADDRESS + FINGERPRINT. */
export const MAX_BINDING_RESPONSE_LEN = HEADER_LEN + ATTR_HEADER_LEN + 20 + FINGERPRINT_ATTR_LEN;

const CRC_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32/IEEE of b[start..end) (same value as node:zlib's crc32), without a subarray. */
export function crc32At(b: Uint8Array, start: number, end: number): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const u16 = (b: Uint8Array, o: number): number => (b[o]! << 8) | b[o + 1]!;
const u32 = (b: Uint8Array, o: number): number => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
const pad4 = (n: number): number => (n + 3) & ~3;
const TAILNODE = Uint8Array.from(TAILNODE_SOFTWARE, (c) => c.charCodeAt(0));
/** Comprehension-required attributes RFC 5389 itself defines (same set as codec.ts). */
const KNOWN_REQUIRED = new Set<number>([
  Attr.MappedAddress, Attr.Username, Attr.MessageIntegrity, Attr.ErrorCode, Attr.UnknownAttributes, Attr.Realm,
  Attr.Nonce, Attr.XorMappedAddress,
]);

function isBindingRequestAt(b: Uint8Array, off: number, len: number): boolean {
  return len >= HEADER_LEN && (b[off]! & 0xc0) === 0 && u32(b, off + 4) === MAGIC_COOKIE && u16(b, off) === MessageType.BindingRequest;
}

/** derper's test (codec.ts `parseTailnodeRequest`) on b[off..off+len). */
export function isTailnodeRequestAt(b: Uint8Array, off: number, len: number): boolean {
  if (!isBindingRequestAt(b, off, len)) return false;
  const end = off + len;
  let softwareOK = false;
  let lastAttr = -1;
  let gotFP = 0;
  for (let p = off + HEADER_LEN; p < end; ) {
    if (end - p < ATTR_HEADER_LEN) return false;
    const type = u16(b, p);
    const alen = u16(b, p + 2);
    const start = p + ATTR_HEADER_LEN;
    if (pad4(alen) > end - start) return false;
    lastAttr = type;
    if (type === Attr.Software && alen === TAILNODE.length && equalAt(b, start, TAILNODE)) softwareOK = true;
    if (type === Attr.Fingerprint && alen === 4) gotFP = u32(b, start);
    p = start + pad4(alen);
  }
  if (!softwareOK || lastAttr !== Attr.Fingerprint) return false;
  return gotFP === (crc32At(b, off, end - FINGERPRINT_ATTR_LEN) ^ FINGERPRINT_XOR) >>> 0;
}

function equalAt(b: Uint8Array, off: number, want: Uint8Array): boolean {
  for (let i = 0; i < want.length; i++) if (b[off + i] !== want[i]) return false;
  return true;
}

/** RFC 5389 §7.3 test (codec.ts `parseGenericRequest`) on b[off..off+len). */
function classifyGenericAt(b: Uint8Array, off: number, len: number): RequestClass {
  if (!isBindingRequestAt(b, off, len)) return RequestClass.Ignore;
  const bodyLen = u16(b, off + 2);
  if (bodyLen % 4 !== 0 || HEADER_LEN + bodyLen !== len) return RequestClass.Ignore;
  const end = off + len;
  let fp = false;
  let unknown = false;
  for (let p = off + HEADER_LEN; p < end; ) {
    if (end - p < ATTR_HEADER_LEN) return RequestClass.Ignore;
    const type = u16(b, p);
    const alen = u16(b, p + 2);
    const start = p + ATTR_HEADER_LEN;
    if (pad4(alen) > end - start) return RequestClass.Ignore;
    const next = start + pad4(alen);
    if (type === Attr.Fingerprint) {
      if (alen !== 4 || next !== end) return RequestClass.Ignore;
      if (u32(b, start) !== (crc32At(b, off, p) ^ FINGERPRINT_XOR) >>> 0) return RequestClass.Ignore;
      fp = true;
    } else if (type < 0x8000 && !KNOWN_REQUIRED.has(type)) {
      unknown = true;
    }
    p = next;
  }
  if (unknown) return RequestClass.UnknownAttribute;
  return fp ? RequestClass.Rfc5389Fingerprint : RequestClass.Rfc5389;
}

/**
 * Classifies the datagram b[off..off+len) exactly as the server's codec.ts path does: tailnode first; with
 * `strictTailnode` nothing else is answered.
 */
export function classifyRequestAt(b: Uint8Array, off: number, len: number, strictTailnode: boolean): RequestClass {
  if (isTailnodeRequestAt(b, off, len)) return RequestClass.Tailnode;
  return strictTailnode ? RequestClass.Ignore : classifyGenericAt(b, off, len);
}

/**
 * Writes a Binding success response (XOR-MAPPED-ADDRESS, plus FINGERPRINT when `fingerprint`) at out[off..]:
 * the transaction ID is txid[txidOff..txidOff+12) (e.g. the request itself at its offset + 8), the address is
 * addr[addrOff..+4) for family 4 or addr[addrOff..+16) for family 6 (never IPv4-mapped: pass family 4 for
 * those), `port` a 16-bit value. Returns the length written (32, 40, 44 or 52). Same bytes as codec.ts
 * `buildResponse`. The caller guarantees room for MAX_BINDING_RESPONSE_LEN bytes and valid arguments.
 */
export function writeBindingResponseAt(
  out: Uint8Array, off: number, txid: Uint8Array, txidOff: number, family: 4 | 6, addr: Uint8Array, addrOff: number,
  port: number, fingerprint: boolean,
): number {
  const ipLen = family === 4 ? 4 : 16;
  const attrLen = 4 + ipLen;
  const bodyLen = ATTR_HEADER_LEN + attrLen + (fingerprint ? FINGERPRINT_ATTR_LEN : 0);
  out[off] = MessageType.BindingSuccessResponse >>> 8;
  out[off + 1] = MessageType.BindingSuccessResponse & 0xff;
  out[off + 2] = bodyLen >>> 8;
  out[off + 3] = bodyLen & 0xff;
  out[off + 4] = 0x21;
  out[off + 5] = 0x12;
  out[off + 6] = 0xa4;
  out[off + 7] = 0x42;
  for (let i = 0; i < 12; i++) out[off + 8 + i] = txid[txidOff + i]!;
  let p = off + HEADER_LEN;
  out[p] = Attr.XorMappedAddress >>> 8;
  out[p + 1] = Attr.XorMappedAddress & 0xff;
  out[p + 2] = 0;
  out[p + 3] = attrLen;
  out[p + 4] = 0;
  out[p + 5] = family === 4 ? AddressFamily.IPv4 : AddressFamily.IPv6;
  const xport = (port ^ (MAGIC_COOKIE >>> 16)) & 0xffff;
  out[p + 6] = xport >>> 8;
  out[p + 7] = xport & 0xff;
  // The XOR key is the cookie then the transaction ID: exactly the header bytes 4..20 just written.
  for (let i = 0; i < ipLen; i++) out[p + 8 + i] = addr[addrOff + i]! ^ out[off + 4 + i]!;
  p += ATTR_HEADER_LEN + attrLen;
  if (fingerprint) {
    const fp = (crc32At(out, off, p) ^ FINGERPRINT_XOR) >>> 0;
    out[p] = Attr.Fingerprint >>> 8;
    out[p + 1] = Attr.Fingerprint & 0xff;
    out[p + 2] = 0;
    out[p + 3] = 4;
    out[p + 4] = fp >>> 24;
    out[p + 5] = (fp >>> 16) & 0xff;
    out[p + 6] = (fp >>> 8) & 0xff;
    out[p + 7] = fp & 0xff;
    p += FINGERPRINT_ATTR_LEN;
  }
  return p - off;
}
