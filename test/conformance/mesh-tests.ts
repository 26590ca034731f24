/**
 * Conformance checklist 31–36 (spec/derp.md §10, §11): duplicate connections of one key, watchers (WatchConns
 * with the mesh key), ForwardPacket and ClosePeer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameType, PeerGoneReason, PeerPresentFlags } from '../../src/derp/constants.ts';
import { encodeFrame } from '../../src/derp/frame.ts';
import { generatePrivate, publicFromPrivate, toHex } from '../../src/types/key.ts';
import { rawDerpConnect } from './raw.ts';
import { collect, discoPacket, expectAlive, expectClosed, nextOf, sameKey, sleep, type SuiteContext } from './helpers.ts';

export function meshTests(ctx: SuiteContext): void {
  test('31 duplicate key: newest gets packets; a frame makes a conn active; close moves delivery; no PeerGone', async () => {
    const priv = generatePrivate();
    const b = await ctx.connect();
    const a1 = await ctx.connect({ privateKey: priv });
    a1.send(b.publicKey, Buffer.from('from a1')); // b has now heard from A
    await nextOf(b, 'recvPacket');
    const a2 = await ctx.connect({ privateKey: priv });
    await sleep(100);
    b.send(a1.publicKey, Buffer.from('p1'));
    assert.equal(Buffer.from((await nextOf(a2, 'recvPacket')).data).toString(), 'p1', 'newest connection is active');
    a1.notePreferred(false); // any frame makes a1 active again
    await a1.ping();
    b.send(a1.publicKey, Buffer.from('p2'));
    assert.equal(Buffer.from((await nextOf(a1, 'recvPacket')).data).toString(), 'p2', 'after it sent a frame, a1 is active');
    assert.equal((await collect(a2, 200)).filter((m) => m.type === 'recvPacket').length, 0, 'a2 got nothing');
    a1.close();
    await sleep(200);
    b.send(a2.publicKey, Buffer.from('p3'));
    assert.equal(Buffer.from((await nextOf(a2, 'recvPacket')).data).toString(), 'p3', 'survivor takes over');
    assert.deepEqual((await collect(b, 300)).filter((m) => m.type === 'peerGone'), [], 'no PeerGone while a connection remains');
    a2.close();
    const g = await nextOf(b, 'peerGone');
    assert.ok(sameKey(g.key, a2.publicKey));
    assert.equal(g.reason, PeerGoneReason.Disconnected);
  });

  test('32 watcher: one PeerPresent per connection, one PeerGone after the last closes', async () => {
    const w = await ctx.connectMesh();
    w.watchConns();
    await nextOf(w, 'peerPresent', 3000, (m) => sameKey(m.key, w.publicKey));
    const priv = generatePrivate();
    const key = publicFromPrivate(priv);
    const c1 = await ctx.connect({ privateKey: priv });
    const c2 = await ctx.connect({ privateKey: priv });
    c1.close();
    await sleep(300);
    const mid = (await collect(w, 300)).filter((m) => (m.type === 'peerPresent' || m.type === 'peerGone') && sameKey(m.key, key));
    c2.close();
    const gone = await nextOf(w, 'peerGone', 3000, (m) => sameKey(m.key, key));
    assert.deepEqual(mid.map((m) => m.type), ['peerPresent', 'peerPresent'], 'two PeerPresent, no PeerGone while one remains');
    assert.equal(gone.reason, PeerGoneReason.Disconnected);
  });

  test('33 WatchConns with mesh key → PeerPresent for every local key incl. itself; 51 bytes, ::ffff: mapped, flags', async () => {
    const regular = await ctx.connect();
    const prober = await ctx.connect({ isProber: true });
    const meshProber = await ctx.connectMesh({ isProber: true });
    const w = await rawDerpConnect(ctx.server.url, { json: `{"meshKey":"${toHex(ctx.server.meshKey)}","version":2,"CanAckPings":false}` });
    try {
      w.conn.write(encodeFrame(FrameType.WatchConns));
      const want = new Map([
        [toHex(regular.publicKey), PeerPresentFlags.IsRegular],
        [toHex(prober.publicKey), PeerPresentFlags.IsProber],
        [toHex(meshProber.publicKey), PeerPresentFlags.IsMeshPeer | PeerPresentFlags.IsProber],
        [toHex(w.pub), PeerPresentFlags.IsMeshPeer],
      ]);
      const ports = new Map([
        [toHex(regular.publicKey), regular.localAddr!.port],
        [toHex(w.pub), w.conn.sock.localPort!],
      ]);
      while (want.size > 0) {
        const f = await w.conn.readFrame(3000);
        if (f.type !== FrameType.PeerPresent) continue;
        const k = toHex(f.payload.subarray(0, 32));
        if (!want.has(k)) continue;
        assert.equal(f.length, 51, 'PeerPresent is 51 bytes');
        assert.deepEqual([...f.payload.subarray(32, 48)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1], 'IPv4-mapped 127.0.0.1');
        if (ports.has(k)) assert.equal(Buffer.from(f.payload).readUInt16BE(48), ports.get(k), 'port is the client source port');
        assert.equal(f.payload[50], want.get(k), `flags for ${k.slice(0, 8)}`);
        want.delete(k);
      }
    } finally {
      w.conn.close();
    }
  });

  test('34 watcher: later connect → PeerPresent (ip:port, regular); last disconnect → PeerGone(Disconnected)', async () => {
    const w = await ctx.connectMesh();
    w.watchConns();
    await nextOf(w, 'peerPresent', 3000, (m) => sameKey(m.key, w.publicKey));
    const c = await ctx.connect();
    const p = await nextOf(w, 'peerPresent', 3000, (m) => sameKey(m.key, c.publicKey));
    assert.deepEqual(p.ipPort, { address: '127.0.0.1', port: c.localAddr!.port });
    assert.equal(p.flags, PeerPresentFlags.IsRegular);
    c.close();
    const g = await nextOf(w, 'peerGone', 3000, (m) => sameKey(m.key, c.publicKey));
    assert.equal(g.reason, PeerGoneReason.Disconnected);
  });

  test('35 ForwardPacket from a mesh peer → RecvPacket with the original src; unknown dst disco → NotHere to mesh', async () => {
    const m = await ctx.connectMesh();
    const dst = await ctx.connect();
    const src = publicFromPrivate(generatePrivate());
    m.forwardPacket(src, dst.publicKey, Buffer.from('forwarded'));
    const r = await nextOf(dst, 'recvPacket');
    assert.ok(sameKey(r.source, src), 'source is src, not the mesh peer');
    assert.equal(Buffer.from(r.data).toString(), 'forwarded');
    const nowhere = publicFromPrivate(generatePrivate());
    m.forwardPacket(src, nowhere, discoPacket());
    const g = await nextOf(m, 'peerGone', 3000, (x) => sameKey(x.key, nowhere));
    assert.equal(g.reason, PeerGoneReason.NotHere);
    m.forwardPacket(src, dst.publicKey, new Uint8Array(65536));
    assert.equal((await nextOf(dst, 'recvPacket')).data.length, 65536, '64 KiB forwarded packet delivered');
    m.writeRawFrame(FrameType.ForwardPacket, new Uint8Array(63));
    await expectClosed(m, 'ForwardPacket shorter than 64 bytes');
  });

  test('36 ClosePeer(K) from a mesh peer closes every local connection of K; unknown K harmless', async () => {
    const m = await ctx.connectMesh();
    const priv = generatePrivate();
    const k1 = await ctx.connect({ privateKey: priv });
    const k2 = await ctx.connect({ privateKey: priv });
    const bystander = await ctx.connect();
    m.closePeer(k1.publicKey);
    await expectClosed(k1, 'first connection of K');
    await expectClosed(k2, 'second connection of K');
    m.closePeer(publicFromPrivate(generatePrivate()));
    await expectAlive(m, 'mesh peer after ClosePeer of an unknown key');
    await expectAlive(bystander, 'bystander');
  });
}
