/**
 * `wiremesh derpprobe` against the real Go binaries (spec/derp.md §18, §19): our prober and Go's derpprobe
 * v1.102.3 run `--once` over the same DERP map — Go derpers and wiremesh derpers in TLS manual mode on loopback —
 * and must give the same verdict for every probe, also after one derper is stopped (exactly its probes go bad).
 * The verdict tables are printed as test diagnostics and appended to $TMPDIR/derpprobe-verdicts.md.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { freeTcpPort } from '../conformance/spawn.ts';
import { nativeTlsAvailable } from '../../src/net/tls-native.ts';
import {
  GO_DERPER, GO_DERPPROBE, OPENSSL, badNames, makeLab, runGo, runOurs, startGoDerper, startWmDerper, verdictTable, writeMap,
  type Lab, type ProbeRun,
} from './derpprobe-lab.ts';

const skip = GO_DERPER === null || GO_DERPPROBE === null
  ? 'Go derper/derpprobe not installed (go install tailscale.com/cmd/derper@v1.102.3 tailscale.com/cmd/derpprobe@v1.102.3)'
  : OPENSSL === null ? 'openssl not installed (needed to make the localhost test certificate)' : false;

const TABLES = path.join(os.tmpdir(), 'derpprobe-verdicts.md');
/** Also bw probes; a 3 s STUN interval keeps the timeout of a stopped node's udp probe short (2.4 s) in both. */
const BW = ['--bw-interval=10s', '--bw-probe-size-bytes=300000', '--stun-interval=3s'];

function record(t: { diagnostic(s: string): void }, title: string, ours: ProbeRun, go: ProbeRun): void {
  const table = verdictTable(title, ours.verdicts, go.verdicts);
  t.diagnostic(table);
  appendFileSync(TABLES, table + '\n\n');
}

/** Runs both probers; retries (a mesh needs a moment to form) until `ok` or attempts run out. */
async function both(lab: Lab, mapUrl: string, ok: (o: ProbeRun, g: ProbeRun) => boolean, attempts = 1): Promise<[ProbeRun, ProbeRun]> {
  let last: [ProbeRun, ProbeRun] | null = null;
  for (let i = 0; i < attempts; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 1000));
    last = [await runOurs(lab, mapUrl, BW), await runGo(lab, mapUrl, BW)];
    if (ok(...last)) break;
  }
  return last!;
}

const allGood = (r: ProbeRun): boolean => r.code === 0 && r.verdicts.size > 0 && badNames(r.verdicts).length === 0;

function assertSameVerdicts(ours: ProbeRun, go: ProbeRun): void {
  assert.deepEqual([...ours.verdicts.keys()].sort(), [...go.verdicts.keys()].sort(), `same probe set\nours:\n${ours.raw}\ngo:\n${go.raw}`);
  for (const [name, v] of ours.verdicts) assert.equal(v.good, go.verdicts.get(name)!.good, `${name}: ours ${v.detail} / go ${go.verdicts.get(name)!.detail}`);
  assert.equal(ours.code, go.code, 'same exit status');
}

test('same verdicts as Go derpprobe against a Go derper and a wiremesh derper; stopping ours turns exactly its probes bad', { skip, timeout: 180_000 }, async (t) => {
  const lab = makeLab();
  const go1 = await startGoDerper(lab, 'go1');
  const wm1 = await startWmDerper(lab, 'wm1');
  t.after(async () => { await go1.stop(); await wm1.stop(); lab.remove(); });
  const mapUrl = writeMap(lab, 'map.json', [
    { id: 900, code: 'go', nodes: [{ name: 'go1', derper: go1 }] },
    { id: 901, code: 'wm', nodes: [{ name: 'wm1', derper: wm1 }] },
    // The same wiremesh derper under an IP HostName: a client sends no SNI for an IP, and a manual-mode derper for a
    // DNS name refuses a hello without SNI ("cert mismatch with hostname"). The native TLS engine (the default)
    // refuses it in the handshake as Go does, so the tls probe fails too; the Node https fallback completes the
    // handshake and closes the connection right after it, so only the mesh and bw probes fail (docs/tls-native.md).
    { id: 902, code: 'wmip', nodes: [{ name: 'wm1ip', derper: wm1, hostName: '127.0.0.1' }] },
  ]);

  const [ours, go] = await both(lab, mapUrl, () => true);
  record(t, 'Go derper (region go) and wiremesh derper (regions wm, wmip), all up', ours, go);
  assertSameVerdicts(ours, go);
  const inHandshake = nativeTlsAvailable();
  assert.deepEqual(badNames(ours.verdicts), [...(inHandshake ? ['derp/wmip/wm1ip/tls'] : []), 'derp/wmip/wm1ip/wm1ip/bw', 'derp/wmip/wm1ip/wm1ip/mesh'], ours.raw);
  assert.match(ours.verdicts.get('derp/wmip/wm1ip/wm1ip/mesh')!.detail, inHandshake ? /unrecognized.name|alert/i : /closed the connection during the upgrade/);
  for (const n of ['derp/go/go1/tls', 'derp/go/go1/udp', 'derp/go/go1/go1/mesh', 'derp/go/go1/go1/bw', 'derp/wm/wm1/tls', 'derp/wm/wm1/udp', 'derp/wm/wm1/wm1/mesh', 'derp/wm/wm1/wm1/bw', 'derpmap-probe']) {
    assert.equal(ours.verdicts.get(n)?.good, true, `${n}\n${ours.raw}`);
  }

  await wm1.stop();
  const [ours2, go2] = await both(lab, mapUrl, () => true);
  record(t, 'after stopping the wiremesh derper', ours2, go2);
  assertSameVerdicts(ours2, go2);
  assert.deepEqual(badNames(ours2.verdicts), [
    'derp/wm/wm1/tls', 'derp/wm/wm1/udp', 'derp/wm/wm1/wm1/bw', 'derp/wm/wm1/wm1/mesh',
    'derp/wmip/wm1ip/tls', 'derp/wmip/wm1ip/udp', 'derp/wmip/wm1ip/wm1ip/bw', 'derp/wmip/wm1ip/wm1ip/mesh',
  ]);
  assert.equal(ours2.code, 1);
  for (const n of badNames(ours2.verdicts)) assert.match(ours2.verdicts.get(n)!.detail, /ECONNREFUSED|refused|timeout/i, `${n}: ${ours2.verdicts.get(n)!.detail}`);
});

