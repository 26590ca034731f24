// `wiremesh derpprobe` (spec/derp.md §18): Go-compatible flag parsing and defaults, and the real command in --once
// mode against a loopback STUN server and file:// DERP maps (sorted good:/bad: lines, exit status).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseDerpprobeFlags } from '../../../src/cli/derpprobe.ts';
import { listenUdp } from '../../../src/net/udp.ts';
import { buildResponse, parseRequest } from '../../../src/stun/codec.ts';

const NODE = path.resolve('node_modules/.bin/node');
const BIN = path.resolve('bin/wiremesh.js');

test('flags: Go defaults, Go-style spellings, durations, validation', () => {
  const d = parseDerpprobeFlags([]);
  assert.equal(d.derpMap, 'https://login.tailscale.com/derpmap/default');
  assert.deepEqual(d.listen, { host: '', port: 8030 });
  assert.equal(d.once, false);
  assert.equal(d.spread, true);
  assert.deepEqual([d.intervalMs, d.meshIntervalMs, d.stunIntervalMs, d.tlsIntervalMs, d.bwIntervalMs], [15_000, 15_000, 15_000, 15_000, 0]);
  assert.equal(d.bwProbeSizeBytes, 1_000_000);
  assert.equal(d.qdPacketsPerSecond, 0);
  assert.equal(d.qdPacketTimeoutMs, 5000);

  const f = parseDerpprobeFlags(['-derp-map=file:///tmp/m.json', '-once', '--spread=false', '-mesh-interval', '0', '--tls-interval=1m30s',
    '--bw-interval', '500ms', '--bw-probe-size-bytes=65537', '--qd-packets-per-second', '10', '--region-code', 'lax', '--listen', '127.0.0.1:0',
    '--mesh-psk-file', '/k']);
  assert.equal(f.derpMap, 'file:///tmp/m.json');
  assert.equal(f.once, true);
  assert.equal(f.spread, false);
  assert.equal(f.meshIntervalMs, 0);
  assert.equal(f.tlsIntervalMs, 90_000);
  assert.equal(f.bwIntervalMs, 500);
  assert.equal(f.bwProbeSizeBytes, 65537);
  assert.equal(f.qdPacketsPerSecond, 10);
  assert.equal(f.regionCode, 'lax');
  assert.deepEqual(f.listen, { host: '127.0.0.1', port: 0 });
  assert.equal(f.meshPskFile, '/k');

  assert.throws(() => parseDerpprobeFlags(['--interval', '0']), { code: 'derpprobe_usage' });
  assert.throws(() => parseDerpprobeFlags(['--mesh-interval', 'soon']), { code: 'flag_bad_duration' });
  assert.throws(() => parseDerpprobeFlags(['--bw-probe-size-bytes', '-5']), { code: 'derpprobe_usage' });
  assert.throws(() => parseDerpprobeFlags(['--bw-tun-ipv4-addr', '10.0.0.1']), /not supported/);
  assert.throws(() => parseDerpprobeFlags(['--spread=maybe']), { code: 'flag_bad_bool' });
});

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(NODE, [BIN, 'derpprobe', ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

test('--once prints sorted good:/bad: lines and exits 1 when a probe failed, 0 when all passed', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'derpprobe-cli-'));
  // A loopback STUN responder (node 900a) and a port where nothing answers (node 900b).
  const stun = await listenUdp({ host: '127.0.0.1' });
  stun.onMessage((data, from) => {
    const req = parseRequest(data);
    if (req !== null) stun.send(buildResponse(req.txid, from), from);
  });
  const dead = await listenUdp({ host: '127.0.0.1' });
  const deadPort = dead.localAddr().port;
  dead.close();
  t.after(() => { stun.close(); rmSync(dir, { recursive: true, force: true }); });
  const node = (name: string, port: number) => ({ Name: name, RegionID: 900, HostName: 'localhost', IPv4: '127.0.0.1', STUNPort: port, DERPPort: 1 });
  const write = (nodes: object[]): string => {
    const file = path.join(dir, `map-${nodes.length}.json`);
    writeFileSync(file, JSON.stringify({ Regions: { 900: { RegionID: 900, RegionCode: 'loc', RegionName: 'Local', Nodes: nodes } } }));
    return `file://${file}`;
  };
  const common = ['--once', '--spread=false', '--tls-interval=0', '--mesh-interval=0', '--stun-interval=1s'];

  const mixed = await runCli(['--derp-map', write([node('900a', stun.localAddr().port), node('900b', deadPort)]), ...common]);
  assert.equal(mixed.code, 1, mixed.stderr);
  const lines = mixed.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 3, mixed.stdout);
  assert.match(lines[0]!, /^good: derp\/loc\/900a\/udp: \d+(\.\d+)?(ns|µs|ms|s)$/);
  assert.match(lines[1]!, /^good: derpmap-probe: \d+(\.\d+)?(ns|µs|ms|s)$/);
  assert.match(lines[2]!, /^bad: derp\/loc\/900b\/udp: timeout/);

  const good = await runCli(['--derp-map', write([node('900a', stun.localAddr().port)]), ...common]);
  assert.equal(good.code, 0, good.stdout + good.stderr);
  assert.equal(good.stdout.split('\n').filter((l) => l.startsWith('good: ')).length, 2);

  const missing = await runCli(['--derp-map', `file://${dir}/nope.json`, ...common]);
  assert.equal(missing.code, 1);
  assert.match(missing.stdout, /^bad: derpmap-probe: fetching file:\/\/.*nope\.json: ENOENT/m);

  const usage = await runCli(['--interval', 'x']);
  assert.equal(usage.code, 2);
});
