import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FrameType } from '../../../src/derp/constants.ts';
import { encodeFrame } from '../../../src/derp/frame.ts';
import { parseClientInfoJson } from '../../../src/derp/server/handshake.ts';
import { ip16 } from '../../../src/derp/server/ip.ts';
import { StreamFrameReader } from '../../../src/derp/server/reader.ts';
import { hasCode } from '../../../src/errors.ts';
import { generatePrivate, publicFromPrivate } from '../../../src/types/key.ts';
import { clientInfoPayload, newServer, TestClient, tick } from './helpers.ts';

describe('DERP server bad input', () => {
  it('closes a connection that sends an HTTP request (garbage) instead of ClientInfo; others keep working', async () => {
    const { server } = newServer();
    const good = await TestClient.connect(server);
    const c = TestClient.attach(server);
    await c.next(FrameType.ServerKey);
    c.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.equal(await c.closedWithin(), true);
    assert.equal(c.frames.length, 0);
    good.send(good.pub, Buffer.from('ok'));
    await good.next(FrameType.RecvPacket);
    server.consistencyCheck();
    await server.close();
  });

  it('survives random bytes before and after the handshake: closes or waits, never crashes, others unaffected', async () => {
    const { server } = newServer();
    const good = await TestClient.connect(server);
    await fc.assert(fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 600 }), fc.boolean(), async (junk, afterHandshake) => {
      const c = afterHandshake ? await TestClient.connect(server) : TestClient.attach(server);
      c.write(junk);
      await tick();
      await tick();
      c.close();
      await c.closed;
    }), { numRuns: 60 });
    good.send(good.pub, Buffer.from('still fine'));
    assert.equal(Buffer.from((await good.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'still fine');
    server.consistencyCheck();
    await server.close();
    assert.equal(server.metrics().gauge_current_connections, 0);
  });

  it('handles a client that writes one byte at a time (handshake, packet, ping)', async () => {
    const { server } = newServer();
    const priv = generatePrivate();
    const pub = publicFromPrivate(priv);
    const c = TestClient.attach(server, {}, priv);
    await c.next(FrameType.ServerKey);
    const bytes = Buffer.concat([
      encodeFrame(FrameType.ClientInfo, clientInfoPayload(priv, server.publicKey, '{"version":2}')),
      encodeFrame(FrameType.SendPacket, pub, Buffer.from('slow')),
      encodeFrame(0x42, Buffer.alloc(10, 1)),
      encodeFrame(FrameType.Ping, Buffer.from('12345678')),
    ]);
    for (const b of bytes) {
      c.write(Uint8Array.of(b));
      if (b % 7 === 0) await tick();
    }
    assert.equal((await c.next()).type, FrameType.ServerInfo);
    assert.equal(Buffer.from((await c.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'slow');
    assert.equal(Buffer.from((await c.next(FrameType.Pong)).payload).toString(), '12345678');
    server.consistencyCheck();
    await server.close();
  });
});

describe('StreamFrameReader', () => {
  it('yields the same frames, skipping the same ones, however the input is split', () => {
    const frameArb = fc.record({ type: fc.integer({ min: 0, max: 255 }), payload: fc.uint8Array({ maxLength: 300 }) });
    fc.assert(fc.property(fc.array(frameArb, { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }), (frames, cuts) => {
      const wire = Buffer.concat(frames.map((f) => encodeFrame(f.type, f.payload)));
      const r = new StreamFrameReader();
      const got: { type: number; payload: string }[] = [];
      const sink = {
        onHeader: (type: number) => (type % 3 === 0 ? 'skip' as const : 'read' as const),
        onFrame: (type: number, buf: Buffer, start: number, end: number) => { got.push({ type, payload: buf.toString('hex', start, end) }); return true; },
      };
      let o = 0;
      let i = 0;
      while (o < wire.length) {
        const n = cuts[i++ % cuts.length]!;
        r.push(wire.subarray(o, o + n));
        o += n;
        r.process(sink);
      }
      const want = frames.filter((f) => f.type % 3 !== 0).map((f) => ({ type: f.type, payload: Buffer.from(f.payload).toString('hex') }));
      assert.deepEqual(got, want);
      assert.equal(r.buffered, 0);
    }));
  });

  it('discards a skipped payload as it streams (memory stays bounded)', () => {
    const r = new StreamFrameReader();
    const h = Buffer.alloc(5);
    h[0] = 0x42;
    h.writeUInt32BE(10_000_000, 1);
    r.push(h);
    const sink = { onHeader: () => 'skip' as const, onFrame: () => true };
    r.process(sink);
    for (let i = 0; i < 100; i++) {
      r.push(Buffer.alloc(65536));
      r.process(sink);
      assert.equal(r.buffered, 0);
    }
  });
});

describe('ClientInfo JSON', () => {
  it('never throws anything but a typed error, for any JSON-ish input', () => {
    fc.assert(fc.property(fc.oneof(fc.json(), fc.string()), (s) => {
      try {
        parseClientInfoJson(s);
      } catch (e) {
        assert.ok(hasCode(e, 'bad_client_info') || hasCode(e, 'bad_mesh_key'), String(e));
      }
    }));
  });

  it('matches keys case-insensitively, last one wins, unknown ignored', () => {
    const info = parseClientInfoJson('{"isprober":true,"IsProber":false,"APPNAME":"x","Version":2,"foo":{}}');
    assert.deepEqual(info, { meshKey: null, version: 2, canAckPings: false, isProber: false, appName: 'x' });
  });
});

describe('ip16', () => {
  const cases: [string, string][] = [
    ['192.0.2.1', '00000000000000000000ffffc0000201'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201'],
    ['::1', '00000000000000000000000000000001'],
    ['fe80::1%eth0', 'fe800000000000000000000000000001'],
    ['2001:db8:0:0:1:0:0:1', '20010db8000000000001000000000001'],
    ['', '00000000000000000000000000000000'],
    ['300.1.1.1', '00000000000000000000000000000000'],
    ['1:2:3:4:5:6:7:8:9', '00000000000000000000000000000000'],
  ];
  for (const [s, want] of cases) it(JSON.stringify(s), () => assert.equal(Buffer.from(ip16(s)).toString('hex'), want));
});
