/**
 * derper's limits (src/derper/limits.ts, spec/derp.md §12): the accept limiter (rate + burst, per-IP cap) on a
 * ManualClock and on a real in-process derper's listener, `--rate-config` parsing and reload, the per-client
 * receive limit (backpressure, never drops; mesh exempt) on a ManualClock, and its ServerInfo announcement
 * honoured by our DerpClient.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { boxBeforeNm, openBox } from '../../../src/derp/box.ts';
import { DerpClient } from '../../../src/derp/client.ts';
import { FrameType } from '../../../src/derp/constants.ts';
import { decodeServerKey, encodeFrame } from '../../../src/derp/frame.ts';
import { RECEIVE_LIMIT_FRAME_COST_CAP } from '../../../src/derp/server/constants.ts';
import { startDerper, type DerperConfig } from '../../../src/derper/derper.ts';
import { AcceptLimiter, parseAcceptLimitFlags, parseRateConfig, queueDepthFromEnv } from '../../../src/derper/limits.ts';
import { silentLogger } from '../../../src/log.ts';
import { WiremeshError } from '../../../src/errors.ts';
import { ManualClock } from '../../../src/time/clock.ts';
import { generatePrivate, toHex } from '../../../src/types/key.ts';
import { clientInfoPayload, MESH_KEY, newServer, TestClient, tick } from '../derp-server/helpers.ts';

function config(over: Partial<DerperConfig> = {}): DerperConfig {
  return {
    host: '127.0.0.1', port: 0, tls: null, httpPort: -1, stunPort: null, derp: true, privateKey: generatePrivate(), meshKey: null,
    home: '', hostname: '127.0.0.1', bootstrapDnsNames: [], verifyClientUrl: '', verifyClientUrlFailOpen: false,
    tcpWriteTimeoutMs: 2000, tcpKeepAliveMs: 0, ...over,
  };
}

test('AcceptLimiter: burst then rate; per-IP cap with IPv4-mapped addresses folded; release frees a slot', () => {
  const clock = new ManualClock(0);
  const l = new AcceptLimiter(clock, { perSecond: 2, burst: 3, maxPerIp: 0 });
  assert.deepEqual([1, 2, 3, 4].map(() => l.admit('192.0.2.1')), [true, true, true, false]);
  clock.advance(499);
  assert.equal(l.admit('192.0.2.2'), false);
  clock.advance(1);
  assert.equal(l.admit('192.0.2.2'), true);
  assert.deepEqual(l.counters, { accepted_connections: 4, rejected_connections: 2, rejected_connections_per_ip: 0 });

  const p = new AcceptLimiter(clock, { perSecond: Infinity, burst: 1, maxPerIp: 2 });
  assert.equal(p.admit('198.51.100.9'), true);
  assert.equal(p.admit('::ffff:198.51.100.9'), true);
  assert.equal(p.admit('198.51.100.9'), false);
  assert.equal(p.admit('198.51.100.10'), true, 'other addresses unaffected');
  p.release('198.51.100.9');
  assert.equal(p.connectionsFrom('198.51.100.9'), 1);
  assert.equal(p.admit('198.51.100.9'), true);
  assert.equal(p.counters.rejected_connections_per_ip, 1);
  assert.throws(() => new AcceptLimiter(clock, { perSecond: 0, burst: 1, maxPerIp: 0 }), /accept-connection-limit/);
});

test('parseRateConfig: Go field names (any case), missing = 0, junk refused', () => {
  assert.deepEqual(parseRateConfig('{"PerClientRateLimitBytesPerSec":1000,"PerClientRateBurstBytes":2000}'), { bytesPerSecond: 1000, burstBytes: 2000 });
  assert.deepEqual(parseRateConfig('{"perclientratelimitbytespersec":5,"other":1}'), { bytesPerSecond: 5, burstBytes: 0 });
  for (const bad of ['', '[]', 'null', '{"PerClientRateLimitBytesPerSec":-1}', '{"PerClientRateLimitBytesPerSec":"9"}', '{"PerClientRateBurstBytes":1.5}']) {
    assert.throws(() => parseRateConfig(bad), (e) => e instanceof WiremeshError && e.code === 'bad_rate_config', bad);
  }
  fc.assert(fc.property(fc.oneof(fc.string(), fc.json()), (s) => {
    try {
      const r = parseRateConfig(s);
      assert.ok(r.bytesPerSecond >= 0 && r.burstBytes >= 0);
    } catch (e) {
      assert.ok(e instanceof WiremeshError && e.code === 'bad_rate_config');
    }
  }));
});

/** Opens a TCP connection and resolves 'closed' if the server closes it within `ms`, else 'open' (left open). */
function connectAndWatch(port: number, ms: number, keep: net.Socket[]): Promise<'closed' | 'open'> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    keep.push(s);
    const t = setTimeout(() => resolve('open'), ms);
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(t);
      resolve('closed');
    });
  });
}

