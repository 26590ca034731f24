// Manual cert mode helpers (spec/derp.md §16.1): file stems, the SNI rule, the DERPNode pin line, the served
// chain order, and start-up refusals for unusable files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { certFileStem, derpNodeJson, loadManualCert, sniAllowed, tlsServerOptions } from '../../../src/derper/tls.ts';
import { certNamePin, generateIpCert, generateMetaCert } from '../../../src/derper/x509.ts';
import { silentLogger } from '../../../src/log.ts';
import { generatePrivate, publicFromPrivate } from '../../../src/types/key.ts';

test('certFileStem strips everything outside [A-Za-z0-9.-]', () => {
  const rows: Array<[string, string]> = [
    ['derp.example.com', 'derp.example.com'],
    ['127.0.0.1', '127.0.0.1'],
    ['::1', '1'],
    ['../../etc/passwd', '....etcpasswd'],
    ['a_b c/d', 'abcd'],
  ];
  for (const [host, want] of rows) assert.equal(certFileStem(host), want, host);
});

test('sniAllowed: DNS hostnames need the exact SNI (case-insensitive); IP hostnames take any', () => {
  const rows: Array<[string, string | undefined | false, boolean]> = [
    ['derp.example.com', 'derp.example.com', true],
    ['derp.example.com', 'DERP.Example.com', true],
    ['derp.example.com', 'evil.example.com', false],
    ['derp.example.com', undefined, false],
    ['derp.example.com', false, false],
    ['127.0.0.1', undefined, true],
    ['127.0.0.1', 'anything', true],
    ['2001:db8::1', 'x', true],
  ];
  for (const [host, sni, want] of rows) assert.equal(sniAllowed(host, sni), want, `${host} ${String(sni)}`);
});

test('tlsServerOptions: TLS ≥ 1.2, ALPN http/1.1, chain = leaf then meta cert', () => {
  const leaf = generateIpCert('127.0.0.1', Date.now());
  const meta = generateMetaCert(publicFromPrivate(generatePrivate()), Date.now());
  const o = tlsServerOptions({ chainPem: leaf.certPem, keyPem: leaf.keyPem }, meta.certPem, '127.0.0.1');
  assert.equal(o.minVersion, 'TLSv1.2');
  assert.deepEqual(o.ALPNProtocols, ['http/1.1']);
  const pems = String(o.cert).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  assert.equal(pems.length, 2);
  assert.equal(new X509Certificate(pems[0]!).subject, 'CN=127.0.0.1');
  assert.match(new X509Certificate(pems[1]!).subject, /^CN=derpkey[0-9a-f]{64}$/);
  // The chain file may lack a final newline: the meta cert must still start on its own line.
  const o2 = tlsServerOptions({ chainPem: leaf.certPem.trimEnd(), keyPem: leaf.keyPem }, meta.certPem, '127.0.0.1');
  assert.equal((String(o2.cert).match(/-----BEGIN CERTIFICATE-----/g) ?? []).length, 2);
  assert.doesNotMatch(String(o2.cert), /-----END CERTIFICATE----------BEGIN/);
});

test('derpNodeJson: the DERPNode line derper logs', () => {
  const g = generateIpCert('192.0.2.1', Date.now());
  assert.equal(derpNodeJson('192.0.2.1', g.der), `{"Name":"custom","RegionID":900,"HostName":"192.0.2.1","CertName":"${certNamePin(g.der)}"}`);
});

test('loadManualCert: refuses garbage files and mismatched keys', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'derper-tlsload-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const load = (hostname: string) => loadManualCert({ certDir: dir, hostname, nowMs: Date.now(), logger: silentLogger });
  writeFileSync(path.join(dir, '192.0.2.1.crt'), 'not a cert');
  writeFileSync(path.join(dir, '192.0.2.1.key'), 'not a key');
  await assert.rejects(load('192.0.2.1'), { code: 'tls_cert_parse' });
  const a = generateIpCert('192.0.2.2', Date.now());
  const b = generateIpCert('192.0.2.2', Date.now());
  writeFileSync(path.join(dir, '192.0.2.2.crt'), a.certPem);
  writeFileSync(path.join(dir, '192.0.2.2.key'), b.keyPem);
  await assert.rejects(load('192.0.2.2'), { code: 'tls_key_mismatch' });
  await assert.rejects(load('___'), { code: 'tls_bad_hostname' });
  const generated = await load('198.51.100.3');
  assert.equal(generated.generated, true);
  const reloaded = await load('198.51.100.3');
  assert.equal(reloaded.generated, false);
  assert.equal(reloaded.derpNodeJson, generated.derpNodeJson);
});
