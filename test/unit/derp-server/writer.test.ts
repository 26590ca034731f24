// BatchWriter (src/derp/server/writer.ts) over a stream with the direct-write fast path (stream-fast.ts, as
// native TLS sockets offer): a batch the kernel takes at once completes with no pending write and no stream
// write(); a partial direct write is one pending write until 'drain' (and the write deadline watches it); when the
// stream says "use write()" the ordinary path runs; a stream without the fast path is untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { FrameType } from '../../../src/derp/constants.ts';
import { encodeFrame } from '../../../src/derp/frame.ts';
import { WRITE_BUFFER_LIMIT } from '../../../src/derp/server/constants.ts';
import { BatchWriter } from '../../../src/derp/server/writer.ts';
import { ManualClock } from '../../../src/time/clock.ts';

/** A Duplex whose writeDirect answers from a script; write() calls are recorded. */
class FakeDirect extends Duplex {
  readonly direct: Uint8Array[] = [];
  readonly written: Buffer[] = [];
  answers: (number | null)[] = [];
  constructor() {
    super();
  }
  writeDirect(buf: Uint8Array, start: number, end: number): number | null {
    const a = this.answers.length > 0 ? this.answers.shift()! : 0;
    if (a !== null) this.direct.push(buf.slice(start, end));
    return a;
  }
  setDirectReader(): void {}
  override _read(): void {}
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.written.push(chunk);
    cb();
  }
}

function writerOn(s: Duplex, clock = new ManualClock(0), timeoutMs = 0): { w: BatchWriter; timeouts: number[]; drains: number[] } {
  const timeouts: number[] = [];
  const drains: number[] = [];
  const w = new BatchWriter(s, clock, timeoutMs, () => timeouts.push(clock.now()), () => drains.push(clock.now()));
  return { w, timeouts, drains };
}

test('direct write taken whole: no write(), nothing pending, no deadline', () => {
  const clock = new ManualClock(0);
  const s = new FakeDirect();
  const { w, timeouts } = writerOn(s, clock, 1000);
  s.answers = [0];
  w.frame(FrameType.KeepAlive, 0);
  w.flush();
  assert.equal(s.direct.length, 1);
  assert.deepEqual([...s.direct[0]!], [FrameType.KeepAlive, 0, 0, 0, 0]);
  assert.equal(s.written.length, 0);
  clock.advance(5000);
  assert.deepEqual(timeouts, []);
});

test('partial direct write: pending until drain; the write deadline fires if drain never comes', () => {
  const clock = new ManualClock(0);
  const s = new FakeDirect();
  const { w, timeouts, drains } = writerOn(s, clock, 1000);
  s.answers = [3];
  w.frame(FrameType.KeepAlive, 0);
  w.flush();
  clock.advance(500);
  s.emit('drain');
  assert.equal(drains.length, 1);
  clock.advance(5000);
  assert.deepEqual(timeouts, [], 'drained in time: no timeout');

  const s2 = new FakeDirect();
  const c2 = new ManualClock(0);
  const w2 = writerOn(s2, c2, 1000);
  s2.answers = [3];
  w2.w.frame(FrameType.KeepAlive, 0);
  w2.w.flush();
  c2.advance(1500);
  assert.deepEqual(w2.timeouts, [1000]);
});

test('null from writeDirect: the batch goes through write(), in order', () => {
  const s = new FakeDirect();
  const { w } = writerOn(s);
  s.answers = [null, 0];
  w.frame(FrameType.KeepAlive, 0);
  w.flush();
  w.frame(FrameType.Pong, 0, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
  w.flush();
  assert.equal(s.written.length, 1);
  assert.equal(s.written[0]![0], FrameType.KeepAlive);
  assert.equal(s.direct.length, 1);
  assert.equal(s.direct[0]![0], FrameType.Pong);
});

test('a plain Duplex (no fast path) is written with write() only', () => {
  const written: Buffer[] = [];
  const s = new Duplex({ read() {}, write(chunk: Buffer, _e, cb) { written.push(chunk); cb(); } });
  const { w } = writerOn(s);
  w.frame(FrameType.KeepAlive, 0);
  w.flush();
  assert.equal(written.length, 1);
});

test('a frame added in place right after a flush that blocks the writer is kept as a copy, not a reference', () => {
  /** Holds every write() (the peer does not read). */
  class Holding extends FakeDirect {
    readonly held: (() => void)[] = [];
    override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
      this.written.push(chunk);
      this.held.push(cb);
    }
  }
  const s = new Holding();
  const { w } = writerOn(s);
  s.answers = [null];
  w.frame(FrameType.RecvPacket, 0, Buffer.alloc(WRITE_BUFFER_LIMIT + 1000, 1));
  const readBuf = Buffer.concat([Buffer.alloc(7, 9), encodeFrame(FrameType.RecvPacket, Buffer.alloc(32, 2), Buffer.alloc(600, 3))]);
  w.appendInPlace(readBuf, 7, readBuf.length);
  assert.ok(w.blocked, 'the big batch blocked the writer');
  readBuf.fill(0xee); // the read buffer is reused by the next read
  for (const cb of s.held.splice(0)) cb();
  s.emit('drain');
  w.flush();
  const last = s.direct.at(-1) ?? s.written.at(-1)!;
  assert.deepEqual(Buffer.from(last), encodeFrame(FrameType.RecvPacket, Buffer.alloc(32, 2), Buffer.alloc(600, 3)));
});
