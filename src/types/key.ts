/**
 * Curve25519 keys as Tailscale writes them (spec/derp.md §2): 32 raw bytes; typed text forms `nodekey:`,
 * `privkey:`, `discokey:` + 64 lowercase hex; untyped hex (Derp-Public-Key header, meta-cert CN, mesh key);
 * short debug form `[` + first 5 base64 chars + `]`.
 */
import { x25519Public } from './x25519.ts';
import { WiremeshError } from '../errors.ts';

export const KEY_LEN = 32;

declare const nodePublicBrand: unique symbol;
declare const privateBrand: unique symbol;
declare const discoPublicBrand: unique symbol;

/** A node's public key (WireGuard key), 32 bytes. */
export type NodePublic = Uint8Array & { readonly [nodePublicBrand]: true };
/** A private key, 32 clamped bytes. */
export type NodePrivate = Uint8Array & { readonly [privateBrand]: true };
/** A disco public key, 32 bytes. */
export type DiscoPublic = Uint8Array & { readonly [discoPublicBrand]: true };

const HEX64 = /^[0-9a-fA-F]{64}$/;

function keyError(message: string): WiremeshError {
  return new WiremeshError('invalid_key', message);
}

function fromHex(hex: string, what: string): Uint8Array {
  if (!HEX64.test(hex)) throw keyError(`${what}: want 64 hex digits`);
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

function checkLen(b: Uint8Array, what: string): void {
  if (b.length !== KEY_LEN) throw keyError(`${what}: want ${KEY_LEN} bytes, got ${b.length}`);
}

export function nodePublicFromBytes(b: Uint8Array): NodePublic {
  checkLen(b, 'node public key');
  return Uint8Array.from(b) as NodePublic;
}

export function discoPublicFromBytes(b: Uint8Array): DiscoPublic {
  checkLen(b, 'disco public key');
  return Uint8Array.from(b) as DiscoPublic;
}

export function privateFromBytes(b: Uint8Array): NodePrivate {
  checkLen(b, 'private key');
  return Uint8Array.from(b) as NodePrivate;
}

/** Clamps 32 random bytes into an X25519 private key, as Tailscale does when it generates one. */
export function clamp(b: Uint8Array): NodePrivate {
  const k = Uint8Array.from(b);
  k[0] = k[0]! & 248;
  k[31] = (k[31]! & 127) | 64;
  return k as NodePrivate;
}

/** A fresh random private key. */
export function generatePrivate(random: (n: number) => Uint8Array = (n) => crypto.getRandomValues(new Uint8Array(n))): NodePrivate {
  return clamp(random(KEY_LEN));
}

export function publicFromPrivate(priv: NodePrivate): NodePublic {
  return x25519Public(priv) as NodePublic;
}

export function toHex(k: Uint8Array): string {
  return Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString('hex');
}

export function isZeroKey(k: Uint8Array): boolean {
  let acc = 0;
  for (const b of k) acc |= b;
  return acc === 0;
}

export const nodePublicText = (k: NodePublic): string => `nodekey:${toHex(k)}`;
export const privateText = (k: NodePrivate): string => `privkey:${toHex(k)}`;
export const discoPublicText = (k: DiscoPublic): string => `discokey:${toHex(k)}`;

function parsePrefixed(text: string, prefix: string): Uint8Array {
  if (!text.startsWith(prefix)) throw keyError(`key ${JSON.stringify(text.slice(0, 16))}: want prefix ${prefix}`);
  return fromHex(text.slice(prefix.length), prefix);
}

export const parseNodePublic = (text: string): NodePublic => parsePrefixed(text, 'nodekey:') as NodePublic;
export const parsePrivate = (text: string): NodePrivate => parsePrefixed(text, 'privkey:') as NodePrivate;
export const parseDiscoPublic = (text: string): DiscoPublic => parsePrefixed(text, 'discokey:') as DiscoPublic;
/** Untyped 64-hex form (Derp-Public-Key header, meta-cert CN). */
export const parseUntypedPublic = (hex: string): NodePublic => fromHex(hex, 'public key') as NodePublic;

/** `[abcde]`: the short form Tailscale logs use. */
export function shortKey(k: Uint8Array): string {
  return `[${Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString('base64').slice(0, 5)}]`;
}

/** A Map-friendly identity for a key (latin1 string of its bytes; cheap to build, exact). */
export function keyId(k: Uint8Array): string {
  return Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString('latin1');
}

/** Constant-time equality of two byte strings of equal length. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let acc = 0;
  for (let i = 0; i < a.length; i++) acc |= a[i]! ^ b[i]!;
  return acc === 0;
}
