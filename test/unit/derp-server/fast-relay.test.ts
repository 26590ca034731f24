// The relay's fast path (src/derp/server/fast-relay.ts) over real loopback TCP through the native addon
// (NativeTlsServer, plain): packets relayed in the read buffer arrive intact and in order, a read that mixes in
// other frames or ends inside a frame hands the rest to the general path, a destination that stops reading gets
// the general path's queue (order kept, head drops), the §9.4 "heard from" record and duplicate keys still work.
// `counter_packets_fast_path` shows which path carried the packets, so each case checks the path it is about.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { FrameType, KEY_LEN, PeerGoneReason } from '../../../src/derp/constants.ts';
import { encodeFrame } from '../../../src/derp/frame.ts';
import type { DerpServer } from '../../../src/derp/server/server.ts';
import { NativeTlsServer, nativeTcpAvailable, nativeTcpUnavailableReason } from '../../../src/net/tls-native.ts';
import { generatePrivate } from '../../../src/types/key.ts';
import { newServer, TestClient } from './helpers.ts';

const SKIP = nativeTcpAvailable() ? false : `addon not built: ${nativeTcpUnavailableReason()}`;

let server: DerpServer;
let tcp: net.Server;
let host: NativeTlsServer;
let port = 0;

before(async () => {
  if (SKIP !== false) return;
  server = newServer({ queueDepth: 32 }).server;
  host = new NativeTlsServer({
    context: null,
    handshakeTimeoutMs: 5000,
    onSecure: (s) => server.accept(s, { remoteAddress: s.remoteAddress ?? '', remotePort: s.remotePort ?? 0 }),
  });
  tcp = net.createServer({ pauseOnConnect: true }, (raw) => host.attach(raw));
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  port = (tcp.address() as net.AddressInfo).port;
});

after(async () => {
  if (SKIP !== false) return;
  host.closeAll();
  await server.close();
  await new Promise<void>((r) => tcp.close(() => r()));
});

async function client(priv = generatePrivate()): Promise<TestClient & { sock: net.Socket }> {
  const sock = net.connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
  const c = new TestClient(sock, priv) as TestClient & { sock: net.Socket };
  c.sock = sock;
  await c.handshake(JSON.stringify({ version: 2, CanAckPings: true }));
  return c;
}

const fast = (): number => server.metrics().counter_packets_fast_path;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Packet `seq`: its number in the first 4 bytes, then bytes derived from it. */
function packet(seq: number, size = 600): Buffer {
  const b = Buffer.alloc(size, seq & 0xff);
  b.writeUInt32BE(seq, 0);
  return b;
}

