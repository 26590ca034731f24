// netcheck engine pieces and a real-socket run on loopback: home-region choice with hysteresis (spec §7.6),
// private-address test for the double-NAT check, and runNetcheck through the real adapters against two loopback
// STUN servers (127.0.0.1 and 127.0.0.2) built on the project's codec.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { listenUdp } from '../../../src/net/udp.ts';
import { choosePreferred, isPrivateV4, runNetcheck } from '../../../src/netcheck/client.ts';
import { realNetcheckDeps } from '../../../src/netcheck/adapters.ts';
import type { DerpMap } from '../../../src/derpmap/derpmap.ts';
import { buildResponse, parseRequest } from '../../../src/stun/codec.ts';

const DM: DerpMap = {
  Regions: {
    '1': { RegionID: 1, RegionCode: 'a', RegionName: 'A', Nodes: [{ Name: '1a', RegionID: 1, HostName: 'a' }] },
    '2': { RegionID: 2, RegionCode: 'b', RegionName: 'B', Nodes: [{ Name: '2a', RegionID: 2, HostName: 'b' }] },
    '3': { RegionID: 3, RegionCode: 'c', RegionName: 'C', Avoid: true, Nodes: [{ Name: '3a', RegionID: 3, HostName: 'c' }] },
    '4': { RegionID: 4, RegionCode: 'd', RegionName: 'D', Nodes: [{ Name: '4a', RegionID: 4, HostName: 'd', STUNOnly: true }] },
  },
};

test('choosePreferred: lowest latency; Avoid and STUN-only regions never become home', () => {
  assert.equal(choosePreferred(DM, new Map([[1, 20], [2, 10]]), 0, undefined), 2);
  assert.equal(choosePreferred(DM, new Map([[1, 20], [3, 1], [4, 1]]), 0, undefined), 1);
  assert.equal(choosePreferred(DM, new Map(), 0, undefined), 0);
});

test('choosePreferred hysteresis: switch only when ≥10 ms and ≥33 % faster', () => {
  const rows: [number, number, number][] = [
    // old home latency, new best latency, expected home
    [30, 25, 1], // 5 ms better: keep
    [100, 80, 1], // 20 ms but only 20 %: keep
    [100, 60, 2], // 40 ms and 40 %: switch
    [15, 4, 2], // 11 ms and 73 %: switch
  ];
  for (const [oldLat, newLat, want] of rows) assert.equal(choosePreferred(DM, new Map([[1, oldLat], [2, newLat]]), 1, undefined), want, `${oldLat}→${newLat}`);
});

test('isPrivateV4: RFC 1918, CGNAT 100.64/10, link-local; documentation ranges count as public', () => {
  for (const ip of ['10.1.0.1', '172.16.0.1', '172.31.255.1', '192.168.1.1', '100.64.0.1', '100.127.0.1', '169.254.1.1']) assert.equal(isPrivateV4(ip), true, ip);
  for (const ip of ['203.0.113.1', '198.51.100.10', '192.0.2.1', '100.128.0.1', '172.32.0.1', '8.8.8.8', 'x', '::1']) assert.equal(isPrivateV4(ip), false, ip);
});

test('runNetcheck over real loopback sockets: two STUN servers, UDP true, mapping does not vary', async (t) => {
  const servers = await Promise.all(['127.0.0.1', '127.0.0.2'].map(async (host) => {
    const c = await listenUdp({ host, port: 0 });
    c.onMessage((data, from) => {
      const req = parseRequest(data);
      if (req !== null) c.send(buildResponse(req.txid, from), from);
    });
    return c;
  }));
  t.after(() => servers.forEach((s) => s.close()));
  const dm: DerpMap = {
    Regions: Object.fromEntries(servers.map((s, i) => [String(i + 1), {
      RegionID: i + 1, RegionCode: `l${i + 1}`, RegionName: `Loopback ${i + 1}`,
      Nodes: [{ Name: `${i + 1}a`, RegionID: i + 1, HostName: s.localAddr().address, IPv4: s.localAddr().address, IPv6: 'none', STUNPort: s.localAddr().port }],
    }])),
  };
  const deps = realNetcheckDeps({ bindAddress: '127.0.0.1' });
  delete deps.hopProbe;
  delete deps.captivePortal;
  const { report, durationMs } = await runNetcheck(dm, deps);
  assert.equal(report.udp, true);
  assert.equal(report.mappingVariesByDestIP, false);
  assert.match(report.globalV4, /^127\.0\.0\.1:\d+$/);
  assert.deepEqual([...report.regionLatencyMs.keys()].sort(), [1, 2]);
  assert.ok(report.preferredDERP === 1 || report.preferredDERP === 2);
  assert.equal(report.upnp, null, 'no port-map probe injected: not checked');
  assert.ok(durationMs < 1000, `loopback report took ${durationMs} ms`);
});

test('runNetcheck dual stack on loopback: IPv6 STUN fills IPv6, GlobalV6 and RegionV6Latency', async (t) => {
  let v6: Awaited<ReturnType<typeof listenUdp>>;
  try {
    v6 = await listenUdp({ host: '::1', port: 0, family: 6 });
  } catch {
    t.skip('no IPv6 loopback here');
    return;
  }
  const v4 = await listenUdp({ host: '127.0.0.1', port: 0 });
  const v4b = await listenUdp({ host: '127.0.0.2', port: 0 });
  const all = [v4, v4b, v6];
  for (const c of all) {
    c.onMessage((data, from) => {
      const req = parseRequest(data);
      if (req !== null) c.send(buildResponse(req.txid, from), from);
    });
  }
  t.after(() => all.forEach((c) => c.close()));
  const node = (name: string, region: number, ipv4: string, ipv6: string, port: number): DerpMap['Regions'][string]['Nodes'][number] =>
    ({ Name: name, RegionID: region, HostName: `${name}.invalid`, IPv4: ipv4, IPv6: ipv6, STUNPort: port });
  // Two IPv4 regions (so mapping variance is judged) and one IPv6-only region.
  const dm: DerpMap = {
    Regions: {
      '1': { RegionID: 1, RegionCode: 'one', RegionName: 'One', Nodes: [node('1a', 1, '127.0.0.1', 'none', v4.localAddr().port)] },
      '2': { RegionID: 2, RegionCode: 'two', RegionName: 'Two', Nodes: [node('2a', 2, '127.0.0.2', 'none', v4b.localAddr().port)] },
      '3': { RegionID: 3, RegionCode: 'six', RegionName: 'Six', Nodes: [node('3a', 3, 'none', '::1', v6.localAddr().port)] },
    },
  };
  const deps = realNetcheckDeps();
  delete deps.hopProbe;
  delete deps.captivePortal;
  delete deps.resolve;
  const { report } = await runNetcheck(dm, deps);
  assert.equal(report.ipv6, true);
  assert.equal(report.osHasIPv6, true);
  assert.equal(report.ipv6CanSend, true);
  assert.match(report.globalV6, /^\[::1\]:\d+$/);
  assert.deepEqual([...report.regionV6LatencyMs.keys()], [3]);
  assert.deepEqual([...report.regionV4LatencyMs.keys()].sort(), [1, 2]);
  assert.equal(report.mappingVariesByDestIP, false, 'IPv6 answers do not count toward mapping variance');
});
