/**
 * Pure textual-IP ⇄ bytes conversion shared by the wire codecs (STUN XOR-MAPPED-ADDRESS, RFC 8489 §14.2; NAT-PMP,
 * RFC 6886 §3.2; PCP's IPv4-mapped IPv6 fields, RFC 6887 §5). Input forms per RFC 4291 §2.2 (a `%zone` suffix is
 * dropped, an embedded dotted quad is accepted); output per RFC 5952. No I/O. Parsers return null for anything
 * that is not a literal address, so each codec can throw its own typed error.
 */
import { WiremeshError } from '../errors.ts';

/** Error codes (WiremeshError.code). */
export const IpErrorCode = {
  /** formatIp was handed bytes that are neither 4 nor 16 long (a caller bug, never wire input). */
  BadLength: 'ip_bad_length',
} as const;

function parseV4Into(s: string, out: Uint8Array, off: number): boolean {
  const parts = s.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    // No leading zeros: `01.2.3.4` is ambiguous (octal in some parsers) and Go's netip rejects it too.
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return false;
    const v = Number(p);
    if (v > 255) return false;
    out[off + i] = v;
  }
  return true;
}

/** 4 bytes for a dotted IPv4 literal, else null. */
export function parseIPv4(text: string): Uint8Array | null {
  const out = new Uint8Array(4);
  return parseV4Into(text, out, 0) ? out : null;
}

/** 4 bytes for dotted IPv4, 16 bytes for IPv6 (an IPv4-mapped IPv6 stays 16 bytes), null for anything else. */
export function parseIp(text: string): Uint8Array | null {
  if (!text.includes(':')) return parseIPv4(text);
  const pct = text.indexOf('%');
  let s = pct >= 0 ? text.slice(0, pct) : text;
  const out = new Uint8Array(16);
  // An embedded dotted quad (`::ffff:1.2.3.4`) stands for the last two groups.
  const lastColon = s.lastIndexOf(':');
  const v4 = s.slice(lastColon + 1).includes('.') ? s.slice(lastColon + 1) : null;
  if (v4 !== null) s = `${s.slice(0, lastColon + 1)}0:0`;
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groups = (h: string | undefined): string[] => (h === undefined || h === '' ? [] : h.split(':'));
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) return null;
  const put = (gs: string[], start: number): boolean =>
    gs.every((g, i) => {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return false;
      const v = parseInt(g, 16);
      out[start + 2 * i] = v >> 8;
      out[start + 2 * i + 1] = v & 0xff;
      return true;
    });
  if (!put(head, 0) || !put(tail, 16 - 2 * tail.length)) return null;
  if (v4 !== null && !parseV4Into(v4, out, 12)) return null;
  return out;
}

/** True for `::ffff:a.b.c.d` in byte form. */
export function isV4Mapped(b: Uint8Array): boolean {
  if (b.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** The 16-byte IPv4-mapped form (`::ffff:a.b.c.d`) of 4 IPv4 bytes. */
export function v4Mapped(v4: Uint8Array): Uint8Array {
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(v4.subarray(0, 4), 12);
  return out;
}

/** Text form: dotted quad for 4 bytes; RFC 5952 for 16 bytes (mapped addresses as dotted quads when `unmap`). */
export function formatIp(b: Uint8Array, unmap = false): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) throw new WiremeshError(IpErrorCode.BadLength, `IP must be 4 or 16 bytes, got ${b.length}`);
  if (unmap && isV4Mapped(b)) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i]! << 8) | b[i + 1]!);
  // Longest run of ≥ 2 zero groups (first one on ties) becomes `::`.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}
