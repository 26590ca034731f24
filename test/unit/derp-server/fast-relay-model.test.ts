// FastRelay.relay (src/derp/server/fast-relay.ts) against a model, on a fake host: for any read made of packets to
// known, unknown, backed-up or host-pending destinations, pings, bad lengths and a cut last frame, it takes exactly
// the frames before the first one it must leave to the general path, rewrites each in place into its RecvPacket,
// writes one run per destination change, counts what it took and records "heard from" once per run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FrameType, KEY_LEN } from '../../../src/derp/constants.ts';
import { encodeFrame } from '../../../src/derp/frame.ts';
import { FastRelay, type FastConn, type FastPort, type RawHost, type RawTap } from '../../../src/derp/server/fast-relay.ts';
import { Counters } from '../../../src/derp/server/metrics.ts';

class FakeHost implements RawHost {
  readonly readBuffer = Buffer.alloc(64 * 1024);
  tap: RawTap | null = null;
  readonly writes: { id: number; bytes: Buffer }[] = [];
  setTap(t: RawTap | null): void {
    this.tap = t;
  }
  /** What the host holds per connection (answered to an empty write, as the addon does). */
  readonly held = new Map<number, number>();
  rawWrite(id: number, buf: Uint8Array, start: number, end: number): number {
    if (start === end) return this.held.get(id) ?? 0;
    this.writes.push({ id, bytes: Buffer.from(buf.subarray(start, end)) });
    return 0;
  }
}

class Conn implements FastConn {
  readonly key: Uint8Array;
  readonly keyId: string;
  pendingCount = 0;
  constructor(n: number) {
    this.key = Buffer.alloc(KEY_LEN, n + 1);
    this.keyId = Buffer.from(this.key).toString('latin1');
  }
  fastPending(): void {
    this.pendingCount++;
  }
  fastDrained(fastBytes: boolean): void {
    if (fastBytes) this.pendingCount--;
  }
}

type Item =
  | { kind: 'packet'; to: number; size: number }
  | { kind: 'ping' }
  | { kind: 'short' }
  | { kind: 'cut'; to: number; size: number };

const item: fc.Arbitrary<Item> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('packet' as const), to: fc.integer({ min: 0, max: 4 }), size: fc.integer({ min: 0, max: 300 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'ping' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'short' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const), to: fc.integer({ min: 0, max: 3 }), size: fc.integer({ min: 1, max: 300 }) }) },
);

test('relay() takes exactly the frames a model says, rewritten in place, one write per run (fast-check)', () => {
  fc.assert(fc.property(fc.array(item, { maxLength: 40 }), fc.array(fc.constantFrom('clean', 'backlog', 'pending'), { minLength: 4, maxLength: 4 }), (items, states) => {
    const host = new FakeHost();
    const counters = new Counters();
    const heard: [string, Conn][] = [];
    const relay = new FastRelay<Conn>({ counters, receiveLimit: null, noteHeard: (id, c) => heard.push([id, c]) });
    // Connection 0 is the source; 1..3 are destinations in the given states; 4 has no port (unknown key).
    const conns = [0, 1, 2, 3, 4].map((n) => new Conn(n));
    const ports: FastPort<Conn>[] = conns.slice(0, 4).map((c, i) => relay.attach(c, host, 10 + i));
    ports.forEach((p, i) => {
      p.partial = false;
      p.backlog = states[i] === 'backlog';
      p.hostPending = states[i] === 'pending';
    });
    const src = ports[0]!;
    // The wire, and the model's answer: where the fast path must stop, and the runs it writes.
    const frames: Buffer[] = [];
    let stopAt = -1;
    let at = 0;
    let run = -1;
    const runs: { to: number; frames: Buffer[] }[] = [];
    for (const it of items) {
      let f: Buffer;
      if (it.kind === 'ping') f = encodeFrame(FrameType.Ping, Buffer.alloc(8, 7));
      else if (it.kind === 'short') f = Buffer.from([FrameType.SendPacket, 0, 0, 0, 5, 1, 2, 3, 4, 5]);
      else f = encodeFrame(FrameType.SendPacket, conns[it.to]!.key, Buffer.alloc(it.size, it.size & 0xff));
      if (it.kind === 'cut') f = f.subarray(0, f.length - 1);
      if (stopAt < 0) {
        const to = it.kind === 'packet' ? it.to : -1;
        const takes = to >= 0 && to < 4 && (to === run || states[to] === 'clean');
        if (!takes) stopAt = at;
        else {
          if (to !== run) runs.push({ to, frames: [] });
          run = to;
          const out = Buffer.from(f);
          out[0] = FrameType.RecvPacket;
          src.key.forEach((b, i) => (out[5 + i] = b));
          runs.at(-1)!.frames.push(out);
        }
      }
      frames.push(f);
      at += f.length;
      if (it.kind === 'cut') break; // a cut frame is the end of the read
    }
    if (stopAt < 0) stopAt = at;
    const wire = Buffer.concat(frames);
    wire.copy(host.readBuffer);
    const taken = host.tap === null ? -1 : host.tap.read(10, wire.length);
    assert.equal(taken, stopAt);
    assert.equal(src.partial, taken < wire.length, 'a read left partly to the general path marks the source partial');
    assert.deepEqual(host.writes.map((w) => w.id), runs.map((r) => 10 + r.to));
    host.writes.forEach((w, i) => assert.deepEqual(w.bytes, Buffer.concat(runs[i]!.frames)));
    assert.deepEqual(host.readBuffer.subarray(taken, wire.length), wire.subarray(taken), 'the rest is untouched');
    const n = runs.reduce((s, r) => s + r.frames.length, 0);
    assert.equal(counters.fastPathPackets, n);
    assert.equal(counters.packetsReceived, n);
    assert.equal(counters.packetsSent, n);
    // Heard-from: once per destination the source is new to (a later run to the same one is not new).
    const firsts = [...new Set(runs.map((r) => r.to))];
    assert.deepEqual(heard.map(([id, c]) => [id, conns.indexOf(c)]), firsts.map((to) => [src.keyId, to]));
  }), { numRuns: 300 });
});

