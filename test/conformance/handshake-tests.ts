/**
 * Conformance checklist 12–18 (spec/derp.md §5, §6, §13): ServerKey/ServerInfo bytes, every way a ClientInfo can
 * be refused (connection closed, nothing sent), the handshake deadline, lenient JSON keys, wrong mesh keys and
 * the admission URL.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FrameType, MAGIC } from '../../src/derp/constants.ts';
import { encodeFrame } from '../../src/derp/frame.ts';
import { DerpClient } from '../../src/derp/client.ts';
import { generatePrivate, nodePublicText, publicFromPrivate, toHex } from '../../src/types/key.ts';
import { clientInfoFrame, rawDerpConnect, RawConn, serverKeyFromFrame, upgradeRequest } from './raw.ts';
import { expectAlive, expectClosed, sameKey, type SuiteContext } from './helpers.ts';

/** Opens a raw connection through the 101 and ServerKey; returns it and the server key. */
async function toServerKey(url: string): Promise<{ c: RawConn; serverKey: Uint8Array }> {
  const c = await RawConn.open(url);
  c.write(upgradeRequest(url));
  await c.readHead();
  return { c, serverKey: serverKeyFromFrame(await c.readFrame()) };
}

/** Handshake deadline (15): started early by the suite and awaited by its test, so its 10 s overlap others. */
export async function handshakeDeadline(url: string): Promise<{ closedAfterMs: number | null; bytesAfterServerKey: number }> {
  const { c } = await toServerKey(url);
  const start = performance.now();
  const closed = await c.waitClosed(14_000);
  const out = { closedAfterMs: closed ? c.closedAt! - start : null, bytesAfterServerKey: c.buf.length };
  c.close();
  return out;
}

