// The DERP map prober (spec/derp.md §18) on a ManualClock with a fake DERP region: the probe set per node, interval
// 0 disabling a class, --region-code, map errors (duplicate nodes, spec/derp.md §17) and the mesh probes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../../src/time/clock.ts';
import { Prober } from '../../../src/prober/prober.ts';
import { DerpProber, type DerpProberOptions } from '../../../src/prober/derp-prober.ts';
import { parseDerpMap, type DerpMap } from '../../../src/derpmap/derpmap.ts';
import { onceReport } from '../../../src/cli/derpprobe.ts';
import { FakeRegion, settle } from './fake-derp.ts';

const node = (name: string, region: number, extra: Record<string, unknown> = {}) => ({
  Name: name, RegionID: region, HostName: 'localhost', IPv4: '127.0.0.1', STUNPort: 3478, DERPPort: 8443, InsecureForTests: true, ...extra,
});
const mapOf = (regions: Record<string, { code: string; nodes: object[] }>): DerpMap =>
  parseDerpMap(JSON.stringify({
    Regions: Object.fromEntries(Object.entries(regions).map(([id, r]) => [id, { RegionID: Number(id), RegionCode: r.code, RegionName: r.code, Nodes: r.nodes }])),
  }));

function setup(map: () => DerpMap, over: Partial<DerpProberOptions> = {}, once = true, spread = false) {
  const clock = new ManualClock();
  const region = new FakeRegion();
  const prober = new Prober({ clock, once, spread });
  const derp = new DerpProber(prober, {
    derpMapUrl: 'file:///map.json',
    loadMap: async () => map(),
    meshIntervalMs: 15_000, stunIntervalMs: 0, tlsIntervalMs: 0, bwIntervalMs: 0, bwProbeSizeBytes: 1_000_000,
    qdPacketsPerSecond: 0, qdPacketTimeoutMs: 5000, regionCode: '',
    dial: region.dialer(),
    openUdp: async () => { throw new Error('no udp in this test'); },
    random: (n) => crypto.getRandomValues(new Uint8Array(n)),
    wallNow: () => 0,
    ...over,
  });
  prober.run('derpmap-probe', spread ? 1 : 15_000, derp.mapProbe());
  return { clock, region, prober, derp };
}

/** Drives a once-mode prober to completion, advancing the manual clock past the 100 ms mesh pauses. */
async function finish(s: { clock: ManualClock; prober: Prober }): Promise<void> {
  let done = false;
  void s.prober.wait().then(() => { done = true; });
  for (let i = 0; i < 200 && !done; i++) {
    await settle();
    s.clock.advance(50);
  }
  assert.ok(done, 'prober finished');
}

test('creates the probe set of Go derpprobe, named derp/<code>/<name>/…', async () => {
  const map = mapOf({
    '900': { code: 'loc', nodes: [node('900a', 900), node('900b', 900, { IPv6: '::1' })] },
    '901': { code: 'far', nodes: [node('901a', 901, { STUNPort: -1 })] },
  });
  const s = setup(() => map, { stunIntervalMs: 15_000, tlsIntervalMs: 15_000, bwIntervalMs: 15_000, qdPacketsPerSecond: 10 }, false, true);
  s.clock.advance(1); // the map probe only (spread keeps the node probes, which would dial, from starting)
  await settle();
  assert.deepEqual(s.prober.names(), [
    'derp/far/901a/901a/bw', 'derp/far/901a/901a/mesh', 'derp/far/901a/901a/qd', 'derp/far/901a/tls',
    'derp/loc/900a/900a/bw', 'derp/loc/900a/900a/mesh', 'derp/loc/900a/900a/qd', 'derp/loc/900a/900b/bw', 'derp/loc/900a/900b/mesh', 'derp/loc/900a/900b/qd',
    'derp/loc/900a/tls', 'derp/loc/900a/udp',
    'derp/loc/900b/900a/bw', 'derp/loc/900b/900a/mesh', 'derp/loc/900b/900a/qd', 'derp/loc/900b/900b/bw', 'derp/loc/900b/900b/mesh', 'derp/loc/900b/900b/qd',
    'derp/loc/900b/tls', 'derp/loc/900b/udp', 'derp/loc/900b/udp6',
    'derpmap-probe',
  ]);
  const mesh = s.prober.get('derp/loc/900a/900b/mesh')!.info();
  assert.deepEqual(mesh.labels, { region: 'loc', region_id: '900', hostname: 'localhost', derp_path: 'mesh' });
  assert.equal(s.prober.get('derp/loc/900a/900a/mesh')!.info().labels.derp_path, 'single');
  assert.equal(s.prober.get('derp/loc/900a/900a/qd')!.info().continuous, true);
  s.prober.close();
});

