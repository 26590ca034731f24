/**
 * Interop between the real Go `derphttp` client (v1.102.3, test/interop/go/derpclient) and wiremesh's TypeScript
 * client (src/derp/client.ts), exchanging packets both ways and pinging, through (a) the Go derper over HTTP and
 * TLS and (b) wiremesh's derper over HTTP and over TLS (checklist 42; spec/derp.md §3.3, §14, §19).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DerpClient } from '../../src/derp/client.ts';
import { generatePrivate, nodePublicText, parseNodePublic } from '../../src/types/key.ts';
import type { DerpServerHandle, DerpStartOptions } from '../conformance/helpers.ts';
import { goDerper, startGoDerper, startWiremeshDerper } from '../conformance/targets.ts';
import { buildGoDerpClient, runGoDerpClient } from './go-derpclient.ts';

let goClient: string | null = null;
let buildError: Error | null = null;

before(async () => {
  try {
    goClient = await buildGoDerpClient();
  } catch (e) {
    buildError = e as Error;
  }
});

async function exchange(server: DerpServerHandle): Promise<void> {
  if (buildError !== null) throw buildError;
  assert.ok(goClient !== null, 'go toolchain missing');
  const secure = server.url.startsWith('https:');
  const ts = await DerpClient.connect(server.url, {
    privateKey: generatePrivate(), connectTimeoutMs: 8000,
    ...(secure ? { tls: { ca: readFileSync(server.certFile!) } } : {}),
  });
  const go = runGoDerpClient(goClient, [
    '-url', server.url, '-to', nodePublicText(ts.publicKey), '-count', '3', '-data', 'from go', '-recv', '2', '-pings', '2',
    '-timeout', '20s', ...(secure ? ['-insecure'] : []),
  ]);
  try {
    const ready = await go.waitEvent('ready');
    assert.equal(ready.serverKey, nodePublicText(ts.serverKey), 'both clients see the same server key');
    assert.equal(ready.tls, secure);
    // Over TLS 1.3 with a derpkey meta certificate in the chain, derphttp fast-starts (spec §3.3).
    assert.equal(ready.fastStart, secure, `Go client fast start (TLS ${String(ready.tlsVersion)})`);
    // With fast start Connect returns once ClientInfo is written; the server registers the key before it sends
    // ServerInfo, so only after the Go client has read ServerInfo may we send to it (else: unknown_dest drop).
    await go.waitEvent('serverInfo');
    const goKey = parseNodePublic(String(ready.publicKey));
    ts.send(goKey, Buffer.from('from ts 0'));
    ts.send(goKey, new Uint8Array(65536).fill(0x5a));
    const got: string[] = [];
    while (got.length < 3) {
      const m = await ts.next(10_000);
      if (m.type !== 'recvPacket') continue;
      assert.equal(nodePublicText(m.source), ready.publicKey, 'source is the Go client key');
      got.push(Buffer.from(m.data).toString());
    }
    assert.deepEqual(got, ['from go 0', 'from go 1', 'from go 2']);
    const { code, stderr } = await go.exited;
    assert.equal(code, 0, `Go derpclient failed: ${JSON.stringify(go.events.filter((e) => e.event === 'error'))}\n${stderr.slice(-1500)}`);
    const recvs = go.events.filter((e) => e.event === 'recv');
    assert.equal(recvs.length, 2);
    assert.ok(recvs.every((e) => e.source === nodePublicText(ts.publicKey)));
    assert.equal(Buffer.from(String(recvs[0]!.data), 'base64').toString(), 'from ts 0');
    assert.equal(Buffer.from(String(recvs[1]!.data), 'base64').length, 65536);
    const pings = go.events.filter((e) => e.event === 'ping');
    assert.equal(pings.length, 2, 'Go Ping succeeded twice within 5 s each');
    assert.ok((await ts.ping()) < 5000);
  } finally {
    go.kill();
    ts.close();
  }
}

function serverCase(name: string, start: (o: DerpStartOptions) => Promise<DerpServerHandle>, opts: DerpStartOptions, skip: string | false): void {
  describe(name, { skip, timeout: 120_000 }, () => {
    let server: DerpServerHandle | null = null;
    before(async () => { server = await start(opts); });
    after(async () => { await server?.stop(); });
    test('Go derphttp ⇄ TS client: packets both ways (incl. 64 KiB) and Go Ping', () => exchange(server!));
    test('TS client variants: fast start and WebSocket exchange packets', async () => {
      const s = server!;
      const tls = s.certFile !== undefined ? { tls: { ca: readFileSync(s.certFile) } } : {};
      const plain = await DerpClient.connect(s.url, { privateKey: generatePrivate(), ...tls });
      const fast = await DerpClient.connect(s.url, { privateKey: generatePrivate(), serverKey: plain.serverKey, ...tls });
      const ws = await DerpClient.connect(s.url, { privateKey: generatePrivate(), websocket: true, ...tls });
      try {
        fast.send(ws.publicKey, Buffer.from('fast→ws'));
        ws.send(fast.publicKey, new Uint8Array(40_000).fill(1));
        const a = await ws.next(5000);
        const b = await fast.next(5000);
        assert.ok(a.type === 'recvPacket' && Buffer.from(a.data).toString() === 'fast→ws');
        assert.ok(b.type === 'recvPacket' && b.data.length === 40_000);
        assert.equal(nodePublicText(fast.serverKey), nodePublicText(ws.serverKey));
      } finally {
        plain.close();
        fast.close();
        ws.close();
      }
    });
  });
}

const noGo = goDerper === null ? 'Go derper not installed' : false;
serverCase('Go derper, HTTP', startGoDerper, {}, noGo);
serverCase('Go derper, TLS (meta cert → Go client fast start)', startGoDerper, { tls: true }, noGo);
serverCase('wiremesh derper, HTTP', startWiremeshDerper, {}, false);
serverCase('wiremesh derper, TLS (manual self-signed IP cert)', startWiremeshDerper, { tls: true }, false);
