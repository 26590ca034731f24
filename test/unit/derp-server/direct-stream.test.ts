// The DERP server over streams with the direct fast paths (src/derp/server/stream-fast.ts, as native TLS sockets
// offer): reads arrive in one reused buffer ("transient") that is scribbled over after every call, and writes are
// taken with writeDirect. Whatever the server keeps past a read (queued packets for a destination that pushes
// back, a frame cut across reads, pongs) must be a copy: every delivered payload is checked byte for byte, with
// the scribble value never allowed to appear.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import { FrameType, KEY_LEN } from '../../../src/derp/constants.ts';
import { decodeServerKey, encodeFrame, FrameReader } from '../../../src/derp/frame.ts';
import { generatePrivate, publicFromPrivate } from '../../../src/types/key.ts';
import { WRITE_BUFFER_LIMIT } from '../../../src/derp/server/constants.ts';
import { BatchArena } from '../../../src/derp/server/writer.ts';
import { clientInfoPayload, newServer, tick } from './helpers.ts';

const SCRIBBLE = 0xee;

/** The server's end of a connection, with the fast paths; the test plays the client through feed()/frames. */
class DirectSide extends Duplex {
  readonly frames: { type: number; payload: Buffer }[] = [];
  readonly scratch = Buffer.alloc(64 * 1024);
  stalled = false;
  directWrites = 0;
  #reader = new FrameReader(() => 1 << 21);
  #direct: ((buf: Buffer, length: number, transient: boolean) => void) | null = null;
  #directPending = false;
  #stalledBytes: Buffer[] = [];
  #held: { chunk: Buffer; cb: () => void }[] = [];

  constructor() {
    super({ allowHalfOpen: false });
  }

  setDirectReader(fn: ((buf: Buffer, length: number, transient: boolean) => void) | null): void {
    this.#direct = fn;
  }

  writeDirect(buf: Uint8Array, start: number, end: number): number | null {
    if (this.writableLength !== 0 || this.#directPending || this.destroyed) return null;
    this.directWrites++;
    const copy = Buffer.from(buf.subarray(start, end));
    if (this.stalled) {
      this.#directPending = true;
      this.#stalledBytes.push(copy);
      return copy.length;
    }
    this.#got(copy);
    return 0;
  }

  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    if (this.stalled) this.#held.push({ chunk, cb });
    else {
      this.#got(chunk);
      cb();
    }
  }

  override _read(): void {}

