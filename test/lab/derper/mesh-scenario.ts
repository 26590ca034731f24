/**
 * The mesh scenario shared by test/lab/derper/mesh.test.ts (wiremesh ↔ wiremesh) and test/interop/mesh-go.test.ts
 * (wiremesh ↔ Go derper), spec/derp.md §11: two derper processes in TLS manual mode on loopback, each started
 * with `--mesh-with` naming both (self-connect is skipped), sharing a mesh PSK. Proves, with our DerpClient:
 * a packet from a client on server 1 reaches a client on server 2 with the original source (and back), PeerGone
 * propagates across the mesh in both directions, and the mesh re-forms after either server restarts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { DerpClient, type DerpMessage } from '../../../src/derp/client.ts';
import { PeerGoneReason } from '../../../src/derp/constants.ts';
import { generatePrivate, keyId, type NodePublic } from '../../../src/types/key.ts';
import path from 'node:path';
import { freeTcpPort, freeUdpPort, spawnUntil, waitForTcp } from '../../conformance/spawn.ts';
import { GO_DERPER, makeLab, type DerperHandle, type Lab } from '../../interop/derpprobe-lab.ts';

export type Starter = (lab: Lab, name: string, o: { port: number; meshWith: string[] }) => Promise<DerperHandle>;

async function dial(lab: Lab, port: number, plain: boolean): Promise<DerpClient> {
  if (plain) return DerpClient.connect(`http://127.0.0.1:${port}/derp`, { privateKey: generatePrivate() });
  return DerpClient.connect(`https://127.0.0.1:${port}/derp`, { privateKey: generatePrivate(), tls: { ca: readFileSync(lab.certFile), servername: 'localhost' } });
}

async function nextOf<T extends DerpMessage['type']>(c: DerpClient, type: T, ms: number, match: (m: Extract<DerpMessage, { type: T }>) => boolean = () => true): Promise<Extract<DerpMessage, { type: T }>> {
  const end = Date.now() + ms;
  for (;;) {
    const m = await c.next(Math.max(1, end - Date.now()));
    if (m.type === type && match(m as Extract<DerpMessage, { type: T }>)) return m as Extract<DerpMessage, { type: T }>;
  }
}

/** Sends from → to every 250 ms until `to` receives one (the mesh may still be forming); returns the elapsed ms. */
async function deliverEventually(from: DerpClient, to: DerpClient, tag: string, ms = 20_000): Promise<number> {
  const start = Date.now();
  const payload = Buffer.from(`mesh ${tag}`);
  for (;;) {
    from.send(to.publicKey, payload);
    try {
      const m = await nextOf(to, 'recvPacket', 250, (p) => Buffer.from(p.data).equals(payload));
      assert.equal(keyId(m.source), keyId(from.publicKey), `${tag}: RecvPacket source is the original sender`);
      return Date.now() - start;
    } catch (e) {
      if (!(e instanceof Error) || !/no DERP message/.test(e.message)) throw e;
      if (Date.now() - start > ms) throw new Error(`${tag}: not delivered within ${ms} ms`);
    }
  }
}

async function expectPeerGone(c: DerpClient, key: NodePublic, tag: string): Promise<void> {
  const g = await nextOf(c, 'peerGone', 10_000, (m) => keyId(m.key) === keyId(key));
  assert.equal(g.reason, PeerGoneReason.Disconnected, `${tag}: PeerGone(Disconnected)`);
}

