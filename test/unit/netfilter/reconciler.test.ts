/**
 * The reconciler engine on a manual clock: restores on drift with a log line naming what moved, stays quiet
 * when in place, stops fighting after maxRestores per window and resumes after the pause, never overlaps ticks,
 * and survives a failing restore. Also the backend-detection decision table (§3).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../../src/time/clock.ts';
import { createLogger } from '../../../src/log.ts';
import { Reconciler } from '../../../src/netfilter/reconciler.ts';
import { RECONCILE_FIGHT_PAUSE_MS, RECONCILE_INTERVAL_MS, RECONCILE_MAX_RESTORES } from '../../../src/netfilter/constants.ts';
import { decide, detectBackend, type Census } from '../../../src/netfilter/detect.ts';
import { hasCode } from '../../../src/errors.ts';
import type { Exec } from '../../../src/netfilter/exec.ts';

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

function rig(drifting: () => string[]) {
  const clock = new ManualClock();
  const lines: string[] = [];
  let restores = 0;
  const rec = new Reconciler({
    clock,
    log: createLogger({ level: 'debug', write: (l) => lines.push(l) }),
    check: async () => drifting(),
    restore: async () => {
      restores++;
      return ['iptables -I INPUT 1 -j ts-input'];
    },
  });
  return { clock, lines, rec, restores: () => restores };
}

describe('netfilter reconciler', () => {
  it('polls every interval and restores on drift, logging what moved', async () => {
    let drift = ['ip filter INPUT: jump to ts-input moved to position 2, rule 1 is "-j ufw-before-input"'];
    const r = rig(() => drift);
    r.rec.start();
    r.clock.advance(RECONCILE_INTERVAL_MS - 1);
    await flush();
    assert.equal(r.restores(), 0, 'nothing before the first interval');
    r.clock.advance(1);
    await flush();
    assert.equal(r.restores(), 1);
    assert.ok(r.lines.some((l) => l.includes('restored') && l.includes('moved to position 2')), r.lines.join('\n'));
    drift = [];
    r.clock.advance(RECONCILE_INTERVAL_MS * 10);
    await flush();
    assert.equal(r.restores(), 1, 'in place: no more restores');
    assert.equal(r.rec.stats.checks >= 2, true);
    r.rec.stop();
    assert.equal(r.clock.pending, 0);
  });

  it(`gives up after ${RECONCILE_MAX_RESTORES} restores per window, then resumes after the pause`, async () => {
    const r = rig(() => ['ip filter ts-input: flushed (0 of 5 rules)']);
    const results: string[] = [];
    for (let i = 0; i < RECONCILE_MAX_RESTORES + 3; i++) {
      results.push(await r.rec.tick());
      r.clock.advance(RECONCILE_INTERVAL_MS);
    }
    assert.deepEqual(results, [...Array<string>(RECONCILE_MAX_RESTORES).fill('restored'), 'gave-up', 'paused', 'paused']);
    assert.equal(r.lines.filter((l) => l.includes('keeps changing our rules')).length, 1, 'warned once');
    r.clock.advance(RECONCILE_FIGHT_PAUSE_MS);
    assert.equal(await r.rec.tick(), 'restored', 'fights again after the pause');
  });

  it('restores spread wider than the window never hit the bound', async () => {
    const r = rig(() => ['x']);
    for (let i = 0; i < RECONCILE_MAX_RESTORES * 3; i++) {
      assert.equal(await r.rec.tick(), 'restored');
      r.clock.advance(60_000 / (RECONCILE_MAX_RESTORES - 1));
    }
  });

  it('does not overlap ticks and survives a failing restore', async () => {
    const clock = new ManualClock();
    let release: () => void = () => {};
    const lines: string[] = [];
    const rec = new Reconciler({
      clock,
      log: createLogger({ write: (l) => lines.push(l) }),
      check: () => new Promise((res) => (release = () => res(['x']))),
      restore: async () => {
        throw new Error('iptables: resource busy');
      },
    });
    const first = rec.tick();
    assert.equal(await rec.tick(), 'busy');
    release();
    assert.equal(await first, 'error');
    assert.ok(lines.some((l) => l.includes('reconcile failed') && l.includes('resource busy')));
  });
});

describe('backend detection (§3)', () => {
  const c = (ipt: Partial<Census['ipt']>, nft: Partial<Census['nft']>): Census => ({
    ipt: { exists: true, works: true, rules: 0, ...ipt },
    nft: { exists: true, works: true, rules: 0, ...nft },
  });
  const table: [Census, string][] = [
    [c({ rules: 0 }, { rules: 4 }), 'nftables'],
    [c({ rules: 4 }, { rules: 0 }), 'iptables'],
    [c({ rules: 4 }, { rules: 4 }), 'nftables'], // iptables-nft: both see the same rules
    [c({ rules: 0 }, { rules: 0 }), 'nftables'],
    [c({ rules: 0 }, { rules: 0, works: false }), 'iptables'],
    [c({ exists: false, works: false }, {}), 'nftables'],
    [c({}, { exists: false, works: false }), 'iptables'],
  ];
  for (const [census, want] of table) {
    it(`${JSON.stringify(census)} → ${want}`, () => assert.equal(decide(census).name, want));
  }

  it('no tool at all: a clear NETFILTER_NO_TOOL error', async () => {
    const none: Exec = async () => ({ stdout: '', stderr: 'not found', code: 127 });
    await assert.rejects(detectBackend(none), (e) => hasCode(e, 'NETFILTER_NO_TOOL') && /neither iptables nor nft/.test((e as Error).message));
  });

  it('the env override wins over the heuristic; a bad value is rejected', async () => {
    const calls: string[] = [];
    const exec: Exec = async (cmd) => (calls.push(cmd), { stdout: '', stderr: '', code: 0 });
    const d = await detectBackend(exec, { env: { WIREMESH_FIREWALL_MODE: 'iptables-legacy' } });
    assert.equal(d.backend.name, 'iptables-legacy');
    assert.ok(calls.every((x) => x.endsWith('-legacy')), 'no census when overridden');
    await assert.rejects(detectBackend(exec, { env: { WIREMESH_FIREWALL_MODE: 'pf' } }), (e) => hasCode(e, 'NETFILTER_BAD_CONFIG'));
  });
});
