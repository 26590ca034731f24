// netcheck classification table on the virtual lab (issue #3: "the same table in the virtual lab, including the
// NAT types Linux lacks"): every router profile → UDP, MappingVariesByDestIP, captive portal, double NAT, latency.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runNetcheck } from '../../src/netcheck/client.ts';
import { explain } from '../../src/netcheck/explain.ts';
import { formatJSON, formatText } from '../../src/netcheck/report.ts';
import { vlabNetcheckDeps } from './http.ts';
import { drive } from './network.ts';
import { buildWorld, type Profile } from './topology.ts';

interface Row {
  profile: Profile;
  udp: boolean;
  varies: boolean | null;
  globalV4Ip: string;
  preservedPort: boolean | null;
  captive: boolean | null;
  doubleNAT: boolean;
  verdict: string;
}

const TABLE: Row[] = [
  { profile: 'public', udp: true, varies: false, globalV4Ip: '203.0.113.50', preservedPort: true, captive: null, doubleNAT: false, verdict: 'direct' },
  { profile: 'full-cone', udp: true, varies: false, globalV4Ip: '203.0.113.1', preservedPort: true, captive: null, doubleNAT: false, verdict: 'direct' },
  { profile: 'restricted-cone', udp: true, varies: false, globalV4Ip: '203.0.113.1', preservedPort: true, captive: null, doubleNAT: false, verdict: 'direct' },
  { profile: 'easy', udp: true, varies: false, globalV4Ip: '203.0.113.1', preservedPort: true, captive: null, doubleNAT: false, verdict: 'direct' },
  { profile: 'easy-random-port', udp: true, varies: false, globalV4Ip: '203.0.113.1', preservedPort: false, captive: null, doubleNAT: false, verdict: 'direct' },
  { profile: 'address-dependent', udp: true, varies: true, globalV4Ip: '203.0.113.1', preservedPort: null, captive: null, doubleNAT: false, verdict: 'hard-nat' },
  { profile: 'hard', udp: true, varies: true, globalV4Ip: '203.0.113.1', preservedPort: null, captive: null, doubleNAT: false, verdict: 'hard-nat' },
  { profile: 'stateful-firewall', udp: true, varies: false, globalV4Ip: '192.0.2.2', preservedPort: true, captive: null, doubleNAT: false, verdict: 'direct' },
  { profile: 'double-nat', udp: true, varies: false, globalV4Ip: '203.0.113.1', preservedPort: true, captive: null, doubleNAT: true, verdict: 'direct' },
  { profile: 'udp-blocked', udp: false, varies: null, globalV4Ip: '', preservedPort: null, captive: false, doubleNAT: false, verdict: 'relay-only' },
  { profile: 'captive-portal', udp: false, varies: null, globalV4Ip: '', preservedPort: null, captive: true, doubleNAT: false, verdict: 'captive-portal' },
];

for (const row of TABLE) {
  test(`vlab netcheck classifies ${row.profile}`, async () => {
    const w = buildWorld(row.profile);
    const { report, durationMs } = await drive(w.net.clock, runNetcheck(w.derpMap, vlabNetcheckDeps(w.client)));
    assert.equal(report.udp, row.udp, 'UDP');
    assert.equal(report.mappingVariesByDestIP, row.varies, 'MappingVariesByDestIP');
    assert.equal(report.globalV4.split(':')[0] ?? '', row.globalV4Ip, 'GlobalV4 address');
    if (row.preservedPort !== null) assert.equal(report.globalV4.endsWith(':40000'), row.preservedPort, `port preserved (${report.globalV4})`);
    assert.equal(report.captivePortal, row.captive, 'CaptivePortal');
    assert.equal(report.doubleNAT, row.doubleNAT, 'DoubleNAT');
    assert.equal(explain(report, w.derpMap).verdict, row.verdict);
    // Region latency is filled by STUN, or over HTTPS when UDP is blocked (the captive portal only rewrites port 80).
    assert.deepEqual([...report.regionLatencyMs.keys()].sort(), [1, 2], 'both regions measured');
    assert.equal(report.preferredDERP, 1, 'the near region is home');
    assert.ok(report.regionLatencyMs.get(1)! < report.regionLatencyMs.get(2)!, 'near < far');
    assert.ok(durationMs <= 2000, `report took ${durationMs} ms of virtual time`);
    if (row.udp) {
      // Each segment crossed costs 1 ms each way, plus the server's 5 ms link: public 12, one NAT 14, double NAT 16.
      const segments = row.profile === 'public' ? 1 : row.profile === 'double-nat' ? 3 : 2;
      assert.equal(report.regionV4LatencyMs.get(1), 2 * (5 + segments), 'near region RTT on the vlab');
      assert.ok(durationMs < 200, `a report with UDP finishes early (${durationMs} ms)`);
    }
  });
}

test('vlab netcheck is deterministic: same seed, same JSON and text', async () => {
  const runOnce = async (): Promise<[string, string]> => {
    const w = buildWorld('hard', 7);
    const { report } = await drive(w.net.clock, runNetcheck(w.derpMap, vlabNetcheckDeps(w.client)));
    return [formatJSON(report), formatText(report, w.derpMap)];
  };
  const a = await runOnce();
  const b = await runOnce();
  assert.deepEqual(a, b);
  const other = buildWorld('hard', 8);
  const { report } = await drive(other.net.clock, runNetcheck(other.derpMap, vlabNetcheckDeps(other.client)));
  assert.notEqual(formatJSON(report), a[0], 'a different seed gives different random ports');
});

test('vlab netcheck reports port mapping from the injected probe', async () => {
  const w = buildWorld('hard');
  const deps = vlabNetcheckDeps(w.client, { portMap: { upnp: false, pmp: true, pcp: true } });
  const { report } = await drive(w.net.clock, runNetcheck(w.derpMap, deps));
  assert.equal(report.pmp, true);
  assert.equal(report.upnp, false);
  assert.match(formatText(report, w.derpMap), /\* PortMapping: NAT-PMP, PCP\n/);
  const e = explain(report, w.derpMap);
  assert.equal(e.verdict, 'hard-nat');
  assert.deepEqual(e.tryThis, ['Nothing needs doing.']);
});
