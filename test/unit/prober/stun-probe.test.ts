// The `udp`/`udp6` probe class (spec/derp.md §18) on a ManualClock over an in-memory PacketConn: the STUN target
// (STUNPort 0 → 3478, spec/derp.md §17), retry pacing and the timeout verdict.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../../src/time/clock.ts';
import type { AddrPort, PacketConn, PacketHandler } from '../../../src/net/packet.ts';
import { buildResponse, parseRequest } from '../../../src/stun/codec.ts';
import { Prober } from '../../../src/prober/prober.ts';
import { stunProbe } from '../../../src/prober/stun.ts';
import { settle } from './fake-derp.ts';

/** A PacketConn whose "server" ignores the first `drop` requests and answers the rest. */
function fakeUdp(drop: number, log: AddrPort[]): PacketConn {
  const handlers = new Set<PacketHandler>();
  let seen = 0;
  return {
    send(data, to) {
      log.push(to);
      const req = parseRequest(data);
      if (req === null || seen++ < drop) return;
      queueMicrotask(() => { for (const h of handlers) h(buildResponse(req.txid, { address: '192.0.2.1', port: 4242 }), to); });
    },
    onMessage(h) { handlers.add(h); return () => handlers.delete(h); },
    localAddr: () => ({ address: '0.0.0.0', port: 1 }),
    close() { handlers.clear(); },
  };
}

const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));

test('udp probe: asks IPv4:STUNPort (0 → 3478), retries 100 ms after an unanswered 2 s attempt', async () => {
  const clock = new ManualClock();
  const sent: AddrPort[] = [];
  const p = new Prober({ clock });
  const probe = p.run('derp/loc/a/udp', 15_000, stunProbe('127.0.0.1', 0, { openUdp: async () => fakeUdp(1, sent), random }));
  await settle();
  assert.deepEqual(sent, [{ address: '127.0.0.1', port: 3478 }]);
  clock.advance(2000);
  await settle();
  assert.equal(sent.length, 1, 'no resend before the 100 ms pause');
  clock.advance(100);
  await settle();
  assert.equal(sent.length, 2);
  await settle();
  assert.equal(probe.info().status, 'succeeded');
  assert.equal(probe.info().latencyMs, 2100);
  p.close();
});

test('udp probe: never answered → bad at 0.8 × interval', async () => {
  const clock = new ManualClock();
  const sent: AddrPort[] = [];
  const p = new Prober({ clock });
  const probe = p.run('derp/loc/a/udp6', 5000, stunProbe('::1', 3479, { openUdp: async (family) => { assert.equal(family, 6); return fakeUdp(Infinity, sent); }, random }));
  for (let i = 0; i < 45; i++) { // up to 4.5 s: past the timeout, before the next run at 5 s
    await settle();
    clock.advance(100);
  }
  await settle();
  assert.equal(probe.info().status, 'failed');
  assert.match(probe.info().error!, /timeout after 4000ms/);
  assert.equal(sent.length, 2, 'attempts at 0 and 2.1 s within the 4 s budget');
  assert.deepEqual(sent[0], { address: '::1', port: 3479 });
  p.close();
});
