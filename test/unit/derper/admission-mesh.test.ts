/**
 * `--verify-client-url` admission beyond admission.test.ts (spec/derp.md §13): the 5 s timeout under fail-open and
 * fail-closed, mesh peers exempt end to end (never sent to the controller), and our fail-closed default.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { parseDerperFlags } from '../../../src/cli/derper.ts';
import { DerpClient } from '../../../src/derp/client.ts';
import { urlVerifier } from '../../../src/derper/admission.ts';
import { VERIFY_CLIENT_TIMEOUT_MS } from '../../../src/derper/constants.ts';
import { startDerper, type DerperConfig } from '../../../src/derper/derper.ts';
import { silentLogger } from '../../../src/log.ts';
import { generatePrivate, publicFromPrivate } from '../../../src/types/key.ts';

const MESH_KEY = Uint8Array.from({ length: 32 }, (_, i) => 200 - i);

function config(over: Partial<DerperConfig> = {}): DerperConfig {
  return {
    host: '127.0.0.1', port: 0, tls: null, httpPort: -1, stunPort: null, derp: true, privateKey: generatePrivate(), meshKey: null,
    home: '', hostname: '127.0.0.1', bootstrapDnsNames: [], verifyClientUrl: '', verifyClientUrlFailOpen: false,
    tcpWriteTimeoutMs: 2000, tcpKeepAliveMs: 0, ...over,
  };
}

async function listen(srv: http.Server): Promise<string> {
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}/admit`;
}

test('admission controller that never answers: refused after 5 s when fail-closed, admitted when fail-open', { timeout: 20_000 }, async (t) => {
  const hung: http.ServerResponse[] = [];
  const srv = http.createServer((_req, res) => { hung.push(res); });
  const url = await listen(srv);
  t.after(() => {
    for (const r of hung) r.destroy();
    srv.closeAllConnections();
    srv.close();
  });
  const key = publicFromPrivate(generatePrivate());
  const start = Date.now();
  const [closed, open] = await Promise.all([
    urlVerifier({ url, failOpen: false, logger: silentLogger })({ key, remoteAddress: '127.0.0.1' }),
    urlVerifier({ url, failOpen: true, logger: silentLogger })({ key, remoteAddress: '127.0.0.1' }),
  ]);
  const took = Date.now() - start;
  assert.equal(closed, false);
  assert.equal(open, true);
  assert.ok(took >= VERIFY_CLIENT_TIMEOUT_MS - 50 && took < VERIFY_CLIENT_TIMEOUT_MS + 3000, `timed out after ${took} ms`);
});

test('mesh peers skip admission: a deny-all controller refuses clients but never sees the mesh peer', async (t) => {
  const asked: string[] = [];
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      asked.push((JSON.parse(body) as { NodePublic: string }).NodePublic);
      res.writeHead(200).end('{"Allow":false}');
    });
  });
  const admitUrl = await listen(srv);
  const d = await startDerper(config({ meshKey: MESH_KEY, verifyClientUrl: admitUrl }));
  t.after(async () => {
    await d.close();
    srv.close();
  });
  const url = `http://127.0.0.1:${d.httpPort}/derp`;
  await assert.rejects(DerpClient.connect(url, { privateKey: generatePrivate(), connectTimeoutMs: 3000 }));
  assert.equal(asked.length, 1);
  const mesh = await DerpClient.connect(url, { privateKey: generatePrivate(), meshKey: MESH_KEY });
  t.after(() => mesh.close());
  mesh.watchConns();
  const present = await mesh.next(3000);
  assert.equal(present.type, 'peerPresent', 'a mesh peer may WatchConns');
  assert.equal(asked.length, 1, 'the mesh peer was not sent to the admission controller');
});

test('--verify-client-url-fail-open defaults to false (fail-closed; Go defaults to true)', () => {
  assert.equal(parseDerperFlags([]).verifyClientUrlFailOpen, false);
  assert.equal(parseDerperFlags(['-verify-client-url-fail-open']).verifyClientUrlFailOpen, true);
  assert.equal(parseDerperFlags(['--verify-client-url-fail-open=false']).verifyClientUrlFailOpen, false);
});
