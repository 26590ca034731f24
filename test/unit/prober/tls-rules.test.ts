// The `tls` probe's certificate rules (spec/derp.md §18): key-id and CRL extraction from DER (openssl and derper
// fixtures), expiry windows, and a fast-check that arbitrary bytes only ever throw cert_der.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { certKeyIds } from '../../../src/prober/certinfo.ts';
import { certFacts, validateCerts, LE_CRL_REQUIRED_AFTER_MS, type CertFacts } from '../../../src/prober/tls.ts';
import { generateIpCert, generateMetaCert } from '../../../src/derper/x509.ts';
import { generatePrivate, publicFromPrivate } from '../../../src/types/key.ts';
import { returnsOrThrowsTyped } from '../typed-errors.ts';

const der = (file: string): Uint8Array => new X509Certificate(readFileSync(new URL(`./fixtures/${file}`, import.meta.url))).raw;
const DAY = 86_400_000;

test('certKeyIds reads SKID, AKID and CRL DP (openssl-made fixtures)', () => {
  const self = certKeyIds(der('selfsigned-localhost.pem'));
  assert.equal(self.subjectKeyId, 'c4d2f93db11b00d062ce9bf68ca50ff51cd17e05');
  assert.equal(self.authorityKeyId, self.subjectKeyId);
  assert.equal(self.hasCrlDistributionPoint, false);
  const leaf = certKeyIds(der('ca-signed-leaf-with-crl.pem'));
  assert.equal(leaf.subjectKeyId, '2f69cdf7a132cf039ebd36a7c26f79d4e053226e');
  assert.equal(leaf.authorityKeyId, '76968c8e011a0e38c704b2882511c40a4da22568');
  assert.equal(leaf.hasCrlDistributionPoint, true);
});

test('derper-generated certs (IP cert, meta cert) have no key ids: skipped as self-signed', () => {
  const ip = certKeyIds(generateIpCert('127.0.0.1', Date.now()).der);
  assert.deepEqual(ip, { subjectKeyId: '', authorityKeyId: '', hasCrlDistributionPoint: false });
  const meta = certKeyIds(generateMetaCert(publicFromPrivate(generatePrivate()), Date.now()).der);
  assert.equal(meta.subjectKeyId, meta.authorityKeyId);
});

test('certKeyIds: any byte string either parses or throws cert_der (never another error)', () => {
  const good = der('ca-signed-leaf-with-crl.pem');
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(good.length), (junk, cut) => {
    for (const input of [junk, good.subarray(0, cut), Uint8Array.from([...good.subarray(0, cut), ...junk])]) {
      returnsOrThrowsTyped(() => certKeyIds(input), 'cert_der');
    }
  }), { numRuns: 300 });
});

const base: CertFacts = {
  subject: 'CN=derp.example', issuer: 'O=Test CA', notBefore: 0, notAfter: 0, subjectKeyId: 'aa', authorityKeyId: 'bb', hasCrlDistributionPoint: true,
};

test('validateCerts: the 7-day expiry rule, NotBefore in the future, self-signed skip', () => {
  const now = Date.UTC(2026, 0, 1);
  const ok = { ...base, notBefore: now - DAY, notAfter: now + 30 * DAY };
  assert.deepEqual(validateCerts([ok], now), []);
  const soon = { ...ok, notAfter: now + 6 * DAY };
  assert.match(validateCerts([soon], now).join(), /one of the certs expires in 144h0m0s: CN=derp.example/);
  assert.deepEqual(validateCerts([{ ...ok, notAfter: now + 7 * DAY + 1 }], now), []);
  assert.match(validateCerts([{ ...ok, notBefore: now + DAY }], now).join(), /NotBefore in the future/);
  const expiredSelfSigned = { ...soon, subjectKeyId: 'cc', authorityKeyId: 'cc' };
  assert.deepEqual(validateCerts([ok, expiredSelfSigned], now), [], 'self-signed (SKID == AKID) is skipped');
  assert.deepEqual(validateCerts([{ ...soon, subjectKeyId: '', authorityKeyId: '' }], now), [], 'both empty counts as self-signed');
  assert.equal(validateCerts([ok, { ...soon, subject: 'CN=intermediate' }], now).length, 1, 'every cert of the chain is checked');
});

test("validateCerts: Let's Encrypt leaves issued after 2025-05-07 need a CRL distribution point", () => {
  const now = Date.UTC(2026, 0, 1);
  const le = { ...base, issuer: "C=US,O=Let's Encrypt,CN=R10", notBefore: LE_CRL_REQUIRED_AFTER_MS + DAY, notAfter: now + 60 * DAY, hasCrlDistributionPoint: false };
  assert.match(validateCerts([le], now).join(), /no CRL distribution point/);
  assert.deepEqual(validateCerts([{ ...le, hasCrlDistributionPoint: true }], now), []);
  assert.deepEqual(validateCerts([{ ...le, notBefore: LE_CRL_REQUIRED_AFTER_MS - DAY }], now), []);
});

test('certFacts reads dates and names from DER', () => {
  const f = certFacts(der('ca-signed-leaf-with-crl.pem'));
  assert.equal(f.subject, 'CN=derp.example');
  assert.match(f.issuer, /O=Test CA/);
  assert.ok(f.notAfter - f.notBefore > 3000 * DAY);
});
