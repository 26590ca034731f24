// End to end through a whole in-process derper: DERP clients over TLS (fast start and 101), over WebSocket and
// plain HTTP relay a packet; --verify-client-url refuses a client; varz counts the traffic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DerpClient } from '../../../src/derp/client.ts';
import { startDerper } from '../../../src/derper/derper.ts';
import { generatePrivate, publicFromPrivate } from '../../../src/types/key.ts';
import { testDerperConfig } from './config.ts';

const config = testDerperConfig;


async function recvPacket(c: DerpClient): Promise<{ source: Uint8Array; data: Uint8Array }> {
  for (;;) {
    const m = await c.next(5000);
    if (m.type === 'recvPacket') return m;
  }
}

test('TLS derper: fast-start client and WebSocket client exchange packets', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'derper-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const d = await startDerper(config({ tls: { hostname: '127.0.0.1', certDir: dir } }));
  t.after(() => d.close());
  const ca = readFileSync(path.join(dir, '127.0.0.1.crt'), 'utf8');
  const url = `https://127.0.0.1:${d.httpPort}/derp`;
  const ka = generatePrivate();
  const kb = generatePrivate();
  const a = await DerpClient.connect(url, { privateKey: ka, serverKey: d.publicKey, tls: { ca, servername: '127.0.0.1' } });
  t.after(() => a.close());
  const b = await DerpClient.connect(url, { privateKey: kb, websocket: true, tls: { ca, servername: '127.0.0.1' } });
  t.after(() => b.close());
  a.send(publicFromPrivate(kb), Buffer.from('hello over tls'));
  const got = await recvPacket(b);
  assert.deepEqual(got.source, publicFromPrivate(ka));
  assert.equal(Buffer.from(got.data).toString(), 'hello over tls');
  b.send(publicFromPrivate(ka), Buffer.from('and back'));
  assert.equal(Buffer.from((await recvPacket(a)).data).toString(), 'and back');
  assert.ok((await a.ping()) >= 0);
  const varz = await new Promise<string>((resolve, reject) => {
    // /debug/ needs loopback; the main listener is TLS here.
    import('node:https').then(({ get }) => get({ host: '127.0.0.1', port: d.httpPort, path: '/debug/varz', ca, servername: '127.0.0.1' }, (res) => {
      let s = '';
      res.on('data', (c: Buffer) => (s += c.toString()));
      res.on('end', () => resolve(s));
    }).on('error', reject), reject);
  });
  assert.match(varz, /^derp_packets_received [1-9]/m);
  assert.match(varz, /^derp_websocket_accepts 1$/m);
  assert.match(varz, /^derper_tls_request_version\{version="TLSv1\.3"\} [1-9]/m);
});

test('--verify-client-url: refused clients never get ServerInfo; allowed ones relay', async (t) => {
  const refused = new Set<string>();
  const admit = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const { NodePublic } = JSON.parse(body) as { NodePublic: string };
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ Allow: !refused.has(NodePublic) }));
    });
  });
  await new Promise<void>((r) => admit.listen(0, '127.0.0.1', r));
  t.after(() => admit.close());
  const d = await startDerper(config({ verifyClientUrl: `http://127.0.0.1:${(admit.address() as AddressInfo).port}/`, verifyClientUrlFailOpen: false }));
  t.after(() => d.close());
  const url = `http://127.0.0.1:${d.httpPort}/derp`;
  const bad = generatePrivate();
  refused.add(`nodekey:${Buffer.from(publicFromPrivate(bad)).toString('hex')}`);
  await assert.rejects(DerpClient.connect(url, { privateKey: bad, connectTimeoutMs: 3000 }));
  const ok = await DerpClient.connect(url, { privateKey: generatePrivate() });
  t.after(() => ok.close());
  assert.ok((await ok.ping()) >= 0);
});
