import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DISCO_MAGIC, FrameType } from '../../../src/derp/constants.ts';
import { decodePeerPresent, encodeFrame } from '../../../src/derp/frame.ts';
import type { PacketForwarder } from '../../../src/derp/server/server.ts';
import { generatePrivate, publicFromPrivate, type NodePublic } from '../../../src/types/key.ts';
import { MESH_KEY, newServer, TestClient } from './helpers.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const disco = (): Buffer => Buffer.concat([DISCO_MAGIC, Buffer.alloc(56, 1)]);

describe('DERP server duplicates (lastWriterIsActive)', () => {
  it('delivers to the newest, then to the last writer, then to the survivor; PeerGone only after the last close', async () => {
    const { server } = newServer();
    const a = await TestClient.connect(server);
    const priv = generatePrivate();
    const b1 = await TestClient.connect(server, { priv });
    const b2 = await TestClient.connect(server, { priv });
    const m = server.metrics();
    assert.equal(m.gauge_current_dup_client_keys, 1);
    assert.equal(m.gauge_current_dup_client_conns, 2);
    assert.equal(m.counter_total_dup_client_conns, 1);
    b2.send(a.pub, Buffer.from('from b')); // a hears from b
    await a.next(FrameType.RecvPacket);
    a.send(b1.pub, Buffer.from('1'));
    assert.equal(Buffer.from((await b2.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), '1');
    b1.write(encodeFrame(FrameType.NotePreferred, Uint8Array.of(0))); // any frame makes b1 active
    await b1.drain();
    a.send(b1.pub, Buffer.from('2'));
    assert.equal(Buffer.from((await b1.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), '2');
    assert.deepEqual(b2.frames, []);
    b1.close();
    await b1.closed;
    await a.drain();
    a.send(b1.pub, Buffer.from('3'));
    assert.equal(Buffer.from((await b2.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), '3');
    assert.equal(a.frames.filter((f) => f.type === FrameType.PeerGone).length, 0, 'no PeerGone while a connection remains');
    b2.close();
    const g = await a.next(FrameType.PeerGone);
    assert.equal(hex(g.payload.subarray(0, 32)), hex(b1.pub));
    assert.equal(g.payload[32], 0);
    server.consistencyCheck();
    await server.close();
  });

  it('a watcher sees one PeerPresent per connection and one PeerGone after the last closes', async () => {
    const { server } = newServer();
    const w = await TestClient.connect(server, { meshKey: MESH_KEY });
    w.write(encodeFrame(FrameType.WatchConns));
    await w.next(FrameType.PeerPresent); // itself
    const priv = generatePrivate();
    const k1 = await TestClient.connect(server, { priv });
    const k2 = await TestClient.connect(server, { priv });
    assert.equal((await w.next(FrameType.PeerPresent)).payload.length, 51);
    await w.next(FrameType.PeerPresent);
    k1.close();
    await k1.closed;
    assert.deepEqual((await w.drain()).filter((f) => f.type === FrameType.PeerGone), []);
    k2.close();
    const g = await w.next(FrameType.PeerGone);
    assert.equal(hex(g.payload.subarray(0, 32)), hex(k1.pub));
    assert.equal(g.payload[32], 0);
    server.consistencyCheck();
    await server.close();
  });
});

describe('DERP server mesh frames', () => {
  it('WatchConns → PeerPresent for every local key including the watcher, 51 bytes, mapped IPv4, flags', async () => {
    const { server } = newServer();
    const reg = await TestClient.connect(server, { remoteAddress: '203.0.113.5', remotePort: 41641 });
    const prober = await TestClient.connect(server, { prober: true, remoteAddress: '2001:db8::1', remotePort: 443 });
    const notIdeal = await TestClient.connect(server, { idealNode: '900b', remoteAddress: '::ffff:198.51.100.2', remotePort: 1 });
    const w = await TestClient.connect(server, { meshKey: MESH_KEY, prober: true, remoteAddress: '127.0.0.1', remotePort: 9 });
    w.write(encodeFrame(FrameType.WatchConns));
    const seen = new Map<string, ReturnType<typeof decodePeerPresent>>();
    for (let i = 0; i < 4; i++) {
      const f = await w.next(FrameType.PeerPresent);
      assert.equal(f.payload.length, 51);
      const p = decodePeerPresent(f.payload);
      seen.set(hex(p.key), p);
    }
    const r = seen.get(hex(reg.pub))!;
    assert.equal(hex(r.ip16!), '00000000000000000000ffffcb007105');
    assert.equal(r.port, 41641);
    assert.equal(r.flags, 0x01);
    const p = seen.get(hex(prober.pub))!;
    assert.equal(hex(p.ip16!), '20010db8000000000000000000000001');
    assert.equal(p.flags, 0x04);
    assert.equal(seen.get(hex(notIdeal.pub))!.flags, 0x08);
    assert.equal(hex(seen.get(hex(notIdeal.pub))!.ip16!), '00000000000000000000ffffc6336402');
    assert.equal(seen.get(hex(w.pub))!.flags, 0x06);
    assert.equal(server.metrics().gauge_watchers, 1);
    assert.equal(server.metrics().gauge_current_notideal_connections, 1);
    // Later connects and last disconnects stream in.
    const late = await TestClient.connect(server);
    assert.equal(hex(decodePeerPresent((await w.next(FrameType.PeerPresent)).payload).key), hex(late.pub));
    late.close();
    const g = await w.next(FrameType.PeerGone);
    assert.equal(hex(g.payload.subarray(0, 32)), hex(late.pub));
    server.consistencyCheck();
    await server.close();
  });

  it('privileged frames from a client without the mesh key close it; bad lengths close mesh peers', async () => {
    const { server } = newServer();
    const frames = [
      encodeFrame(FrameType.WatchConns),
      encodeFrame(FrameType.ClosePeer, new Uint8Array(32)),
      encodeFrame(FrameType.ForwardPacket, new Uint8Array(64)),
    ];
    for (const f of frames) {
      const c = await TestClient.connect(server);
      c.write(f);
      assert.equal(await c.closedWithin(), true);
    }
    assert.equal(server.metrics().closes_by_code.insufficient_permissions, 3);
    for (const [f, code] of [
      [encodeFrame(FrameType.WatchConns, Uint8Array.of(0)), 'bad_watch_conns'],
      [encodeFrame(FrameType.ClosePeer, new Uint8Array(31)), 'bad_close_peer'],
      [encodeFrame(FrameType.ForwardPacket, new Uint8Array(63)), 'short_forward_packet'],
    ] as const) {
      const m = await TestClient.connect(server, { meshKey: MESH_KEY });
      m.write(f);
      assert.equal(await m.closedWithin(), true);
      assert.equal(server.metrics().closes_by_code[code], 1);
    }
    server.consistencyCheck();
    await server.close();
  });

  it('ForwardPacket delivers with the original src; unknown dst + disco → PeerGone NotHere to the mesh peer', async () => {
    const { server } = newServer();
    const mesh = await TestClient.connect(server, { meshKey: MESH_KEY });
    const b = await TestClient.connect(server);
    const src = publicFromPrivate(generatePrivate());
    mesh.write(encodeFrame(FrameType.ForwardPacket, src, b.pub, Buffer.from('via mesh')));
    const r = await b.next(FrameType.RecvPacket);
    assert.equal(hex(r.payload.subarray(0, 32)), hex(src));
    assert.equal(Buffer.from(r.payload.subarray(32)).toString(), 'via mesh');
    const unknown = publicFromPrivate(generatePrivate());
    mesh.write(encodeFrame(FrameType.ForwardPacket, src, unknown, disco()));
    const g = await mesh.next(FrameType.PeerGone);
    assert.equal(hex(g.payload.subarray(0, 32)), hex(unknown));
    assert.equal(g.payload[32], 1);
    const m = server.metrics();
    assert.equal(m.packets_forwarded_in, 1);
    assert.equal(m.packets_dropped.unknown_dest_on_fwd.disco, 1);
    assert.equal(m.packets_received, 0, 'forwarded packets do not count as received');
    server.consistencyCheck();
    await server.close();
  });

  it('ClosePeer closes every local connection of the key; an unknown key is harmless', async () => {
    const { server } = newServer();
    const mesh = await TestClient.connect(server, { meshKey: MESH_KEY });
    const priv = generatePrivate();
    const k1 = await TestClient.connect(server, { priv });
    const k2 = await TestClient.connect(server, { priv });
    const other = await TestClient.connect(server);
    mesh.write(encodeFrame(FrameType.ClosePeer, publicFromPrivate(generatePrivate())));
    mesh.write(encodeFrame(FrameType.ClosePeer, k1.pub));
    assert.equal(await k1.closedWithin(), true);
    assert.equal(await k2.closedWithin(), true);
    other.send(other.pub, Buffer.from('ok'));
    await other.next(FrameType.RecvPacket);
    mesh.send(mesh.pub, Buffer.from('ok'));
    await mesh.next(FrameType.RecvPacket);
    assert.equal(server.metrics().gauge_current_connections, 2);
    server.consistencyCheck();
    await server.close();
  });

  it('routes to a packet forwarder for keys not connected locally; removing it sends PeerGone to hearers', async () => {
    const { server } = newServer();
    const a = await TestClient.connect(server);
    const mesh = await TestClient.connect(server, { meshKey: MESH_KEY });
    const c = publicFromPrivate(generatePrivate());
    const sent: [string, string, string][] = [];
    const fwd: PacketForwarder = { name: 'peer', forwardPacket: (s: NodePublic, d: NodePublic, p: Uint8Array) => { sent.push([hex(s), hex(d), Buffer.from(p).toString()]); } };
    server.addPacketForwarder(c, fwd);
    assert.equal(server.metrics().gauge_clients_remote, 1);
    a.send(c, Buffer.from('to c'));
    await a.drain();
    assert.deepEqual(sent, [[hex(a.pub), hex(c), 'to c']]);
    assert.equal(server.metrics().packets_forwarded_out, 1);
    mesh.write(encodeFrame(FrameType.ForwardPacket, c, a.pub, Buffer.from('from c')));
    await a.next(FrameType.RecvPacket); // a heard from c
    server.removePacketForwarder(c, fwd);
    const g = await a.next(FrameType.PeerGone);
    assert.equal(hex(g.payload.subarray(0, 32)), hex(c));
    assert.equal(g.payload[32], 0);
    server.consistencyCheck();
    await server.close();
  });

  it('ignores WatchConns from a client using the server own key (self-mesh)', async () => {
    const priv = generatePrivate();
    const { server } = newServer({ privateKey: priv });
    const self = await TestClient.connect(server, { meshKey: MESH_KEY, priv });
    self.write(encodeFrame(FrameType.WatchConns));
    assert.deepEqual((await self.drain()).filter((f) => f.type === FrameType.PeerPresent), []);
    assert.equal(server.metrics().gauge_watchers, 0);
    server.consistencyCheck();
    await server.close();
  });
});
