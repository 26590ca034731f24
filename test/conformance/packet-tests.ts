/**
 * Conformance checklist 19–30 (spec/derp.md §7–§9): routing, size limits, self-send, PeerGone rules and rate
 * limit, unknown frames, Ping/Pong sizes, KeepAlive timing, NotePreferred, privileged frames and frames the
 * server must never send.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameType, PeerGoneReason } from '../../src/derp/constants.ts';
import { DerpClient, type DerpMessage } from '../../src/derp/client.ts';
import { generatePrivate, publicFromPrivate, type NodePublic } from '../../src/types/key.ts';
import { rawDerpConnect } from './raw.ts';
import {
  collect, discoPacket, expectAlive, expectClosed, metric, nextOf, sameKey, waitMetric, type SuiteContext,
} from './helpers.ts';

const unknownKey = (): NodePublic => publicFromPrivate(generatePrivate());

/** KeepAlive timing (27): started early by the suite, awaited by its test. Records every message type. */
export async function keepAliveWatch(url: string): Promise<{ firstKeepAliveMs: number | null; types: string[] }> {
  const c = await DerpClient.connect(url, { privateKey: generatePrivate() });
  const start = performance.now();
  const types: string[] = [];
  try {
    for (;;) {
      const left = 70_000 - (performance.now() - start);
      if (left <= 0) return { firstKeepAliveMs: null, types };
      const m = await c.next(left).catch(() => null);
      if (m === null) return { firstKeepAliveMs: null, types };
      types.push(m.type);
      if (m.type === 'keepAlive') return { firstKeepAliveMs: performance.now() - start, types };
    }
  } finally {
    c.close();
  }
}

