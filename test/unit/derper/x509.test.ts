// Meta cert and IP cert structure (spec/derp.md §3.3, §16.1): built by our DER writer, parsed back by
// node:crypto X509Certificate and by `openssl x509 -text`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHash, generateKeyPairSync } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import * as der from '../../../src/derper/asn1.ts';
import {
  buildCertificate,
  certNamePin,
  generateIpCert,
  generateMetaCert,
  ipBytes,
  basicConstraintsLeaf,
  subjectAltName,
} from '../../../src/derper/x509.ts';
import { generatePrivate, publicFromPrivate, toHex, parseUntypedPublic } from '../../../src/types/key.ts';
import { which } from '../../support/gobin.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const DAY = 24 * 3600 * 1000;
const NOW = Date.UTC(2026, 10, 22, 3, 0, 0);

test('DER primitives: golden encodings', () => {
  assert.equal(hex(der.oid('2.5.4.3')), '0603550403');
  assert.equal(hex(der.oid('1.2.840.10045.4.3.2')), '06082a8648ce3d040302');
  assert.equal(hex(der.oid('1.3.101.112')), '06032b6570');
  assert.equal(hex(der.smallInteger(2)), '020102');
  assert.equal(hex(der.smallInteger(0)), '020100');
  assert.equal(hex(der.smallInteger(128)), '02020080');
  assert.equal(hex(der.unsignedInteger(Uint8Array.of(0, 0, 0xff))), '020200ff');
  assert.equal(hex(der.derLength(127)), '7f');
  assert.equal(hex(der.derLength(128)), '8180');
  assert.equal(hex(der.derLength(65536)), '83010000');
  assert.equal(hex(der.time(Date.UTC(2026, 0, 2, 3, 4, 5))), '170d3236303130323033303430355a'); // UTCTime 260102030405Z
  assert.equal(hex(der.time(Date.UTC(2050, 0, 1))).slice(0, 4), '180f'); // GeneralizedTime from 2050
  assert.equal(hex(der.directoryString('a b')), '1303612062');
  assert.equal(hex(der.directoryString('ü')), '0c02c3bc');
  assert.throws(() => der.oid('3.1'), { code: 'asn1_oid' });
  assert.throws(() => der.derLength(-1), { code: 'asn1_length' });
});

test('DER length: property — decoding the header gives back the length', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (n) => {
      const b = der.derLength(n);
      if (n < 128) return b.length === 1 && b[0] === n;
      const count = b[0]! & 0x7f;
      let v = 0;
      for (let i = 1; i <= count; i++) v = v * 256 + b[i]!;
      return b[1] !== 0 && v === n && count === b.length - 1;
    }),
  );
});

test('DER INTEGER: property — minimal, positive, value preserved', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 24 }), (mag) => {
      const enc = der.unsignedInteger(mag);
      const body = enc.subarray(2);
      const value = BigInt('0x' + (hex(mag) || '0'));
      const decoded = BigInt('0x' + hex(body));
      const minimal = body.length === 1 || !(body[0] === 0 && (body[1]! & 0x80) === 0);
      return enc[0] === 2 && enc[1] === body.length && (body[0]! & 0x80) === 0 && decoded === value && minimal;
    }),
  );
});

test('ipBytes: v4, v6, compressed and v4-embedded forms', () => {
  assert.equal(hex(ipBytes('127.0.0.1')), '7f000001');
  assert.equal(hex(ipBytes('::1')), '00000000000000000000000000000001');
  assert.equal(hex(ipBytes('2001:db8::1')), '20010db8000000000000000000000001');
  assert.equal(hex(ipBytes('fe80::1:2')), 'fe800000000000000000000000010002');
  assert.equal(hex(ipBytes('::ffff:1.2.3.4')), '00000000000000000000ffff01020304');
  assert.equal(hex(ipBytes('1:2:3:4:5:6:7:8')), '00010002000300040005000600070008');
  assert.throws(() => ipBytes('derp.example'), { code: 'x509_bad_ip' });
});