/** With `plain`, the starters serve plain HTTP and mesh with TS_DEBUG_USE_DERP_HTTP=1; the test clients follow. */
export async function runMeshScenario(t: TestContext, s1: { name: string; start: Starter }, s2: { name: string; start: Starter }, plain = false): Promise<void> {
  const lab = makeLab();
  const [p1, p2] = [await freeTcpPort(), await freeTcpPort()];
  const meshWith = [`localhost:${p1}`, `localhost:${p2}`];
  const procs: DerperHandle[] = [];
  const clients: DerpClient[] = [];
  t.after(async () => {
    for (const c of clients) c.close();
    for (const p of procs) await p.stop();
    lab.remove();
  });
  const start = async (s: { name: string; start: Starter }, port: number): Promise<DerperHandle> => {
    const h = await s.start(lab, s.name, { port, meshWith });
    procs.push(h);
    await waitForTcp('127.0.0.1', port);
    return h;
  };
  const client = async (port: number): Promise<DerpClient> => {
    const c = await dial(lab, port, plain);
    clients.push(c);
    return c;
  };
  let d1 = await start(s1, p1);
  let d2 = await start(s2, p2);

  const a = await client(p1);
  const b = await client(p1);
  const c = await client(p2);
  const ms12 = await deliverEventually(a, c, `${s1.name}→${s2.name}`);
  const ms21 = await deliverEventually(c, b, `${s2.name}→${s1.name}`);
  t.diagnostic(`mesh formed: ${s1.name}→${s2.name} delivered after ${ms12} ms, ${s2.name}→${s1.name} after ${ms21} ms`);

  // PeerGone across the mesh, both ways: B heard from C; C leaves server 2 → B gets PeerGone(C).
  c.close();
  await expectPeerGone(b, c.publicKey, `${s2.name} client leaves`);
  // C2 on server 2 hears from A, then A leaves server 1 → C2 gets PeerGone(A).
  const c2 = await client(p2);
  await deliverEventually(a, c2, `${s1.name}→${s2.name} (new client)`);
  a.close();
  await expectPeerGone(c2, a.publicKey, `${s1.name} client leaves`);

  // Server 2 restarts (same key file and port): server 1's mesh notices, redials, and forwarding works again.
  await d2.stop();
  d2 = await start(s2, p2);
  const c3 = await client(p2);
  const msR2 = await deliverEventually(b, c3, `${s1.name}→${s2.name} after ${s2.name} restart`, 30_000);
  await deliverEventually(c3, b, `${s2.name}→${s1.name} after ${s2.name} restart`, 30_000);
  // And server 1 restarts: server 2's mesh redials it.
  await d1.stop();
  d1 = await start(s1, p1);
  const a2 = await client(p1);
  const msR1 = await deliverEventually(c3, a2, `${s2.name}→${s1.name} after ${s1.name} restart`, 30_000);
  await deliverEventually(a2, c3, `${s1.name}→${s2.name} after ${s1.name} restart`, 30_000);
  t.diagnostic(`re-formed after restarts: ${s2.name} ${msR2} ms, ${s1.name} ${msR1} ms`);
  void d1;
  void d2;
}

/** The Go derper serving plain HTTP (a non-443 port, no manual certs), its mesh dialing plain HTTP too. */
export const startGoDerperPlain: Starter = async (lab, name, o) => {
  const stunPort = await freeUdpPort();
  const proc = await spawnUntil(GO_DERPER!, ['-a', `127.0.0.1:${o.port}`, '-c', path.join(lab.dir, `${name}.key.json`), '-stun-port', String(stunPort),
    '-mesh-psk-file', lab.meshKeyFile, '-mesh-with', o.meshWith.join(',')], /derper: serving on /, { env: { ...process.env, TS_DEBUG_USE_DERP_HTTP: '1' } });
  return { kind: 'go', port: o.port, stunPort, proc, stop: () => proc.stop() };
};

/** `wiremesh derper` serving plain HTTP, its mesh dialing plain HTTP (TS_DEBUG_USE_DERP_HTTP=1, as Go). */
export const startWmDerperPlain: Starter = async (lab, name, o) => {
  const proc = await spawnUntil(path.resolve('node_modules/.bin/node'), [path.resolve('bin/wiremesh.js'), 'derper', '-a', `127.0.0.1:${o.port}`, '--stun-port', '0',
    '-c', path.join(lab.dir, `${name}.key.json`), '--mesh-psk-file', lab.meshKeyFile, '--mesh-with', o.meshWith.join(',')],
  /derper: listening http=127\.0\.0\.1:(\d+) stun=(\d+)/, { env: { ...process.env, TS_DEBUG_USE_DERP_HTTP: '1' } });
  return { kind: 'wiremesh', port: Number(proc.match[1]), stunPort: Number(proc.match[2]), proc, stop: () => proc.stop() };
};
