import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DISCO_MAGIC, FrameType, MAX_PACKET_SIZE } from '../../../src/derp/constants.ts';
import { encodeFrame, writeHeader } from '../../../src/derp/frame.ts';
import { generatePrivate, publicFromPrivate } from '../../../src/types/key.ts';
import { newServer, TestClient, tick } from './helpers.ts';

const disco = (n = 62): Buffer => Buffer.concat([DISCO_MAGIC, Buffer.alloc(n - DISCO_MAGIC.length, 7)]);
const otherKey = (): Uint8Array => publicFromPrivate(generatePrivate());

describe('DERP server routing', () => {
  it('delivers A→B as RecvPacket(src=A), for 0-byte and 65536-byte payloads, in order', async () => {
    const { server } = newServer();
    const a = await TestClient.connect(server);
    const b = await TestClient.connect(server);
    const big = Buffer.alloc(MAX_PACKET_SIZE, 0xab);
    a.send(b.pub, Buffer.alloc(0));
    a.send(b.pub, big);
    a.send(b.pub, Buffer.from('third'));
    const r1 = await b.next(FrameType.RecvPacket);
    assert.deepEqual(Buffer.from(r1.payload), Buffer.from(a.pub));
    const r2 = await b.next(FrameType.RecvPacket);
    assert.deepEqual(Buffer.from(r2.payload.subarray(0, 32)), Buffer.from(a.pub));
    assert.ok(Buffer.from(r2.payload.subarray(32)).equals(big));
    assert.equal(Buffer.from((await b.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'third');
    const m = server.metrics();
    assert.equal(m.packets_received, 3);
    assert.equal(m.packets_sent, 3);
    assert.equal(m.bytes_received, MAX_PACKET_SIZE + 5);
    server.consistencyCheck();
    await server.close();
  });

  it('routes to a destination that left and came back with the same key (route cache invalidated), and switches between destinations', async () => {
    const { server } = newServer();
    const a = await TestClient.connect(server);
    const bPriv = generatePrivate();
    const b1 = await TestClient.connect(server, { priv: bPriv });
    const c = await TestClient.connect(server);
    a.send(b1.pub, Buffer.from('one'));
    assert.equal(Buffer.from((await b1.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'one');
    b1.close();
    await b1.closed;
    await tick();
    a.send(b1.pub, Buffer.from('lost'));
    await tick();
    const b2 = await TestClient.connect(server, { priv: bPriv });
    a.send(b2.pub, Buffer.from('two'));
    a.send(c.pub, Buffer.from('to c'));
    a.send(b2.pub, Buffer.from('three'));
    assert.equal(Buffer.from((await b2.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'two');
    assert.equal(Buffer.from((await b2.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'three');
    assert.equal(Buffer.from((await c.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'to c');
    assert.equal(server.metrics().packets_dropped.unknown_dest.other, 1);
    server.consistencyCheck();
    await server.close();
  });

  it('loops a packet sent to your own key back', async () => {
    const { server } = newServer();
    const a = await TestClient.connect(server);
    a.send(a.pub, Buffer.from('me'));
    const r = await a.next(FrameType.RecvPacket);
    assert.deepEqual(Buffer.from(r.payload.subarray(0, 32)), Buffer.from(a.pub));
    server.consistencyCheck();
    await server.close();
  });

  it('closes only the sender on a 65537-byte payload or a SendPacket shorter than 32 bytes', async () => {
    const { server } = newServer();
    const ok = await TestClient.connect(server);
    const a = await TestClient.connect(server);
    const h = Buffer.alloc(5);
    writeHeader(h, 0, FrameType.SendPacket, 32 + MAX_PACKET_SIZE + 1);
    a.write(h); // rejected from the header: the payload is never buffered
    assert.equal(await a.closedWithin(), true);
    const b = await TestClient.connect(server);
    b.write(encodeFrame(FrameType.SendPacket, new Uint8Array(31)));
    assert.equal(await b.closedWithin(), true);
    const codes = server.metrics().closes_by_code;
    assert.equal(codes.frame_too_large, 1);
    assert.equal(codes.short_send_packet, 1);
    ok.send(ok.pub, Buffer.from('x'));
    await ok.next(FrameType.RecvPacket);
    server.consistencyCheck();
    await server.close();
  });

  it('drops non-disco packets to unknown keys silently', async () => {
    const { server } = newServer();
    const a = await TestClient.connect(server);
    a.send(otherKey(), Buffer.alloc(100, 1));
    a.send(otherKey(), disco(61)); // one byte short of disco
    assert.deepEqual(await a.drain(), []);
    assert.equal(server.metrics().packets_dropped.unknown_dest.other, 2);
    server.consistencyCheck();
    await server.close();
  });

  it('answers disco to an unknown key with PeerGone NotHere: 6 rapid sends → 3, then 1 per second', async () => {
    const { server, clock } = newServer();
    const a = await TestClient.connect(server);
    const k = otherKey();
    for (let i = 0; i < 6; i++) a.send(k, disco());
    let got = (await a.drain(10)).filter((f) => f.type === FrameType.PeerGone);
    assert.equal(got.length, 3);
    for (const f of got) {
      assert.equal(f.payload.length, 33);
      assert.deepEqual(Buffer.from(f.payload.subarray(0, 32)), Buffer.from(k));
      assert.equal(f.payload[32], 0x01);
    }
    clock.advance(1000);
    for (let i = 0; i < 3; i++) a.send(k, disco());
    got = (await a.drain(10)).filter((f) => f.type === FrameType.PeerGone);
    assert.equal(got.length, 1);
    const m = server.metrics();
    assert.equal(m.peer_gone_not_here_frames, 4);
    assert.equal(m.packets_dropped.unknown_dest.disco, 9);
    server.consistencyCheck();
    await server.close();
  });

  it('sends PeerGone(Disconnected) to connections that heard from a leaving key, only them', async () => {
    const { server } = newServer();
    const a = await TestClient.connect(server);
    const b = await TestClient.connect(server);
    const c = await TestClient.connect(server);
    a.send(b.pub, Buffer.from('hi'));
    await b.next(FrameType.RecvPacket);
    a.close();
    const g = await b.next(FrameType.PeerGone);
    assert.equal(g.payload.length, 33);
    assert.deepEqual(Buffer.from(g.payload.subarray(0, 32)), Buffer.from(a.pub));
    assert.equal(g.payload[32], 0x00);
    assert.deepEqual(await c.drain(), []);
    assert.equal(server.metrics().peer_gone_disconnected_frames, 1);
    server.consistencyCheck();
    await server.close();
  });

  it('answers Ping with Pong of the first 8 bytes, and closes on Ping < 8 or > 1000 bytes', async () => {
    const { server } = newServer();
    const a = await TestClient.connect(server);
    a.write(encodeFrame(FrameType.Ping, Buffer.from('01234567')));
    assert.equal(Buffer.from((await a.next(FrameType.Pong)).payload).toString(), '01234567');
    a.write(encodeFrame(FrameType.Ping, Buffer.alloc(1000, 0x41)));
    assert.equal(Buffer.from((await a.next(FrameType.Pong)).payload).toString(), 'AAAAAAAA');
    const s = await TestClient.connect(server);
    s.write(encodeFrame(FrameType.Ping, Buffer.alloc(7)));
    assert.equal(await s.closedWithin(), true);
    const l = await TestClient.connect(server);
    l.write(encodeFrame(FrameType.Ping, Buffer.alloc(1001)));
    assert.equal(await l.closedWithin(), true);
    assert.equal(server.metrics().closes_by_code.bad_ping, 2);
    assert.equal(server.metrics().sent_pong, 2);
    server.consistencyCheck();
    await server.close();
  });

  it('keeps one pending pong: pings arriving while one is pending are dropped', async () => {
    const { server } = newServer();
    const a = await TestClient.connect(server);
    a.write(Buffer.concat([encodeFrame(FrameType.Ping, Buffer.from('aaaaaaaa')), encodeFrame(FrameType.Ping, Buffer.from('bbbbbbbb'))]));
    const pongs = (await a.drain(10)).filter((f) => f.type === FrameType.Pong);
    assert.equal(pongs.length, 1);
    assert.equal(Buffer.from(pongs[0]!.payload).toString(), 'aaaaaaaa');
    assert.equal(server.metrics().got_ping, 2);
    server.consistencyCheck();
    await server.close();
  });

  it('sends KeepAlive 60–65 s after connecting on an idle connection (manual clock)', async () => {
    const { server, clock } = newServer({ random: (n) => new Uint8Array(n).fill(0xff) }); // max jitter
    const a = await TestClient.connect(server);
    await a.drain(); // let the ServerInfo write complete before jumping the clock
    clock.advance(60_000);
    assert.deepEqual(await a.drain(), []);
    clock.advance(5_000);
    const k = await a.next(FrameType.KeepAlive);
    assert.equal(k.payload.length, 0);
    clock.advance(65_000);
    await a.next(FrameType.KeepAlive);
    server.consistencyCheck();
    await server.close();
  });

  it('NotePreferred moves current_home_connections; a wrong length closes', async () => {
    const { server, clock } = newServer();
    const a = await TestClient.connect(server);
    a.write(encodeFrame(FrameType.NotePreferred, Uint8Array.of(1)));
    await a.drain();
    assert.equal(server.metrics().gauge_current_home_connections, 1);
    assert.equal(server.metrics().home_moves_in, 0, 'within 5 s of connecting: not a move');
    clock.advance(6_000);
    a.write(encodeFrame(FrameType.NotePreferred, Uint8Array.of(0)));
    await a.drain();
    assert.equal(server.metrics().gauge_current_home_connections, 0);
    assert.equal(server.metrics().home_moves_out, 1);
    a.write(encodeFrame(FrameType.NotePreferred, Uint8Array.of(1, 1)));
    assert.equal(await a.closedWithin(), true);
    assert.equal(server.metrics().closes_by_code.bad_note_preferred, 1);
    server.consistencyCheck();
    await server.close();
  });

  it('skips unknown frames (even huge ones, streamed) and ignores Pong/KeepAlive from clients', async () => {
    const { server } = newServer();
    const a = await TestClient.connect(server);
    a.write(encodeFrame(0x42, Buffer.alloc(1000, 9)));
    a.write(encodeFrame(FrameType.Pong, Buffer.alloc(8)));
    a.write(encodeFrame(FrameType.KeepAlive));
    const h = Buffer.alloc(5);
    writeHeader(h, 0, 0x77, 4 * 1024 * 1024);
    a.write(h);
    for (let i = 0; i < 64; i++) a.write(Buffer.alloc(64 * 1024, i));
    a.send(a.pub, Buffer.from('after'));
    assert.equal(Buffer.from((await a.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'after');
    assert.equal(server.metrics().unknown_frames, 2);
    server.consistencyCheck();
    await server.close();
  });

  it('delivers a burst of 100 packets (one 64 KiB read) without drops when the destination keeps up', async () => {
    const { server } = newServer();
    const a = await TestClient.connect(server);
    const b = await TestClient.connect(server);
    const burst: Buffer[] = [];
    for (let i = 0; i < 100; i++) {
      const p = Buffer.alloc(570);
      p.writeUInt32BE(i, 0);
      burst.push(Buffer.from(encodeFrame(FrameType.SendPacket, b.pub, p)));
    }
    a.write(Buffer.concat(burst));
    for (let i = 0; i < 100; i++) assert.equal(Buffer.from((await b.next(FrameType.RecvPacket)).payload).readUInt32BE(32), i);
    assert.equal(server.metrics().packets_dropped.queue_head.other, 0);
    server.consistencyCheck();
    await server.close();
  });

  it('head-drops when a destination does not read, and delivers the newest packets once it does', async () => {
    const { server } = newServer({ writeTimeoutMs: 0 });
    const a = await TestClient.connect(server);
    const b = await TestClient.connect(server);
    b.stream.pause();
    const N = 400;
    for (let i = 0; i < N; i++) {
      const p = Buffer.alloc(1200);
      p.writeUInt32BE(i, 0);
      a.send(b.pub, p);
      if (i % 50 === 0) await tick();
    }
    await a.drain(20);
    const m = server.metrics();
    assert.ok(m.packets_dropped.queue_head.other > 0, 'head drops counted');
    assert.equal(m.packets_dropped.queue_tail.other, 0);
    b.stream.resume();
    await new Promise((r) => setTimeout(r, 100));
    const got = b.frames.filter((f) => f.type === FrameType.RecvPacket).map((f) => Buffer.from(f.payload).readUInt32BE(32));
    assert.equal(got.length + server.metrics().packets_dropped.queue_head.other, N, 'every packet delivered or counted as dropped');
    assert.equal(got[got.length - 1], N - 1, 'the newest packet is delivered');
    for (let i = 1; i < got.length; i++) assert.ok(got[i]! > got[i - 1]!, 'order preserved');
    server.consistencyCheck();
    await server.close();
  });

  it('closes a destination whose writes stall longer than the write timeout', async () => {
    const { server, clock } = newServer({ writeTimeoutMs: 2000 });
    const a = await TestClient.connect(server);
    const b = await TestClient.connect(server);
    b.stream.pause();
    for (let i = 0; i < 400; i++) {
      a.send(b.pub, Buffer.alloc(1400));
      if (i % 20 === 0) await tick();
    }
    await a.drain(10);
    clock.advance(1999);
    assert.equal(await b.closedWithin(20), false);
    clock.advance(1);
    await tick();
    assert.equal(server.metrics().sclient_write_timeouts, 1);
    assert.equal(server.metrics().closes_by_code.write_timeout, 1);
    assert.equal(server.metrics().gauge_current_connections, 1);
    server.consistencyCheck();
    await server.close();
  });
});
