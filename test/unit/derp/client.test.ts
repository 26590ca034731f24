/**
 * Unit tests for the DERP client engine (src/derp/client.ts) over an in-memory ByteStream with a scripted server:
 * handshake bytes, fast start, fatal ServerInfo, frame limits, backpressure, token bucket, ping matching and
 * byte-at-a-time chunking.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DerpClient, encodeClientInfo, type ByteStream, type DerpMessage } from '../../../src/derp/client.ts';
import { boxBeforeNm, openBox, sealBox } from '../../../src/derp/box.ts';
import { FrameType } from '../../../src/derp/constants.ts';
import { encodeFrame, encodeRecvPacket, encodeServerKey, FrameReader } from '../../../src/derp/frame.ts';
import { ManualClock } from '../../../src/time/clock.ts';
import { generatePrivate, publicFromPrivate, type NodePrivate } from '../../../src/types/key.ts';

class FakeStream implements ByteStream {
  written: Buffer[] = [];
  paused = 0;
  resumed = 0;
  closed = false;
  #data: ((c: Buffer) => void) | null = null;
  #close: ((e: Error | null) => void) | null = null;
  localAddress = '127.0.0.1';
  localPort = 1234;
  write(d: Uint8Array): boolean { this.written.push(Buffer.from(d)); return true; }
  onData(fn: (c: Buffer) => void): void { this.#data = fn; }
  onClose(fn: (e: Error | null) => void): void { this.#close = fn; }
  onDrain(): void {}
  pause(): void { this.paused++; }
  resume(): void { this.resumed++; }
  close(): void { this.closed = true; }
  feed(b: Uint8Array): void { this.#data!(Buffer.from(b)); }
  end(): void { this.#close!(null); }
  /** Frames the client wrote so far. */
  frames(): { type: number; payload: Buffer }[] {
    const r = new FrameReader(() => 1 << 24);
    r.push(Buffer.concat(this.written));
    const out: { type: number; payload: Buffer }[] = [];
    for (let f = r.next(); f !== null; f = r.next()) out.push({ type: f.type, payload: Buffer.from(f.payload) });
    return out;
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function serverInfoFrame(serverPriv: NodePrivate, clientPub: Uint8Array, json: string): Buffer {
  return encodeFrame(FrameType.ServerInfo, sealBox(boxBeforeNm(serverPriv, clientPub), Buffer.from(json)));
}

async function handshake(o: { json?: string; clock?: ManualClock; fast?: boolean } = {}): Promise<{ c: DerpClient; s: FakeStream; serverPriv: NodePrivate; clientPriv: NodePrivate }> {
  const serverPriv = generatePrivate();
  const clientPriv = generatePrivate();
  const s = new FakeStream();
  const opts = { privateKey: clientPriv, ...(o.clock ? { clock: o.clock } : {}), ...(o.fast ? { serverKey: publicFromPrivate(serverPriv) } : {}) };
  const p = DerpClient.overStream(s, encodeServerKey(publicFromPrivate(serverPriv)), opts, { fastStartSent: o.fast === true });
  s.feed(serverInfoFrame(serverPriv, publicFromPrivate(clientPriv), o.json ?? '{"version":2}'));
  return { c: await p, s, serverPriv, clientPriv };
}

test('handshake: ClientInfo is key ∥ box({"version":2,"CanAckPings":false}) sealed to the server key', async () => {
  const { c, s, serverPriv, clientPriv } = await handshake();
  await tick();
  const [info] = s.frames();
  assert.equal(info!.type, FrameType.ClientInfo);
  assert.deepEqual(info!.payload.subarray(0, 32), Buffer.from(publicFromPrivate(clientPriv)));
  const plain = openBox(boxBeforeNm(serverPriv, publicFromPrivate(clientPriv)), info!.payload.subarray(32));
  assert.equal(Buffer.from(plain).toString(), '{"version":2,"CanAckPings":false}');
  assert.deepEqual(c.serverInfo, { version: 2 });
  assert.deepEqual(c.serverKey, publicFromPrivate(serverPriv));
});

test('ClientInfo JSON carries meshKey first and IsProber when set', () => {
  const serverPriv = generatePrivate();
  const priv = generatePrivate();
  const mesh = new Uint8Array(32).fill(0xab);
  const f = encodeClientInfo({ privateKey: priv, meshKey: mesh, isProber: true, canAckPings: true }, publicFromPrivate(serverPriv));
  const plain = openBox(boxBeforeNm(serverPriv, publicFromPrivate(priv)), f.subarray(5 + 32));
  assert.equal(Buffer.from(plain).toString(), `{"meshKey":"${'ab'.repeat(32)}","version":2,"CanAckPings":true,"IsProber":true}`);
});

test('fast start: the ServerKey frame is skipped and ClientInfo is not re-sent', async () => {
  const { c, s } = await handshake({ fast: true });
  await tick();
  assert.equal(s.frames().length, 0, 'fast start: ClientInfo went with the request, nothing more written');
  assert.equal(c.serverInfo.version, 2);
});

test('a ServerInfo that does not open is fatal', async () => {
  const serverPriv = generatePrivate();
  const s = new FakeStream();
  const p = DerpClient.overStream(s, encodeServerKey(publicFromPrivate(serverPriv)), { privateKey: generatePrivate() });
  s.feed(serverInfoFrame(generatePrivate(), publicFromPrivate(generatePrivate()), '{"version":2}'));
  await assert.rejects(p, { code: 'box_open_failed' });
  assert.ok(s.closed);
});

test('first frame other than ServerKey, or ServerKey over 1024 bytes, is fatal', async () => {
  const s = new FakeStream();
  const p = DerpClient.overStream(s, encodeFrame(FrameType.KeepAlive), { privateKey: generatePrivate() });
  await assert.rejects(p, { code: 'derp_protocol' });
  const s2 = new FakeStream();
  const h = Buffer.alloc(5);
  h[0] = FrameType.ServerKey;
  h.writeUInt32BE(1025, 1);
  await assert.rejects(DerpClient.overStream(s2, h, { privateKey: generatePrivate() }), { code: 'frame_too_large' });
});

test('a frame over 1 MiB closes the connection', async () => {
  const { c, s } = await handshake();
  const h = Buffer.alloc(5);
  h[0] = FrameType.RecvPacket;
  h.writeUInt32BE((1 << 20) + 1, 1);
  s.feed(h);
  const err = await c.closed;
  assert.equal((err as { code?: string }).code, 'frame_too_large');
  await assert.rejects(c.next(), { code: 'frame_too_large' });
});

test('bounded receive: the socket pauses at the high-water mark and resumes once drained', async () => {
  const { c, s } = await handshake();
  const src = publicFromPrivate(generatePrivate());
  const many = Buffer.concat(Array.from({ length: 300 }, (_, i) => encodeRecvPacket(src, Buffer.from(`p${i}`))));
  s.feed(many);
  assert.equal(s.paused, 1);
  assert.equal(s.resumed, 0);
  for (let i = 0; i < 300; i++) {
    const m = await c.next();
    assert.ok(m.type === 'recvPacket' && Buffer.from(m.data).toString() === `p${i}`);
  }
  assert.equal(s.resumed, 1);
});

test('token bucket from ServerInfo drops over-budget sends silently and refills with time', async () => {
  const clock = new ManualClock();
  const { c, s } = await handshake({ clock, json: '{"version":2,"TokenBucketBytesPerSecond":100,"TokenBucketBytesBurst":200}' });
  assert.deepEqual(c.serverInfo, { version: 2, tokenBucketBytesPerSecond: 100, tokenBucketBytesBurst: 200 });
  const dst = publicFromPrivate(generatePrivate());
  c.send(dst, new Uint8Array(100)); // costs 137
  c.send(dst, new Uint8Array(100)); // 63 left: dropped
  assert.equal(c.droppedByTokenBucket, 1);
  clock.advance(1000); // +100 → 163
  c.send(dst, new Uint8Array(100));
  assert.equal(c.droppedByTokenBucket, 1);
  await tick();
  assert.equal(s.frames().filter((f) => f.type === FrameType.SendPacket).length, 2);
});

test('send rejects packets over 64 KiB locally; exactly 64 KiB is allowed', async () => {
  const { c } = await handshake();
  const dst = publicFromPrivate(generatePrivate());
  assert.throws(() => c.send(dst, new Uint8Array(65537)), { code: 'packet_too_large' });
  c.send(dst, new Uint8Array(65536));
});

test('ping resolves on the matching pong; unmatched pongs and server pings are delivered', async () => {
  const clock = new ManualClock();
  const { c, s } = await handshake({ clock });
  const data = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
  const p = c.ping(data);
  await tick();
  assert.deepEqual(s.frames().at(-1), { type: FrameType.Ping, payload: Buffer.from(data) });
  s.feed(encodeFrame(FrameType.Pong, Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9)));
  clock.advance(7);
  s.feed(encodeFrame(FrameType.Pong, data));
  assert.equal(await p, 7);
  assert.deepEqual(await c.next(), { type: 'pong', data: Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9) });
  const lost = c.ping(Uint8Array.of(8, 7, 6, 5, 4, 3, 2, 1), 100);
  clock.advance(100);
  await assert.rejects(lost, { code: 'ping_timeout' });
});

