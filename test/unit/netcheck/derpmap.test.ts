// DERP map parsing (tailcfg.DERPMap JSON): accepts Tailscale's shape, rejects bad shapes with a typed error,
// and never throws anything else on arbitrary input (fast-check).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { hasCode, WiremeshError } from '../../../src/errors.ts';
import { loadDerpMap } from '../../../src/netcheck/adapters.ts';
import { MAX_DERP_MAP_BYTES, MAX_NODES_PER_REGION, NetcheckErrorCode } from '../../../src/netcheck/constants.ts';
import { derpPort, parseDerpMap, stunPort } from '../../../src/netcheck/derpmap.ts';

const TAILSCALE_LIKE = JSON.stringify({
  Regions: {
    '1': {
      RegionID: 1, RegionCode: 'nyc', RegionName: 'New York City',
      Nodes: [{ Name: '1f', RegionID: 1, HostName: 'derp1f.tailscale.com', IPv4: '199.38.181.104', IPv6: '2607:f740:f::bc', CanPort80: true }],
    },
    '900': {
      RegionID: 900, RegionCode: 'lab', RegionName: 'Lab', Avoid: true,
      Nodes: [{ Name: '900a', RegionID: 900, HostName: '203.0.113.10', STUNPort: 3479, DERPPort: 8443, InsecureForTests: true, STUNOnly: false }],
    },
  },
  OmitDefaultRegions: true,
});

test('parses Tailscale\'s DERP map shape', () => {
  const m = parseDerpMap(TAILSCALE_LIKE);
  assert.equal(m.OmitDefaultRegions, true);
  assert.equal(m.Regions['1']!.Nodes[0]!.IPv6, '2607:f740:f::bc');
  assert.equal(m.Regions['900']!.Avoid, true);
  const n = m.Regions['900']!.Nodes[0]!;
  assert.equal(stunPort(n), 3479);
  assert.equal(derpPort(n), 8443);
  assert.equal(stunPort(m.Regions['1']!.Nodes[0]!), 3478);
  assert.equal(derpPort(m.Regions['1']!.Nodes[0]!), 443);
  assert.equal(stunPort({ ...n, STUNPort: -1 }), null);
});

test('rejects bad maps with netcheck_bad_derp_map', () => {
  const bad = [
    'not json', '[]', '{}', '{"Regions":[]}', '{"Regions":{"1":{"RegionID":2,"Nodes":[]}}}',
    '{"Regions":{"1":{"RegionID":1}}}', '{"Regions":{"1":{"RegionID":1,"Nodes":[{"Name":"a"}]}}}',
    '{"Regions":{"1":{"RegionID":1,"Nodes":[{"Name":"a","HostName":"h","STUNPort":"x"}]}}}',
    '{"Regions":{"1":{"RegionID":1,"Nodes":[{"Name":"a","HostName":"h","DERPPort":70000}]}}}',
    JSON.stringify({ Regions: { '1': { RegionID: 1, Nodes: Array.from({ length: MAX_NODES_PER_REGION + 1 }, (_, i) => ({ Name: `n${i}`, HostName: 'h' })) } } }),
    ' '.repeat(MAX_DERP_MAP_BYTES + 1),
  ];
  for (const s of bad) assert.throws(() => parseDerpMap(s), (e) => hasCode(e, NetcheckErrorCode.BadDerpMap), s.slice(0, 60));
});

test('property: arbitrary JSON either parses or throws a WiremeshError', () => {
  fc.assert(
    fc.property(fc.oneof(fc.json(), fc.string(), fc.jsonValue().map((v) => JSON.stringify({ Regions: { '1': { RegionID: 1, Nodes: [v] } } }))), (s) => {
      try {
        parseDerpMap(s);
      } catch (e) {
        assert.ok(e instanceof WiremeshError, String(e));
      }
    }),
    { numRuns: 500 },
  );
});

test('property: a parsed map re-serialises to a map that parses to the same value', () => {
  const nodeArb = fc.record({ Name: fc.string({ minLength: 1, maxLength: 8 }), HostName: fc.domain(), STUNPort: fc.integer({ min: -1, max: 65535 }), CanPort80: fc.boolean() });
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 1000 }), { maxLength: 5 }), fc.array(nodeArb, { maxLength: 3 }), (ids, nodes) => {
      const raw = { Regions: Object.fromEntries(ids.map((id) => [String(id), { RegionID: id, RegionCode: `r${id}`, RegionName: `R ${id}`, Nodes: nodes }])) };
      const once = parseDerpMap(JSON.stringify(raw));
      assert.deepEqual(parseDerpMap(JSON.stringify(once)), once);
    }),
    { numRuns: 200 },
  );
});

test('loadDerpMap reads a file path or file:// URL; a missing file is netcheck_derp_map_fetch', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-derpmap-'));
  try {
    const p = path.join(dir, 'm.json');
    writeFileSync(p, TAILSCALE_LIKE);
    assert.equal((await loadDerpMap(p)).Regions['1']!.RegionCode, 'nyc');
    assert.equal((await loadDerpMap(`file://${p}`)).Regions['900']!.RegionName, 'Lab');
    await assert.rejects(loadDerpMap(path.join(dir, 'missing.json')), (e) => hasCode(e, NetcheckErrorCode.DerpMapFetch));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loadDerpMap fetches an http(s) URL; a non-2xx answer is netcheck_derp_map_fetch', async (t) => {
  const server = http.createServer((req, res) => {
    if (req.url === '/derpmap/default') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(TAILSCALE_LIKE);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const port = (server.address() as { port: number }).port;
  assert.equal((await loadDerpMap(`http://127.0.0.1:${port}/derpmap/default`)).Regions['1']!.RegionName, 'New York City');
  await assert.rejects(loadDerpMap(`http://127.0.0.1:${port}/nope`), (e) => hasCode(e, NetcheckErrorCode.DerpMapFetch));
});
