// Manual cert reload without a restart (src/derper/cert-reload.ts): a derper in-process on 127.0.0.1:0 with an
// IP cert; the files are replaced and a new TLS client sees the new certificate's serial while an established
// DERP connection keeps working; an invalid pair is refused and the old certificate stays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { DerpClient } from '../../../src/derp/client.ts';
import { checkCertPair } from '../../../src/derper/cert-reload.ts';
import { startDerper, type DerperConfig } from '../../../src/derper/derper.ts';
import { generateIpCert } from '../../../src/derper/x509.ts';
import { generatePrivate } from '../../../src/types/key.ts';
import { testDerperConfig } from './config.ts';

const config = (certDir: string): DerperConfig => testDerperConfig({ tls: { hostname: '127.0.0.1', certDir } });


/** Writes the pair the way certbot/cp would replace them: new files renamed over the old ones. */
function install(dir: string, certPem: string, keyPem: string): void {
  writeFileSync(path.join(dir, 'tmp.key'), keyPem);
  writeFileSync(path.join(dir, 'tmp.crt'), certPem);
  renameSync(path.join(dir, 'tmp.key'), path.join(dir, '127.0.0.1.key'));
  renameSync(path.join(dir, 'tmp.crt'), path.join(dir, '127.0.0.1.crt'));
}

function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolve(serial.toUpperCase());
    });
    s.on('error', reject);
  });
}

async function waitFor(fn: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

test('checkCertPair refuses a wrong hostname and a mismatched key', () => {
  const a = generateIpCert('127.0.0.1', Date.now());
  const b = generateIpCert('127.0.0.1', Date.now());
  assert.equal(checkCertPair({ chainPem: a.certPem, keyPem: a.keyPem }, '127.0.0.1').leaf.subject, 'CN=127.0.0.1');
  assert.throws(() => checkCertPair({ chainPem: a.certPem, keyPem: a.keyPem }, '10.0.0.1'), { code: 'tls_cert_hostname' });
  assert.throws(() => checkCertPair({ chainPem: a.certPem, keyPem: b.keyPem }, '127.0.0.1'), { code: 'tls_key_mismatch' });
  assert.throws(() => checkCertPair({ chainPem: 'junk', keyPem: a.keyPem }, '127.0.0.1'), { code: 'tls_cert_parse' });
});

test('replacing the cert files swaps the served certificate without a restart', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-reload-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const first = generateIpCert('127.0.0.1', Date.now(), Uint8Array.of(0x11, 0x11));
  install(dir, first.certPem, first.keyPem);
  const d = await startDerper(config(dir));
  t.after(() => d.close());
  assert.equal(await servedSerial(d.httpPort), new X509Certificate(first.certPem).serialNumber);

  // An established DERP connection over the old certificate.
  const c = await DerpClient.connect(`https://127.0.0.1:${d.httpPort}/derp`, { privateKey: generatePrivate(), tls: { insecure: true } });
  t.after(() => c.close());
  assert.ok((await c.ping()) >= 0);

  const second = generateIpCert('127.0.0.1', Date.now(), Uint8Array.of(0x22, 0x22, 0x22));
  const want = new X509Certificate(second.certPem).serialNumber;
  install(dir, second.certPem, second.keyPem);
  assert.ok(await waitFor(async () => (await servedSerial(d.httpPort)) === want, 5000), 'new serial served within 5 s');
  // The old connection was not dropped.
  assert.ok((await c.ping()) >= 0);

  // A broken pair (key of another cert) is refused: the second certificate stays.
  const third = generateIpCert('127.0.0.1', Date.now(), Uint8Array.of(0x33));
  install(dir, third.certPem, first.keyPem);
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(await servedSerial(d.httpPort), want);
});
