/**
 * Real Tailscale clients over the wiremesh derper (spec/derp.md §19.4, checklist items 43–44): two tailscaled
 * v1.102.3 nodes (userspace networking) registered with a toy control server, forced onto DERP with
 * TS_DEBUG_ALWAYS_USE_DERP=1, must reach each other through our derper only:
 *  - plain HTTP, the map replaced by client env knobs (TS_DEBUG_USE_DERP_ADDR + TS_DEBUG_USE_DERP_HTTP, which pin
 *    the port to 3340 — safe because everything runs in a private network namespace);
 *  - TLS, the map from control (ephemeral port, our self-signed IP cert trusted by a `CertName: "sha256-raw:…"`
 *    pin, or by InsecureForTests), plus `tailscale debug derp` with the pin (5 DERP connections with one key left
 *    open: no "multiple server public keys").
 * Disco pings must come back `via DERP(…)`, a TSMP ping (WireGuard data) must succeed, `tailscale status` must
 * list the peer, and /debug/varz must count the relayed disco and data packets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTestControl, skipReason, TailnetLab, type TsNode } from './tailscaled-lab.ts';

const skip = skipReason();
/** Built before any test (a cold `go build` can take minutes, which must not eat a test's own timeout). */
const controlBin = skip === false ? await buildTestControl() : '';
const TEST_TIMEOUT_MS = 300_000;

/** Client-side knob that forbids direct UDP paths (spec §19.4). */
const ALWAYS_DERP = { TS_DEBUG_ALWAYS_USE_DERP: '1' };

async function up(n: TsNode, control: string): Promise<string> {
  const r = await n.cli(['up', `--login-server=${control}`, `--hostname=${n.name}`, '--accept-dns=false', '--timeout=90s'], 100_000);
  assert.equal(r.code, 0, `tailscale up ${n.name}: ${r.stdout}${r.stderr}\n--- tailscaled log tail:\n${n.daemon.err.slice(-4000)}`);
  const ip = await n.cli(['ip', '-4']);
  assert.equal(ip.code, 0, ip.stderr);
  const addr = ip.stdout.trim();
  assert.match(addr, /^100\.\d+\.\d+\.\d+$/);
  return addr;
}