export function packetTests(ctx: SuiteContext): void {
  test('19 A→B delivered as RecvPacket(A, payload) for 0, 1400 and exactly 65536 bytes', async () => {
    const a = await ctx.connect();
    const b = await ctx.connect();
    for (const len of [0, 1400, 65536]) {
      const p = crypto.getRandomValues(new Uint8Array(Math.min(len, 65536)));
      a.send(b.publicKey, p);
      const m = await nextOf(b, 'recvPacket');
      assert.ok(sameKey(m.source, a.publicKey), 'source is the sender key');
      assert.deepEqual(Buffer.from(m.data), Buffer.from(p), `${len}-byte payload identical`);
    }
  });

  test('20 payload of 65537 bytes, or SendPacket shorter than 32 → sender closed', async () => {
    const a = await ctx.connect();
    const b = await ctx.connect();
    assert.throws(() => a.send(b.publicKey, new Uint8Array(65537)), /exceeds/, 'client refuses locally');
    a.writeRawFrame(FrameType.SendPacket, Buffer.concat([b.publicKey, new Uint8Array(65537)]));
    await expectClosed(a, '65537-byte SendPacket');
    const c = await ctx.connect();
    c.writeRawFrame(FrameType.SendPacket, new Uint8Array(31));
    await expectClosed(c, '31-byte SendPacket');
    const got = await collect(b, 200);
    assert.equal(got.filter((m) => m.type === 'recvPacket').length, 0, 'nothing delivered');
  });

  test('21 sending to your own key loops back', async () => {
    const a = await ctx.connect();
    a.send(a.publicKey, Buffer.from('me'));
    const m = await nextOf(a, 'recvPacket');
    assert.ok(sameKey(m.source, a.publicKey));
    assert.equal(Buffer.from(m.data).toString(), 'me');
  });

  test('22 non-disco packet to an unknown key → silent drop, no PeerGone', async () => {
    const a = await ctx.connect();
    const k = unknownKey();
    a.send(k, new Uint8Array(100));
    a.send(k, Buffer.concat([Buffer.from('TS'), new Uint8Array(98)]));
    a.send(k, discoPacket(61)); // one byte short of disco
    await expectAlive(a, 'sender');
    const got = await collect(a, 600);
    assert.deepEqual(got.filter((m) => m.type === 'peerGone'), []);
  });

  test('23 disco packet to an unknown key → PeerGone(key, NotHere); 6 rapid sends → 3', async () => {
    const a = await ctx.connect();
    const k = unknownKey();
    a.send(k, discoPacket(62));
    const g = await nextOf(a, 'peerGone');
    assert.ok(sameKey(g.key, k));
    assert.equal(g.reason, PeerGoneReason.NotHere);
    const b = await ctx.connect();
    for (let i = 0; i < 6; i++) b.send(k, discoPacket());
    const got = await collect(b, 700);
    assert.equal(got.filter((m) => m.type === 'peerGone' && sameKey(m.key, k) && m.reason === PeerGoneReason.NotHere).length, 3);
  });

  test('24 after B heard from A, A leaving → B gets PeerGone(A, Disconnected), 33 bytes; C gets nothing', async () => {
    const a = await ctx.connect();
    const b = await rawDerpConnect(ctx.server.url);
    const c = await ctx.connect();
    try {
      a.send(b.pub, Buffer.from('hello'));
      const f = await b.conn.readFrame();
      assert.equal(f.type, FrameType.RecvPacket);
      a.close();
      const g = await b.conn.readFrame();
      assert.equal(g.type, FrameType.PeerGone);
      assert.equal(g.length, 33);
      assert.ok(sameKey(g.payload.subarray(0, 32), a.publicKey));
      assert.equal(g.payload[32], PeerGoneReason.Disconnected);
      const cgot = await collect(c, 300);
      assert.deepEqual(cgot.filter((m) => m.type === 'peerGone'), [], 'C never received from A');
    } finally {
      b.conn.close();
    }
  });

  test('25 unknown frame type (0x42, 1000 bytes), Pong and KeepAlive from a client are skipped', async () => {
    const a = await ctx.connect();
    a.writeRawFrame(0x42, new Uint8Array(1000));
    a.writeRawFrame(FrameType.Pong, new Uint8Array(8));
    a.writeRawFrame(FrameType.KeepAlive, new Uint8Array(0));
    a.writeRawFrame(0xff, new Uint8Array(0));
    await expectAlive(a, 'after unknown frames');
    a.send(a.publicKey, Buffer.from('still'));
    assert.equal(Buffer.from((await nextOf(a, 'recvPacket')).data).toString(), 'still');
  });

  test('26 Ping 8 → same Pong; 9–1000 → first 8 echoed; <8 or >1000 → close', async () => {
    const a = await ctx.connect();
    const rtt = await a.ping(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    assert.ok(rtt >= 0);
    for (const len of [9, 1000]) {
      const data = crypto.getRandomValues(new Uint8Array(len));
      a.writeRawFrame(FrameType.Ping, data);
      const p = await nextOf(a, 'pong');
      assert.deepEqual(Buffer.from(p.data), Buffer.from(data.subarray(0, 8)), `ping of ${len}`);
    }
    const s = await ctx.connect();
    s.writeRawFrame(FrameType.Ping, new Uint8Array(7));
    await expectClosed(s, '7-byte Ping');
    const l = await ctx.connect();
    l.writeRawFrame(FrameType.Ping, new Uint8Array(1001));
    await expectClosed(l, '1001-byte Ping');
  });

  test('28 NotePreferred: length ≠ 1 closes; valid ones move current_home_connections', async () => {
    const before = await metric(ctx.server.url, 'derp_current_home_connections');
    const a = await ctx.connect();
    a.notePreferred(true);
    assert.equal(await waitMetric(ctx.server.url, 'derp_current_home_connections', (v) => v === before + 1), before + 1);
    a.notePreferred(false);
    assert.equal(await waitMetric(ctx.server.url, 'derp_current_home_connections', (v) => v === before), before);
    for (const len of [0, 2]) {
      const c = await ctx.connect();
      c.writeRawFrame(FrameType.NotePreferred, new Uint8Array(len).fill(1));
      await expectClosed(c, `NotePreferred of ${len} bytes`);
    }
  });

  test('29 WatchConns/ClosePeer/ForwardPacket without mesh key close; bad lengths close mesh peers', async () => {
    const target = await ctx.connect();
    const cases: { name: string; mesh: boolean; act: (c: DerpClient) => void }[] = [
      { name: 'WatchConns, no mesh key', mesh: false, act: (c) => c.watchConns() },
      { name: 'ClosePeer, no mesh key', mesh: false, act: (c) => c.closePeer(target.publicKey) },
      { name: 'ForwardPacket, no mesh key', mesh: false, act: (c) => c.forwardPacket(c.publicKey, target.publicKey, Buffer.from('x')) },
      { name: 'WatchConns of 1 byte, mesh', mesh: true, act: (c) => c.writeRawFrame(FrameType.WatchConns, new Uint8Array(1)) },
      { name: 'ClosePeer of 31 bytes, mesh', mesh: true, act: (c) => c.writeRawFrame(FrameType.ClosePeer, new Uint8Array(31)) },
      { name: 'ClosePeer of 33 bytes, mesh', mesh: true, act: (c) => c.writeRawFrame(FrameType.ClosePeer, new Uint8Array(33)) },
    ];
    for (const tc of cases) {
      const c = tc.mesh ? await ctx.connectMesh() : await ctx.connect();
      tc.act(c);
      await expectClosed(c, tc.name);
    }
    await expectAlive(target, 'the ClosePeer target (no mesh key, so nothing was closed)');
    assert.equal((await collect(target, 200)).filter((m) => m.type === 'recvPacket').length, 0, 'nothing forwarded');
  });

  test('30 the server never sends Ping, Health or Restarting', async () => {
    const a = await ctx.connect();
    const b = await ctx.connect({ canAckPings: true });
    a.send(b.publicKey, Buffer.from('x'));
    b.send(a.publicKey, Buffer.from('y'));
    await a.ping();
    await b.ping();
    const got: DerpMessage[] = [...(await collect(a, 1000)), ...(await collect(b, 200))];
    const bad = got.filter((m) => m.type === 'ping' || m.type === 'health' || m.type === 'restarting');
    assert.deepEqual(bad, []);
    assert.deepEqual(got.map((m) => m.type).sort(), ['recvPacket', 'recvPacket']);
  });

}

/** Registered last by the suite: awaits the watch started in before(). */
export function keepAliveTest(keepAlive: () => Promise<{ firstKeepAliveMs: number | null; types: string[] }>): void {
  test('27 KeepAlive arrives within 60–65 s on an idle connection (started at suite start)', { timeout: 90_000 }, async () => {
    const r = await keepAlive();
    assert.notEqual(r.firstKeepAliveMs, null, `no KeepAlive within 70 s (saw ${r.types.join(',') || 'nothing'})`);
    assert.ok(r.firstKeepAliveMs! >= 59_000 && r.firstKeepAliveMs! <= 66_000, `first KeepAlive after ${Math.round(r.firstKeepAliveMs!)} ms`);
    assert.deepEqual(r.types, ['keepAlive'], 'an idle connection receives nothing but the KeepAlive');
  });
}
