// The ACME life cycle of src/derper/acme.ts on a ManualClock (issuance itself is tested against pebble in
// test/lab/derper/acme.test.ts): a cached certificate is used, the renewal fires at 2/3 of its lifetime — also
// beyond Node's 24.8-day timer limit — and failures are retried with capped doubling delays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AcmeManager, placeholderCert, renewalTime, retryDelay } from '../../../src/derper/acme.ts';
import { ACME_RETRY_MAX_MS, ACME_RETRY_MIN_MS, MAX_TIMER_MS } from '../../../src/derper/ops-constants.ts';
import { basicConstraintsLeaf, buildCertificate, derToPem, subjectAltName } from '../../../src/derper/x509.ts';
import { silentLogger } from '../../../src/log.ts';
import { ManualClock } from '../../../src/time/clock.ts';

const DAY = 86_400_000;

test('renewalTime and retryDelay', () => {
  assert.equal(renewalTime(0, 90 * DAY), 60 * DAY);
  assert.equal(retryDelay(1), ACME_RETRY_MIN_MS);
  assert.equal(retryDelay(2), 2 * ACME_RETRY_MIN_MS);
  assert.equal(retryDelay(30), ACME_RETRY_MAX_MS);
});

test('IP hostnames are refused (Let\'s Encrypt issues DNS names; use manual mode)', () => {
  assert.throws(() => new AcmeManager({ hostname: '192.0.2.1', certDir: '/nonexistent', directoryUrl: 'x', caFile: null, email: null, onCert: () => {}, clock: new ManualClock(), logger: silentLogger }), { code: 'acme_ip_hostname' });
});

function cert90Days(host: string, nowMs: number): { chainPem: string; keyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const d = buildCertificate({ serial: randomBytes(8), commonName: host, notBeforeMs: nowMs, notAfterMs: nowMs + 90 * DAY, publicKey, privateKey, extensions: [basicConstraintsLeaf(), subjectAltName({ dns: [host] })] });
  return { chainPem: derToPem(d), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/** Lets real I/O (the HTTP request to the fake CA) run; timers are on the ManualClock and do not move. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 10));
};
async function until(cond: () => boolean, why: string): Promise<void> {
  const end = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > end) assert.fail(why);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('cached cert → renewal at day 60 (chained timers), then retries at 1, 2 min on failure', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-acme-unit-'));
  // A fake ACME directory that always answers 400: each attempt fails fast (no retry inside acme-client).
  let requests = 0;
  const fakeCa = http.createServer((_req, res) => {
    requests++;
    res.writeHead(400, { 'Content-Type': 'application/problem+json' });
    res.end('{"type":"urn:ietf:params:acme:error:malformed","detail":"test"}');
  });
  await new Promise<void>((r) => fakeCa.listen(0, '127.0.0.1', r));
  t.after(() => {
    fakeCa.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const t0 = Date.now();
  const clock = new ManualClock();
  const cached = cert90Days('derp.example.test', t0);
  writeFileSync(path.join(dir, 'derp.example.test.crt'), cached.chainPem);
  writeFileSync(path.join(dir, 'derp.example.test.key'), cached.keyPem);
  const acme = new AcmeManager({
    hostname: 'derp.example.test',
    certDir: dir,
    directoryUrl: `http://127.0.0.1:${(fakeCa.address() as AddressInfo).port}/dir`,
    caFile: null,
    email: null,
    onCert: () => assert.fail('no certificate can come from the failing CA'),
    clock,
    logger: silentLogger,
    wallNow: () => t0 + clock.now(),
  });
  const c = await acme.loadCached();
  assert.ok(c !== null, 'the cached certificate is used');
  acme.start();
  assert.ok(60 * DAY > MAX_TIMER_MS, 'the wait exceeds one Node timer');
  clock.advance(60 * DAY - 2000); // notBefore has 1 s granularity: stop short of day 60
  await settle();
  assert.equal(requests, 0, 'nothing before day 60');
  clock.advance(3000);
  await until(() => acme.failed === 1, 'renewal attempted (and failed) at day 60');
  assert.ok(requests >= 1);
  const after1 = requests;
  clock.advance(ACME_RETRY_MIN_MS - 1000);
  await settle();
  assert.equal(requests, after1, 'no retry before 1 min');
  clock.advance(1000);
  await until(() => acme.failed === 2, 'retried after 1 min');
  clock.advance(2 * ACME_RETRY_MIN_MS - 1000);
  await settle();
  assert.equal(acme.failed, 2, 'the second retry waits 2 min');
  clock.advance(1000);
  await until(() => acme.failed === 3, 'retried after 2 more min');
  acme.stop();
  clock.advance(DAY);
  await settle();
  assert.equal(acme.failed, 3, 'stopped: no more attempts');
});

test('handleChallenge answers only its path, and 404 for unknown tokens', () => {
  const acme = new AcmeManager({ hostname: 'derp.example.test', certDir: '/nonexistent', directoryUrl: 'x', caFile: null, email: null, onCert: () => {}, clock: new ManualClock(), logger: silentLogger });
  let status = 0;
  const res = { writeHead: (s: number) => { status = s; }, end: () => {} } as unknown as ServerResponse;
  const req = (url: string): IncomingMessage => Object.assign(new EventEmitter(), { url, method: 'GET', socket: { remoteAddress: '192.0.2.9' } }) as unknown as IncomingMessage;
  assert.equal(acme.handleChallenge(req('/generate_204'), res), false);
  assert.equal(acme.handleChallenge(req('/.well-known/acme-challenge/nope'), res), true);
  assert.equal(status, 404);
  assert.ok(placeholderCert('derp.example.test', Date.now()).chainPem.includes('BEGIN CERTIFICATE'));
});
