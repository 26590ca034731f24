import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { boxBeforeNm, openBox } from '../../../src/derp/box.ts';
import { FrameType } from '../../../src/derp/constants.ts';
import { encodeFrame, encodeServerKey, FrameReader } from '../../../src/derp/frame.ts';
import { DerpServer } from '../../../src/derp/server/server.ts';
import { handleDerpHttp, handleDerpRequest } from '../../../src/derp/server/upgrade.ts';
import { generatePrivate, publicFromPrivate, toHex } from '../../../src/types/key.ts';
import { clientInfoPayload, TestClient } from './helpers.ts';

let server: DerpServer;
let httpServer: http.Server;
let port = 0;
const sockets = new Set<net.Socket>();

before(async () => {
  server = new DerpServer({ privateKey: generatePrivate() });
  httpServer = http.createServer((req, res) => handleDerpRequest(server, req, res));
  httpServer.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => handleDerpHttp(server, req, socket, head));
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
  port = (httpServer.address() as net.AddressInfo).port;
});

after(async () => {
  for (const s of sockets) s.destroy();
  await server.close();
  httpServer.closeAllConnections();
  await new Promise((r) => httpServer.close(r));
});

function dial(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
    sockets.add(s);
  });
}

/** Reads from `s` until `n` bytes have arrived; returns them (and leaves the socket paused). */
function readBytes(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const t = setTimeout(() => reject(new Error(`timed out with ${got} of ${n} bytes: ${JSON.stringify(Buffer.concat(parts).toString('latin1'))}`)), 3000);
    const onData = (c: Buffer): void => {
      parts.push(c);
      got += c.length;
      if (got >= n) {
        clearTimeout(t);
        s.off('data', onData);
        s.pause();
        const all = Buffer.concat(parts);
        if (all.length > n) s.unshift(all.subarray(n));
        resolve(all.subarray(0, n));
      }
    };
    s.on('data', onData);
    s.resume();
  });
}

const block = (): string =>
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Version: 2\r\n' +
  `Derp-Public-Key: ${toHex(server.publicKey)}\r\n\r\n`;

async function finishOverSocket(s: net.Socket, priv = generatePrivate()): Promise<TestClient> {
  const c = new TestClient(s, priv);
  s.resume();
  c.frames.unshift({ type: FrameType.ServerKey, payload: encodeServerKey(server.publicKey).subarray(5) });
  await c.handshake('{"version":2,"CanAckPings":true}');
  return c;
}

