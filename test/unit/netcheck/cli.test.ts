// `wiremesh netcheck` end to end on loopback (no root): two STUN servers on 127.0.0.1 and 127.0.0.2 built on the
// project's codec, a DERP map file, and the real CLI in a child process: JSON, text and --explain outputs.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { PacketConn } from '../../../src/net/packet.ts';
import { listenUdp } from '../../../src/net/udp.ts';
import type { ReportJSON } from '../../../src/netcheck/report.ts';
import { buildResponse, parseRequest } from '../../../src/stun/codec.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const NODE = path.join(ROOT, 'node_modules/.bin/node');
let servers: PacketConn[] = [];
let dir = '';
let mapPath = '';

before(async () => {
  servers = await Promise.all(['127.0.0.1', '127.0.0.2'].map(async (host) => {
    const c = await listenUdp({ host, port: 0 });
    c.onMessage((data, from) => {
      const req = parseRequest(data);
      if (req !== null) c.send(buildResponse(req.txid, from), from);
    });
    return c;
  }));
  dir = mkdtempSync(path.join(os.tmpdir(), 'wm-netcheck-cli-'));
  mapPath = path.join(dir, 'derpmap.json');
  const regions = Object.fromEntries(servers.map((s, i) => [String(i + 1), {
    RegionID: i + 1, RegionCode: `lo${i + 1}`, RegionName: `Loopback ${i + 1}`,
    Nodes: [{ Name: `${i + 1}a`, RegionID: i + 1, HostName: s.localAddr().address, IPv4: s.localAddr().address, IPv6: 'none', STUNPort: s.localAddr().port }],
  }]));
  writeFileSync(mapPath, JSON.stringify({ Regions: regions }));
});

after(() => {
  servers.forEach((s) => s.close());
  rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(NODE, [path.join(ROOT, 'bin/wiremesh.js'), 'netcheck', '--no-portmap', '--bind-address', '127.0.0.1', '--derp-map', `file://${mapPath}`, ...args], { cwd: ROOT, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

test('--format=json prints the Report with Tailscale\'s field names and a stability warning on stderr', async () => {
  const r = await cli(['--format=json']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /not yet considered a stable interface/);
  const j = JSON.parse(r.stdout) as ReportJSON;
  assert.equal(j.UDP, true);
  assert.equal(j.IPv4, true);
  assert.equal(j.MappingVariesByDestIP, false);
  assert.match(j.GlobalV4, /^127\.0\.0\.1:\d+$/);
  assert.deepEqual(Object.keys(j.RegionLatency!).sort(), ['1', '2']);
  assert.ok(Object.values(j.RegionLatency!).every((ns) => Number.isInteger(ns) && ns > 0), 'integer nanoseconds');
  assert.equal(j.UPnP, null, '--no-portmap: not checked');
  assert.equal(j.CaptivePortal, null, 'not checked when STUN works');
  assert.ok([1, 2].includes(j.PreferredDERP));
});

test('--format=json-line prints one line', async () => {
  const r = await cli(['--format=json-line']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trimEnd().split('\n').length, 1);
  assert.equal((JSON.parse(r.stdout) as ReportJSON).UDP, true);
});

test('text output and --explain', async () => {
  const r = await cli(['--explain']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\nReport:\n\t\* Time: .+\n\t\* UDP: true\n\t\* IPv4: yes, 127\.0\.0\.1:\d+\n\t\* IPv6: .+\n\t\* MappingVariesByDestIP: false\n\t\* PortMapping: not checked\n/);
  assert.match(r.stdout, /\t\* DERP latency:\n\t\t- lo\d: [0-9.]+(µs|ms) *\(Loopback \d\)\n\t\t- lo\d: [0-9.]+(µs|ms) *\(Loopback \d\)\n/);
  assert.match(r.stdout, /What was measured:[\s\S]*What it means:[\s\S]*"easy NAT"[\s\S]*What to try:\n {2}\* Nothing needs doing\.\n$/);
});

test('a bad DERP map is a clear error with its code and exit status 1', async () => {
  const bad = path.join(dir, 'bad.json');
  writeFileSync(bad, '{"Regions": 1}');
  const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(NODE, [path.join(ROOT, 'bin/wiremesh.js'), 'netcheck', '--derp-map', bad], { cwd: ROOT }, (err, _o, stderr) => resolve({ code: err === null ? 0 : Number(err.code), stderr }));
  });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /derpmap_invalid/);
});
