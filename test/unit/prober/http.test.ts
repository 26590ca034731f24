// derpprobe server mode (spec/derp.md §18): the HTTP endpoints / /healthz /debug/probe-run /debug/probe-all
// /debug/varz served on loopback, checked for status codes, content types and bodies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { realClock } from '../../../src/time/clock.ts';
import { Prober } from '../../../src/prober/prober.ts';
import { listenProberHttp } from '../../../src/prober/http.ts';

test('server mode endpoints: /, /healthz, /debug/probe-run, /debug/probe-all, /debug/varz', async (t) => {
  const prober = new Prober({ clock: realClock, spread: true });
  let fail = false;
  prober.run('derp/loc/900a/tls', 3_600_000, { class: 'derp_tls', labels: { region: 'loc' }, probe: async () => {} });
  prober.run('derp/loc/900a/900a/mesh', 3_600_000, { class: 'derp_mesh', probe: async () => { if (fail) throw new Error('mesh <broken>'); } });
  prober.run('derp/loc/900a/900a/qd', 3_600_000, { class: 'derp_qd', continuous: true, probe: () => new Promise(() => {}) });
  const { server, port } = await listenProberHttp(prober, '127.0.0.1', 0, { toEpochSecs: (ms) => ms / 1000, source: 'file:///m.json' });
  t.after(() => { prober.close(); server.closeAllConnections(); server.close(); });
  const base = `http://127.0.0.1:${port}`;

  const hz = await fetch(`${base}/healthz`);
  assert.equal(hz.status, 200);
  assert.equal(await hz.text(), 'ok\n');

  const run = await fetch(`${base}/debug/probe-run?name=${encodeURIComponent('derp/loc/900a/tls')}`);
  assert.equal(run.status, 200);
  assert.match(await run.text(), /^Probe succeeded in .+\nLast 1 probes \(including this one\): success rate 100%, median latency/);

  fail = true;
  const bad = await fetch(`${base}/debug/probe-run?name=${encodeURIComponent('derp/loc/900a/900a/mesh')}`, { headers: { accept: 'application/json' } });
  assert.equal(bad.status, 424);
  const j = await bad.json() as { ProbeInfo: { Status: string; Error: string } };
  assert.equal(j.ProbeInfo.Status, 'failed');
  assert.equal(j.ProbeInfo.Error, 'mesh <broken>');

  assert.equal((await fetch(`${base}/debug/probe-run`)).status, 400);
  assert.equal((await fetch(`${base}/debug/probe-run?name=nope`)).status, 404);
  assert.equal((await fetch(`${base}/debug/probe-run?name=${encodeURIComponent('derp/loc/900a/900a/qd')}`)).status, 404, 'continuous probes cannot be run');

  const all = await fetch(`${base}/debug/probe-all`);
  assert.equal(all.status, 424);
  const results = (await all.json() as { Results: Record<string, unknown> }).Results;
  assert.deepEqual(Object.keys(results).sort(), ['derp/loc/900a/900a/mesh', 'derp/loc/900a/tls']);
  fail = false;
  assert.equal((await fetch(`${base}/debug/probe-all?exclude=x`)).status, 200);

  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type')!, /text\/html/);
  const html = await page.text();
  for (const n of ['derp/loc/900a/tls', 'derp/loc/900a/900a/mesh', 'derp/loc/900a/900a/qd']) assert.ok(html.includes(`data-probe="${n}"`), n);

  const varz = await fetch(`${base}/debug/varz`);
  const text = await varz.text();
  assert.match(text, /derpprobe_result\{class="derp_tls",name="derp\/loc\/900a\/tls",region="loc"\} 1/);
  assert.match(text, /derpprobe_attempts_total\{class="derp_mesh",name="derp\/loc\/900a\/900a\/mesh",status="fail"\} 2/);
  assert.match(text, /process_cpu_user_seconds_total/);

  assert.equal((await fetch(`${base}/nope`)).status, 404);
});
