// /debug/ access from real non-loopback addresses (spec/derp.md §16.3, issue #6 item 5): `wiremesh derper` in
// namespace "srv" (10.78.0.1), clients in namespace "cli" with two addresses: 10.78.0.2 (no access: every
// /debug/ page 403) and 10.78.0.3 (TS_ALLOW_DEBUG_IP: /debug/varz allowed, but /debug/pprof/ still 403 because
// profiles are loopback-only). From loopback inside "srv" everything is served.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isRoot } from '../../support/gobin.ts';
import { Lab, run } from '../../support/netns.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const SRV = '10.78.0.1';

/** GET from inside a namespace, bound to a local address; returns the status and body. */
function get(lab: Lab, ns: string, localAddress: string, url: string): { status: number; body: string } {
  const script = `
    const http = require('node:http');
    const u = new URL(process.argv[1]);
    http.get({ host: u.hostname, port: u.port, path: u.pathname, localAddress: process.argv[2] }, (res) => {
      let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => process.stdout.write(JSON.stringify({ status: res.statusCode, body: b })));
    }).on('error', (e) => { process.stdout.write(JSON.stringify({ status: 0, body: e.message })); });`;
  return JSON.parse(lab.exec(ns, process.execPath, ['-e', script, url, localAddress])) as { status: number; body: string };
}

test('/debug/ is refused from a non-loopback namespace address and served on loopback', { skip: isRoot() ? false : 'needs root (network namespaces)', timeout: 60_000 }, async (t) => {
  const lab = new Lab('dbg');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-dbg-'));
  t.after(() => {
    lab.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  const srv = lab.netns('srv');
  const cli = lab.netns('cli');
  lab.link(srv, 'eth0', `${SRV}/24`, cli, 'eth0', '10.78.0.2/24');
  run('ip', ['-n', cli, 'addr', 'add', '10.78.0.3/24', 'dev', 'eth0']);

  const derper = lab.spawn(srv, process.execPath, [path.join(ROOT, 'bin/wiremesh.js'), 'derper', '-a', ':0', '-c', path.join(dir, 'k'), '--stun-port', '0'], {
    env: { ...process.env, TS_ALLOW_DEBUG_IP: '10.78.0.3' },
  });
  let err = '';
  derper.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    derper.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /http=\S*:(\d+)/.exec(out);
      if (m !== null) resolve(Number(m[1]));
    });
    derper.once('exit', () => reject(new Error(`derper exited: ${err}`)));
  });

  const remote = (local: string, p: string) => get(lab, cli, local, `http://${SRV}:${port}${p}`);
  const loop = (p: string) => get(lab, srv, '127.0.0.1', `http://127.0.0.1:${port}${p}`);

  for (const p of ['/debug/', '/debug/vars', '/debug/varz', '/debug/check', '/debug/pprof/', '/debug/pprof/heap', '/debug/gc']) {
    const r = remote('10.78.0.2', p);
    assert.equal(r.status, 403, `${p} from 10.78.0.2`);
    assert.equal(r.body, 'debug access denied\n');
  }
  const home = remote('10.78.0.2', '/');
  assert.equal(home.status, 200);
  assert.doesNotMatch(home.body, /\/debug\//, 'no debug link for a stranger');
  assert.equal(remote('10.78.0.2', '/derp/probe').status, 200, 'the non-debug routes work from there');

  const allowed = remote('10.78.0.3', '/debug/varz');
  assert.equal(allowed.status, 200, 'TS_ALLOW_DEBUG_IP admits 10.78.0.3');
  assert.match(allowed.body, /^derp_accepts \d+$/m);
  assert.equal(remote('10.78.0.3', '/debug/pprof/').status, 403, 'pprof stays loopback-only');

  const idx = loop('/debug/');
  assert.equal(idx.status, 200);
  assert.match(idx.body, /pprof/);
  const varz = loop('/debug/varz');
  assert.equal(varz.status, 200);
  assert.match(varz.body, /^# TYPE derp_current_connections gauge$/m);
  assert.match(varz.body, /^derp_memstats_sys0 \d+$/m);
  assert.equal(loop('/debug/pprof/').status, 200);
  assert.equal(loop('/debug/check').status, 200);
});
