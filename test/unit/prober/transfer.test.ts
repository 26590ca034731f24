// The bandwidth (`bw`) probe's transfer (spec/derp.md §18): packet sizing within MAX_PACKET_SIZE, the bounded
// in-flight window and ordered delivery over fake DERP clients on a ManualClock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../../src/time/clock.ts';
import type { DerpMessage } from '../../../src/derp/client.ts';
import type { DerpDialer, ProbeConn } from '../../../src/prober/derp-conn.ts';
import { bwPackets } from '../../../src/prober/bw.ts';
import { transferPackets } from '../../../src/prober/transfer.ts';
import { BW_MAX_IN_FLIGHT, BW_MAX_PACKET_SIZE } from '../../../src/prober/constants.ts';
import { generatePrivate, publicFromPrivate } from '../../../src/types/key.ts';
import { settle } from './fake-derp.ts';

const node = (Name: string) => ({ Name, RegionID: 1, HostName: 'localhost' });
const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));

test('bwPackets: size bytes in packets of at most 64 KiB', () => {
  assert.deepEqual(bwPackets(1_000_000, random).map((p) => p.length), [...Array(15).fill(BW_MAX_PACKET_SIZE), 1_000_000 - 15 * BW_MAX_PACKET_SIZE]);
  assert.deepEqual(bwPackets(8, random).map((p) => p.length), [8]);
  assert.deepEqual(bwPackets(0, random), []);
});

test('transfer keeps at most BW_MAX_IN_FLIGHT packets unacknowledged and verifies order', async () => {
  const inbox: DerpMessage[] = [];
  const waiters: Array<(m: DerpMessage) => void> = [];
  const wire: Uint8Array[] = []; // sent by "from", not yet delivered to "to"
  let maxInFlight = 0;
  const mk = (): ProbeConn => ({
    publicKey: publicFromPrivate(generatePrivate()),
    tls: { serverName: 'localhost' },
    send: (_dst, data) => { wire.push(data); maxInFlight = Math.max(maxInFlight, wire.length); },
    next: () => (inbox.length > 0 ? Promise.resolve(inbox.shift()!) : new Promise((r) => waiters.push(r))),
    close: () => {},
  });
  const conns: ProbeConn[] = [];
  const dial: DerpDialer = async () => { const c = mk(); conns.push(c); return c; };
  const packets = bwPackets(100 * 1000, random).concat(Array.from({ length: 99 }, () => random(1000)));
  const clock = new ManualClock();
  const done = transferPackets(node('a'), node('a'), packets, BW_MAX_IN_FLIGHT, { dial, isProber: false, signal: new AbortController().signal, clock });
  let delivered = 0;
  let finished = false;
  void done.then(() => { finished = true; });
  while (!finished) {
    await settle();
    assert.ok(wire.length <= BW_MAX_IN_FLIGHT, `${wire.length} in flight`);
    const data = wire.shift();
    if (data === undefined) continue;
    const m: DerpMessage = { type: 'recvPacket', source: conns[0]!.publicKey, data };
    const w = waiters.shift();
    if (w !== undefined) w(m);
    else inbox.push(m);
    delivered++;
  }
  await done;
  assert.equal(delivered, packets.length);
  assert.equal(maxInFlight, BW_MAX_IN_FLIGHT);
});

test('transfer names both keys and the packet when data is reordered', async () => {
  const q: DerpMessage[] = [];
  const conns: ProbeConn[] = [];
  const dial: DerpDialer = async () => {
    const c: ProbeConn = {
      publicKey: publicFromPrivate(generatePrivate()),
      tls: null,
      send: (_d, data) => { q.unshift({ type: 'recvPacket', source: conns[0]!.publicKey, data }); }, // LIFO: reorders
      next: async () => { await settle(2); return q.shift() ?? { type: 'keepAlive' }; },
      close: () => {},
    };
    conns.push(c);
    return c;
  };
  await assert.rejects(
    transferPackets(node('a'), node('a'), [random(10), random(10)], 30, { dial, isProber: false, signal: new AbortController().signal, clock: new ManualClock() }),
    /^WiremeshError: \[.{5}\] -> \[.{5}\]: error receiving from "a": unexpected data packet 0 \(out of 2\)$/,
  );
});