export function handshakeTests(ctx: SuiteContext): void {
  test('12 ServerKey payload is 40 bytes: magic 44455250f09f9491 + server key', async () => {
    const c = await RawConn.open(ctx.server.url);
    try {
      c.write(upgradeRequest(ctx.server.url));
      const head = await c.readHead();
      const f = await c.readFrame();
      assert.equal(f.type, FrameType.ServerKey);
      assert.equal(f.length, 40);
      assert.deepEqual(Buffer.from(f.payload.subarray(0, 8)), Buffer.from(MAGIC));
      assert.ok(head.includes(`Derp-Public-Key: ${toHex(f.payload.subarray(8))}\r\n`));
    } finally {
      c.close();
    }
  });

  test('13 correct ClientInfo → ServerInfo {"version":2} is the first frame after ServerKey', async () => {
    const r = await rawDerpConnect(ctx.server.url);
    try {
      assert.equal(r.serverInfoJson, '{"version":2}');
    } finally {
      r.conn.close();
    }
  });

  test('14 bad first frame / ClientInfo → connection closed, no frames sent', async () => {
    const priv = generatePrivate();
    const pub = publicFromPrivate(priv);
    type Case = { name: string; bytes: (serverKey: Uint8Array) => Buffer };
    const cases: Case[] = [
      { name: 'wrong first frame type', bytes: () => encodeFrame(FrameType.SendPacket, new Uint8Array(64)) },
      { name: 'ClientInfo of 55 bytes', bytes: () => encodeFrame(FrameType.ClientInfo, new Uint8Array(55)) },
      { name: 'ClientInfo over 256 KiB', bytes: () => { const h = Buffer.alloc(5); h[0] = FrameType.ClientInfo; h.writeUInt32BE(256 * 1024 + 1, 1); return h; } },
      { name: 'box that does not open', bytes: () => encodeFrame(FrameType.ClientInfo, pub, crypto.getRandomValues(new Uint8Array(24 + 16 + 20))) },
      { name: 'invalid JSON', bytes: (k) => clientInfoFrame(priv, k, '{"version":2,') },
      { name: 'malformed meshKey (short)', bytes: (k) => clientInfoFrame(priv, k, '{"meshKey":"abcd","version":2}') },
      { name: 'malformed meshKey (empty string)', bytes: (k) => clientInfoFrame(priv, k, '{"meshKey":"","version":2}') },
      { name: 'malformed meshKey (non-hex)', bytes: (k) => clientInfoFrame(priv, k, `{"meshKey":"${'zz'.repeat(32)}"}`) },
      { name: 'all-zero client key', bytes: () => encodeFrame(FrameType.ClientInfo, new Uint8Array(32), crypto.getRandomValues(new Uint8Array(24 + 16 + 20))) },
    ];
    const results = await Promise.all(cases.map(async (tc) => {
      const { c, serverKey } = await toServerKey(ctx.server.url);
      c.write(tc.bytes(serverKey));
      const closed = await c.waitClosed(5000);
      const leftover = c.buf.length;
      c.close();
      return { name: tc.name, closed, leftover };
    }));
    for (const r of results) {
      assert.ok(r.closed, `${r.name}: connection not closed`);
      assert.equal(r.leftover, 0, `${r.name}: server sent ${r.leftover} bytes after ServerKey`);
    }
  });

  test('16 ClientInfo keys matched case-insensitively; unknown keys ignored; version not enforced', async () => {
    const mk = toHex(ctx.server.meshKey);
    const r = await rawDerpConnect(ctx.server.url, { json: `{"MeshKey":"${mk}","Version":7,"cANaCKpINGS":true,"Bogus":[1,2]}` });
    try {
      assert.equal(r.serverInfoJson, '{"version":2}');
      // The capitalised MeshKey made it a mesh peer: WatchConns is allowed and lists the connection itself.
      r.conn.write(encodeFrame(FrameType.WatchConns));
      let sawSelf = false;
      for (let i = 0; i < 50 && !sawSelf; i++) {
        const f = await r.conn.readFrame(3000);
        if (f.type === FrameType.PeerPresent && sameKey(f.payload.subarray(0, 32), r.pub)) sawSelf = true;
      }
      assert.ok(sawSelf, 'watcher did not see itself');
    } finally {
      r.conn.close();
    }
    const v = await rawDerpConnect(ctx.server.url, { json: '{"version":99}' });
    v.conn.close();
    assert.equal(v.serverInfoJson, '{"version":2}');
  });

  test('17 wrong but well-formed mesh key → ordinary client (admitted, but WatchConns closes it)', async () => {
    const wrong = crypto.getRandomValues(new Uint8Array(32));
    const c = await ctx.connect({ meshKey: wrong });
    await expectAlive(c, 'wrong-mesh-key client');
    c.watchConns();
    await expectClosed(c, 'WatchConns with a wrong mesh key');
  });

  test('18 admission URL: body, deny → close, fail-open when unreachable, mesh peers not checked', async () => {
    const seen: { NodePublic?: string; Source?: string }[] = [];
    let allow = false;
    const verifier = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        seen.push(JSON.parse(Buffer.concat(chunks).toString()) as { NodePublic?: string; Source?: string });
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ Allow: allow }));
      });
    });
    await new Promise<void>((r) => verifier.listen(0, '127.0.0.1', r));
    const port = (verifier.address() as AddressInfo).port;
    try {
      const s = await ctx.target.start({ verifyClientUrl: `http://127.0.0.1:${port}/verify` });
      try {
        const priv = generatePrivate();
        allow = true;
        const ok = ctx.track(await DerpClient.connect(s.url, { privateKey: priv, connectTimeoutMs: 5000 }));
        await expectAlive(ok, 'allowed client');
        ok.close();
        assert.equal(seen.length, 1);
        assert.equal(seen[0]!.NodePublic, nodePublicText(publicFromPrivate(priv)));
        assert.equal(seen[0]!.Source, '127.0.0.1');
        allow = false;
        await assert.rejects(DerpClient.connect(s.url, { privateKey: generatePrivate(), connectTimeoutMs: 5000 }), 'denied client must be closed');
        const mesh = ctx.track(await DerpClient.connect(s.url, { privateKey: generatePrivate(), meshKey: s.meshKey, connectTimeoutMs: 5000 }));
        await expectAlive(mesh, 'mesh peer with a denying verifier');
        assert.equal(seen.length, 2, 'mesh peers are not sent to the verifier');
      } finally {
        await s.stop();
      }
    } finally {
      await new Promise<void>((r) => verifier.close(() => r()));
    }
    const s2 = await ctx.target.start({ verifyClientUrl: `http://127.0.0.1:${port}/gone`, verifyClientUrlFailOpen: true });
    try {
      const c = ctx.track(await DerpClient.connect(s2.url, { privateKey: generatePrivate(), connectTimeoutMs: 8000 }));
      await expectAlive(c, 'fail-open client');
    } finally {
      await s2.stop();
    }
  });

}

/** Registered last by the suite: awaits the probe started in before(). */
export function handshakeDeadlineTest(deadline: () => Promise<{ closedAfterMs: number | null; bytesAfterServerKey: number }>): void {
  test('15 no ClientInfo within 10 s → connection closed (started at suite start)', { timeout: 30_000 }, async () => {
    const r = await deadline();
    assert.notEqual(r.closedAfterMs, null, 'connection still open after 14 s');
    assert.ok(r.closedAfterMs! >= 9_000 && r.closedAfterMs! <= 12_000, `closed after ${Math.round(r.closedAfterMs!)} ms, want ≈10 s`);
    assert.equal(r.bytesAfterServerKey, 0);
  });
}
