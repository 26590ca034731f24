// DERP map (spec/derp.md §17, tailcfg.DERPMap JSON): parsing accepts Tailscale's shape, rejects bad shapes and
// duplicate node names with a typed error, and never throws anything else on arbitrary input (fast-check); the
// loader reads file:// and http(s) URLs within MAX_DERP_MAP_BYTES.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { hasCode } from '../../../src/errors.ts';
import { DerpMapErrorCode, MAX_DERP_MAP_BYTES, MAX_NODES_PER_REGION } from '../../../src/derpmap/constants.ts';
import { derpPort, parseDerpMap, stunPort } from '../../../src/derpmap/derpmap.ts';
import { derpMapSourceUrl, loadDerpMap } from '../../../src/derpmap/load.ts';
import { returnsOrThrowsTyped } from '../typed-errors.ts';

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
  omitDefaultRegions: true,
  HomeParams: { RegionScore: { '1': 1.5 } },
});

test('parses Tailscale\'s DERP map shape', () => {
  const m = parseDerpMap(TAILSCALE_LIKE);
  assert.equal(m.omitDefaultRegions, true);
  assert.deepEqual(m.HomeParams, { RegionScore: { '1': 1.5 } });
  assert.equal(m.Regions['1']!.Nodes[0]!.IPv6, '2607:f740:f::bc');
  assert.equal(m.Regions['900']!.Avoid, true);
  const n = m.Regions['900']!.Nodes[0]!;
  assert.equal(stunPort(n), 3479);
  assert.equal(derpPort(n), 8443);
  assert.equal(stunPort(m.Regions['1']!.Nodes[0]!), 3478);
  assert.equal(derpPort(m.Regions['1']!.Nodes[0]!), 443);
  assert.equal(stunPort({ ...n, STUNPort: -1 }), null);
});

test('Go decodes OmitDefaultRegions case-insensitively; so do we', () => {
  assert.equal(parseDerpMap('{"Regions":{},"OmitDefaultRegions":true}').omitDefaultRegions, true);
  assert.equal(parseDerpMap('{"Regions":{}}').omitDefaultRegions, undefined);
});

test('duplicate node names, within or across regions, are derpmap_duplicate_node', () => {
  const n = (name: string) => ({ Name: name, HostName: 'h' });
  for (const regions of [
    { '1': { RegionID: 1, Nodes: [n('a'), n('a')] } },
    { '1': { RegionID: 1, Nodes: [n('a')] }, '2': { RegionID: 2, Nodes: [n('b'), n('a')] } },
  ]) {
    assert.throws(() => parseDerpMap(JSON.stringify({ Regions: regions })), (e) => hasCode(e, DerpMapErrorCode.DuplicateNode) && /duplicate nodes: "a"/.test((e as Error).message));
  }
});

test('rejects bad maps with derpmap_invalid', () => {
  const bad = [
    'not json', '[]', '{}', '{"Regions":[]}', '{"Regions":{"1":{"RegionID":2,"Nodes":[]}}}',
    '{"Regions":{"1":{"RegionID":1}}}', '{"Regions":{"1":{"RegionID":1,"Nodes":[{"Name":"a"}]}}}',
    '{"Regions":{"1":{"RegionID":1,"Nodes":[{"Name":"a","HostName":"h","STUNPort":"x"}]}}}',
    '{"Regions":{"1":{"RegionID":1,"Nodes":[{"Name":"a","HostName":"h","DERPPort":70000}]}}}',
    JSON.stringify({ Regions: { '1': { RegionID: 1, Nodes: Array.from({ length: MAX_NODES_PER_REGION + 1 }, (_, i) => ({ Name: `n${i}`, HostName: 'h' })) } } }),
    ' '.repeat(MAX_DERP_MAP_BYTES + 1),
    '{"Regions":{"9007199254740992":{"RegionID":9007199254740992,"Nodes":[]}}}',
    '{"Regions":{},"HomeParams":{"RegionScore":{"1":"x"}}}',
    '{"Regions":{"1":{"RegionID":1,"Latitude":"north","Nodes":[]}}}',
  ];
  for (const s of bad) assert.throws(() => parseDerpMap(s), (e) => hasCode(e, DerpMapErrorCode.Invalid), s.slice(0, 60));
});

