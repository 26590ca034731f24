import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameType, MAX_CLIENT_INFO_LEN } from '../../../src/derp/constants.ts';
import { encodeFrame, writeHeader } from '../../../src/derp/frame.ts';
import { generatePrivate, publicFromPrivate, toHex } from '../../../src/types/key.ts';
import { clientInfoPayload, MESH_KEY, newServer, TestClient } from './helpers.ts';

describe('DERP server handshake', () => {
  it('sends a 40-byte ServerKey then ServerInfo {"version":2} as the first frame, client registered', async () => {
    const { server } = newServer();
    const a = TestClient.attach(server);
    const sk = await a.next();
    assert.equal(sk.type, FrameType.ServerKey);
    assert.equal(sk.payload.length, 40);
    assert.equal(Buffer.from(sk.payload.subarray(0, 8)).toString('hex'), '44455250f09f9491');
    assert.deepEqual(Buffer.from(sk.payload.subarray(8)), Buffer.from(server.publicKey));
    a.frames.unshift(sk);
    await a.handshake('{"version":2,"CanAckPings":true}');
    assert.equal(server.metrics().gauge_current_connections, 1);
    assert.equal(server.metrics().accepts, 1);
    server.consistencyCheck();
    await server.close();
  });

  it('accepts ClientInfo keys in any case and ignores unknown keys and version', async () => {
    const { server } = newServer();
    const c = await TestClient.connect(server, { json: `{"MESHKEY":"${toHex(MESH_KEY)}","VERSION":99,"canackpings":false,"extra":[1,2]}` });
    // A mesh peer may WatchConns; an ordinary client would be closed.
    c.write(encodeFrame(FrameType.WatchConns));
    const pp = await c.next(FrameType.PeerPresent);
    assert.equal(pp.payload.length, 51);
    assert.equal(pp.payload[50], 0x02);
    server.consistencyCheck();
    await server.close();
  });

  it('treats a wrong but well-formed mesh key as an ordinary client', async () => {
    const { server } = newServer();
    const c = await TestClient.connect(server, { meshKey: new Uint8Array(32).fill(9) });
    c.write(encodeFrame(FrameType.WatchConns));
    assert.equal(await c.closedWithin(), true);
    assert.equal(server.metrics().closes_by_code.insufficient_permissions, 1);
    server.consistencyCheck();
    await server.close();
  });

  const bad: [string, (serverPub: Uint8Array) => Uint8Array, string][] = [
    ['wrong first frame type', () => encodeFrame(FrameType.SendPacket, new Uint8Array(40)), 'bad_frame_type'],
    ['short ClientInfo', () => encodeFrame(FrameType.ClientInfo, new Uint8Array(55)), 'short_client_info'],
    ['box that does not open', () => encodeFrame(FrameType.ClientInfo, publicFromPrivate(generatePrivate()), new Uint8Array(60)), 'box_open_failed'],
    ['invalid JSON', (s) => encodeFrame(FrameType.ClientInfo, clientInfoPayload(generatePrivate(), s, '{"version":')), 'bad_client_info'],
    ['malformed meshKey ""', (s) => encodeFrame(FrameType.ClientInfo, clientInfoPayload(generatePrivate(), s, '{"meshKey":""}')), 'bad_mesh_key'],
    ['malformed meshKey null', (s) => encodeFrame(FrameType.ClientInfo, clientInfoPayload(generatePrivate(), s, '{"MeshKey":null}')), 'bad_mesh_key'],
    ['short meshKey', (s) => encodeFrame(FrameType.ClientInfo, clientInfoPayload(generatePrivate(), s, '{"meshKey":"abcd"}')), 'bad_mesh_key'],
    ['wrongly typed version', (s) => encodeFrame(FrameType.ClientInfo, clientInfoPayload(generatePrivate(), s, '{"version":"2"}')), 'bad_client_info'],
    ['all-zero client key', () => encodeFrame(FrameType.ClientInfo, new Uint8Array(32), new Uint8Array(60)), 'zero_client_key'],
  ];
  for (const [name, build, code] of bad) {
    it(`closes without sending anything on ${name}`, async () => {
      const { server } = newServer();
      const good = await TestClient.connect(server);
      const c = TestClient.attach(server);
      await c.next(FrameType.ServerKey);
      c.write(build(server.publicKey));
      assert.equal(await c.closedWithin(), true, 'connection closed');
      assert.equal(c.frames.length, 0, 'no frame after ServerKey');
      assert.equal(server.metrics().closes_by_code[code], 1, `closed with ${code}: ${JSON.stringify(server.metrics().closes_by_code)}`);
      // The other client is unaffected.
      good.send(good.pub, Buffer.from('still here'));
      assert.equal(Buffer.from((await good.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'still here');
      server.consistencyCheck();
    await server.close();
    });
  }

  it('rejects an oversized ClientInfo from its header, before the payload arrives', async () => {
    const { server } = newServer();
    const c = TestClient.attach(server);
    await c.next(FrameType.ServerKey);
    const h = Buffer.alloc(5);
    writeHeader(h, 0, FrameType.ClientInfo, MAX_CLIENT_INFO_LEN + 1);
    c.write(h);
    assert.equal(await c.closedWithin(), true);
    assert.equal(server.metrics().closes_by_code.long_client_info, 1);
    server.consistencyCheck();
    await server.close();
  });

  it('closes a connection that sends no ClientInfo within 10 s (manual clock)', async () => {
    const { server, clock } = newServer();
    const c = TestClient.attach(server);
    await c.next(FrameType.ServerKey);
    clock.advance(9_999);
    assert.equal(await c.closedWithin(50), false);
    clock.advance(1);
    assert.equal(await c.closedWithin(), true);
    assert.equal(server.metrics().closes_by_code.handshake_timeout, 1);
    server.consistencyCheck();
    await server.close();
  });

  it('accepts ClientInfo pipelined in head (fast start) and frames after it', async () => {
    const { server } = newServer();
    const priv = generatePrivate();
    const pub = publicFromPrivate(priv);
    const head = Buffer.concat([
      encodeFrame(FrameType.ClientInfo, clientInfoPayload(priv, server.publicKey, '{"version":2}')),
      encodeFrame(FrameType.SendPacket, pub, Buffer.from('loop')),
    ]);
    const c = TestClient.attach(server, { head }, priv);
    assert.equal((await c.next()).type, FrameType.ServerKey);
    assert.equal((await c.next()).type, FrameType.ServerInfo);
    const r = await c.next();
    assert.equal(r.type, FrameType.RecvPacket);
    assert.equal(Buffer.from(r.payload.subarray(32)).toString(), 'loop');
    server.consistencyCheck();
    await server.close();
  });

  it('runs admission for ordinary clients and skips it for mesh peers', async () => {
    const seen: string[] = [];
    const { server } = newServer({
      verifyClient: async (req) => {
        seen.push(req.remoteAddress);
        return false;
      },
    });
    const c = TestClient.attach(server, { remoteAddress: '::ffff:198.51.100.9' });
    await c.next(FrameType.ServerKey);
    c.write(encodeFrame(FrameType.ClientInfo, clientInfoPayload(c.priv, server.publicKey, '{}')));
    assert.equal(await c.closedWithin(), true);
    assert.equal(c.frames.length, 0);
    assert.deepEqual(seen, ['198.51.100.9']);
    assert.equal(server.metrics().closes_by_code.not_admitted, 1);
    await TestClient.connect(server, { meshKey: MESH_KEY });
    assert.equal(seen.length, 1);
    assert.equal(server.metrics().gauge_current_connections, 1);
    server.consistencyCheck();
    await server.close();
  });

  it('admits a client once verifyClient resolves true, keeping frames sent meanwhile', async () => {
    let release!: (v: boolean) => void;
    const { server } = newServer({ verifyClient: () => new Promise<boolean>((r) => { release = r; }) });
    const c = TestClient.attach(server);
    await c.next(FrameType.ServerKey);
    c.write(Buffer.concat([
      encodeFrame(FrameType.ClientInfo, clientInfoPayload(c.priv, server.publicKey, '{}')),
      encodeFrame(FrameType.SendPacket, c.pub, Buffer.from('queued')),
    ]));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(c.frames.length, 0);
    release(true);
    assert.equal((await c.next()).type, FrameType.ServerInfo);
    assert.equal(Buffer.from((await c.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'queued');
    server.consistencyCheck();
    await server.close();
  });
});