test('accept limit on the listener: N + burst rapid connects → the extras are closed at once', async (t) => {
  const d = await startDerper(config({ acceptLimits: { perSecond: 0.001, burst: 3, maxPerIp: 0 } }));
  const socks: net.Socket[] = [];
  t.after(async () => {
    for (const s of socks) s.destroy();
    await d.close();
  });
  const results = await Promise.all(Array.from({ length: 7 }, () => connectAndWatch(d.httpPort, 400, socks)));
  assert.equal(results.filter((r) => r === 'open').length, 3, results.join());
  assert.equal(results.filter((r) => r === 'closed').length, 4, results.join());
});

test('max conns per IP: the third concurrent connection from 127.0.0.1 is closed; closing one frees a slot', async (t) => {
  const d = await startDerper(config({ acceptLimits: { perSecond: Infinity, burst: 1, maxPerIp: 2 } }));
  const socks: net.Socket[] = [];
  t.after(async () => {
    for (const s of socks) s.destroy();
    await d.close();
  });
  assert.equal(await connectAndWatch(d.httpPort, 200, socks), 'open');
  assert.equal(await connectAndWatch(d.httpPort, 200, socks), 'open');
  assert.equal(await connectAndWatch(d.httpPort, 300, socks), 'closed');
  socks[0]!.destroy();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await connectAndWatch(d.httpPort, 200, socks), 'open');
  // A DERP client still works within the cap... and the slot accounting survives real HTTP/DERP use.
  socks[1]!.destroy();
  await new Promise((r) => setTimeout(r, 100));
  const c = await DerpClient.connect(`http://127.0.0.1:${d.httpPort}/derp`, { privateKey: generatePrivate() });
  c.close();
});

/** Completes a handshake by hand and returns the ServerInfo JSON. */
async function handshakeJson(c: TestClient, json: string): Promise<string> {
  const sk = await c.next();
  assert.equal(sk.type, FrameType.ServerKey);
  const serverKey = decodeServerKey(sk.payload);
  c.write(encodeFrame(FrameType.ClientInfo, clientInfoPayload(c.priv, serverKey, json)));
  const si = await c.next(FrameType.ServerInfo);
  return new TextDecoder().decode(openBox(boxBeforeNm(c.priv, serverKey), si.payload));
}

test('receive limit: over budget the server stops reading (backpressure), never drops; announced; mesh exempt', async (t) => {
  const { server, clock } = newServer();
  t.after(() => server.close());
  server.setReceiveRateLimit({ bytesPerSecond: 10_000, burstBytes: 0 });
  const sender = TestClient.attach(server);
  assert.equal(await handshakeJson(sender, '{"version":2,"CanAckPings":false}'),
    `{"version":2,"TokenBucketBytesPerSecond":10000,"TokenBucketBytesBurst":${RECEIVE_LIMIT_FRAME_COST_CAP}}`, 'burst raised to 65568 and announced');
  const receiver = TestClient.attach(server);
  await handshakeJson(receiver, '{"version":2,"CanAckPings":false}');

  const packet = new Uint8Array(10_000 - 32).fill(7); // each frame costs exactly 10 000 bytes
  for (let i = 0; i < 12; i++) sender.send(receiver.pub, packet);
  const recvCount = async (): Promise<number> => (await receiver.drain(10)).filter((f) => f.type === FrameType.RecvPacket).length;
  // Burst 65568 admits 6 frames (60 000) and the 7th goes into debt: 7 are relayed, then reading stops.
  assert.equal(await recvCount(), 7);
  assert.equal(server.metrics().counter_rate_limit_per_client_throttles, 1);
  assert.equal(await recvCount(), 0, 'nothing more while the clock stands still');
  // Debt 4 432 bytes at 10 000 B/s: reading resumes after 444 ms, then one frame per second of refill.
  clock.advance(443);
  assert.equal(await recvCount(), 0);
  clock.advance(1);
  assert.equal(await recvCount(), 1);
  clock.advance(1000);
  assert.equal(await recvCount(), 1);
  clock.advance(10_000);
  await tick();
  clock.advance(10_000);
  assert.equal(await recvCount(), 3, 'all 12 delivered eventually');
  const m = server.metrics();
  assert.equal(m.packets_received, 12);
  assert.equal(Object.values(m.packets_dropped).reduce((n, k) => n + k.disco + k.other, 0), 0, 'no drops');

  const throttles = m.counter_rate_limit_per_client_throttles;
  assert.equal(throttles, 3, "paused after the 7th, 8th and 9th frames; then the bucket had refilled");
  // A mesh peer is exempt: no throttling, no bucket in its ServerInfo.
  const mesh = TestClient.attach(server);
  assert.equal(await handshakeJson(mesh, JSON.stringify({ meshKey: toHex(MESH_KEY), version: 2, CanAckPings: false })), '{"version":2}');
  for (let i = 0; i < 12; i++) mesh.send(receiver.pub, packet);
  assert.equal(await recvCount(), 12);
  assert.equal(server.metrics().counter_rate_limit_per_client_throttles, throttles);

  // Clearing the limit lets a throttled client read at once, and new clients get the plain ServerInfo.
  server.setReceiveRateLimit(null);
  const plain = TestClient.attach(server);
  assert.equal(await handshakeJson(plain, '{"version":2,"CanAckPings":false}'), '{"version":2}');
});

