/**
 * The `--mesh-with` client (src/derper/mesh.ts, spec/derp.md §11.4): entry parsing, backoff, and two in-process
 * DerpServers over loopback HTTP meshed with each other — one-hop forwarding with the original source, PeerGone
 * propagation across the mesh, reconnect after a server restart, self-connect detection.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import fc from 'fast-check';
import { DerpClient, type DerpMessage } from '../../../src/derp/client.ts';
import { PeerGoneReason } from '../../../src/derp/constants.ts';
import { DerpServer } from '../../../src/derp/server/server.ts';
import { handleDerpHttp } from '../../../src/derp/server/upgrade.ts';
import { startDerper, type DerperConfig } from '../../../src/derper/derper.ts';
import { Mesh, meshBackoffMs, meshTarget, parseMeshWith } from '../../../src/derper/mesh.ts';
import { MESH_BACKOFF_MAX_MS } from '../../../src/derper/limit-constants.ts';
import { generatePrivate, keyId, type NodePrivate } from '../../../src/types/key.ts';

const MESH_KEY = Uint8Array.from({ length: 32 }, (_, i) => 0x40 + i);

test('parseMeshWith: host, host:port, host/dialhost, blanks; rejects junk', () => {
  assert.deepEqual(parseMeshWith(' a.example , b.example:8443/10.0.0.2,,[::1]:9/::1 '), [
    { host: 'a.example', dialHost: null },
    { host: 'b.example:8443', dialHost: '10.0.0.2' },
    { host: '[::1]:9', dialHost: '::1' },
  ]);
  for (const bad of ['http://x', 'a b', 'x/y/z', 'h:port']) assert.throws(() => parseMeshWith(bad), /mesh-with/);
  fc.assert(fc.property(fc.string(), (s) => {
    try {
      for (const p of parseMeshWith(s)) assert.ok(p.host.length > 0);
    } catch (e) {
      assert.match(String(e), /mesh-with/);
    }
  }));
});

test('meshTarget: TLS unless plain HTTP; dialhost keeps the port and verifies the entry host', () => {
  assert.deepEqual(meshTarget({ host: 'derp1.example', dialHost: null }, false), { url: 'https://derp1.example/derp', servername: null });
  assert.deepEqual(meshTarget({ host: 'derp1.example:8443', dialHost: '10.1.2.3' }, false), { url: 'https://10.1.2.3:8443/derp', servername: 'derp1.example' });
  assert.deepEqual(meshTarget({ host: '127.0.0.1:3340', dialHost: null }, true), { url: 'http://127.0.0.1:3340/derp', servername: null });
});

test('meshBackoffMs: starts ~1 s, doubles, capped at 30 s, jitter within ±20 %', () => {
  assert.equal(meshBackoffMs(0, 0.5), 1000);
  assert.equal(meshBackoffMs(3, 0.5), 8000);
  assert.equal(meshBackoffMs(40, 0.5), MESH_BACKOFF_MAX_MS);
  fc.assert(fc.property(fc.nat(100), fc.double({ min: 0, max: 0.999999, noNaN: true }), (a, r) => {
    const base = Math.min(MESH_BACKOFF_MAX_MS, 1000 * 2 ** Math.min(a, 30));
    const d = meshBackoffMs(a, r);
    assert.ok(d >= Math.floor(base * 0.8) && d <= Math.ceil(base * 1.2), `${a} ${r} → ${d}`);
  }));
});

interface Node {
  engine: DerpServer;
  http: http.Server;
  port: number;
  priv: NodePrivate;
  stop(): Promise<void>;
}

async function startNode(priv: NodePrivate = generatePrivate(), port = 0): Promise<Node> {
  const engine = new DerpServer({ privateKey: priv, meshKey: MESH_KEY });
  const srv = http.createServer((_req, res) => res.writeHead(404).end());
  srv.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => handleDerpHttp(engine, req, socket, head));
  await new Promise<void>((resolve) => srv.listen(port, '127.0.0.1', resolve));
  return {
    engine, http: srv, port: (srv.address() as AddressInfo).port, priv,
    stop: async () => {
      await Promise.all([new Promise<void>((r) => { srv.close(() => r()); srv.closeAllConnections(); }), engine.close()]);
    },
  };
}

const dial = (port: number): Promise<DerpClient> => DerpClient.connect(`http://127.0.0.1:${port}/derp`, { privateKey: generatePrivate() });

/** Waits (real time) until `cond` holds. */
async function until(cond: () => boolean, what: string, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Next message of a type, skipping others. */
async function nextOf<T extends DerpMessage['type']>(c: DerpClient, type: T, ms = 5000): Promise<Extract<DerpMessage, { type: T }>> {
  const end = Date.now() + ms;
  for (;;) {
    const m = await c.next(Math.max(1, end - Date.now()));
    if (m.type === type) return m as Extract<DerpMessage, { type: T }>;
  }
}

test('two meshed servers: forwarding with the original source, PeerGone across the mesh, reconnect after restart', { timeout: 30_000 }, async (t) => {
  const s1 = await startNode();
  let s2 = await startNode();
  const meshes: Mesh[] = [];
  const clients: DerpClient[] = [];
  t.after(async () => {
    for (const c of clients) c.close();
    await Promise.all(meshes.map((m) => m.close()));
    await Promise.all([s1.stop(), s2.stop()]);
  });
  const peers = parseMeshWith(`127.0.0.1:${s1.port},127.0.0.1:${s2.port}`);
  // Both get the same list, including themselves: self-connect is detected and that loop stops.
  const m1 = new Mesh({ server: s1.engine, privateKey: s1.priv, meshKey: MESH_KEY, peers, plainHttp: true, random: () => 0.5 });
  const m2 = new Mesh({ server: s2.engine, privateKey: s2.priv, meshKey: MESH_KEY, peers, plainHttp: true, random: () => 0.5 });
  meshes.push(m1, m2);

  const a = await dial(s1.port);
  const b = await dial(s1.port);
  const c = await dial(s2.port);
  clients.push(a, b, c);
  await until(() => s1.engine.metrics().gauge_clients_remote >= 1 && s2.engine.metrics().gauge_clients_remote >= 2, 'keys learned over the mesh');
  assert.deepEqual(m1.status().map((s) => s.state), ['self', 'connected']);
  assert.deepEqual(m2.status().map((s) => s.state), ['connected', 'self']);

  // A on server 1 → C on server 2: delivered with source A (one hop, ForwardPacket).
  a.send(c.publicKey, Buffer.from('hello from A'));
  const got = await nextOf(c, 'recvPacket');
  assert.equal(keyId(got.source), keyId(a.publicKey));
  assert.equal(Buffer.from(got.data).toString(), 'hello from A');
  assert.equal(s1.engine.metrics().packets_forwarded_out, 1);
  assert.equal(s2.engine.metrics().packets_forwarded_in, 1);

  // C → B (B hears from C), then C leaves server 2: B gets PeerGone(C, Disconnected) via the mesh.
  c.send(b.publicKey, Buffer.from('from C'));
  assert.equal(keyId((await nextOf(b, 'recvPacket')).source), keyId(c.publicKey));
  c.close();
  const gone = await nextOf(b, 'peerGone');
  assert.equal(keyId(gone.key), keyId(c.publicKey));
  assert.equal(gone.reason, PeerGoneReason.Disconnected);

  // Server 2 restarts (same key and port): server 1's mesh unregisters, redials, and forwarding works again.
  const port2 = s2.port;
  await s2.stop();
  await until(() => m1.status()[1]!.state !== 'connected', 'mesh noticing the restart');
  assert.equal(s1.engine.metrics().gauge_clients_remote, 0, 'keys learned from server 2 unregistered');
  s2 = await startNode(s2.priv, port2);
  await m2.close();
  const m2b = new Mesh({ server: s2.engine, privateKey: s2.priv, meshKey: MESH_KEY, peers, plainHttp: true, random: () => 0.5 });
  meshes.push(m2b);
  const c2 = await dial(s2.port);
  clients.push(c2);
  await until(() => s1.engine.metrics().gauge_clients_remote >= 1, 'mesh re-established', 10_000);
  assert.ok(m1.status()[1]!.connects >= 2);
  a.send(c2.publicKey, Buffer.from('again'));
  const again = await nextOf(c2, 'recvPacket');
  assert.equal(keyId(again.source), keyId(a.publicKey));
});

test('a mesh client without the right mesh key is not a mesh peer (its WatchConns closes it)', { timeout: 10_000 }, async (t) => {
  const s1 = await startNode();
  const s2 = await startNode();
  const wrong = new Mesh({ server: s1.engine, privateKey: s1.priv, meshKey: new Uint8Array(32).fill(9), peers: parseMeshWith(`127.0.0.1:${s2.port}`), plainHttp: true, random: () => 0 });
  t.after(async () => {
    await wrong.close();
    await Promise.all([s1.stop(), s2.stop()]);
  });
  await until(() => wrong.status()[0]!.lastError !== null, 'the connection to fail');
  assert.equal(s2.engine.metrics().gauge_watchers, 0);
  assert.equal(s1.engine.metrics().gauge_clients_remote, 0);
});

test('a silently partitioned peer (no FIN) is detected by ping, its keys unregistered, and redialed', { timeout: 15_000 }, async (t) => {
  const s1 = await startNode();
  const s2 = await startNode();
  // A TCP proxy in front of server 2 that can "partition": stop relaying bytes without closing anything.
  let partitioned = false;
  const pairs: net.Socket[] = [];
  const proxy = net.createServer((inbound) => {
    const outbound = net.connect(s2.port, '127.0.0.1');
    pairs.push(inbound, outbound);
    for (const [from, to] of [[inbound, outbound], [outbound, inbound]] as const) {
      from.on('data', (d: Buffer) => { if (!partitioned) to.write(d); });
      from.on('error', () => {});
      from.on('close', () => to.destroy());
    }
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const m1 = new Mesh({
    server: s1.engine, privateKey: s1.priv, meshKey: MESH_KEY, peers: parseMeshWith(`127.0.0.1:${(proxy.address() as AddressInfo).port}`),
    plainHttp: true, random: () => 0.5, pingIntervalMs: 200, pingTimeoutMs: 300,
  });
  const c = await dial(s2.port);
  t.after(async () => {
    c.close();
    await m1.close();
    for (const p of pairs) p.destroy();
    proxy.close();
    await Promise.all([s1.stop(), s2.stop()]);
  });
  await until(() => s1.engine.metrics().gauge_clients_remote >= 1, 'keys learned through the proxy');
  await new Promise((r) => setTimeout(r, 600)); // pings answered meanwhile: still connected
  assert.equal(m1.status()[0]!.state, 'connected');
  partitioned = true;
  await until(() => s1.engine.metrics().gauge_clients_remote === 0, 'keys unregistered after the missed pong', 3000);
  assert.match(m1.status()[0]!.lastError ?? '', /did not answer a ping/);
  partitioned = false;
  await until(() => m1.status()[0]!.state === 'connected' && s1.engine.metrics().gauge_clients_remote >= 1, 'redialed after the partition heals', 5000);
});

test('startDerper wiring: --mesh-with needs a mesh key; the mesh shows up in /debug/vars and /debug/varz', { timeout: 15_000 }, async (t) => {
  const base: DerperConfig = {
    host: '127.0.0.1', port: 0, tls: null, httpPort: -1, stunPort: null, derp: true, privateKey: generatePrivate(), meshKey: MESH_KEY,
    home: '', hostname: '127.0.0.1', bootstrapDnsNames: [], verifyClientUrl: '', verifyClientUrlFailOpen: false, tcpWriteTimeoutMs: 2000, tcpKeepAliveMs: 0,
  };
  const peer = await startDerper({ ...base, privateKey: generatePrivate() });
  t.after(() => peer.close());
  await assert.rejects(startDerper({ ...base, meshKey: null, meshWith: parseMeshWith(`127.0.0.1:${peer.httpPort}`) }), /requires a mesh key/);
  const d = await startDerper({ ...base, meshWith: parseMeshWith(`127.0.0.1:${peer.httpPort}`), meshPlainHttp: true });
  t.after(() => d.close());
  await until(() => d.mesh?.status()[0]?.state === 'connected', 'mesh connected');
  const vars = await (await fetch(`http://127.0.0.1:${d.httpPort}/debug/vars`)).json() as { mesh: { gauge_peers_connected: number; peers: Record<string, { state: string }> }; tls_listener?: unknown };
  assert.equal(vars.mesh.gauge_peers_connected, 1);
  assert.equal(vars.mesh.peers[`127.0.0.1:${peer.httpPort}`]?.state, 'connected');
  assert.equal(vars.tls_listener, undefined, 'no accept limits configured');
  assert.match(await (await fetch(`http://127.0.0.1:${d.httpPort}/debug/varz`)).text(), /mesh_peers_connected 1/);
});
