/**
 * Properties of the DERP client's frame decoder and the `wiremesh derp` argument parsers: arbitrary input either
 * decodes or fails with a typed WiremeshError, never anything else; known layouts round-trip.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { decodeServerFrame, ip16ToString } from '../../../src/derp/client-messages.ts';
import { encodePeerGone, encodePeerPresent } from '../../../src/derp/frame.ts';
import { parseMeshPsk, parsePeerKey, parsePrivateKeyFile } from '../../../src/cli/derp.ts';
import { returnsOrThrowsTyped } from '../typed-errors.ts';

test('decodeServerFrame: any type/payload decodes or throws a WiremeshError', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 80 }), (type, payload) => {
    const m = returnsOrThrowsTyped(() => decodeServerFrame(type, payload));
    if (m !== undefined) assert.equal(typeof m.type, 'string');
  }));
});

test('PeerPresent round-trips key, IPv4-mapped address, port and flags', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.ipV4(), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 255 }), (key, ip, port, flags) => {
    const ip16 = new Uint8Array(16);
    ip16[10] = 0xff;
    ip16[11] = 0xff;
    ip16.set(ip.split('.').map(Number), 12);
    const f = encodePeerPresent(key, ip16, port, flags);
    const m = decodeServerFrame(f[0]!, f.subarray(5));
    const wantAddr = ip === '0.0.0.0' ? '0.0.0.0' : ip;
    assert.deepEqual(m, { type: 'peerPresent', key: Uint8Array.from(key), ipPort: { address: wantAddr, port }, flags });
  }));
});

test('PeerPresent short forms (32 bytes, 50 bytes) and all-zero address', () => {
  const key = new Uint8Array(32).fill(7);
  assert.deepEqual(decodeServerFrame(0x09, key), { type: 'peerPresent', key, ipPort: null, flags: 0 });
  assert.deepEqual(decodeServerFrame(0x09, new Uint8Array(51)), { type: 'peerPresent', key: new Uint8Array(32), ipPort: null, flags: 0 });
  const f = encodePeerGone(key, 1);
  assert.deepEqual(decodeServerFrame(0x08, f.subarray(5)), { type: 'peerGone', key, reason: 1 });
  assert.deepEqual(decodeServerFrame(0x08, key), { type: 'peerGone', key, reason: 0 });
});

test('ip16ToString agrees with node:net parsing for IPv6', () => {
  fc.assert(fc.property(fc.ipV6(), (ip) => {
    const sl = new net.SocketAddress({ address: ip, family: 'ipv6' });
    const bytes = new Uint8Array(16);
    // Expand via BlockList-free route: parse groups from the canonical form node gives us.
    const canon = sl.address;
    const [head, tail] = canon.includes('::') ? canon.split('::') : [canon, undefined];
    const hg = head === '' ? [] : head!.split(':');
    const tg = tail === undefined || tail === '' ? [] : tail.split(':');
    if ([...hg, ...tg].some((g) => g.includes('.'))) return; // embedded IPv4 forms: skip
    const groups = tail === undefined ? hg : [...hg, ...Array(8 - hg.length - tg.length).fill('0'), ...tg];
    groups.forEach((g, i) => { const v = parseInt(g, 16); bytes[2 * i] = v >> 8; bytes[2 * i + 1] = v & 0xff; });
    const s = ip16ToString(bytes);
    if (bytes.every((b) => b === 0)) assert.equal(s, null);
    else if (s !== null && s.includes('.')) assert.ok(bytes.subarray(0, 12).every((b, i) => (i < 10 ? b === 0 : b === 0xff)));
    else assert.equal(new net.SocketAddress({ address: s!, family: 'ipv6' }).address, canon);
  }));
});

test('CLI key parsers: accept the documented forms, reject everything else with typed errors', () => {
  const hex = 'ab'.repeat(32);
  assert.equal(parsePeerKey(`nodekey:${hex}`).length, 32);
  assert.equal(parsePeerKey(hex).length, 32);
  assert.equal(parseMeshPsk(`  ${hex}\n`).length, 32);
  assert.equal(parsePrivateKeyFile(`privkey:${hex}\n`).length, 32);
  assert.equal(parsePrivateKeyFile(`{\n\t"PrivateKey": "privkey:${hex}"\n}`).length, 32);
  fc.assert(fc.property(fc.string({ maxLength: 80 }), (s) => {
    for (const f of [parsePeerKey, parseMeshPsk]) {
      const k = returnsOrThrowsTyped(() => f(s));
      if (k !== undefined) assert.equal(k.length, 32);
    }
  }));
});