/** /debug/varz of the derper (fetched by a Node one-liner inside the namespace) as name{labels} → value. */
function readVarz(lab: TailnetLab, port: number, tls: boolean): Map<string, number> {
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}/debug/varz`;
  const r = lab.fetchText(url);
  const m = new Map<string, number>();
  for (const line of r.split('\n')) {
    const x = /^(\S+) (\S+)$/.exec(line);
    if (x !== null && !line.startsWith('#')) m.set(x[1]!, Number(x[2]));
  }
  return m;
}

/** `tailscale ping` n1 → n2 over disco (must say via DERP(code)) and TSMP; returns the pong lines. */
async function pings(n1: TsNode, n2: TsNode, ip2: string, regionCode: string): Promise<string[]> {
  const disco = await n1.cli(['ping', '--until-direct=false', '-c', '3', '--timeout=10s', ip2], 60_000);
  const lines = disco.stdout.split('\n').filter((l) => l.startsWith('pong'));
  assert.equal(disco.code, 0, `ping: ${disco.stdout}${disco.stderr}\n--- n1 log tail:\n${n1.daemon.err.slice(-4000)}`);
  assert.ok(lines.length >= 1, disco.stdout);
  const ipRe = ip2.replaceAll('.', '\\.');
  const via = new RegExp(`^pong from ${n2.name} \\(${ipRe}(, \\d+)?\\) via DERP\\(${regionCode}\\) in \\d+(\\.\\d+)?(µs|ms|s)$`);
  for (const l of lines) assert.match(l, via);
  const tsmp = await n1.cli(['ping', '--tsmp', '-c', '1', '--timeout=10s', ip2], 30_000);
  assert.equal(tsmp.code, 0, `tsmp ping: ${tsmp.stdout}${tsmp.stderr}`);
  assert.match(tsmp.stdout, new RegExp(`^pong from ${n2.name} \\(${ipRe}(, \\d+)?\\) via TSMP in \\d`, 'm'));
  return [...lines, ...tsmp.stdout.split('\n').filter((l) => l.startsWith('pong'))];
}

async function statusShowsPeer(n1: TsNode, n2: TsNode, ip2: string): Promise<void> {
  const st = await n1.cli(['status']);
  assert.equal(st.code, 0, st.stderr);
  const line = st.stdout.split('\n').find((l) => l.startsWith(ip2));
  assert.ok(line !== undefined && line.includes(n2.name), `status lacks ${n2.name}:\n${st.stdout}`);
}

function assertRelayed(before: Map<string, number>, after: Map<string, number>): void {
  const d = (k: string): number => (after.get(k) ?? 0) - (before.get(k) ?? 0);
  assert.ok(d('derp_packets_received_kind{kind="disco"}') > 0, 'no disco packets relayed');
  assert.ok(d('derp_packets_received_kind{kind="other"}') > 0, 'no WireGuard packets relayed');
  assert.ok(d('derp_packets_sent') > 0, 'derp_packets_sent did not grow');
  assert.ok((after.get('derp_current_connections') ?? 0) >= 2, 'both nodes should be connected');
}

test('tailscaled ×2 ping via the wiremesh derper: env-knob map, plain HTTP on 3340 (item 43)', { skip, timeout: TEST_TIMEOUT_MS }, async (t) => {
  const control = controlBin;
  const lab = new TailnetLab();
  try {
    const derper = await lab.startDerper({ port: 3340, tls: false });
    // Control hands out a dead map (region 900 → port 1): only the env knobs can lead the nodes to our derper.
    const url = await lab.startControl(control, { port: 1, stunPort: -1, certDir: null }, 'none');
    const env = { ...ALWAYS_DERP, TS_DEBUG_USE_DERP_ADDR: '127.0.0.1', TS_DEBUG_USE_DERP_HTTP: '1' };
    const n1 = await lab.startNode('n1', env);
    const n2 = await lab.startNode('n2', env);
    await up(n1, url);
    const ip2 = await up(n2, url);
    // `tailscale debug derp-map` prints the netmap's (control's, dead) map: the knob replaces it inside magicsock
    // only, so the pings and our varz below are what prove the override.
    const map = await n1.cli(['debug', 'derp-map']);
    assert.match(map.stdout, /"DERPPort": 1\b/);
    const before = readVarz(lab, derper.port, false);
    const lines = await pings(n1, n2, ip2, '');
    for (const l of lines) t.diagnostic(l);
    await statusShowsPeer(n1, n2, ip2);
    assertRelayed(before, readVarz(lab, derper.port, false));
  } finally {
    await lab.close();
  }
});

for (const mode of ['pin', 'insecure'] as const) {
  const how = mode === 'pin' ? 'CertName sha256-raw pin' : 'InsecureForTests';
  const title = mode === 'pin' ? 'tailscaled ×2 over TLS, map from control with a CertName pin, + `tailscale debug derp` (items 43–44)'
    : 'tailscaled ×2 over TLS, map from control with InsecureForTests (item 43)';
  test(title, { skip, timeout: TEST_TIMEOUT_MS }, async (t) => {
    const control = controlBin;
    const lab = new TailnetLab();
    try {
      const derper = await lab.startDerper({ port: 0, tls: true });
      const url = await lab.startControl(control, derper, mode);
      const n1 = await lab.startNode('n1', ALWAYS_DERP);
      const n2 = await lab.startNode('n2', ALWAYS_DERP);
      await up(n1, url);
      const ip2 = await up(n2, url);
      const before = readVarz(lab, derper.port, true);
      const lines = await pings(n1, n2, ip2, 'wiremesh');
      for (const l of lines) t.diagnostic(`${how}: ${l}`);
      await statusShowsPeer(n1, n2, ip2);
      assertRelayed(before, readVarz(lab, derper.port, true));
      // `debug derp` verifies TLS with the system roots or CertName only (it ignores InsecureForTests).
      if (mode !== 'pin') return;

      const beforeDbg = readVarz(lab, derper.port, true);
      const dbg = await n1.cli(['debug', 'derp', '900'], 60_000);
      assert.equal(dbg.code, 0, dbg.stderr);
      const st = JSON.parse(dbg.stdout) as { Info?: string[] | null; Warnings?: string[] | null; Errors?: string[] | null };
      t.diagnostic(`debug derp 900: ${JSON.stringify(st)}`);
      assert.ok((st.Info ?? []).some((s) => s.includes('Successfully established a DERP connection with node "127.0.0.1"')), dbg.stdout);
      assert.ok((st.Info ?? []).some((s) => s.includes('returned IPv4 STUN response')), dbg.stdout);
      // The loopback-only node has no IPv6 address: only the IPv6 dial may fail.
      const errors = (st.Errors ?? []).filter((e) => !/over IPv6/.test(e));
      assert.deepEqual(errors, [], dbg.stdout);
      assert.ok(!dbg.stdout.includes('multiple server public keys'), dbg.stdout);
      // Those 5 same-key connections stay open in tailscaled (it never closes them): the derper must still be sound.
      const afterDbg = readVarz(lab, derper.port, true);
      const grew = (k: string): number => (afterDbg.get(k) ?? 0) - (beforeDbg.get(k) ?? 0);
      t.diagnostic(`debug derp: accepts +${grew('derp_accepts')}, dup client conns +${grew('derp_total_dup_client_conns')}, current dup keys ${afterDbg.get('derp_current_dup_client_keys')}`);
      assert.ok(grew('derp_accepts') >= 5, `expected 5 DERP connections from debug derp, saw ${grew('derp_accepts')}`);
      assert.equal(lab.fetchText(`https://127.0.0.1:${derper.port}/debug/check`).trim(), 'derp.Server ConsistencyCheck okay');
      const again = await n1.cli(['ping', '--until-direct=false', '-c', '1', '--timeout=10s', ip2], 30_000);
      assert.match(again.stdout, /via DERP\(wiremesh\)/, again.stdout + again.stderr);
    } finally {
      await lab.close();
    }
  });
}