  /** The peer starts reading again: what waited goes out in order, then 'drain'. */
  unstall(): void {
    this.stalled = false;
    for (const b of this.#stalledBytes.splice(0)) this.#got(b);
    for (const { chunk, cb } of this.#held.splice(0)) {
      this.#got(chunk);
      cb();
    }
    if (this.#directPending) {
      this.#directPending = false;
      this.emit('drain');
    }
  }

  /** Client → server bytes, cut into reads of the given sizes, each through the scratch buffer. */
  feed(bytes: Uint8Array, cuts: number[] = [bytes.length]): void {
    for (let o = 0, i = 0; o < bytes.length; i++) {
      const n = Math.min(cuts[i % cuts.length]!, bytes.length - o, this.scratch.length);
      this.scratch.set(bytes.subarray(o, o + n));
      o += n;
      if (this.#direct !== null && this.readableFlowing === true && this.readableLength === 0) this.#direct(this.scratch, n, true);
      else this.push(Buffer.from(this.scratch.subarray(0, n)));
      this.scratch.fill(SCRIBBLE);
    }
  }

  #got(b: Buffer): void {
    this.#reader.push(b);
    for (let f = this.#reader.next(); f !== null; f = this.#reader.next()) this.frames.push({ type: f.type, payload: Buffer.from(f.payload) });
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await tick();
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function connect(server: ReturnType<typeof newServer>['server'], side: DirectSide, priv: ReturnType<typeof generatePrivate>): Promise<void> {
  server.accept(side, { remoteAddress: '192.0.2.9', remotePort: 1000 });
  await until(() => side.frames.length > 0, 'ServerKey');
  const sk = decodeServerKey(side.frames.shift()!.payload);
  side.feed(encodeFrame(FrameType.ClientInfo, clientInfoPayload(priv, sk, '{"version":2}')), [7, 40, 1000]);
  await until(() => side.frames.some((f) => f.type === FrameType.ServerInfo), 'ServerInfo');
  side.frames.length = 0;
}

/** A 1200-byte packet whose every byte is `seq`'s fill value (never SCRIBBLE). */
const packetOf = (seq: number): Buffer => Buffer.alloc(1200, (seq % 200) + 1);

test('transient reads: packets relayed directly, and packets queued for a stalled destination, arrive intact', async () => {
  const { server } = newServer({ queueDepth: 32 });
  const aPriv = generatePrivate();
  const bPriv = generatePrivate();
  const a = new DirectSide();
  const b = new DirectSide();
  await connect(server, a, aPriv);
  await connect(server, b, bPriv);
  const bPub = publicFromPrivate(bPriv);
  const aPub = publicFromPrivate(aPriv);
  const check = (frames: { type: number; payload: Buffer }[]): number[] => frames.filter((f) => f.type === FrameType.RecvPacket).map((f) => {
    assert.deepEqual(f.payload.subarray(0, KEY_LEN), Buffer.from(aPub));
    const body = f.payload.subarray(KEY_LEN);
    assert.equal(body.length, 1200);
    assert.notEqual(body[0], SCRIBBLE);
    assert.ok(body.every((x) => x === body[0]), 'payload bytes all equal (no scribble)');
    return body[0]!;
  });

  // 1. A destination that keeps up: every packet goes out through writeDirect.
  const first = Buffer.concat(Array.from({ length: 50 }, (_, i) => encodeFrame(FrameType.SendPacket, bPub, packetOf(i))));
  a.feed(first, [4000, 333, 9000]);
  await until(() => b.frames.length >= 50, '50 packets');
  assert.deepEqual(check(b.frames.splice(0)), Array.from({ length: 50 }, (_, i) => (i % 200) + 1));
  assert.ok(b.directWrites > 0);

  // 2. The destination stops reading: once its writer is blocked, a few more packets wait in its queue (the first
  // ones there are not copied for backlog reasons, only because the read buffer is reused).
  b.stalled = true;
  let sent = 0;
  while (b.writableLength <= WRITE_BUFFER_LIMIT) a.feed(encodeFrame(FrameType.SendPacket, bPub, packetOf(sent++)));
  for (let i = 0; i < 3; i++) a.feed(encodeFrame(FrameType.SendPacket, bPub, packetOf(sent++)));
  for (let i = 0; i < 5; i++) await tick();
  b.unstall();
  await until(() => b.frames.filter((f) => f.type === FrameType.RecvPacket).length === sent, `${sent} packets`);
  assert.deepEqual(check(b.frames.splice(0)), Array.from({ length: sent }, (_, i) => (i % 200) + 1));
  assert.equal(server.metrics().packets_dropped.queue_head.other, 0);

  // 3. Stalled again under a burst: the queue head-drops, the newest packets arrive intact and in order.
  b.stalled = true;
  const n = 600;
  const burst = Buffer.concat(Array.from({ length: n }, (_, i) => encodeFrame(FrameType.SendPacket, bPub, packetOf(i))));
  a.feed(burst, [5000, 70, 12000]);
  for (let i = 0; i < 5; i++) await tick();
  assert.ok(server.metrics().packets_dropped.queue_head.other > 0, 'the stalled destination dropped from its queue head');
  b.unstall();
  await until(() => b.frames.filter((f) => f.type === FrameType.RecvPacket).length > 0 && server.metrics().gauge_current_connections === 2, 'delivery');
  for (let i = 0; i < 10; i++) await tick();
  const got = check(b.frames.splice(0));
  assert.equal(got.at(-1), ((n - 1) % 200) + 1, 'the newest packet is delivered (drops are at the head)');
  // Delivered in order: consecutive fill values step by 1 (mod 200) or skip over dropped ones, never back.
  let seq = -1;
  for (const v of got) {
    // fill values repeat every 200 packets: map back to the nearest sequence number after `seq`
    let s = seq + 1;
    while ((s % 200) + 1 !== v) s++;
    assert.ok(s > seq);
    seq = s;
  }
  server.consistencyCheck();
  await server.close();
});

test('frames cut anywhere across transient reads are reassembled intact (ping/pong and packets to self)', async () => {
  await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 6 }), async (cuts) => {
    const { server } = newServer();
    const priv = generatePrivate();
    const pub = publicFromPrivate(priv);
    const a = new DirectSide();
    await connect(server, a, priv);
    const wire = Buffer.concat([
      ...Array.from({ length: 20 }, (_, i) => encodeFrame(FrameType.SendPacket, pub, Buffer.alloc(100 + i * 37, i + 1))),
      encodeFrame(FrameType.Ping, Buffer.from('pingpong')),
    ]);
    a.feed(wire, cuts);
    await until(() => a.frames.some((f) => f.type === FrameType.Pong), 'Pong');
    await until(() => a.frames.filter((f) => f.type === FrameType.RecvPacket).length === 20, 'packets');
    const pkts = a.frames.filter((f) => f.type === FrameType.RecvPacket).map((f) => f.payload.subarray(KEY_LEN));
    pkts.forEach((p, i) => assert.ok(p.length === 100 + i * 37 && p.every((x) => x === i + 1), `packet ${i} intact`));
    assert.equal(a.frames.find((f) => f.type === FrameType.Pong)!.payload.toString(), 'pingpong');
    await server.close();
  }), { numRuns: 25 });
});

test('BatchArena: regions are reused once all are back; a full arena says so', () => {
  const arena = new BatchArena(1000);
  const r1 = arena.take(600);
  const r2 = arena.take(300);
  assert.deepEqual([r1, r2], [0, 600]);
  assert.equal(arena.take(200), -1, 'full');
  arena.release();
  assert.equal(arena.take(50), 900, 'not reset while a region is out');
  arena.release();
  arena.release();
  assert.equal(arena.outstanding, 0);
  assert.equal(arena.take(1000), 0, 'reset once all are back');
});