describe('DERP HTTP upgrade', () => {
  it('answers Upgrade: DERP with the exact 101 block followed by ServerKey, then speaks DERP', async () => {
    const s = await dial();
    s.write('GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n');
    const want = Buffer.concat([Buffer.from(block(), 'latin1'), encodeServerKey(server.publicKey)]);
    assert.equal((await readBytes(s, want.length)).toString('hex'), want.toString('hex'));
    const c = await finishOverSocket(s);
    c.send(c.pub, Buffer.from('hello'));
    assert.equal(Buffer.from((await c.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'hello');
    c.close();
  });

  it('accepts Upgrade: derp without a Connection header (request path, socket hijacked)', async () => {
    const s = await dial();
    s.write('POST /derp HTTP/1.1\r\nHost: x\r\nUpgrade: derp\r\n\r\n');
    const want = Buffer.concat([Buffer.from(block(), 'latin1'), encodeServerKey(server.publicKey)]);
    assert.equal((await readBytes(s, want.length)).toString('hex'), want.toString('hex'));
    const c = await finishOverSocket(s);
    c.send(c.pub, Buffer.from('hijacked'));
    assert.equal(Buffer.from((await c.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'hijacked');
    c.close();
  });

  it('treats Upgrade: WebSocket without the derp subprotocol as legacy raw DERP (101 Upgrade: DERP)', async () => {
    const s = await dial();
    s.write('GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\n\r\n');
    const want = Buffer.concat([Buffer.from(block(), 'latin1'), encodeServerKey(server.publicKey)]);
    assert.equal((await readBytes(s, want.length)).toString('hex'), want.toString('hex'));
    s.destroy();
  });

  it('fast start: no HTTP response at all, ClientInfo pipelined with the request is accepted', async () => {
    const s = await dial();
    const priv = generatePrivate();
    s.write(Buffer.concat([
      Buffer.from('GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Fast-Start: 1\r\nIdeal-Node: 900b\r\n\r\n'),
      encodeFrame(FrameType.ClientInfo, clientInfoPayload(priv, server.publicKey, '{"version":2}')),
      encodeFrame(FrameType.SendPacket, publicFromPrivate(priv), Buffer.from('fast')),
    ]));
    const c = new TestClient(s, priv);
    const first = await c.next();
    assert.equal(first.type, FrameType.ServerKey);
    assert.equal(c.raw[0]![0], FrameType.ServerKey, 'first byte on the wire is the ServerKey frame type');
    const si = await c.next();
    assert.equal(si.type, FrameType.ServerInfo);
    assert.equal(new TextDecoder().decode(openBox(boxBeforeNm(priv, server.publicKey), si.payload)), '{"version":2}');
    assert.equal(Buffer.from((await c.next(FrameType.RecvPacket)).payload.subarray(32)).toString(), 'fast');
    assert.ok(server.metrics().gauge_current_notideal_connections >= 1);
    c.close();
  });

  it('answers 426 with the Go body when there is no Upgrade header', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/derp`);
    assert.equal(res.status, 426);
    assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(await res.text(), 'DERP requires connection upgrade\n');
  });

  it('answers 426 to an unknown Upgrade on the upgrade path', async () => {
    const s = await dial();
    s.write('GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n');
    const head = (await readBytes(s, 31)).toString('latin1');
    assert.match(head, /^HTTP\/1\.1 426 Upgrade Required\r\n/, JSON.stringify(head));
  });

  it('WebSocket with subprotocol derp: binary messages form one stream; a text message closes with 1003', async () => {
    const before = server.metrics().websocket_accepts;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/derp`, 'derp');
    const reader = new FrameReader(() => 1 << 20);
    const frames: { type: number; payload: Buffer }[] = [];
    let wake: (() => void) | null = null;
    ws.on('message', (d: Buffer) => {
      reader.push(d);
      for (let f = reader.next(); f !== null; f = reader.next()) frames.push({ type: f.type, payload: Buffer.from(f.payload) });
      wake?.();
    });
    const next = async (): Promise<{ type: number; payload: Buffer }> => {
      while (frames.length === 0) await new Promise<void>((r) => { wake = r; });
      return frames.shift()!;
    };
    await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
    assert.equal(ws.protocol, 'derp');
    assert.equal((await next()).type, FrameType.ServerKey);
    const priv = generatePrivate();
    const ci = encodeFrame(FrameType.ClientInfo, clientInfoPayload(priv, server.publicKey, '{"version":2}'));
    const pkt = encodeFrame(FrameType.SendPacket, publicFromPrivate(priv), Buffer.from('over ws'));
    // Frames split across messages, and two frames' bytes in one message.
    ws.send(ci.subarray(0, 10));
    ws.send(Buffer.concat([ci.subarray(10), pkt.subarray(0, 3)]));
    ws.send(pkt.subarray(3));
    assert.equal((await next()).type, FrameType.ServerInfo);
    const r = await next();
    assert.equal(r.type, FrameType.RecvPacket);
    assert.equal(r.payload.subarray(32).toString(), 'over ws');
    assert.equal(server.metrics().websocket_accepts, before + 1);
    const code = new Promise<number>((res) => ws.once('close', (c: number) => res(c)));
    ws.send('not derp');
    assert.equal(await code, 1003);
  });
});
