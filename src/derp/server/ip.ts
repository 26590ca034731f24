/**
 * Remote-address helpers for PeerPresent (spec/derp.md §4.1, §21): the 16-byte form with IPv4 written
 * IPv4-mapped (`::ffff:a.b.c.d`), all zeros when the address is unknown or unparsable. Pure, no I/O.
 */

const ZERO16 = new Uint8Array(16);

function parseV4(s: string, out: Uint8Array, at: number): boolean {
  const parts = s.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p)) return false;
    const n = Number(p);
    if (n > 255) return false;
    out[at + i] = n;
  }
  return true;
}

/** `1.2.3.4` → ::ffff:1.2.3.4; IPv6 (optionally with a zone or an embedded IPv4 tail) → its 16 bytes; else zeros. */
export function ip16(address: string): Uint8Array {
  const out = new Uint8Array(16);
  if (!address.includes(':')) {
    if (!parseV4(address, out, 12)) return ZERO16.slice();
    out[10] = 0xff;
    out[11] = 0xff;
    return out;
  }
  let s = address;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const halves = s.split('::');
  if (halves.length > 2) return ZERO16.slice();
  const words = (h: string): string[] => (h === '' ? [] : h.split(':'));
  const head = words(halves[0]!);
  const tail = halves.length === 2 ? words(halves[1]!) : [];
  const groups: number[] = [];
  const v4tail = new Uint8Array(4);
  let hasV4 = false;
  const all = [...head, ...tail];
  const last = all[all.length - 1];
  if (last !== undefined && last.includes('.')) {
    if (!parseV4(last, v4tail, 0)) return ZERO16.slice();
    hasV4 = true;
    if (tail.length > 0) tail.pop();
    else head.pop();
  }
  const width = 8 - (hasV4 ? 2 : 0);
  const fill = width - head.length - tail.length;
  if (halves.length === 2 ? fill < 0 : fill !== 0) return ZERO16.slice();
  for (const w of [...head, ...Array<string>(fill).fill('0'), ...tail]) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return ZERO16.slice();
    groups.push(parseInt(w, 16));
  }
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  if (hasV4) out.set(v4tail, 12);
  return out;
}