test('meta cert: CN derpkey<hex>, serial 2, ±30 days, Ed25519 self-signed, not a CA', () => {
  const pub = publicFromPrivate(generatePrivate());
  const meta = generateMetaCert(pub, NOW);
  const x = new X509Certificate(meta.certPem);
  assert.equal(x.subject, `CN=derpkey${toHex(pub)}`);
  assert.equal(x.issuer, x.subject);
  assert.equal(x.serialNumber, '02');
  assert.equal(Date.parse(x.validFrom), NOW - 30 * DAY);
  assert.equal(Date.parse(x.validTo), NOW + 30 * DAY);
  assert.equal(x.ca, false);
  assert.equal(x.publicKey.asymmetricKeyType, 'ed25519');
  assert.ok(x.verify(x.publicKey), 'self-signature verifies');
  assert.deepEqual(new Uint8Array(x.raw), meta.der);
  // What a Go client does with it (§3.3): CN after the prefix parses as the server key.
  const cn = x.subject.slice('CN=derpkey'.length);
  assert.deepEqual(parseUntypedPublic(cn), pub);
});

test('meta certs for different keys differ only where they should', () => {
  const a = generateMetaCert(publicFromPrivate(generatePrivate()), NOW);
  const b = generateMetaCert(publicFromPrivate(generatePrivate()), NOW);
  assert.notEqual(new X509Certificate(a.certPem).subject, new X509Certificate(b.certPem).subject);
});

test('IP cert: ECDSA P-256, CN = IP, IP SAN, one year, serverAuth, verifies', () => {
  const g = generateIpCert('127.0.0.1', NOW);
  const x = new X509Certificate(g.certPem);
  assert.equal(x.subject, 'CN=127.0.0.1');
  assert.equal(x.subjectAltName, 'IP Address:127.0.0.1');
  assert.equal(x.checkIP('127.0.0.1'), '127.0.0.1');
  assert.equal(x.checkIP('127.0.0.2'), undefined);
  assert.equal(Date.parse(x.validFrom), NOW);
  assert.equal(Date.parse(x.validTo), NOW + 365 * DAY);
  assert.equal(x.publicKey.asymmetricKeyType, 'ec');
  assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  assert.ok(x.verify(x.publicKey));
  assert.ok(x.checkPrivateKey(g.privateKey));
  assert.match(x.serialNumber, /^[0-9A-F]+$/);
  assert.equal(certNamePin(g.der), 'sha256-raw:' + createHash('sha256').update(g.der).digest('hex'));
  const v6 = new X509Certificate(generateIpCert('2001:db8::7', NOW).certPem);
  assert.equal(v6.checkIP('2001:db8::7'), '2001:db8::7');
});

test('DNS SAN certificate (used for SNI tests) validates for its host', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const d = buildCertificate({
    serial: Uint8Array.of(9),
    commonName: 'derp.example.test',
    notBeforeMs: NOW,
    notAfterMs: NOW + DAY,
    publicKey,
    privateKey,
    extensions: [basicConstraintsLeaf(), subjectAltName({ dns: ['derp.example.test'] })],
  });
  const x = new X509Certificate(Buffer.from(d));
  assert.equal(x.checkHost('derp.example.test'), 'derp.example.test');
  assert.equal(x.checkHost('other.example.test'), undefined);
});

test('openssl x509 -text reads both certificates', { skip: which('openssl') === null ? 'openssl not installed' : false }, () => {
  const pub = publicFromPrivate(generatePrivate());
  const meta = execFileSync('openssl', ['x509', '-noout', '-text'], { input: generateMetaCert(pub, Date.now()).certPem, encoding: 'utf8' });
  assert.match(meta, /Serial Number: 2 \(0x2\)/);
  assert.match(meta, new RegExp(`Subject: CN ?= ?derpkey${toHex(pub)}`));
  assert.match(meta, /Signature Algorithm: ED25519/i);
  assert.match(meta, /Basic Constraints: critical\s+CA:FALSE/);
  const ipc = execFileSync('openssl', ['x509', '-noout', '-text'], { input: generateIpCert('192.0.2.1', Date.now()).certPem, encoding: 'utf8' });
  assert.match(ipc, /Signature Algorithm: ecdsa-with-SHA256/);
  assert.match(ipc, /IP Address:192\.0\.2\.1/);
  assert.match(ipc, /TLS Web Server Authentication/);
  assert.match(ipc, /NIST CURVE: P-256|prime256v1/);
});
