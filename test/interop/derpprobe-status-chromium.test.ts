/**
 * The derpprobe status page rendered by a real browser (spec/derp.md §18 `/`): `wiremesh derpprobe` in server
 * mode watches a wiremesh derper and a node that is down; headless Chromium (Debian's `chromium`) dumps the
 * rendered DOM — every probe must be a row of the table with its verdict — and takes a screenshot (kept at
 * $WIREMESH_SCREENSHOT when set, for a person to look at).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { which } from '../support/gobin.ts';
import { freeTcpPort, freeUdpPort, spawnUntil } from '../conformance/spawn.ts';
import { OPENSSL, makeLab, startWmDerper, writeMap } from './derpprobe-lab.ts';

const CHROMIUM = which('chromium') ?? which('chromium-browser');
const skip = CHROMIUM === null ? 'chromium not installed (apt-get install -y chromium; see scripts/install-lab-deps.sh)'
  : OPENSSL === null ? 'openssl not installed' : false;

function chromium(args: string[], profile: string): Promise<string> {
  const base = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--window-size=1200,800'];
  return new Promise((resolve, reject) => {
    execFile(CHROMIUM!, [...base, ...args], { timeout: 90_000, maxBuffer: 8 << 20 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`chromium failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

test('status page in headless Chromium: the table shows every probe with its verdict', { skip, timeout: 240_000 }, async (t) => {
  const lab = makeLab();
  const profile = mkdtempSync(path.join(os.tmpdir(), 'wm-chromium-'));
  const wm = await startWmDerper(lab, 'wm1');
  const down = { port: await freeTcpPort(), stunPort: await freeUdpPort() }; // nothing listens here
  const mapUrl = writeMap(lab, 'map.json', [
    { id: 900, code: 'lab', nodes: [{ name: 'wm1', derper: wm }, { name: 'down1', derper: down }] },
  ]);
  const probe = await spawnUntil(path.resolve('node_modules/.bin/node'), [path.resolve('bin/wiremesh.js'), 'derpprobe', `--derp-map=${mapUrl}`,
    '--listen=127.0.0.1:0', '--spread=false', '--interval=5s', '--mesh-interval=5s', '--stun-interval=2s', '--tls-interval=5s',
    '--bw-interval=5s', '--bw-probe-size-bytes=100000', '--qd-packets-per-second=20', `--mesh-psk-file=${lab.meshKeyFile}`],
  /derpprobe: listening on http:\/\/127\.0\.0\.1:(\d+)/, { env: { ...process.env, SSL_CERT_FILE: lab.certFile } });
  t.after(async () => {
    await probe.stop();
    await wm.stop();
    lab.remove();
    rmSync(profile, { recursive: true, force: true });
  });
  const base = `http://127.0.0.1:${probe.match[1]}`;

  // Every probe has a result (qd reports per 10 s window).
  const deadline = Date.now() + 60_000;
  for (;;) {
    const html = await (await fetch(`${base}/`)).text();
    if (!html.includes('badge b-pending')) break;
    assert.ok(Date.now() < deadline, `probes still pending:\n${html}`);
    await new Promise((r) => setTimeout(r, 1000));
  }

  const dom = await chromium(['--dump-dom', `${base}/`], profile);
  const rows = new Map([...dom.matchAll(/<tr class="st-(\w+)" data-probe="([^"]+)">/g)].map((m) => [m[2]!, m[1]!]));
  const expected = [
    'derpmap-probe',
    ...['wm1', 'down1'].flatMap((n) => [`derp/lab/${n}/tls`, `derp/lab/${n}/udp`]),
    ...['wm1', 'down1'].flatMap((f) => ['wm1', 'down1'].flatMap((to) => ['mesh', 'bw', 'qd'].map((c) => `derp/lab/${f}/${to}/${c}`))),
  ].sort();
  assert.deepEqual([...rows.keys()].sort(), expected, 'the rendered table has exactly one row per probe');
  for (const [name, st] of rows) {
    const involvesDown = name.includes('down1');
    assert.equal(st, involvesDown ? 'bad' : 'good', `${name} is ${st}`);
  }
  assert.match(dom, /<table id="probes">/);
  assert.match(dom, /17 probes/);

  const png = path.join(profile, 'status.png');
  await chromium([`--screenshot=${png}`, `${base}/`], profile);
  const bytes = readFileSync(png);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG');
  assert.ok(statSync(png).size > 20_000, 'a real rendering, not a blank page');
  if (process.env.WIREMESH_SCREENSHOT) copyFileSync(png, process.env.WIREMESH_SCREENSHOT);
});