test('--rate-config file: loaded at start, announced in ServerInfo, honoured by DerpClient, reloaded (SIGHUP path)', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-rate-'));
  const file = path.join(dir, 'rate.json');
  writeFileSync(file, JSON.stringify({ PerClientRateLimitBytesPerSec: 20_000, PerClientRateBurstBytes: 100_000 }));
  const d = await startDerper(config({ rateConfigPath: file }));
  const clients: DerpClient[] = [];
  t.after(async () => {
    for (const c of clients) c.close();
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const url = `http://127.0.0.1:${d.httpPort}/derp`;
  const a = await DerpClient.connect(url, { privateKey: generatePrivate() });
  clients.push(a);
  assert.equal(a.serverInfo.tokenBucketBytesPerSecond, 20_000);
  assert.equal(a.serverInfo.tokenBucketBytesBurst, 100_000);
  // Our client paces itself: 20 × 10 KB at once exceeds the 100 KB burst, so it drops locally (like Go's client).
  for (let i = 0; i < 20; i++) a.send(a.publicKey, new Uint8Array(10_000));
  assert.equal(a.droppedByTokenBucket, 11, '9 frames of 10 037 bytes fit the 100 000-byte burst');

  writeFileSync(file, JSON.stringify({ PerClientRateLimitBytesPerSec: 0 }));
  await d.reloadRateConfig();
  const b = await DerpClient.connect(url, { privateKey: generatePrivate() });
  clients.push(b);
  assert.equal(b.serverInfo.tokenBucketBytesPerSecond, undefined, 'rate 0 disables the limit');
  writeFileSync(file, '{bad');
  await assert.rejects(d.reloadRateConfig(), /rate config/);
});

test('flag/env parsing: accept limits (+Inf default, Go float syntax), queue depth env bounded', () => {
  assert.deepEqual(parseAcceptLimitFlags('+Inf', '9007199254740991', '0'), { perSecond: Infinity, burst: Number.MAX_SAFE_INTEGER, maxPerIp: 0 });
  assert.deepEqual(parseAcceptLimitFlags('0.5', '1', '7'), { perSecond: 0.5, burst: 1, maxPerIp: 7 });
  assert.equal(parseAcceptLimitFlags('1e3', '2', '0').perSecond, 1000);
  for (const [l, b, p] of [['0', '1', '0'], ['-1', '1', '0'], ['x', '1', '0'], ['1', '0', '0'], ['1', '1.5', '0'], ['1', '1', '-1']] as const) {
    assert.throws(() => parseAcceptLimitFlags(l, b, p), (e) => e instanceof WiremeshError && e.code === 'derper_usage', `${l} ${b} ${p}`);
  }
  assert.deepEqual(queueDepthFromEnv({}, silentLogger), {});
  assert.deepEqual(queueDepthFromEnv({ TS_DEBUG_DERP_PER_CLIENT_SEND_QUEUE_DEPTH: '64' }, silentLogger), { queueDepth: 64 });
  for (const v of ['0', '-3', 'x', '4097']) assert.deepEqual(queueDepthFromEnv({ TS_DEBUG_DERP_PER_CLIENT_SEND_QUEUE_DEPTH: v }, silentLogger), {}, v);
});