test('a detached destination is looked up again: a new port for its key gets the packets, none while it has none', () => {
  const host = new FakeHost();
  const counters = new Counters();
  const relay = new FastRelay<Conn>({ counters, receiveLimit: null, noteHeard: () => {} });
  const a = relay.attach(new Conn(0), host, 1);
  const bConn = new Conn(1);
  const b = relay.attach(bConn, host, 2);
  a.partial = b.partial = false;
  b.backlog = false;
  const wire = encodeFrame(FrameType.SendPacket, bConn.key, Buffer.alloc(10, 1));
  const send = (): number => {
    wire.copy(host.readBuffer);
    a.partial = false;
    return host.tap!.read(1, wire.length);
  };
  assert.equal(send(), wire.length);
  assert.deepEqual(host.writes.map((w) => w.id), [2]);
  relay.detach(b);
  assert.equal(send(), 0, 'its key has no port: the general path decides');
  const b2 = relay.attach(bConn, host, 7);
  b2.partial = false;
  b2.backlog = false;
  assert.equal(send(), wire.length);
  assert.deepEqual(host.writes.map((w) => w.id), [2, 7]);
  host.tap!.released(7);
  assert.equal(send(), 0, 'released by the host: detached');
  assert.equal(relay.size, 1);
});

test('a receive limit in force leaves every read to the general path (it meters them)', () => {
  const host = new FakeHost();
  const core = { counters: new Counters(), receiveLimit: null as unknown, noteHeard: (): void => {} };
  const relay = new FastRelay<Conn>(core);
  const a = relay.attach(new Conn(0), host, 1);
  const bConn = new Conn(1);
  relay.attach(bConn, host, 2).backlog = false;
  a.partial = false;
  const wire = encodeFrame(FrameType.SendPacket, bConn.key, Buffer.alloc(10, 1));
  wire.copy(host.readBuffer);
  core.receiveLimit = { bytesPerSecond: 1000, burstBytes: 1000 };
  assert.equal(host.tap!.read(1, wire.length), 0);
  assert.equal(host.writes.length, 0);
});

test('a new port starts with a backlog (until its connection flushes) and asks the host what it holds', () => {
  const host = new FakeHost();
  const relay = new FastRelay<Conn>({ counters: new Counters(), receiveLimit: null, noteHeard: () => {} });
  host.held.set(2, 500);
  const p = relay.attach(new Conn(1), host, 2);
  assert.equal(p.backlog, true);
  assert.equal(p.hostPending, true, 'the addon still holds 500 bytes for it');
  assert.equal(relay.attach(new Conn(2), host, 3).hostPending, false);
  assert.equal(host.writes.length, 0, 'asking writes nothing');
});

test('detaching a port whose fast writes are pending settles the write deadline count (no drain will find it)', () => {
  const host = new FakeHost();
  host.rawWrite = (_id, _b, start, end) => (start === end ? 0 : 100);
  const relay = new FastRelay<Conn>({ counters: new Counters(), receiveLimit: null, noteHeard: () => {} });
  const a = relay.attach(new Conn(0), host, 1);
  const bConn = new Conn(1);
  const b = relay.attach(bConn, host, 2);
  a.partial = false;
  b.backlog = false;
  const wire = encodeFrame(FrameType.SendPacket, bConn.key, Buffer.alloc(10, 1));
  wire.copy(host.readBuffer);
  assert.equal(host.tap!.read(1, wire.length), wire.length);
  assert.equal(bConn.pendingCount, 1, 'the deadline counts the pending fast write');
  assert.equal(b.hostPending, true);
  relay.detach(b);
  assert.equal(bConn.pendingCount, 0);
  host.tap!.drained(2);
  assert.equal(bConn.pendingCount, 0, 'a later drain changes nothing');
});
