/**
 * Conformance checklist 1–11 (spec/derp.md §3, §16.3): the HTTP upgrade, fast start, Ideal-Node, WebSocket and
 * the plain HTTP routes, asserted on raw bytes where the spec fixes them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { FrameType, PeerPresentFlags } from '../../src/derp/constants.ts';
import { encodeSendPacket } from '../../src/derp/frame.ts';
import { generatePrivate, publicFromPrivate, toHex } from '../../src/types/key.ts';
import { boxBeforeNm, openBox } from '../../src/derp/box.ts';
import { clientInfoFrame, RawConn, serverKeyFromFrame, upgradeRequest } from './raw.ts';
import { expectAlive, httpRequest, metric, nextOf, sameKey, waitMetric, type SuiteContext } from './helpers.ts';

export function httpTests(ctx: SuiteContext): void {
  test('01 GET /derp with Upgrade: DERP → exact 101 block, then ServerKey', async () => {
    const c = await RawConn.open(ctx.server.url);
    try {
      c.write(upgradeRequest(ctx.server.url));
      const head = await c.readHead();
      const key = serverKeyFromFrame(await c.readFrame());
      assert.equal(head, `HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Version: 2\r\nDerp-Public-Key: ${toHex(key)}\r\n\r\n`);
    } finally {
      c.close();
    }
  });

  test('02 Upgrade matched case-insensitively; Connection not required; any method', async () => {
    const variants: { upgrade: string; method: string; connection: boolean }[] = [
      { upgrade: 'derp', method: 'GET', connection: true },
      { upgrade: 'DeRp', method: 'POST', connection: false },
      { upgrade: 'WebSocket', method: 'GET', connection: true },
      { upgrade: 'DERP', method: 'PUT', connection: false },
    ];
    for (const v of variants) {
      const c = await RawConn.open(ctx.server.url);
      try {
        c.write(upgradeRequest(ctx.server.url, [], v));
        const head = await c.readHead();
        assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/, `${JSON.stringify(v)}`);
        assert.match(head, /\r\nUpgrade: DERP\r\n/, `${JSON.stringify(v)} answers Upgrade: DERP`);
        serverKeyFromFrame(await c.readFrame());
      } finally {
        c.close();
      }
    }
  });

  test('03 GET /derp without Upgrade → 426 "DERP requires connection upgrade"', async () => {
    const r = await httpRequest(ctx.server.url, '/derp');
    assert.equal(r.status, 426);
    assert.equal(r.body, 'DERP requires connection upgrade\n');
    const r2 = await httpRequest(ctx.server.url, '/derp', { headers: { Upgrade: 'h2c', Connection: 'Upgrade' } });
    assert.equal(r2.status, 426, 'a foreign Upgrade value is also refused');
  });

  test('04 Derp-Fast-Start: 1 → no HTTP response; ServerKey first; pipelined ClientInfo accepted', async () => {
    const probe = await ctx.connect();
    const serverKey = probe.serverKey;
    probe.close();
    const priv = generatePrivate();
    const c = await RawConn.open(ctx.server.url);
    try {
      const req = Buffer.from(upgradeRequest(ctx.server.url, ['Derp-Fast-Start: 1']), 'latin1');
      c.write(Buffer.concat([req, clientInfoFrame(priv, serverKey, '{"version":2,"CanAckPings":false}')]));
      const f1 = await c.readFrame();
      assert.equal(f1.type, FrameType.ServerKey, 'first bytes are a ServerKey frame, not "HTTP/"');
      assert.ok(sameKey(serverKeyFromFrame(f1), serverKey));
      const f2 = await c.readFrame();
      assert.equal(f2.type, FrameType.ServerInfo);
      assert.equal(Buffer.from(openBox(boxBeforeNm(priv, serverKey), f2.payload)).toString(), '{"version":2}');
      // The connection is registered: a packet to ourselves comes back.
      c.write(encodeSendPacket(publicFromPrivate(priv), Buffer.from('fast')));
      const f3 = await c.readFrame();
      assert.equal(f3.type, FrameType.RecvPacket);
      assert.equal(Buffer.from(f3.payload.subarray(32)).toString(), 'fast');
    } finally {
      c.close();
    }
    // And our client's fast start path works end to end.
    const fs = await ctx.connect({ serverKey });
    await expectAlive(fs, 'fast-start client');
  });

  test('05 Ideal-Node header → PeerPresent flag 0x08 and current_notideal_connections', async () => {
    const watcher = await ctx.connectMesh();
    watcher.watchConns();
    await nextOf(watcher, 'peerPresent', 3000, (m) => sameKey(m.key, watcher.publicKey));
    const before = await metric(ctx.server.url, 'derp_current_notideal_connections');
    const c = await ctx.connect({ idealNode: 'some-other-node' });
    const pp = await nextOf(watcher, 'peerPresent', 3000, (m) => sameKey(m.key, c.publicKey));
    assert.equal(pp.flags, PeerPresentFlags.NotIdeal, 'flags = NotIdeal only (IsRegular is not set alongside)');
    const during = await waitMetric(ctx.server.url, 'derp_current_notideal_connections', (v) => v === before + 1);
    assert.equal(during, before + 1);
    c.close();
    assert.equal(await waitMetric(ctx.server.url, 'derp_current_notideal_connections', (v) => v === before), before);
  });

  test('06 WebSocket subprotocol derp: binary messages reassembled; text message closes with 1003', async () => {
    // Through our client (frames split across messages for 64 KiB packets).
    const a = await ctx.connect({ websocket: true });
    const b = await ctx.connect();
    a.send(b.publicKey, new Uint8Array(65536).fill(9));
    const got = await nextOf(b, 'recvPacket');
    assert.equal(got.data.length, 65536);
    assert.ok(sameKey(got.source, a.publicKey));
    // Raw ws: several frames in one message, and a frame split across two messages.
    const wsUrl = ctx.server.url.replace(/^http/, 'ws');
    const ws = ctx.track(new WebSocket(wsUrl, ['derp'], { perMessageDeflate: false }));
    const chunks: Buffer[] = [];
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    ws.on('message', (d) => chunks.push(d as Buffer));
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    assert.equal(ws.protocol, 'derp');
    const wait = async (pred: () => boolean): Promise<void> => {
      for (let i = 0; i < 100 && !pred(); i++) await new Promise((r) => setTimeout(r, 20));
    };
    await wait(() => Buffer.concat(chunks).length >= 45);
    const serverKey = serverKeyFromFrame({ type: 1, payload: Buffer.concat(chunks).subarray(5, 45) });
    const priv = generatePrivate();
    const info = clientInfoFrame(priv, serverKey, '{"version":2}');
    const send1 = encodeSendPacket(b.publicKey, Buffer.from('one'));
    const send2 = encodeSendPacket(b.publicKey, Buffer.from('two'));
    ws.send(Buffer.concat([info, send1, send2.subarray(0, 3)]));
    ws.send(send2.subarray(3));
    assert.equal(Buffer.from((await nextOf(b, 'recvPacket')).data).toString(), 'one');
    assert.equal(Buffer.from((await nextOf(b, 'recvPacket')).data).toString(), 'two');
    ws.send('text is not allowed');
    const code = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 3000))]);
    assert.equal(code, 1003);
  });

  test('07 /derp/probe and /derp/latency-check: GET/HEAD 200 empty + ACAO *, POST 405', async () => {
    for (const path of ['/derp/probe', '/derp/latency-check']) {
      for (const method of ['GET', 'HEAD']) {
        const r = await httpRequest(ctx.server.url, path, { method });
        assert.equal(r.status, 200, `${method} ${path}`);
        assert.equal(r.body, '');
        assert.equal(r.headers['access-control-allow-origin'], '*');
      }
      assert.equal((await httpRequest(ctx.server.url, path, { method: 'POST' })).status, 405, `POST ${path}`);
    }
  });

  test('08 /generate_204: 204 + Cache-Control; challenge echoed only when valid', async () => {
    const r = await httpRequest(ctx.server.url, '/generate_204', { headers: { 'X-Tailscale-Challenge': 'ts_derp.example-1:2' } });
    assert.equal(r.status, 204);
    assert.equal(r.headers['cache-control'], 'no-cache, no-store, must-revalidate, no-transform, max-age=0');
    assert.equal(r.headers['x-tailscale-response'], 'response ts_derp.example-1:2');
    const max = 'a'.repeat(64);
    assert.equal((await httpRequest(ctx.server.url, '/generate_204', { headers: { 'X-Tailscale-Challenge': max } })).headers['x-tailscale-response'], `response ${max}`);
    for (const bad of ['has space', 'a'.repeat(65), 'semi;colon']) {
      const rb = await httpRequest(ctx.server.url, '/generate_204', { headers: { 'X-Tailscale-Challenge': bad } });
      assert.equal(rb.status, 204);
      assert.equal(rb.headers['x-tailscale-response'], undefined, `challenge ${JSON.stringify(bad)}`);
    }
  });

  test('09 /robots.txt, home page, unknown path, /bootstrap-dns', async () => {
    const robots = await httpRequest(ctx.server.url, '/robots.txt');
    assert.equal(robots.status, 200);
    assert.equal(robots.body, 'User-agent: *\nDisallow: /\n');
    assert.equal(robots.headers['x-frame-options'], 'DENY');
    assert.equal(robots.headers['x-content-type-options'], 'nosniff');
    for (const path of ['/', '/no/such/page']) {
      const home = await httpRequest(ctx.server.url, path);
      assert.equal(home.status, 200, path);
      assert.equal(home.headers['content-type'], 'text/html; charset=utf-8');
      assert.match(home.body, /<h1>DERP<\/h1>/);
      assert.match(home.body, /This is a (<a [^>]*>)?Tailscale(<\/a>)? DERP server/);
    }
    const b = await httpRequest(ctx.server.url, '/bootstrap-dns');
    assert.equal(b.status, 200);
    assert.match(String(b.headers['content-type']), /^application\/json/);
    assert.equal(b.headers.connection, 'close');
    assert.equal(b.body, '', 'no names configured → empty body (Go writes nothing)');
  });

  test('10 /debug/ allowed from loopback; X-Forwarded-For → 403', async () => {
    assert.equal((await httpRequest(ctx.server.url, '/debug/')).status, 200);
    const denied = await httpRequest(ctx.server.url, '/debug/', { headers: { 'X-Forwarded-For': '8.8.8.8' } });
    assert.equal(denied.status, 403);
    assert.match(denied.body, /debug access denied/);
    const redirect = await httpRequest(ctx.server.url, '/debug');
    assert.equal(redirect.status, 307, '/debug redirects (Go v1.102.3 answers 307, not the 301 spec §16.3 says)');
    assert.equal(redirect.headers.location, '/debug/');
  });

  test('11 --derp=false → /derp 404 "derp server disabled"; probes still work', async () => {
    const s = await ctx.target.start({ derp: false });
    try {
      const r = await httpRequest(s.url, '/derp', { headers: { Upgrade: 'DERP', Connection: 'Upgrade' } });
      assert.equal(r.status, 404);
      assert.match(r.body, /derp server disabled/);
      assert.equal((await httpRequest(s.url, '/derp/probe')).status, 200);
    } finally {
      await s.stop();
    }
  });

}
