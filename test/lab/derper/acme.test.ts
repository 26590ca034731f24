// `--certmode letsencrypt` against a real ACME server (issue #6 item 3): pebble + pebble-challtestsrv (DNS) in
// namespace "ca" (10.77.0.2), `wiremesh derper` in namespace "srv" (10.77.0.1), a veth between them. The derper
// name `derp.wiremesh.test` resolves (challtestsrv's default A answer) to 10.77.0.1, and pebble really validates
// HTTP-01 by fetching http://derp.wiremesh.test:80/.well-known/acme-challenge/<token> from the derper's port-80
// listener over the veth (no PEBBLE_VA_ALWAYS_VALID). Pebble's certificates live 24 s here
// (test/lab/acme/pebble-config.json), so the renewal at 2/3 of the lifetime happens within the test: the TLS
// listener then serves a new serial without a restart. Pebble's own HTTPS uses a self-signed IP cert made by
// the test, passed to derper with --acme-ca-file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateIpCert } from '../../../src/derper/x509.ts';
import { goBinary, isRoot, which } from '../../support/gobin.ts';
import { Lab } from '../../support/netns.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const HOST = 'derp.wiremesh.test';
const SRV = '10.77.0.1';
const CA = '10.77.0.2';
const VALIDITY_S = 24;

const pebble = goBinary('pebble');
const chall = goBinary('pebble-challtestsrv');
const skip = !isRoot() ? 'needs root (network namespaces)' : pebble === null || chall === null ? 'needs pebble and pebble-challtestsrv (scripts/install-lab-deps.sh)' : which('openssl') === null ? 'needs openssl' : false;

interface LogLine { level: string; msg: string; serial?: string; remote?: string }

test('ACME issuance from pebble with real HTTP-01, then renewal served without a restart', { skip, timeout: 120_000 }, async (t) => {
  const lab = new Lab('ac');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-acme-'));
  t.after(() => {
    lab.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  const srv = lab.netns('srv');
  const ca = lab.netns('ca');
  lab.link(srv, 'eth0', `${SRV}/24`, ca, 'eth0', `${CA}/24`);

  // Pebble's HTTPS certificate: self-signed for its IP; derper trusts it through --acme-ca-file.
  const pc = generateIpCert(CA, Date.now());
  writeFileSync(path.join(dir, 'pebble.crt'), pc.certPem);
  writeFileSync(path.join(dir, 'pebble.key'), pc.keyPem);
  const cfg = readFileSync(path.join(ROOT, 'test/lab/acme/pebble-config.json'), 'utf8')
    .replaceAll('@CA_ADDR@', CA)
    .replace('@CERT@', path.join(dir, 'pebble.crt'))
    .replace('@KEY@', path.join(dir, 'pebble.key'))
    .replace('@VALIDITY_SECONDS@', String(VALIDITY_S));
  writeFileSync(path.join(dir, 'pebble.json'), cfg);

  const dns = lab.spawn(ca, chall!, ['-defaultIPv4', SRV, '-defaultIPv6', '', '-dnsserver', `${CA}:8053`, '-management', `${CA}:8055`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-doh', '']);
  dns.stdout?.resume();
  dns.stderr?.resume();
  const peb = lab.spawn(ca, pebble!, ['-config', path.join(dir, 'pebble.json'), '-dnsserver', `${CA}:8053`], {
    env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
  });
  let pebLog = '';
  peb.stdout?.on('data', (d: Buffer) => (pebLog += d.toString()));
  peb.stderr?.on('data', (d: Buffer) => (pebLog += d.toString()));
  await waitUntil(() => /Listening on/.test(pebLog), 15_000, () => `pebble did not start: ${pebLog}`);

  const derper = lab.spawn(srv, process.execPath, [
    path.join(ROOT, 'bin/wiremesh.js'), 'derper', '-a', `${SRV}:443`, '--http-port', '80', '--stun-port', '0',
    '--hostname', HOST, '--certdir', path.join(dir, 'certs'), '-c', path.join(dir, 'derper.key'),
    '--acme-directory-url', `https://${CA}:14000/dir`, '--acme-ca-file', path.join(dir, 'pebble.crt'),
    '--acme-email', 'ops@wiremesh.test', '--log-format', 'json', '--verbose',
  ]);
  let derperErr = '';
  derper.stderr?.on('data', (d: Buffer) => (derperErr += d.toString()));
  const logs = (): LogLine[] => derperErr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
  const issued = (): LogLine[] => logs().filter((l) => l.msg === 'obtained ACME certificate');

  await waitUntil(() => issued().length >= 1, 40_000, () => `no certificate issued:\n${derperErr}\n--- pebble:\n${pebLog}`);
  const first = issued()[0]!;
  // Pebble really fetched the HTTP-01 token from our port-80 listener, over the veth.
  assert.ok(logs().some((l) => l.msg === 'answered ACME HTTP-01 challenge' && (l.remote ?? '').endsWith(CA)), 'challenge answered to pebble at 10.77.0.2');
  const served1 = servedCert(lab, srv);
  assert.match(served1.issuer, /Pebble/i, `issued by pebble: ${served1.issuer}`);
  assert.equal(served1.serial, normSerial(first.serial!));
  assert.equal(served1.san, HOST);
  // The cached files are where manual mode would read them.
  assert.match(readFileSync(path.join(dir, 'certs', `${HOST}.crt`), 'utf8'), /BEGIN CERTIFICATE/);

  // Renewal at 2/3 of 24 s: a second certificate, served on the same listener (the process never restarted).
  await waitUntil(() => issued().length >= 2, 40_000, () => `no renewal:\n${derperErr}`);
  const second = issued()[1]!;
  assert.notEqual(second.serial, first.serial);
  await waitUntil(() => servedCert(lab, srv).serial === normSerial(second.serial!), 5000, () => 'renewed cert not served');
  assert.equal(derper.exitCode, null, 'derper still running');
});

const normSerial = (s: string): string => s.replace(/^0+/, '').toUpperCase();

function servedCert(lab: Lab, ns: string): { serial: string; issuer: string; san: string } {
  const out = lab.exec(ns, 'sh', ['-c', `openssl s_client -connect ${SRV}:443 -servername ${HOST} </dev/null 2>/dev/null | openssl x509 -noout -serial -issuer -ext subjectAltName`], { allowFail: true });
  const get = (k: string): string => new RegExp(`^${k}\\s*=\\s*(.*)$`, 'm').exec(out)?.[1]?.trim() ?? '';
  return { serial: normSerial(get('serial')), issuer: get('issuer'), san: /DNS:([^\s,]+)/.exec(out)?.[1] ?? '' };
}

async function waitUntil(cond: () => boolean, ms: number, why: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(why());
    await new Promise((r) => setTimeout(r, 200));
  }
}