test('two meshed Go derpers: same verdicts as Go derpprobe; stopping one turns exactly its probes and pairs bad', { skip, timeout: 180_000 }, async (t) => {
  const lab = makeLab();
  const [pa, pb] = [await freeTcpPort(), await freeTcpPort()];
  const mesh = [`localhost:${pa}`, `localhost:${pb}`];
  const a = await startGoDerper(lab, 'ga', { port: pa, meshWith: mesh });
  const b = await startGoDerper(lab, 'gb', { port: pb, meshWith: mesh });
  t.after(async () => { await a.stop(); await b.stop(); lab.remove(); });
  const mapUrl = writeMap(lab, 'map.json', [{ id: 900, code: 'gm', nodes: [{ name: 'ga', derper: a }, { name: 'gb', derper: b }] }]);

  const [ours, go] = await both(lab, mapUrl, (o, g) => allGood(o) && allGood(g), 8);
  record(t, 'two meshed Go derpers (region gm)', ours, go);
  assertSameVerdicts(ours, go);
  assert.ok(allGood(ours), ours.raw);
  assert.equal(ours.verdicts.size, 1 + 2 * 2 + 4 * 2, 'map + tls/udp per node + mesh/bw per ordered pair');

  await b.stop();
  const [ours2, go2] = await both(lab, mapUrl, () => true);
  record(t, 'two meshed Go derpers after stopping gb', ours2, go2);
  assertSameVerdicts(ours2, go2);
  assert.deepEqual(badNames(ours2.verdicts), [
    'derp/gm/ga/gb/bw', 'derp/gm/ga/gb/mesh', 'derp/gm/gb/ga/bw', 'derp/gm/gb/ga/mesh', 'derp/gm/gb/gb/bw', 'derp/gm/gb/gb/mesh',
    'derp/gm/gb/tls', 'derp/gm/gb/udp',
  ], ours2.raw);
});

/** Why the wiremesh mesh test cannot run yet: `wiremesh derper --mesh-with` still refused, or false. */
function wmMeshUnsupported(): string | false {
  try {
    execFileSync(path.resolve('node_modules/.bin/node'), [path.resolve('bin/wiremesh.js'), 'derper', '--mesh-with', 'localhost:1', '--version'], { stdio: 'pipe', timeout: 10_000 });
    return false;
  } catch (e) {
    const out = String((e as { stderr?: Buffer }).stderr ?? '');
    return /mesh-with is not supported/.test(out) ? 'wiremesh derper refuses --mesh-with ("--mesh-with is not supported yet by wiremesh derper"); the mesh client lands separately' : false;
  }
}

test('two meshed wiremesh derpers: --once all good with both probers; stopping one turns exactly its probes and pairs bad', { skip: skip || wmMeshUnsupported(), timeout: 180_000 }, async (t) => {
  const lab = makeLab();
  const [pa, pb] = [await freeTcpPort(), await freeTcpPort()];
  const mesh = [`localhost:${pa}`, `localhost:${pb}`];
  const a = await startWmDerper(lab, 'wa', { port: pa, meshWith: mesh });
  const b = await startWmDerper(lab, 'wb', { port: pb, meshWith: mesh });
  t.after(async () => { await a.stop(); await b.stop(); lab.remove(); });
  const mapUrl = writeMap(lab, 'map.json', [{ id: 900, code: 'wmm', nodes: [{ name: 'wa', derper: a }, { name: 'wb', derper: b }] }]);

  const [ours, go] = await both(lab, mapUrl, (o, g) => allGood(o) && allGood(g), 8);
  record(t, 'two meshed wiremesh derpers (region wmm)', ours, go);
  assertSameVerdicts(ours, go);
  assert.ok(allGood(ours), ours.raw);

  await b.stop();
  const [ours2, go2] = await both(lab, mapUrl, () => true);
  record(t, 'two meshed wiremesh derpers after stopping wb', ours2, go2);
  assertSameVerdicts(ours2, go2);
  assert.deepEqual(badNames(ours2.verdicts), [
    'derp/wmm/wa/wb/bw', 'derp/wmm/wa/wb/mesh', 'derp/wmm/wb/tls', 'derp/wmm/wb/udp',
    'derp/wmm/wb/wa/bw', 'derp/wmm/wb/wa/mesh', 'derp/wmm/wb/wb/bw', 'derp/wmm/wb/wb/mesh',
  ], ours2.raw);
});
