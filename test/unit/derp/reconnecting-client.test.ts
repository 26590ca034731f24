// ReconnectingDerpClient (src/derp/reconnecting-client.ts) on a ManualClock with a fake dial: capped
// exponential backoff with jitter, reset after success, and close().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DerpClient } from '../../../src/derp/client.ts';
import { backoffDelay, ReconnectingDerpClient, RECONNECT_MAX_MS, RECONNECT_MIN_MS } from '../../../src/derp/reconnecting-client.ts';
import { ManualClock } from '../../../src/time/clock.ts';
import { generatePrivate } from '../../../src/types/key.ts';

test('backoffDelay: doubles from the minimum, capped, jittered into [d/2, d]', () => {
  assert.equal(backoffDelay(0, () => 1), RECONNECT_MIN_MS);
  assert.equal(backoffDelay(0, () => 0), RECONNECT_MIN_MS / 2);
  assert.equal(backoffDelay(3, () => 1), RECONNECT_MIN_MS * 8);
  assert.equal(backoffDelay(50, () => 1), RECONNECT_MAX_MS);
  fc.assert(
    fc.property(fc.nat(1000), fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), (n, r) => {
      const d = backoffDelay(n, () => r);
      const cap = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** Math.min(n, 30));
      return d >= cap / 2 && d <= cap;
    }),
  );
});

/** A stand-in DerpClient with what ReconnectingDerpClient uses (closed, recv, close); `end()` drops it. */
function fakeClient(): { client: DerpClient; end(): void } {
  let resolveClosed!: (e: Error | null) => void;
  const closed = new Promise<Error | null>((r) => (resolveClosed = r));
  const waiting: Array<(v: IteratorResult<never>) => void> = [];
  const finish = (e: Error | null): void => {
    resolveClosed(e);
    for (const w of waiting.splice(0)) w({ done: true, value: undefined as never });
  };
  const c = Object.create(DerpClient.prototype) as DerpClient;
  Object.defineProperties(c, {
    closed: { value: closed },
    close: { value: () => finish(null) },
    recv: { value: () => ({ [Symbol.asyncIterator]() { return this; }, next: () => new Promise<IteratorResult<never>>((r) => waiting.push(r)) }) },
  });
  return { client: c, end: () => finish(new Error('eof')) };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('redials with growing delays on failure, resets after a success, stops on close', async () => {
  const clock = new ManualClock();
  const dials: number[] = [];
  let fail = 3;
  let live: ReturnType<typeof fakeClient> | null = null;
  const rc = new ReconnectingDerpClient({
    url: 'http://derp.invalid/derp',
    privateKey: generatePrivate(),
    clock,
    random: () => 1, // no jitter: delays are exactly 250, 500, 1000
    dial: async () => {
      dials.push(clock.now());
      if (fail > 0) {
        fail--;
        throw new Error('ECONNREFUSED');
      }
      live = fakeClient();
      return live.client;
    },
  });
  await tick();
  assert.deepEqual(dials, [0]);
  assert.equal(rc.state, 'backoff');
  for (const step of [250, 500, 1000]) {
    const before = dials.length;
    clock.advance(step - 1);
    await tick();
    assert.equal(dials.length, before, `no redial before ${step} ms`);
    clock.advance(1);
    await tick();
  }
  assert.deepEqual(dials, [0, 250, 750, 1750]);
  assert.equal(rc.state, 'connected');
  assert.equal(rc.connects, 1);

  // The connection drops: the first redial comes after the minimum again (failures were reset).
  live!.end();
  await tick();
  await tick();
  assert.equal(rc.state, 'backoff');
  clock.advance(RECONNECT_MIN_MS);
  await tick();
  await tick();
  assert.equal(dials.at(-1), 1750 + RECONNECT_MIN_MS);
  assert.equal(rc.connects, 2);

  rc.close();
  assert.equal(rc.state, 'closed');
  clock.advance(60_000);
  await tick();
  assert.equal(rc.connects, 2, 'no dial after close');
});