test('property: arbitrary JSON either parses or throws a WiremeshError', () => {
  fc.assert(
    fc.property(fc.oneof(fc.json(), fc.string(), fc.jsonValue().map((v) => JSON.stringify({ Regions: { '1': { RegionID: 1, Nodes: [v] } } }))), (s) => void returnsOrThrowsTyped(() => parseDerpMap(s))),
    { numRuns: 500 },
  );
});

test('property: a parsed map re-serialises to a map that parses to the same value', () => {
  const nodeArb = fc.record({ Name: fc.string({ minLength: 1, maxLength: 8 }), HostName: fc.domain(), STUNPort: fc.integer({ min: -1, max: 65535 }), CanPort80: fc.boolean() });
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 1000 }), { maxLength: 5 }), fc.uniqueArray(nodeArb, { maxLength: 3, selector: (n) => n.Name }), (ids, nodes) => {
      // Node names are unique across the map (§17), so each region's copies get the region ID as a prefix.
      const regionNodes = (id: number) => nodes.map((n) => ({ ...n, Name: `${id}/${n.Name}` }));
      const raw = { Regions: Object.fromEntries(ids.map((id) => [String(id), { RegionID: id, RegionCode: `r${id}`, RegionName: `R ${id}`, Nodes: regionNodes(id) }])) };
      const once = parseDerpMap(JSON.stringify(raw));
      assert.deepEqual(parseDerpMap(JSON.stringify(once)), once);
    }),
    { numRuns: 200 },
  );
});

test('loadDerpMap reads a file:// URL (a CLI path becomes one); a missing or oversized file is a typed error', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-derpmap-'));
  try {
    const p = path.join(dir, 'm.json');
    writeFileSync(p, TAILSCALE_LIKE);
    assert.equal(derpMapSourceUrl(p), `file://${p}`);
    assert.equal(derpMapSourceUrl('https://x.example/m'), 'https://x.example/m');
    assert.equal((await loadDerpMap(derpMapSourceUrl(p))).Regions['1']!.RegionCode, 'nyc');
    assert.equal((await loadDerpMap(`file://${p}`)).Regions['900']!.RegionName, 'Lab');
    await assert.rejects(loadDerpMap(`file://${path.join(dir, 'missing.json')}`), (e) => hasCode(e, DerpMapErrorCode.Fetch) && /ENOENT/.test((e as Error).message));
    const big = path.join(dir, 'big.json');
    writeFileSync(big, ' '.repeat(MAX_DERP_MAP_BYTES + 1));
    await assert.rejects(loadDerpMap(`file://${big}`), (e) => hasCode(e, DerpMapErrorCode.TooLarge));
    await assert.rejects(loadDerpMap(p), (e) => hasCode(e, DerpMapErrorCode.Url));
    await assert.rejects(loadDerpMap('ftp://x.example/m.json'), (e) => hasCode(e, DerpMapErrorCode.Url));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loadDerpMap fetches an http(s) URL; a non-200 answer is derpmap_fetch, an oversized body derpmap_too_large', async (t) => {
  const server = http.createServer((req, res) => {
    if (req.url === '/big') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const chunk = ' '.repeat(64 * 1024);
      for (let i = 0; i <= MAX_DERP_MAP_BYTES / chunk.length; i++) res.write(chunk);
      res.end('{}');
    } else if (req.url === '/derpmap/default') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(TAILSCALE_LIKE);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => { server.closeAllConnections(); server.close(); });
  const port = (server.address() as { port: number }).port;
  assert.equal((await loadDerpMap(`http://127.0.0.1:${port}/derpmap/default`)).Regions['1']!.RegionName, 'New York City');
  await assert.rejects(loadDerpMap(`http://127.0.0.1:${port}/nope`), (e) => hasCode(e, DerpMapErrorCode.Fetch));
  await assert.rejects(loadDerpMap(`http://127.0.0.1:${port}/big`), (e) => hasCode(e, DerpMapErrorCode.TooLarge));
});