test('interval 0 disables a class; --region-code takes a code or an ID; qd is not run with --once', async () => {
  const map = mapOf({ '900': { code: 'loc', nodes: [node('900a', 900)] }, '901': { code: 'far', nodes: [node('901a', 901)] } });
  for (const rc of ['far', '901']) {
    const s = setup(() => map, { meshIntervalMs: 0, tlsIntervalMs: 1000, regionCode: rc, qdPacketsPerSecond: 5 }, true);
    await settle();
    assert.deepEqual(s.prober.names(), ['derp/far/901a/tls', 'derpmap-probe']);
    s.prober.close();
  }
});

test('duplicate node names fail the map probe', async () => {
  // parseDerpMap rejects the duplicate (spec/derp.md §17), so the map probe's load fails with that error.
  const s = setup(() => mapOf({ '900': { code: 'a', nodes: [node('x', 900)] }, '901': { code: 'b', nodes: [node('x', 901)] } }));
  await finish(s);
  const r = onceReport(s.prober.list());
  assert.deepEqual(r.lines, ['bad: derpmap-probe: derpmap has duplicate nodes: "x"']);
  assert.equal(r.failed, 1);
});

test('mesh: every ordered pair good in a healthy region; a down node turns exactly its probes bad', async () => {
  const map = mapOf({ '900': { code: 'loc', nodes: [node('900a', 900), node('900b', 900)] }, '901': { code: 'far', nodes: [node('901a', 901)] } });
  const s = setup(() => map);
  await finish(s);
  const all = onceReport(s.prober.list());
  assert.equal(all.failed, 0, all.lines.join('\n'));
  assert.equal(all.lines.length, 6);
  assert.ok(s.region.opened.every((c) => c.closed), 'every probe connection is closed');

  const s2 = setup(() => map);
  s2.region.down.add('900b');
  await finish(s2);
  const r = onceReport(s2.prober.list());
  const bad = r.lines.filter((l) => l.startsWith('bad:'));
  assert.deepEqual(bad.map((l) => l.split(': ')[1]), ['derp/loc/900a/900b/mesh', 'derp/loc/900b/900a/mesh', 'derp/loc/900b/900b/mesh']);
  for (const l of bad) assert.match(l, /connection refused/);
});

test('mesh: corrupted data, missing TLS, and an IP HostName fail with clear errors', async () => {
  const map = mapOf({ '900': { code: 'loc', nodes: [node('900a', 900)] } });
  const s = setup(() => map);
  s.region.corrupt.add('900a');
  await finish(s);
  assert.match(onceReport(s.prober.list()).lines.join('\n'), /bad: derp\/loc\/900a\/900a\/mesh: \[.{5}\] -> \[.{5}\]: error receiving from "900a": unexpected data packet 0 \(out of 1\)/);

  const s2 = setup(() => map);
  s2.region.tls = false;
  await finish(s2);
  assert.match(onceReport(s2.prober.list()).lines.join('\n'), /bad: derp\/loc\/900a\/900a\/mesh: no TLS state/);

  const ipMap = mapOf({ '900': { code: 'loc', nodes: [node('900a', 900, { HostName: '127.0.0.1' })] } });
  const s3 = setup(() => ipMap);
  await finish(s3);
  assert.match(onceReport(s3.prober.list()).lines.join('\n'), /bad: derp\/loc\/900a\/900a\/mesh: TLS server name "" != derp hostname "127.0.0.1"/);
});