test('canAckPings answers a server Ping with a Pong', async () => {
  const serverPriv = generatePrivate();
  const clientPriv = generatePrivate();
  const s = new FakeStream();
  const p = DerpClient.overStream(s, encodeServerKey(publicFromPrivate(serverPriv)), { privateKey: clientPriv, canAckPings: true });
  s.feed(serverInfoFrame(serverPriv, publicFromPrivate(clientPriv), '{"version":2}'));
  const c = await p;
  s.feed(Buffer.from('12000000080102030405060708', 'hex'));
  assert.deepEqual(await c.next(), { type: 'ping', data: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) });
  await tick();
  assert.deepEqual(s.frames().at(-1), { type: FrameType.Pong, payload: Buffer.from('0102030405060708', 'hex') });
});

test('spec §20 vectors: Health, Restarting, KeepAlive, unknown type; byte-at-a-time chunking', async () => {
  const { c, s } = await handshake();
  const bytes = Buffer.from('1400000003424144' + '14' + '00000000' + '15000000080000000100000002' + '0600000000' + '4200000003aabbcc', 'hex');
  for (const b of bytes) s.feed(Uint8Array.of(b));
  const got: DerpMessage[] = [];
  for (let i = 0; i < 5; i++) got.push(await c.next());
  assert.deepEqual(got, [
    { type: 'health', problem: 'BAD' },
    { type: 'health', problem: '' },
    { type: 'restarting', reconnectInMs: 1, tryForMs: 2 },
    { type: 'keepAlive' },
    { type: 'unknown', frameType: 0x42, length: 3 },
  ]);
});

test('remote end: closed resolves with derp_eof, next() rejects, writes throw', async () => {
  const { c, s } = await handshake();
  s.end();
  assert.equal(((await c.closed) as { code?: string }).code, 'derp_eof');
  await assert.rejects(c.next(), { code: 'derp_eof' });
  assert.throws(() => c.notePreferred(true), { code: 'derp_eof' });
});

test('close(): closed resolves null and pending next() rejects', async () => {
  const { c } = await handshake();
  const pending = c.next();
  c.close();
  assert.equal(await c.closed, null);
  await assert.rejects(pending, { code: 'derp_closed' });
});
