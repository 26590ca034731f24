/**
 * A minimal ASN.1 DER writer (X.690 §10): just the types X.509 certificates need (spec/derp.md §3.3, §16.1
 * manual cert mode). Pure: builds bytes, never parses, no I/O.
 */
import { WiremeshError } from '../errors.ts';

/** DER tag bytes used by the certificate builder. */
export const Tag = {
  Boolean: 0x01,
  Integer: 0x02,
  BitString: 0x03,
  OctetString: 0x04,
  Null: 0x05,
  ObjectIdentifier: 0x06,
  Utf8String: 0x0c,
  PrintableString: 0x13,
  UtcTime: 0x17,
  GeneralizedTime: 0x18,
  Sequence: 0x30,
  Set: 0x31,
} as const;

/** Encodes a DER length (short form below 128, long form otherwise). */
export function derLength(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new WiremeshError('asn1_length', `bad DER length ${n}`);
  if (n < 0x80) return Uint8Array.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Uint8Array.from([0x80 | bytes.length, ...bytes]);
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Tag ∥ length ∥ content. */
export function tlv(tag: number, content: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(tag), derLength(content.length), content]);
}

export const sequence = (...items: Uint8Array[]): Uint8Array => tlv(Tag.Sequence, concat(items));

/** SET OF, with elements sorted by their encodings as DER requires. */
export function setOf(...items: Uint8Array[]): Uint8Array {
  const sorted = [...items].sort((a, b) => Buffer.compare(a, b));
  return tlv(Tag.Set, concat(sorted));
}

/** Context-specific constructed tag [n] EXPLICIT. */
export const explicit = (n: number, inner: Uint8Array): Uint8Array => tlv(0xa0 | n, inner);

/** Context-specific primitive tag [n] IMPLICIT (e.g. GeneralName iPAddress is [7]). */
export const implicitPrimitive = (n: number, content: Uint8Array): Uint8Array => tlv(0x80 | n, content);

export const boolean = (v: boolean): Uint8Array => tlv(Tag.Boolean, Uint8Array.of(v ? 0xff : 0x00));

export const nullValue = (): Uint8Array => tlv(Tag.Null, new Uint8Array(0));

export const octetString = (b: Uint8Array): Uint8Array => tlv(Tag.OctetString, b);

/** BIT STRING with no unused bits (signatures, keys). */
export const bitString = (b: Uint8Array): Uint8Array => tlv(Tag.BitString, concat([Uint8Array.of(0), b]));

/** A non-negative INTEGER from its unsigned big-endian magnitude, in minimal two's-complement form. */
export function unsignedInteger(magnitude: Uint8Array): Uint8Array {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  let body = magnitude.subarray(start);
  if (body.length === 0) body = Uint8Array.of(0);
  if ((body[0]! & 0x80) !== 0) body = concat([Uint8Array.of(0), body]);
  return tlv(Tag.Integer, body);
}

export function smallInteger(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new WiremeshError('asn1_integer', `unsupported INTEGER ${n}`);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return unsignedInteger(Uint8Array.from(bytes));
}

/** OBJECT IDENTIFIER from dotted form, e.g. "2.5.4.3". */
export function oid(dotted: string): Uint8Array {
  const arcs = dotted.split('.').map((s) => {
    if (!/^\d+$/.test(s)) throw new WiremeshError('asn1_oid', `bad OID ${dotted}`);
    return Number(s);
  });
  const [a, b, ...rest] = arcs;
  if (a === undefined || b === undefined || a > 2 || (a < 2 && b > 39)) throw new WiremeshError('asn1_oid', `bad OID ${dotted}`);
  const out: number[] = [];
  for (const arc of [a * 40 + b, ...rest]) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(Tag.ObjectIdentifier, Uint8Array.from(out));
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** PrintableString when the text fits its alphabet (as Go does), else UTF8String. */
export function directoryString(s: string): Uint8Array {
  const tag = PRINTABLE.test(s) ? Tag.PrintableString : Tag.Utf8String;
  return tlv(tag, new TextEncoder().encode(s));
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** X.509 Time: UTCTime for years 1950–2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5). Seconds precision. */
export function time(ms: number): Uint8Array {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) throw new WiremeshError('asn1_time', 'bad time');
  const y = d.getUTCFullYear();
  const rest = `${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}Z`;
  const enc = new TextEncoder();
  if (y >= 1950 && y < 2050) return tlv(Tag.UtcTime, enc.encode(pad(y % 100) + rest));
  return tlv(Tag.GeneralizedTime, enc.encode(pad(y, 4) + rest));
}
