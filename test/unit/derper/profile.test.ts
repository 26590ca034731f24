// /debug/pprof (src/derper/profile.ts): loopback rule, seconds parsing, and the real endpoints of an in-process
// derper: a CPU profile is a V8 .cpuprofile JSON, the heap snapshot streams a V8 snapshot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { silentLogger } from '../../../src/log.ts';
import { startDerper } from '../../../src/derper/derper.ts';
import { PPROF_DEFAULT_SECONDS, PPROF_MAX_SECONDS } from '../../../src/derper/ops-constants.ts';
import { createProfileRoutes, isLoopbackAddress, profileSeconds } from '../../../src/derper/profile.ts';
import { realClock } from '../../../src/time/clock.ts';
import { testDerperConfig } from './config.ts';

const config = testDerperConfig;

test('isLoopbackAddress', () => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopbackAddress(a), true, a);
  for (const a of ['10.0.0.1', '100.64.0.1', '::ffff:10.0.0.1', 'fd7a:115c:a1e0::1', '', '128.0.0.1', '::2']) assert.equal(isLoopbackAddress(a), false, a);
});

test('profileSeconds', () => {
  assert.equal(profileSeconds(null), PPROF_DEFAULT_SECONDS);
  assert.equal(profileSeconds(''), PPROF_DEFAULT_SECONDS);
  assert.equal(profileSeconds('1'), 1);
  assert.equal(profileSeconds(String(PPROF_MAX_SECONDS)), PPROF_MAX_SECONDS);
  for (const bad of ['0', String(PPROF_MAX_SECONDS + 1), '-1', '1.5', 'x', '99999']) assert.equal(profileSeconds(bad), null, bad);
});

/** A fake request/response pair: enough of node:http for the handler. */
function fake(remoteAddress: string): { req: IncomingMessage; res: ServerResponse; status: () => number } {
  let status = 0;
  const req = Object.assign(new EventEmitter(), { socket: { remoteAddress }, url: '/debug/pprof/' }) as unknown as IncomingMessage;
  const res = {
    headersSent: false,
    writeHead(s: number) { status = s; return this; },
    end() { return this; },
  } as unknown as ServerResponse;
  return { req, res, status: () => status };
}

test('pprof is refused to every non-loopback peer, even ones the general /debug/ policy admits', () => {
  const h = createProfileRoutes({ clock: realClock, logger: silentLogger });
  for (const [addr, want] of [['100.64.0.7', 403], ['192.0.2.1', 403], ['127.0.0.1', 200], ['::1', 200]] as const) {
    const f = fake(addr);
    assert.equal(h(f.req, f.res, '/debug/pprof/', new URLSearchParams()), true);
    assert.equal(f.status(), want, addr);
  }
  const f = fake('127.0.0.1');
  assert.equal(h(f.req, f.res, '/debug/vars', new URLSearchParams()), false, 'other paths are not taken');
});


test('derper serves a CPU profile and a heap snapshot to loopback', async (t) => {
  const d = await startDerper(config());
  t.after(() => d.close());
  const base = `http://127.0.0.1:${d.httpPort}`;
  const index = await fetch(`${base}/debug/pprof/`);
  assert.equal(index.status, 200);
  assert.match(await index.text(), /cpuprofile/);
  assert.equal((await fetch(`${base}/debug/pprof/profile?seconds=0`)).status, 400);

  const started = Date.now();
  const [prof, busy] = await Promise.all([
    fetch(`${base}/debug/pprof/profile?seconds=1`),
    new Promise((r) => setTimeout(r, 200)).then(() => fetch(`${base}/debug/pprof/profile?seconds=1`)),
  ]);
  assert.equal(busy.status, 409, 'one profile at a time');
  assert.equal(prof.status, 200);
  assert.match(prof.headers.get('content-disposition') ?? '', /\.cpuprofile/);
  const p = (await prof.json()) as { nodes: unknown[]; startTime: number; endTime: number; samples: unknown[] };
  assert.ok(Date.now() - started >= 900, 'ran for about the requested second');
  assert.ok(Array.isArray(p.nodes) && p.nodes.length > 0);
  assert.ok(p.endTime - p.startTime >= 900_000, 'profile spans ≥ 0.9 s (µs)');

  const heap = await fetch(`${base}/debug/pprof/heap`);
  assert.equal(heap.status, 200);
  const snap = JSON.parse(await heap.text()) as { snapshot: { node_count: number }; strings: string[] };
  assert.ok(snap.snapshot.node_count > 1000);
  assert.ok(snap.strings.includes('DerpServer'), 'the snapshot is of this process (has the engine class)');
  assert.equal((await fetch(`${base}/debug/pprof/nope`)).status, 404);
});
