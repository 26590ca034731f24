// The prober scheduler (spec/derp.md §18, Go's `prober` package) on a ManualClock: runs every interval, timeout at
// TIMEOUT_FRACTION × interval, no overlapping runs, deterministic spread of the first run, results history.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../../src/time/clock.ts';
import { Prober, spreadFraction, type ProbeContext } from '../../../src/prober/prober.ts';
import { HISTORY_SIZE } from '../../../src/prober/constants.ts';
import { settle } from './fake-derp.ts';

/** A probe whose runs are resolved by the test. */
function controlled() {
  const runs: Array<{ ctx: ProbeContext; ok: () => void; fail: (m: string) => void }> = [];
  return {
    runs,
    pc: {
      class: 'test',
      probe: (ctx: ProbeContext) => new Promise<void>((resolve, reject) => {
        runs.push({ ctx, ok: resolve, fail: (m) => reject(new Error(m)) });
      }),
    },
  };
}

/** A prober on a fresh ManualClock, a controlled probe, and `tick(ms)`: advance the clock, then let promises settle. */
function harness(opts: { spread?: boolean; once?: boolean } = {}) {
  const clock = new ManualClock();
  const tick = async (ms: number): Promise<void> => {
    clock.advance(ms);
    await settle();
  };
  return { clock, p: new Prober({ clock, ...opts }), c: controlled(), tick };
}

test('runs a probe immediately without spread, then every interval', async () => {
  const { p, c, tick } = harness();
  p.run('a', 1000, c.pc);
  await settle();
  assert.equal(c.runs.length, 1);
  c.runs[0]!.ok();
  await settle();
  await tick(999);
  assert.equal(c.runs.length, 1);
  await tick(1);
  assert.equal(c.runs.length, 2);
  p.close();
});

test('timeout is 0.8 × interval and the error says so', async () => {
  const { p, c, tick } = harness();
  const probe = p.run('slow', 10_000, c.pc);
  assert.equal(probe.timeoutMs, 8000);
  await settle();
  await tick(7999);
  assert.equal(probe.info().status, 'running');
  assert.equal(c.runs[0]!.ctx.signal.aborted, false);
  await tick(1);
  const info = probe.info();
  assert.equal(info.status, 'failed');
  assert.match(info.error!, /timeout after 8000ms/);
  assert.equal(c.runs[0]!.ctx.signal.aborted, true, 'the probe sees its signal aborted');
  assert.equal(info.history.at(-1)!.latencyMs, 8000);
  p.close();
});

test('latency is measured on the injected clock; failures record the error', async () => {
  const { clock, p, c, tick } = harness();
  const probe = p.run('x', 1000, c.pc);
  await settle();
  clock.advance(42);
  c.runs[0]!.ok();
  await settle();
  assert.equal(probe.info().latencyMs, 42);
  assert.equal(probe.info().status, 'succeeded');
  await tick(958);
  c.runs[1]!.fail('boom');
  await settle();
  const info = probe.info();
  assert.equal(info.status, 'failed');
  assert.equal(info.error, 'boom');
  assert.equal(info.latencyMs, null);
  assert.deepEqual(info.attempts, { ok: 1, fail: 1 });
  p.close();
});

test('history keeps the last HISTORY_SIZE results', async () => {
  const { clock, p } = harness();
  let n = 0;
  const probe = p.run('h', 100, { class: 't', probe: async () => { if (n++ % 2 === 1) throw new Error('odd'); } });
  for (let i = 0; i < HISTORY_SIZE + 5; i++) {
    await settle();
    clock.advance(100);
  }
  await settle();
  const h = probe.info().history;
  assert.equal(h.length, HISTORY_SIZE);
  assert.ok(h.some((r) => !r.ok) && h.some((r) => r.ok));
  p.close();
});

test('a run still in progress at the next tick is not started twice', async () => {
  const { clock, p, c, tick } = harness();
  p.run('one-at-a-time', 1000, { ...c.pc, timeoutMs: 5000 });
  await settle();
  clock.advance(1000);
  await tick(1000);
  assert.equal(c.runs.length, 1);
  c.runs[0]!.ok();
  await settle();
  await tick(1000);
  assert.equal(c.runs.length, 2);
  p.close();
});

test('spread delays the first run by a deterministic fraction of the interval', async () => {
  const { clock, p, c, tick } = harness({ spread: true });
  const name = 'derp/loc/900a/tls';
  const want = spreadFraction(name) * 15_000;
  assert.ok(want > 0 && want < 15_000);
  p.run(name, 15_000, c.pc);
  await settle();
  assert.equal(c.runs.length, 0);
  clock.advance(Math.floor(want));
  await settle();
  assert.equal(c.runs.length, 0);
  await tick(1);
  assert.equal(c.runs.length, 1);
  assert.equal(spreadFraction(name), spreadFraction(name));
  p.close();
});

test('once mode: wait() resolves after every probe, including probes added while running', async () => {
  const { p, tick } = harness({ once: true });
  let childRan = 0;
  p.run('parent', 1000, {
    class: 'map',
    probe: async () => {
      p.run('child', 1000, { class: 'c', probe: async () => { childRan++; } });
    },
  });
  let done = false;
  void p.wait().then(() => { done = true; });
  await settle();
  assert.equal(done, true);
  assert.equal(childRan, 1);
  await tick(5000);
  assert.equal(childRan, 1, 'once means once');
  assert.deepEqual(p.names(), ['child', 'parent']);
});

test('once mode waits for a slow probe', async () => {
  const { p, c } = harness({ once: true });
  p.run('slow', 1000, c.pc);
  let done = false;
  void p.wait().then(() => { done = true; });
  await settle();
  assert.equal(done, false);
  c.runs[0]!.ok();
  await settle();
  assert.equal(done, true);
});

test('continuous probes run back to back and pause for the interval after a failure', async () => {
  const { p, c, tick } = harness();
  p.run('qd', 10_000, { ...c.pc, continuous: true });
  await settle();
  assert.equal(c.runs.length, 1);
  await tick(60_000);
  assert.equal(c.runs.length, 1, 'continuous runs have no timeout');
  c.runs[0]!.ok();
  await settle();
  assert.equal(c.runs.length, 2, 'next window starts at once');
  c.runs[1]!.fail('broken');
  await settle();
  assert.equal(c.runs.length, 2);
  await tick(10_000);
  assert.equal(c.runs.length, 3);
  p.close();
});

test('duplicate names and non-positive intervals are rejected; remove stops a probe', async () => {
  const { p, tick } = harness();
  let n = 0;
  p.run('a', 100, { class: 't', probe: async () => { n++; } });
  assert.throws(() => p.run('a', 100, { class: 't', probe: async () => {} }), { code: 'probe_exists' });
  assert.throws(() => p.run('b', 0, { class: 't', probe: async () => {} }), { code: 'probe_interval' });
  await settle();
  p.remove('a');
  await tick(1000);
  assert.equal(n, 1);
  assert.equal(p.has('a'), false);
});

test('runAll runs every non-continuous probe now', async () => {
  const { p } = harness({ spread: true });
  p.run('good', 60_000, { class: 't', probe: async () => {} });
  p.run('bad', 60_000, { class: 't', probe: async () => { throw new Error('nope'); } });
  p.run('cont', 60_000, { class: 't', continuous: true, probe: () => new Promise(() => {}) });
  const r = await p.runAll(['excluded']);
  assert.deepEqual([...r.keys()].sort(), ['bad', 'good']);
  assert.equal(r.get('good')!.ok, true);
  assert.equal(r.get('bad')!.error, 'nope');
  p.close();
});
