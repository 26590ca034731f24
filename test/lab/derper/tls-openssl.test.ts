// Interop: an independent TLS client (OpenSSL's s_client) sees wiremesh derper's served chain in manual cert
// mode: the generated IP cert first, then the meta cert `CN = derpkey<hex>` (spec/derp.md §3.3, §16.1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { which } from '../../support/gobin.ts';

const BIN = path.resolve(import.meta.dirname, '../../../bin/wiremesh.js');
const openssl = which('openssl');

test('openssl s_client -showcerts shows 2 certs, the second CN derpkey…', { skip: openssl === null ? 'openssl not installed' : false, timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'derper-lab-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const child = spawn(process.execPath, [BIN, 'derper', '-a', '127.0.0.1:0', '-certmode', 'manual', '-hostname', '127.0.0.1', '-certdir', dir, '-c', path.join(dir, 'derper.key'), '-http-port', '-1', '-stun=false'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /derper: listening https=127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`derper exited ${code}: ${stderr}`)));
  });
  const pin = /"CertName":"(sha256-raw:[0-9a-f]{64})"/.exec(stderr);
  assert.ok(pin, 'the DERPNode JSON with the sha256-raw pin is logged');

  for (const version of ['-tls1_3', '-tls1_2']) {
    const { stdout } = await promisify(execFile)(openssl!, ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', '127.0.0.1', '-showcerts', version, '-alpn', 'http/1.1'], { timeout: 20_000, encoding: 'utf8' }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
    const certs = stdout.match(/-----BEGIN CERTIFICATE-----/g) ?? [];
    assert.equal(certs.length, 2, `${version}: two certificates in the chain\n${stdout}`);
    assert.match(stdout, /^ 0 s: ?CN ?= ?127\.0\.0\.1$/m, version);
    assert.match(stdout, /^ 1 s: ?CN ?= ?derpkey[0-9a-f]{64}$/m, version);
    assert.match(stdout, /ALPN protocol: http\/1\.1/, version);
    assert.match(stdout, version === '-tls1_3' ? /TLSv1\.3/ : /TLSv1\.2/, version);
  }
});
