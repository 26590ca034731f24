// --verify-client-url admission (spec/derp.md §13, checklist 18) and the /bootstrap-dns cache (§16.3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseAdmitResponse, urlVerifier } from '../../../src/derper/admission.ts';
import { BootstrapDns } from '../../../src/derper/bootstrap-dns.ts';
import { silentLogger } from '../../../src/log.ts';
import { ManualClock } from '../../../src/time/clock.ts';
import { generatePrivate, publicFromPrivate, toHex } from '../../../src/types/key.ts';

test('parseAdmitResponse: only {"Allow":true} admits', () => {
  assert.equal(parseAdmitResponse('{"Allow":true}'), true);
  assert.equal(parseAdmitResponse('{"allow":true,"x":1}'), true);
  for (const body of ['{"Allow":false}', '{"Allow":"true"}', '{}', 'true', '[]', 'null', '', '{"Allow":true']) {
    assert.equal(parseAdmitResponse(body), false, body);
  }
});

test('urlVerifier: request shape, allow, deny, non-200, oversize, fail-open/closed', async (t) => {
  const seen: Array<{ method: string; type: string; body: unknown }> = [];
  let reply: { status: number; body: string } = { status: 200, body: '{"Allow":true}' };
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', type: req.headers['content-type'] ?? '', body: JSON.parse(Buffer.concat(chunks).toString()) });
      res.writeHead(reply.status);
      res.end(reply.body);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => srv.close());
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/admit`;
  const key = publicFromPrivate(generatePrivate());
  const verify = urlVerifier({ url, failOpen: false, logger: silentLogger });

  assert.equal(await verify({ key, remoteAddress: '::ffff:192.0.2.9' }), true);
  assert.deepEqual(seen[0], { method: 'POST', type: 'application/json', body: { NodePublic: `nodekey:${toHex(key)}`, Source: '192.0.2.9' } });
  reply = { status: 200, body: '{"Allow":false}' };
  assert.equal(await verify({ key, remoteAddress: '127.0.0.1' }), false);
  reply = { status: 403, body: '{"Allow":true}' };
  assert.equal(await verify({ key, remoteAddress: '127.0.0.1' }), false, 'non-200 refuses');
  reply = { status: 200, body: '{"Allow":true' + ' '.repeat(5000) + '}' };
  assert.equal(await verify({ key, remoteAddress: '127.0.0.1' }), false, 'only the first 4 KiB are decoded');

  // Unreachable: allowed only with fail-open.
  const closed = http.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const deadUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/`;
  await new Promise<void>((r) => closed.close(() => r()));
  assert.equal(await urlVerifier({ url: deadUrl, failOpen: true, logger: silentLogger })({ key, remoteAddress: '127.0.0.1' }), true);
  assert.equal(await urlVerifier({ url: deadUrl, failOpen: false, logger: silentLogger })({ key, remoteAddress: '127.0.0.1' }), false);
});

test('BootstrapDns: no names → empty body (as Go) and no lookups; names → tab-indented map, refreshed every 10 min', async () => {
  let lookups = 0;
  const none = new BootstrapDns({ names: [], logger: silentLogger, resolve: async () => { lookups++; return []; } });
  none.start(new ManualClock());
  assert.equal(none.body(null), '');
  assert.equal(lookups, 0);

  let generation = 0;
  const dns = new BootstrapDns({
    names: ['a.example', 'b.example', 'fail.example'],
    logger: silentLogger,
    resolve: async (name) => {
      lookups++;
      if (name === 'fail.example') throw new Error('NXDOMAIN');
      return name === 'a.example' ? [`192.0.2.${generation}`, '2001:db8::1'] : ['198.51.100.1'];
    },
  });
  const clock = new ManualClock();
  dns.start(clock);
  await new Promise((r) => setImmediate(r));
  const first = JSON.parse(dns.body(null)) as Record<string, string[]>;
  assert.deepEqual(Object.keys(first).sort(), ['a.example', 'b.example']);
  assert.deepEqual([...first['a.example']!].sort(), ['192.0.2.0', '2001:db8::1']);
  assert.match(dns.body(null), /^\{\n\t"/);
  generation = 1;
  clock.advance(10 * 60 * 1000);
  await new Promise((r) => setImmediate(r));
  assert.ok((JSON.parse(dns.body(null)) as Record<string, string[]>)['a.example']!.includes('192.0.2.1'));
  assert.equal(lookups, 6);
  assert.equal(dns.requests, 3);
  dns.stop();
});
