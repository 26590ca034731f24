// /debug/ access check as a table (spec/derp.md §16.3, checklist 10).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  debugAccessAllowed,
  emptyDebugPolicy,
  isTailscaleIp,
  parseTrustedCidrs,
  unmapAddress,
  type DebugAccessPolicy,
  type DebugRequestFacts,
} from '../../../src/derper/access.ts';

const req = (remoteAddress: string, extra: Partial<DebugRequestFacts> = {}): DebugRequestFacts => ({
  remoteAddress,
  forwardedFor: false,
  method: 'GET',
  debugKeyParam: null,
  ...extra,
});

const withEnv = (p: Partial<DebugAccessPolicy>): DebugAccessPolicy => ({ ...emptyDebugPolicy(), ...p });

const rows: Array<[string, DebugRequestFacts, DebugAccessPolicy, boolean]> = [
  ['loopback v4', req('127.0.0.1'), emptyDebugPolicy(), true],
  ['loopback 127.1.2.3', req('127.1.2.3'), emptyDebugPolicy(), true],
  ['loopback v6', req('::1'), emptyDebugPolicy(), true],
  ['v4-mapped loopback', req('::ffff:127.0.0.1'), emptyDebugPolicy(), true],
  ['loopback with X-Forwarded-For', req('127.0.0.1', { forwardedFor: true }), emptyDebugPolicy(), false],
  ['tailscale CGNAT', req('100.64.0.1'), emptyDebugPolicy(), true],
  ['tailscale CGNAT top', req('100.127.255.254'), emptyDebugPolicy(), true],
  ['just outside CGNAT', req('100.128.0.1'), emptyDebugPolicy(), false],
  ['ChromeOS VM range excluded', req('100.115.92.5'), emptyDebugPolicy(), false],
  ['ChromeOS VM range /23 upper half', req('100.115.93.250'), emptyDebugPolicy(), false],
  ['next to ChromeOS range', req('100.115.94.1'), emptyDebugPolicy(), true],
  ['tailscale ULA', req('fd7a:115c:a1e0:ab12::1'), emptyDebugPolicy(), true],
  ['other ULA', req('fd7a:115c:a1e1::1'), emptyDebugPolicy(), false],
  ['public v4', req('192.0.2.1'), emptyDebugPolicy(), false],
  ['public v6', req('2001:db8::1'), emptyDebugPolicy(), false],
  ['TS_ALLOW_DEBUG_IP', req('192.0.2.1'), withEnv({ allowIp: '192.0.2.1' }), true],
  ['TS_ALLOW_DEBUG_IP other', req('192.0.2.2'), withEnv({ allowIp: '192.0.2.1' }), false],
  ['TS_ALLOW_DEBUG_IP with XFF', req('192.0.2.1', { forwardedFor: true }), withEnv({ allowIp: '192.0.2.1' }), false],
  ['trusted CIDR', req('198.51.100.77'), withEnv({ trusted: parseTrustedCidrs('10.0.0.0/8, 198.51.100.0/24').trusted }), true],
  ['trusted CIDR miss', req('198.51.101.77'), withEnv({ trusted: parseTrustedCidrs('198.51.100.0/24').trusted }), false],
  ['trusted v6 CIDR', req('2001:db8::5'), withEnv({ trusted: parseTrustedCidrs('2001:db8::/32').trusted }), true],
  ['debugkey GET', req('192.0.2.1', { debugKeyParam: 'sekrit' }), withEnv({ debugKey: 'sekrit' }), true],
  ['debugkey wrong', req('192.0.2.1', { debugKeyParam: 'sekriT' }), withEnv({ debugKey: 'sekrit' }), false],
  ['debugkey POST', req('192.0.2.1', { debugKeyParam: 'sekrit', method: 'POST' }), withEnv({ debugKey: 'sekrit' }), false],
  ['debugkey without configured key', req('192.0.2.1', { debugKeyParam: '' }), withEnv({ debugKey: '' }), false],
  ['garbage address', req('not-an-ip'), emptyDebugPolicy(), false],
  ['empty address', req(''), emptyDebugPolicy(), false],
];

for (const [name, r, policy, want] of rows) {
  test(`debug access: ${name} → ${want ? 'allow' : 'deny'}`, () => {
    assert.equal(debugAccessAllowed(r, policy), want);
  });
}

test('helpers: unmap, tailscale IP, bad CIDRs reported', () => {
  assert.equal(unmapAddress('::ffff:192.0.2.1'), '192.0.2.1');
  assert.equal(unmapAddress('fe80::1%eth0'), 'fe80::1');
  assert.equal(isTailscaleIp('100.100.100.100'), true);
  const { bad } = parseTrustedCidrs('10.0.0.0/8,nope,1.2.3.4/33,::/129,,1.2.3.4');
  assert.deepEqual(bad, ['nope', '1.2.3.4/33', '::/129', '1.2.3.4']);
});
