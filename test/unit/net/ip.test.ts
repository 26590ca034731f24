// Textual IP ⇄ bytes (src/net/ip.ts; RFC 4291 §2.2 input, RFC 5952 output), shared by the STUN, NAT-PMP and PCP
// codecs: fixed cases, rejections, and a fast-check round trip against fast-check's own address generators.
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { hasCode } from '../../../src/errors.ts';
import { formatIp, IpErrorCode, isV4Mapped, parseIp, parseIPv4, v4Mapped } from '../../../src/net/ip.ts';

test('IP text round trip (RFC 5952 output)', () => {
  const cases: [string, string][] = [
    ['2001:db8::1', '2001:db8::1'], ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'], ['::', '::'], ['::1', '::1'],
    ['1::', '1::'], ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['::ffff:1.2.3.4', '::ffff:102:304'], ['fe80::1%eth0', 'fe80::1'], ['0.0.0.0', '0.0.0.0'], ['255.255.255.255', '255.255.255.255'],
  ];
  for (const [input, want] of cases) assert.equal(formatIp(parseIp(input)!), want, input);
  assert.equal(formatIp(parseIp('::ffff:1.2.3.4')!, true), '1.2.3.4');
  for (const b of ['1.2.3', '01.2.3.4', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', ':1::', '12345::', 'g::', '::1.2.3.4.5', '', 'example.com']) {
    assert.equal(parseIp(b), null, b);
  }
});

test('IPv4 helpers: parseIPv4 takes only dotted quads; v4Mapped / isV4Mapped agree', () => {
  assert.deepEqual(parseIPv4('192.0.2.1'), Uint8Array.from([192, 0, 2, 1]));
  for (const b of ['::1', '1.2.3.256', '1.2.3', '01.2.3.4', ' 1.2.3.4']) assert.equal(parseIPv4(b), null, b);
  const m = v4Mapped(parseIPv4('10.1.2.3')!);
  assert.ok(isV4Mapped(m));
  assert.deepEqual(m, parseIp('::ffff:10.1.2.3'));
  assert.ok(!isV4Mapped(parseIp('::1')!));
  assert.ok(!isV4Mapped(parseIPv4('10.1.2.3')!));
});

test('formatIp rejects a byte length other than 4 or 16 with ip_bad_length', () => {
  assert.throws(() => formatIp(new Uint8Array(5)), (e) => hasCode(e, IpErrorCode.BadLength));
});

test('property: parse → format → parse is stable and agrees with node:net on validity (fast-check)', () => {
  fc.assert(fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (ip) => {
    const b = parseIp(ip);
    assert.ok(b !== null, ip);
    assert.equal(b.length, isIP(ip) === 4 ? 4 : 16);
    const text = formatIp(b);
    assert.notEqual(isIP(text), 0, text);
    assert.deepEqual(parseIp(text), b);
  }), { numRuns: 1000 });
});
