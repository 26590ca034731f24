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
  { profile: 'dual-stack', udp: true, varies: false, globalV4Ip: '203.0.113.1', preservedPort: true, captive: null, doubleNAT: false, verdict: 'direct' },
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
    if (row.profile === 'dual-stack') {
      assert.equal(report.ipv6, true);
      assert.equal(report.globalV6, '[2001:db8:1::2]:40001', 'IPv6 is not translated');
      assert.deepEqual([...report.regionV6LatencyMs.keys()].sort(), [1, 2]);
      assert.match(formatText(report, w.derpMap), /\t\* IPv6: yes, \[2001:db8:1::2\]:40001\n/);
      assert.match(explain(report, w.derpMap).meaning.join(' '), /IPv6 works/);
    } else {
      assert.equal(report.ipv6, false);
      assert.equal(report.globalV6, '');
    }
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

test('incremental reports on the vlab: home region kept until another is ≥10 ms and ≥33 % faster', async () => {
  const w = buildWorld('easy');
  const deps = vlabNetcheckDeps(w.client);
  const first = await drive(w.net.clock, runNetcheck(w.derpMap, deps));
  assert.equal(first.report.preferredDERP, 1);
  const last = () => ({ regionLatencyMs: first.report.regionLatencyMs, preferredDERP: first.report.preferredDERP });
  const near = w.net.internet.ifaces.get('203.0.113.10')!;
  // Region 1 gets slower (RTT 28 ms) but region 2 (64 ms) is not better: keep home.
  near.latencyMs = 12;
  const second = await drive(w.net.clock, runNetcheck(w.derpMap, deps, { last: last() }));
  assert.equal(second.report.regionLatencyMs.get(1), 28);
  assert.equal(second.report.preferredDERP, 1);
  // Region 1 now at 104 ms: region 2 (64 ms) is 40 ms and 38 % faster → switch.
  near.latencyMs = 50;
  const third = await drive(w.net.clock, runNetcheck(w.derpMap, deps, { last: { regionLatencyMs: second.report.regionLatencyMs, preferredDERP: 1 } }));
  assert.equal(third.report.regionLatencyMs.get(1), 104);
  assert.equal(third.report.preferredDERP, 2);
});
