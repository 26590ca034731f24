// --explain rules (issue #3 item 5): each measured situation → verdict, meaning and what to try; "Nothing needs
// doing." only when nothing does.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { explain, formatExplanation, HARD_NAT_WORKAROUNDS } from '../../../src/netcheck/explain.ts';
import { emptyReport, type Report } from '../../../src/netcheck/report.ts';

function rep(p: Partial<Report>): Report {
  return { ...emptyReport(0), ...p };
}
const udpOk = { udp: true, ipv4: true, globalV4: '203.0.113.1:41641', preferredDERP: 1, regionLatencyMs: new Map([[1, 12]]) };

test('easy NAT: direct, nothing needs doing, names the easy-NAT firewalls', () => {
  const e = explain(rep({ ...udpOk, mappingVariesByDestIP: false, upnp: false, pmp: false, pcp: false }));
  assert.equal(e.verdict, 'direct');
  assert.deepEqual(e.tryThis, ['Nothing needs doing.']);
  assert.match(e.meaning.join(' '), /Sophos and Check Point/);
  assert.ok(e.measured.includes('Port mapping (UPnP / NAT-PMP / PCP): none offered by the router'));
});

test('hard NAT without port mapping: every firewall workaround is listed', () => {
  const e = explain(rep({ ...udpOk, mappingVariesByDestIP: true, upnp: false, pmp: false, pcp: false }));
  assert.equal(e.verdict, 'hard-nat');
  assert.match(e.meaning.join(' '), /OPNsense\/pfSense, Barracuda, Cisco and Fortinet/);
  for (const w of HARD_NAT_WORKAROUNDS) assert.ok(e.tryThis.includes(`  - ${w}`), w);
  const text = formatExplanation(e);
  for (const needle of ['static', 'more UDP sessions', 'randomizeClientPort', 'Persistent Dynamic IP and Port', 'Threat Detection']) assert.match(text, new RegExp(needle));
  assert.doesNotMatch(text, /Nothing needs doing/);
});

test('hard NAT with NAT-PMP: port mapping fixes it, nothing needs doing', () => {
  const e = explain(rep({ ...udpOk, mappingVariesByDestIP: true, upnp: false, pmp: true, pcp: false }));
  assert.equal(e.verdict, 'hard-nat');
  assert.match(e.meaning.join(' '), /offers NAT-PMP/);
  assert.deepEqual(e.tryThis, ['Nothing needs doing.']);
});

test('UDP blocked with HTTPS latency: DERP only (Cisco Umbrella), mentions TLS interception', () => {
  const e = explain(rep({ udp: false, preferredDERP: 1, regionLatencyMs: new Map([[1, 30]]), captivePortal: false }));
  assert.equal(e.verdict, 'relay-only');
  assert.match(e.meaning.join(' '), /Cisco Umbrella/);
  assert.match(e.tryThis.join(' '), /FortiGate/);
  assert.match(e.measured.join('\n'), /measured over HTTPS/);
});

test('captive portal: log in first', () => {
  const e = explain(rep({ udp: false, captivePortal: true, regionLatencyMs: new Map([[1, 30]]), preferredDERP: 1 }));
  assert.equal(e.verdict, 'captive-portal');
  assert.match(e.tryThis.join(' '), /login/);
});

test('nothing reachable: no connectivity', () => {
  assert.equal(explain(rep({})).verdict, 'no-connectivity');
});

test('one STUN answer: mapping unknown, likely direct, suggests a second region', () => {
  const e = explain(rep({ ...udpOk, mappingVariesByDestIP: null }));
  assert.equal(e.verdict, 'direct-likely');
  assert.match(e.tryThis.join(' '), /two regions/);
});

test('double NAT adds its own meaning and advice, naming the routers', () => {
  const e = explain(rep({ ...udpOk, mappingVariesByDestIP: false, doubleNAT: true, routerHops: ['10.1.0.1', '100.64.0.1'] }));
  assert.equal(e.verdict, 'direct');
  assert.match(e.meaning.join(' '), /two layers of NAT.*10\.1\.0\.1 and 100\.64\.0\.1/);
  assert.match(e.tryThis.join(' '), /bridge/);
  assert.doesNotMatch(e.tryThis.join(' '), /Nothing needs doing/);
});

test('IPv6 is called out when it works', () => {
  const e = explain(rep({ ...udpOk, mappingVariesByDestIP: true, globalV6: '[2001:db8::1]:41641', ipv6: true }));
  assert.match(e.meaning.join(' '), /IPv6 works/);
});
