// netcheck in the namespace NAT lab (issue #3): every router profile is classified correctly by the real CLI
// (`wiremesh netcheck --format=json` run inside the host namespace), against the Go derper, coturn and the
// wiremesh derper as STUN servers; the full report takes ≤ 2 s (measured by the engine and recorded here).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, test } from 'node:test';
import type { ReportJSON } from '../../../src/netcheck/report.ts';
import { LAB_PROFILES, natlabUnavailable, natlabUp, type LabProfile, type NatLab } from '../natlab.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const NODE = path.join(ROOT, 'node_modules/.bin/node');
const skip = natlabUnavailable();
const timings: string[] = [];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The engine's own measure of the report (from --verbose). */
  reportMs: number;
  /** Whole process, including Node start-up. */
  wallMs: number;
}

function netcheck(lab: NatLab, args: string[], hostNs = lab.hostNs): Promise<Run> {
  const t0 = performance.now();
  const p = spawn('ip', ['netns', 'exec', hostNs, NODE, path.join(ROOT, 'bin/wiremesh.js'), 'netcheck', '--verbose', '--derp-map', `file://${lab.derpMapPath}`, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    const killer = setTimeout(() => p.kill('SIGKILL'), 20_000);
    p.on('close', (code) => {
      clearTimeout(killer);
      const m = /netcheck: report in ([\d.]+) ms/.exec(stderr);
      resolve({ code, stdout, stderr, reportMs: m === null ? NaN : Number(m[1]), wallMs: performance.now() - t0 });
    });
  });
}

interface Expect {
  udp: boolean;
  varies: boolean | null;
  globalV4: RegExp | '';
  captive: boolean | null;
  doubleNAT: boolean;
}

const EXPECT: Record<LabProfile, Expect> = {
  easy: { udp: true, varies: false, globalV4: /^203\.0\.113\.1:\d+$/, captive: null, doubleNAT: false },
  hard: { udp: true, varies: true, globalV4: /^203\.0\.113\.1:\d+$/, captive: null, doubleNAT: false },
  'udp-blocked': { udp: false, varies: null, globalV4: '', captive: false, doubleNAT: false },
  'stateful-firewall': { udp: true, varies: false, globalV4: /^192\.0\.2\.18:\d+$/, captive: null, doubleNAT: false },
  'double-nat': { udp: true, varies: false, globalV4: /^203\.0\.113\.1:\d+$/, captive: null, doubleNAT: true },
  'captive-portal': { udp: false, varies: null, globalV4: '', captive: true, doubleNAT: false },
};

