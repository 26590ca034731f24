/**
 * IPv4 / IPv4-mapped-IPv6 byte helpers for the NAT-PMP and PCP codecs (RFC 6887 §5: PCP carries IPv4 addresses as
 * IPv4-mapped IPv6). Pure.
 */
import { WiremeshError } from '../errors.ts';
import { PortmapErrorCode } from './constants.ts';

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses dotted IPv4 into 4 bytes; throws PORTMAP_MALFORMED otherwise. */
export function ipv4Bytes(address: string): Uint8Array {
  const m = IPV4_RE.exec(address);
  const parts = m === null ? [] : m.slice(1).map(Number);
  if (parts.length !== 4 || parts.some((p) => p > 255)) {
    throw new WiremeshError(PortmapErrorCode.Malformed, `not an IPv4 address: ${JSON.stringify(address)}`);
  }
  return Uint8Array.from(parts);
}

export function isIPv4(address: string): boolean {
  const m = IPV4_RE.exec(address);
  return m !== null && m.slice(1).every((p) => Number(p) <= 255);
}

export function formatIPv4(b: Uint8Array, offset = 0): string {
  return `${b[offset]}.${b[offset + 1]}.${b[offset + 2]}.${b[offset + 3]}`;
}

/** 16 bytes `::ffff:a.b.c.d`. */
export function v4MappedBytes(address: string): Uint8Array {
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(ipv4Bytes(address), 12);
  return out;
}

/** Reads a 16-byte address: IPv4-mapped → dotted IPv4, anything else → full IPv6 text (uncompressed). */
export function formatIp16(b: Uint8Array, offset: number): string {
  let mapped = true;
  for (let i = 0; i < 10; i++) if (b[offset + i] !== 0) mapped = false;
  if (mapped && b[offset + 10] === 0xff && b[offset + 11] === 0xff) return formatIPv4(b, offset + 12);
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((b[offset + i] ?? 0) << 8) | (b[offset + i + 1] ?? 0)).toString(16));
  return groups.join(':');
}
