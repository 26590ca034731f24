/**
 * Remote-address helpers for PeerPresent (spec/derp.md §4.1, §21): the 16-byte form with IPv4 written
 * IPv4-mapped (`::ffff:a.b.c.d`), all zeros when the address is unknown or unparsable. Pure, no I/O.
 */
import { parseIp, v4Mapped } from '../../net/ip.ts';

/** `1.2.3.4` → ::ffff:1.2.3.4; IPv6 (optionally with a zone or an embedded IPv4 tail) → its 16 bytes; else zeros. */
export function ip16(address: string): Uint8Array {
  const b = parseIp(address);
  if (b === null) return new Uint8Array(16);
  return b.length === 4 ? v4Mapped(b) : b;
}