after(() => {
  if (timings.length > 0) process.stdout.write(`# netcheck timings (engine report / whole process incl. Node start-up):\n${timings.map((t) => `#   ${t}`).join('\n')}\n`);
});

for (const profile of LAB_PROFILES) {
  test(`namespace lab: netcheck classifies ${profile}`, { skip: skip ?? false, timeout: 90_000 }, async (t) => {
    const lab = await natlabUp(profile);
    try {
      const r = await netcheck(lab, ['--format=json']);
      assert.equal(r.code, 0, r.stderr);
      const rep = JSON.parse(r.stdout) as ReportJSON;
      const e = EXPECT[profile];
      assert.equal(rep.UDP, e.udp, 'UDP');
      assert.equal(rep.MappingVariesByDestIP, e.varies, 'MappingVariesByDestIP');
      if (e.globalV4 === '') assert.equal(rep.GlobalV4, '');
      else assert.match(rep.GlobalV4, e.globalV4);
      assert.equal(rep.CaptivePortal, e.captive, 'CaptivePortal');
      assert.equal(rep.DoubleNAT, e.doubleNAT, 'DoubleNAT');
      assert.equal(rep.IPv4, true, 'IPv4 reachability (STUN or HTTPS)');
      // Region latency is always filled: by STUN, or over HTTPS /derp/latency-check when UDP is blocked.
      assert.ok(rep.RegionLatency !== null && rep.RegionLatency['1'] !== undefined && rep.RegionLatency['1'] > 0, `region 1 latency: ${JSON.stringify(rep.RegionLatency)}`);
      assert.equal(rep.PreferredDERP > 0, true);
      const allRegions = ['1', '2', ...(lab.stunServers.includes('wiremesh-derper') ? ['3'] : [])];
      assert.deepEqual(Object.keys(rep.RegionLatency!).sort(), allRegions, 'every region measured');
      if (e.udp) {
        assert.ok(rep.GlobalV4Counters !== null && Object.values(rep.GlobalV4Counters).reduce((a, b) => a + b, 0) >= 2);
        assert.equal(rep.ICMPv4, false, 'ICMP fallback only runs without UDP');
      } else {
        // UDP blocked: the Go derper answered HTTPS /derp/latency-check, and ICMP echo reached every region.
        assert.match(r.stderr, /HTTPS latency 1a \(region 1\)/, 'HTTPS latency-check fallback');
        assert.equal(rep.ICMPv4, true);
        assert.equal(rep.RegionV4Latency, null, 'no STUN samples');
      }
      assert.equal(rep.PreferredDERP, 1, 'the only region with a relay is home (STUN-only regions cannot be)');
      assert.ok(r.reportMs <= 2000, `full netcheck took ${r.reportMs} ms (budget 2000)`);
      timings.push(`${profile.padEnd(18)} ${r.reportMs.toFixed(0).padStart(5)} ms / ${r.wallMs.toFixed(0).padStart(5)} ms   [STUN: ${lab.stunServers.join(', ')}]`);
      if (lab.wiremeshDerperError !== null) t.diagnostic(`wiremesh derper did not start: ${lab.wiremeshDerperError}`);
    } finally {
      await lab.down();
    }
  });
}

test('namespace lab: text output matches tailscale netcheck\'s layout, and --explain gives guidance', { skip: skip ?? false, timeout: 90_000 }, async () => {
  const lab = await natlabUp('hard');
  try {
    const r = await netcheck(lab, ['--explain']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], '');
    assert.equal(lines[1], 'Report:');
    assert.match(lines[2]!, /^\t\* Time: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.equal(lines[3], '\t* UDP: true');
    assert.match(lines[4]!, /^\t\* IPv4: yes, 203\.0\.113\.1:\d+$/);
    assert.match(lines[5]!, /^\t\* IPv6: (no, but OS has support|no, unavailable in OS)$/);
    assert.equal(lines[6], '\t* MappingVariesByDestIP: true');
    assert.match(lines[7]!, /^\t\* PortMapping: (|not checked)$/);
    assert.equal(lines[8], '\t* DoubleNAT: false');
    assert.equal(lines[9], '\t* Nearest DERP: Lab Go derper');
    assert.equal(lines[10], '\t* DERP latency:');
    const regionLines = lines.slice(11).filter((l) => l.startsWith('\t\t- '));
    assert.equal(regionLines.length, lab.stunServers.length);
    for (const l of regionLines) assert.match(l, /^\t\t- [ a-z]{3}: [0-9.]+(µs|ms|s) *\(derp\d, Lab .+\)$/);
    assert.match(r.stdout, /What was measured:\n/);
    assert.match(r.stdout, /different public port for every destination \("hard NAT"/);
    assert.match(r.stdout, /randomizeClientPort/);
    assert.match(r.stdout, /Persistent Dynamic IP and Port/);
    assert.doesNotMatch(r.stdout, /Nothing needs doing/);
  } finally {
    await lab.down();
  }
});

test('namespace lab: two sites in one topology (easy and hard) are each classified, concurrently', { skip: skip ?? false, timeout: 90_000 }, async () => {
  const lab = await natlabUp(['easy', 'hard']);
  try {
    assert.deepEqual(lab.sites.map((s) => s.hostIp), ['10.1.0.2', '10.2.0.2']);
    const [a, b] = await Promise.all(lab.sites.map((s) => netcheck(lab, ['--format=json'], s.hostNs)));
    const ra = JSON.parse(a!.stdout) as ReportJSON;
    const rb = JSON.parse(b!.stdout) as ReportJSON;
    assert.match(ra.GlobalV4, /^203\.0\.113\.1:\d+$/);
    assert.match(rb.GlobalV4, /^203\.0\.113\.2:\d+$/);
    assert.equal(ra.MappingVariesByDestIP, false);
    assert.equal(rb.MappingVariesByDestIP, true);
  } finally {
    await lab.down();
  }
});

test('namespace lab with IPv6: routed IPv6 through the firewall is reported (and blocked with UDP)', { skip: skip ?? false, timeout: 90_000 }, async () => {
  const lab = await natlabUp(['easy', 'udp-blocked'], { ipv6: true });
  try {
    const [easy, blocked] = await Promise.all(lab.sites.map((s) => netcheck(lab, ['--format=json'], s.hostNs)));
    const re = JSON.parse(easy!.stdout) as ReportJSON;
    assert.equal(re.IPv6, true);
    assert.equal(re.OSHasIPv6, true);
    assert.match(re.GlobalV6, /^\[2001:db8:1::2\]:\d+$/, 'IPv6 is not translated');
    assert.deepEqual(Object.keys(re.RegionV6Latency ?? {}), ['2'], 'coturn answered over IPv6');
    assert.match(re.GlobalV4, /^203\.0\.113\.1:\d+$/);
    const rb = JSON.parse(blocked!.stdout) as ReportJSON;
    assert.equal(rb.UDP, false);
    assert.equal(rb.IPv6, false);
    assert.equal(rb.IPv6CanSend, true);
    assert.equal(rb.GlobalV6, '');
  } finally {
    await lab.down();
  }
});