test('mesh: a blackholed packet times out at 0.8 × interval', async () => {
  const map = mapOf({ '900': { code: 'loc', nodes: [node('900a', 900)] } });
  const s = setup(() => map, { meshIntervalMs: 1000 });
  s.region.blackhole.add('900a');
  await finish(s);
  assert.match(onceReport(s.prober.list()).lines.join('\n'), /bad: derp\/loc\/900a\/900a\/mesh: timeout after 800ms/);
});

test('bw: moves size bytes in ≤ 64 KiB packets with a bounded window', async () => {
  const map = mapOf({ '900': { code: 'loc', nodes: [node('900a', 900), node('900b', 900)] } });
  const s = setup(() => map, { meshIntervalMs: 0, bwIntervalMs: 10_000, bwProbeSizeBytes: 300_000 });
  await finish(s);
  const r = onceReport(s.prober.list());
  assert.equal(r.failed, 0, r.lines.join('\n'));
  assert.equal(r.lines.filter((l) => l.includes('/bw:')).length, 4);
  const metrics = s.prober.get('derp/loc/900a/900b/bw')!.pc.metrics!();
  assert.equal(metrics.find((m) => m.name === 'derp_bw_probe_size_bytes')!.value, 300_000);
});

test('map refresh adds and removes probes', async () => {
  let map = mapOf({ '900': { code: 'loc', nodes: [node('900a', 900)] } });
  const s = setup(() => map, {}, false);
  await settle();
  assert.ok(s.prober.has('derp/loc/900a/900a/mesh'));
  map = mapOf({ '900': { code: 'loc', nodes: [node('900c', 900)] } });
  s.clock.advance(15_000);
  await settle();
  assert.ok(!s.prober.has('derp/loc/900a/900a/mesh'));
  assert.ok(s.prober.has('derp/loc/900c/900c/mesh'));
  s.prober.close();
});

test('qd: reports the median queuing delay per window and counts drops', async () => {
  const map = mapOf({ '900': { code: 'loc', nodes: [node('900a', 900)] } });
  const s = setup(() => map, { meshIntervalMs: 0, qdPacketsPerSecond: 20 }, false);
  for (let i = 0; i < 250; i++) {
    await settle();
    s.clock.advance(50);
  }
  await settle();
  const info = s.prober.get('derp/loc/900a/900a/qd')!.info();
  assert.ok(info.history.length >= 1, 'at least one window finished');
  assert.equal(info.history[0]!.ok, true, info.history[0]!.error ?? '');
  const m = s.prober.get('derp/loc/900a/900a/qd')!.pc.metrics!();
  const h = m.find((x) => x.name === 'derp_qd_probe_delays_seconds')!.histogram!;
  assert.ok(h.count >= 150, `count ${h.count}`);
  s.region.blackhole.add('900a');
  for (let i = 0; i < 500; i++) {
    await settle();
    s.clock.advance(50);
  }
  await settle();
  const after = s.prober.get('derp/loc/900a/900a/qd')!.info();
  assert.equal(after.history.at(-1)!.ok, false);
  assert.match(after.history.at(-1)!.error!, /no packets came back/);
  assert.ok(s.prober.get('derp/loc/900a/900a/qd')!.pc.metrics!().find((x) => x.name === 'derp_qd_probe_dropped_packets')!.value > 0);

  // A connection that breaks mid-window fails the window at once (and leaves no stray rejections behind).
  s.region.blackhole.clear();
  for (let i = 0; i < 250; i++) {
    await settle();
    s.clock.advance(50);
  }
  const before = s.prober.get('derp/loc/900a/900a/qd')!.info().history.length;
  for (const c of s.region.opened) if (!c.closed) c.close();
  await settle();
  const broken = s.prober.get('derp/loc/900a/900a/qd')!.info().history;
  assert.equal(broken.length, before + 1);
  assert.match(broken.at(-1)!.error!, /\] -> \[.{5}\]: connection closed/);
  s.clock.advance(20_000);
  await settle();
  s.prober.close();
});
