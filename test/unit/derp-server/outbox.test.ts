// Outbox (src/derp/server/outbox.ts, spec/derp.md §8, §9.3) against a model: any sequence of keepalives, pongs,
// PeerGone notices, watcher frames, queued packets (with head drops on a full queue) and drains through a writer
// that may push back after some frames. The outbox keeps its own count of queued packets and skips a drain with
// nothing pending, so the model checks that the count is always right and that nothing pending is ever skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameType, KEY_LEN, PeerGoneReason } from '../../../src/derp/constants.ts';
import { Counters } from '../../../src/derp/server/metrics.ts';
import { Outbox } from '../../../src/derp/server/outbox.ts';
import type { BatchWriter } from '../../../src/derp/server/writer.ts';

const DEPTH = 4;

/** Records the types of the frames it is given; pushes back (`blocked`) once `budget` frames are in. */
class RecordingWriter {
  readonly frames: number[] = [];
  readonly buffer = Buffer.alloc(4096);
  readonly direct = false;
  blocked = false;
  budget = Infinity;
  flushes = 0;
  reserve(type: number): number {
    this.frames.push(type);
    if (--this.budget <= 0) this.blocked = true;
    return 5;
  }
  frame(type: number): void {
    this.reserve(type);
  }
  flush(): void {
    this.flushes++;
  }
  appendInPlace(): void {
    throw new Error('not a direct writer');
  }
}

const dropsOf = (c: Counters): number => Object.values(c.packetsDropped).reduce((n, d) => n + d.disco + d.other, 0);

type Op =
  | { op: 'keepAlive' }
  | { op: 'pong'; tag: number }
  | { op: 'peerGone'; tag: number }
  | { op: 'watcher'; tag: number }
  | { op: 'packet'; tag: number; disco: boolean }
  | { op: 'drain'; budget: number };

const tag = fc.integer({ min: 1, max: 250 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.constant({ op: 'keepAlive' as const }),
  tag.map((t) => ({ op: 'pong' as const, tag: t })),
  tag.map((t) => ({ op: 'peerGone' as const, tag: t })),
  tag.map((t) => ({ op: 'watcher' as const, tag: t })),
  // Packets often enough that a queue fills up and drops its head between drains.
  { arbitrary: fc.record({ op: fc.constant('packet' as const), tag, disco: fc.boolean() }), weight: 8 },
  fc.record({ op: fc.constant('drain' as const), budget: fc.oneof(fc.constant(Infinity), fc.integer({ min: 1, max: 6 })) }),
);

test('outbox: queued count and drains match a model for any sequence (fast-check)', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
      const counters = new Counters();
      const box = new Outbox(counters, DEPTH);
      // The model: what is pending, in the order a drain writes it.
      let keepAlive = false;
      let pong: number | null = null;
      let peerGone: number[] = [];
      let watcher: number[] = [];
      const disco: number[] = [];
      const other: number[] = [];
      let dropped = 0;
      const key = new Uint8Array(KEY_LEN);
      for (const o of ops) {
        switch (o.op) {
          case 'keepAlive':
            box.keepAlive();
            keepAlive = true;
            break;
          case 'pong':
            if (box.pong(Uint8Array.of(o.tag, 0, 0, 0, 0, 0, 0, 0))) {
              assert.equal(pong, null);
              pong = o.tag;
            } else assert.notEqual(pong, null);
            break;
          case 'peerGone':
            assert.equal(box.peerGone(Uint8Array.of(o.tag, ...new Uint8Array(KEY_LEN - 1)), PeerGoneReason.Disconnected), true);
            peerGone.push(o.tag);
            break;
          case 'watcher': {
            const f = Buffer.from([FrameType.PeerPresent, 0, 0, 0, 1, o.tag]);
            box.watcherFrame(f);
            watcher.push(o.tag);
            break;
          }
          case 'packet': {
            const q = o.disco ? disco : other;
            assert.equal(box.packet(key, 'k', Uint8Array.of(o.tag, 1, 2), o.disco, () => {}), true);
            if (q.length === DEPTH) {
              q.shift();
              dropped++;
            }
            q.push(o.tag);
            break;
          }
          case 'drain': {
            const w = new RecordingWriter();
            w.budget = o.budget;
            box.drain(w as unknown as BatchWriter, () => {});
            assert.equal(w.flushes, 1, 'every drain flushes the writer');
            const want: number[] = [];
            if (keepAlive) want.push(FrameType.KeepAlive);
            if (pong !== null) want.push(FrameType.Pong);
            for (const _ of peerGone) want.push(FrameType.PeerGone);
            for (const _ of watcher) want.push(FrameType.PeerPresent);
            const controls = want.length;
            // Packets: disco first, until the writer pushes back (checked after each packet).
            let budgetLeft = o.budget - controls;
            let taken = 0;
            const queued = disco.length + other.length;
            while (taken < queued) {
              want.push(FrameType.RecvPacket);
              taken++;
              if (--budgetLeft <= 0) break;
            }
            assert.deepEqual(w.frames, want);
            keepAlive = false;
            pong = null;
            peerGone = [];
            watcher = [];
            for (let i = 0; i < taken; i++) (disco.length > 0 ? disco : other).shift();
            break;
          }
        }
        assert.equal(box.queuedPackets, disco.length + other.length);
      }
      assert.equal(dropsOf(counters), dropped);
    }),
    { numRuns: 400 },
  );
});

test('outbox: after a drain that left packets behind, the next drain still writes them', () => {
  const box = new Outbox(new Counters(), DEPTH);
  const key = new Uint8Array(KEY_LEN);
  for (const t of [1, 2, 3]) box.packet(key, 'k', Uint8Array.of(t), false, () => {});
  const w1 = new RecordingWriter();
  w1.budget = 1;
  box.drain(w1 as unknown as BatchWriter, () => {});
  assert.equal(w1.frames.length, 1);
  assert.equal(box.queuedPackets, 2);
  const w2 = new RecordingWriter();
  box.drain(w2 as unknown as BatchWriter, () => {});
  assert.deepEqual(w2.frames, [FrameType.RecvPacket, FrameType.RecvPacket]);
  assert.equal(box.queuedPackets, 0);
  const w3 = new RecordingWriter();
  box.drain(w3 as unknown as BatchWriter, () => {});
  assert.deepEqual(w3.frames, []);
  assert.equal(w3.flushes, 1);
});
