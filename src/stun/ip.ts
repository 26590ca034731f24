/**
 * Pure textual-IP ⇄ bytes conversion for the STUN codec (RFC 4291 §2.2 input forms, RFC 5952 canonical output).
 * No I/O; rejects anything that is not a literal IPv4 or IPv6 address (a `%zone` suffix is dropped).
 */
import { WiremeshError } from '../errors.ts';
import { StunErrorCode } from './constants.ts';

const bad = (s: string): WiremeshError => new WiremeshError(StunErrorCode.BadArgument, `not an IP address: ${JSON.stringify(s)}`);

function parseV4Into(s: string, out: Uint8Array, off: number): boolean {
  const parts = s.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return false;
    const v = Number(p);
    if (v > 255) return false;
    out[off + i] = v;
  }
  return true;
}

/** 4 bytes for dotted IPv4, 16 bytes for IPv6 (an IPv4-mapped IPv6 stays 16 bytes). Throws `stun_bad_argument`. */
export function ipToBytes(text: string): Uint8Array {
  if (!text.includes(':')) {
    const out = new Uint8Array(4);
    if (!parseV4Into(text, out, 0)) throw bad(text);
    return out;
  }
  const pct = text.indexOf('%');
  let s = pct >= 0 ? text.slice(0, pct) : text;
  const out = new Uint8Array(16);
  // An embedded dotted quad (`::ffff:1.2.3.4`) stands for the last two groups.
  const lastColon = s.lastIndexOf(':');
  const v4 = s.slice(lastColon + 1).includes('.') ? s.slice(lastColon + 1) : null;
  if (v4 !== null) s = `${s.slice(0, lastColon + 1)}0:0`;
  const halves = s.split('::');
  if (halves.length > 2) throw bad(text);
  const groups = (h: string | undefined): string[] => (h === undefined || h === '' ? [] : h.split(':'));
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) throw bad(text);
  const put = (gs: string[], start: number): void => {
    gs.forEach((g, i) => {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw bad(text);
      const v = parseInt(g, 16);
      out[start + 2 * i] = v >> 8;
      out[start + 2 * i + 1] = v & 0xff;
    });
  };
  put(head, 0);
  put(tail, 16 - 2 * tail.length);
  if (v4 !== null && !parseV4Into(v4, out, 12)) throw bad(text);
  return out;
}

/** True for `::ffff:a.b.c.d` in byte form. */
export function isV4Mapped(b: Uint8Array): boolean {
  if (b.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** Text form: dotted quad for 4 bytes; RFC 5952 for 16 bytes (mapped addresses unmapped when `unmap`). */
export function bytesToIp(b: Uint8Array, unmap = false): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) throw new WiremeshError(StunErrorCode.BadArgument, `IP must be 4 or 16 bytes, got ${b.length}`);
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