/** The RecvPackets among `frames`: checks source and body, returns their numbers. */
function received(frames: { type: number; payload: Uint8Array }[], from: Uint8Array, size = 600): number[] {
  return frames.filter((f) => f.type === FrameType.RecvPacket).map((f) => {
    const p = Buffer.from(f.payload);
    assert.deepEqual(p.subarray(0, KEY_LEN), Buffer.from(from), 'source key');
    const body = p.subarray(KEY_LEN);
    assert.equal(body.length, size);
    const seq = body.readUInt32BE(0);
    assert.ok(body.subarray(4).every((x) => x === (seq & 0xff)), `packet ${seq} intact`);
    return seq;
  });
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const recvCount = (c: TestClient): number => c.frames.filter((f) => f.type === FrameType.RecvPacket).length;

test('whole SendPackets in one read are relayed by the fast path, intact, in order, counted', { skip: SKIP }, async () => {
  const a = await client();
  const b = await client();
  const before = server.metrics();
  // 100 frames of 637 bytes: one write of 63 700 bytes, one loopback segment, one read of the addon's 64 KiB.
  a.write(Buffer.concat(Array.from({ length: 100 }, (_, i) => encodeFrame(FrameType.SendPacket, b.pub, packet(i)))));
  await until(() => recvCount(b) === 100, '100 packets');
  assert.deepEqual(received(b.frames.splice(0), a.pub), Array.from({ length: 100 }, (_, i) => i));
  const m = server.metrics();
  assert.equal(m.packets_sent - before.packets_sent, 100);
  assert.equal(m.packets_received - before.packets_received, 100);
  assert.equal(m.bytes_sent - before.bytes_sent, 100 * 600);
  assert.equal(m.counter_packets_received_kind.other - before.counter_packets_received_kind.other, 100);
  assert.equal(m.counter_packets_fast_path - before.counter_packets_fast_path, 100);
  a.close();
  b.close();
});

test('a read with a Ping in the middle and a frame cut across reads: the rest goes the general way, in order', { skip: SKIP }, async () => {
  const a = await client();
  const b = await client();
  const f0 = fast();
  const first = Array.from({ length: 5 }, (_, i) => encodeFrame(FrameType.SendPacket, b.pub, packet(i)));
  const ping = encodeFrame(FrameType.Ping, Buffer.from('8bytes!!'));
  const second = Array.from({ length: 5 }, (_, i) => encodeFrame(FrameType.SendPacket, b.pub, packet(5 + i)));
  const cut = encodeFrame(FrameType.SendPacket, b.pub, packet(10));
  a.write(Buffer.concat([...first, ping, ...second, cut.subarray(0, 300)]));
  await until(() => recvCount(b) === 10 && a.frames.some((f) => f.type === FrameType.Pong), 'ten packets and the pong');
  const viaFast = fast() - f0;
  assert.equal(viaFast, 5, 'the frames before the Ping went the fast way, the rest the general way');
  await sleep(20);
  a.write(Buffer.concat([cut.subarray(300), ...Array.from({ length: 5 }, (_, i) => encodeFrame(FrameType.SendPacket, b.pub, packet(11 + i)))]));
  await until(() => recvCount(b) === 16, 'sixteen packets');
  assert.deepEqual(received(b.frames.splice(0), a.pub), Array.from({ length: 16 }, (_, i) => i));
  // The cut frame was finished by the general path; the read after that one is whole frames again.
  const f1 = fast();
  a.write(Buffer.concat(Array.from({ length: 3 }, (_, i) => encodeFrame(FrameType.SendPacket, b.pub, packet(16 + i)))));
  await until(() => recvCount(b) === 3, 'three more');
  assert.deepEqual(received(b.frames.splice(0), a.pub), [16, 17, 18]);
  assert.equal(fast() - f1, 3, 'back on the fast path');
  a.close();
  b.close();
});

test('a destination that stops reading: the general path queues (head drops), order holds, the newest arrives', { skip: SKIP }, async () => {
  const a = await client();
  const b = await client();
  b.sock.pause();
  const drops0 = server.metrics().packets_dropped.queue_head.other;
  const total = 20_000;
  // Writes of 100 whole frames, each its own read: the fast path's to take until the destination backs up.
  for (let i = 0; i < total; i += 100) {
    a.write(Buffer.concat(Array.from({ length: 100 }, (_, j) => encodeFrame(FrameType.SendPacket, b.pub, packet(i + j)))));
    await sleep(1);
  }
  await sleep(300);
  assert.ok(server.metrics().packets_dropped.queue_head.other > drops0, 'the stalled destination dropped from its queue head');
  b.sock.resume();
  await until(() => b.frames.some((f) => f.type === FrameType.RecvPacket && Buffer.from(f.payload).readUInt32BE(KEY_LEN) === total - 1), 'the newest packet', 10_000);
  const got = received(b.frames.splice(0), a.pub);
  for (let i = 1; i < got.length; i++) assert.ok(got[i]! > got[i - 1]!, `in order at ${i}: ${got[i - 1]} then ${got[i]}`);
  // Unblocked, the destination is the fast path's again.
  const f0 = fast();
  a.write(Buffer.concat(Array.from({ length: 10 }, (_, i) => encodeFrame(FrameType.SendPacket, b.pub, packet(total + i)))));
  await until(() => recvCount(b) === 10, 'ten after the stall');
  assert.deepEqual(received(b.frames.splice(0), a.pub), Array.from({ length: 10 }, (_, i) => total + i));
  assert.equal(fast() - f0, 10);
  server.consistencyCheck();
  a.close();
  b.close();
});

test('heard-from: a source the fast path relayed for leaves, its destination gets PeerGone(Disconnected)', { skip: SKIP }, async () => {
  const a = await client();
  const b = await client();
  const f0 = fast();
  a.write(encodeFrame(FrameType.SendPacket, b.pub, packet(1)));
  await until(() => recvCount(b) === 1, 'the packet');
  assert.equal(fast() - f0, 1);
  a.close();
  const gone = await b.next(FrameType.PeerGone, 5000);
  assert.deepEqual(Buffer.from(gone.payload.subarray(0, KEY_LEN)), Buffer.from(a.pub));
  assert.equal(gone.payload[KEY_LEN], PeerGoneReason.Disconnected);
  b.close();
});

test('a key with two connections leaves the fast path (activity decides the active one); alone again, it returns', { skip: SKIP }, async () => {
  const priv = generatePrivate();
  const b1 = await client(priv);
  const a = await client();
  const b2 = await client(priv);
  const f0 = fast();
  a.write(encodeFrame(FrameType.SendPacket, b2.pub, packet(1)));
  await until(() => recvCount(b2) === 1, 'to the newest connection');
  // Activity on b1 makes it the active one (§10): only the general path notices.
  b1.write(encodeFrame(FrameType.SendPacket, a.pub, packet(2)));
  await until(() => recvCount(a) === 1, 'b1 → a');
  a.write(encodeFrame(FrameType.SendPacket, b1.pub, packet(3)));
  await until(() => recvCount(b1) === 1, 'to b1, now active');
  assert.equal(fast() - f0, 0, 'nothing to or from the duplicated key went the fast way');
  b2.close();
  await until(() => server.metrics().gauge_current_dup_client_keys === 0, 'the duplicate gone');
  const f1 = fast();
  a.write(encodeFrame(FrameType.SendPacket, b1.pub, packet(4)));
  await until(() => recvCount(b1) === 2, 'to b1 alone');
  assert.equal(fast() - f1, 1);
  a.close();
  b1.close();
});

test('an unknown destination and a bad length go the general way: NotHere for disco, a typed close for the length', { skip: SKIP }, async () => {
  const a = await client();
  const b = await client();
  const nobody = generatePrivate();
  const disco = Buffer.concat([Buffer.from('TS💬'), Buffer.alloc(60)]);
  a.write(encodeFrame(FrameType.SendPacket, nobody.subarray(0, KEY_LEN), disco));
  const gone = await a.next(FrameType.PeerGone, 5000);
  assert.equal(gone.payload[KEY_LEN], PeerGoneReason.NotHere);
  const closes0 = server.metrics().closes_by_code.short_send_packet ?? 0;
  const bad = Buffer.alloc(5 + 10);
  bad[0] = FrameType.SendPacket;
  bad.writeUInt32BE(10, 1);
  a.write(Buffer.concat([encodeFrame(FrameType.SendPacket, b.pub, packet(1)), bad]));
  assert.ok(await a.closedWithin(5000), 'closed for the short SendPacket');
  assert.equal((server.metrics().closes_by_code.short_send_packet ?? 0) - closes0, 1);
  await until(() => recvCount(b) === 1, 'the good packet before it');
  b.close();
});
