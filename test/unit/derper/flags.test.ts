// derper flag handling (spec/derp.md §16.1): Go-style dashes normalised for commander, Go durations, -a
// addresses, defaults, refused not-yet-supported flags, and the dev/TLS/key-file semantics of configFromFlags.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { normalizeGoFlags, parseGoDuration, parseListenAddr } from '../../../src/derper/flags.ts';
import { FLAG_NAMES, configFromFlags, defaultCertDir, parseDerperFlags } from '../../../src/cli/derper.ts';
import { silentLogger } from '../../../src/log.ts';

test('normalizeGoFlags: single/double dash, =value, bool=false, short flags, values starting with -', () => {
  assert.deepEqual(normalizeGoFlags(['-dev'], FLAG_NAMES), ['--dev']);
  assert.deepEqual(normalizeGoFlags(['--derp=false', '-stun=0', '-stun=true'], FLAG_NAMES), ['--no-derp', '--no-stun', '--stun']);
  assert.deepEqual(normalizeGoFlags(['-a', ':8443', '-c=/k.json'], FLAG_NAMES), ['--addr=:8443', '--config=/k.json']);
  assert.deepEqual(normalizeGoFlags(['-a=127.0.0.1:0'], FLAG_NAMES), ['--addr=127.0.0.1:0']);
  assert.deepEqual(normalizeGoFlags(['-http-port', '-1', '--stun-port=0'], FLAG_NAMES), ['--http-port=-1', '--stun-port=0']);
  assert.deepEqual(normalizeGoFlags(['-certmode', 'manual', '-hostname=127.0.0.1'], FLAG_NAMES), ['--certmode=manual', '--hostname=127.0.0.1']);
  assert.deepEqual(normalizeGoFlags(['-unknown', 'x', '--', '-dev'], FLAG_NAMES), ['-unknown', 'x', '--', '-dev']);
  assert.throws(() => normalizeGoFlags(['-dev=maybe'], FLAG_NAMES), { code: 'flag_bad_bool' });
});

test('parseDerperFlags: Go defaults', () => {
  const f = parseDerperFlags([]);
  assert.equal(f.addr, ':443');
  assert.equal(f.certmode, 'letsencrypt');
  assert.equal(f.hostname, 'derp.tailscale.com');
  assert.equal(f.stunPort, 3478);
  assert.equal(f.httpPort, 80);
  assert.equal(f.stun, true);
  assert.equal(f.derp, true);
  assert.equal(f.dev, false);
  assert.equal(f.verifyClientUrlFailOpen, false, 'fail-closed by default (Go: fail-open), docs/derper.md');
  assert.equal(f.tcpWriteTimeoutMs, 2000);
  assert.equal(f.tcpKeepAliveMs, 600_000);
  assert.deepEqual(f.bootstrapDnsNames, []);
});

test('parseDerperFlags: Go-style command lines', () => {
  const f = parseDerperFlags(['-a', '127.0.0.1:0', '-http-port', '-1', '-certmode', 'manual', '-hostname', '127.0.0.1', '-certdir', '/tmp/dc', '-c', '/tmp/k', '-stun-port', '0', '-derp=false', '-tcp-write-timeout', '500ms', '-bootstrap-dns-names', 'a.example, b.example,', '-verify-client-url-fail-open=false', '-home=blank']);
  assert.equal(f.addr, '127.0.0.1:0');
  assert.equal(f.httpPort, -1);
  assert.equal(f.certmode, 'manual');
  assert.equal(f.certdir, '/tmp/dc');
  assert.equal(f.config, '/tmp/k');
  assert.equal(f.stunPort, 0);
  assert.equal(f.derp, false);
  assert.equal(f.tcpWriteTimeoutMs, 500);
  assert.deepEqual(f.bootstrapDnsNames, ['a.example', 'b.example']);
  assert.equal(f.verifyClientUrlFailOpen, false);
  assert.equal(f.home, 'blank');
  const g = parseDerperFlags(['--dev', '--stun=false', '--version']);
  assert.equal(g.dev, true);
  assert.equal(g.stun, false);
  assert.equal(g.version, true);
  assert.equal(parseDerperFlags(['--no-stun']).stun, false);
});

test('parseDerperFlags: unsupported features and bad values are refused clearly', () => {
  for (const argv of [['-verify-clients'], ['--ace'], ['-secrets-url=https://x'], ['-tcp-user-timeout=5s'], ['-unpublished-bootstrap-dns-names=x']]) {
    assert.throws(() => parseDerperFlags(argv), (e: Error & { code?: string }) => e.code === 'derper_usage' && /not supported yet/.test(e.message), argv.join(' '));
  }
  assert.doesNotThrow(() => parseDerperFlags(['-verify-clients=false']));
  for (const argv of [['-mesh-with', 'http://a:1'], ['-accept-connection-limit', '0'], ['-accept-connection-burst', '0'], ['-max-conns-per-ip', '-1']]) {
    assert.throws(() => parseDerperFlags(argv), { code: 'derper_usage' }, argv.join(' '));
  }
  const m = parseDerperFlags(['-mesh-with', 'a:1,b:2/10.0.0.2', '-rate-config=/x', '-accept-connection-limit', '10', '-accept-connection-burst', '20', '-max-conns-per-ip', '5']);
  assert.deepEqual(m.meshWith, [{ host: 'a:1', dialHost: null }, { host: 'b:2', dialHost: '10.0.0.2' }]);
  assert.equal(m.rateConfig, '/x');
  assert.deepEqual(m.acceptLimits, { perSecond: 10, burst: 20, maxPerIp: 5 });
  assert.equal(parseDerperFlags([]).acceptLimits.perSecond, Infinity);
  assert.throws(() => parseDerperFlags(['-stun-port', '70000']), { code: 'derper_usage' });
  assert.throws(() => parseDerperFlags(['-http-port', '-2']), { code: 'derper_usage' });
  assert.throws(() => parseDerperFlags(['-home', 'ftp://x']), /unsupported --home/);
  assert.throws(() => parseDerperFlags(['-tcp-write-timeout', '2 s']), { code: 'flag_bad_duration' });
});

test('parseGoDuration: units, sums, fractions, errors', () => {
  assert.equal(parseGoDuration('0'), 0);
  assert.equal(parseGoDuration('2s'), 2000);
  assert.equal(parseGoDuration('10m'), 600_000);
  assert.equal(parseGoDuration('1h30m'), 5_400_000);
  assert.equal(parseGoDuration('1.5s'), 1500);
  assert.equal(parseGoDuration('500ms'), 500);
  assert.equal(parseGoDuration('-1m'), -60_000);
  assert.equal(parseGoDuration('1500us'), 1.5);
  for (const bad of ['', '2', 's', '1x', '1s2', '--1s', ' 1s']) assert.throws(() => parseGoDuration(bad), { code: 'flag_bad_duration' }, bad);
});

test('parseGoDuration: property — rendering ms/s/m/h sums parses back', () => {
  fc.assert(
    fc.property(fc.nat(99), fc.nat(59), fc.nat(59), fc.nat(999), (h, m, s, ms) => {
      const parts = [h ? `${h}h` : '', m ? `${m}m` : '', s ? `${s}s` : '', ms ? `${ms}ms` : ''].join('') || '0';
      return parseGoDuration(parts) === ((h * 60 + m) * 60 + s) * 1000 + ms;
    }),
  );
  fc.assert(fc.property(fc.string({ maxLength: 12 }), (s) => {
    try {
      return Number.isFinite(parseGoDuration(s));
    } catch (e) {
      return (e as { code?: string }).code === 'flag_bad_duration';
    }
  }));
});

test('parseListenAddr: Go listen addresses', () => {
  assert.deepEqual(parseListenAddr(':443'), { host: '', port: 443, isHttps: true });
  assert.deepEqual(parseListenAddr(':https'), { host: '', port: 443, isHttps: true });
  assert.deepEqual(parseListenAddr('127.0.0.1:0'), { host: '127.0.0.1', port: 0, isHttps: false });
  assert.deepEqual(parseListenAddr('[::1]:8443'), { host: '::1', port: 8443, isHttps: false });
  for (const bad of ['127.0.0.1', '::1:80', ':99999', ':abc', '[::1:80']) assert.throws(() => parseListenAddr(bad), { code: 'flag_bad_addr' }, bad);
});

test('configFromFlags: --dev is loopback:3340 plain HTTP with a random key; TLS iff 443 or manual', async () => {
  const dev = await configFromFlags(parseDerperFlags(['--dev', '-a', ':9999']), {}, silentLogger);
  assert.equal(dev.host, '127.0.0.1');
  assert.equal(dev.port, 3340);
  assert.equal(dev.tls, null);
  assert.equal(dev.stunPort, 3478);
  const dev2 = await configFromFlags(parseDerperFlags(['--dev']), {}, silentLogger);
  assert.notDeepEqual(dev.privateKey, dev2.privateKey, 'fresh key each run');
  const meshHex = 'ab'.repeat(32);
  const devMesh = await configFromFlags(parseDerperFlags(['--dev']), { TAILSCALE_DERPER_MESH_KEY: ` ${meshHex}\n` }, silentLogger);
  assert.equal(Buffer.from(devMesh.meshKey!).toString('hex'), meshHex);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'derper-flags-'));
  try {
    const keyFile = path.join(dir, 'sub', 'derper.key');
    const plain = await configFromFlags(parseDerperFlags(['-a', '127.0.0.1:0', '-c', keyFile]), {}, silentLogger);
    assert.equal(plain.tls, null);
    assert.equal((statSync(keyFile).mode & 0o777), 0o600);
    const again = await configFromFlags(parseDerperFlags(['-a', '127.0.0.1:0', '-c', keyFile]), {}, silentLogger);
    assert.deepEqual(again.privateKey, plain.privateKey, 'key file reused');
    const manual = await configFromFlags(parseDerperFlags(['-a', '127.0.0.1:0', '-c', keyFile, '-certmode', 'manual', '-hostname', '127.0.0.1', '-certdir', dir]), {}, silentLogger);
    assert.deepEqual(manual.tls, { hostname: '127.0.0.1', certDir: dir });
    await assert.rejects(configFromFlags(parseDerperFlags(['-a', ':443', '-c', keyFile, '-certmode', 'gcp']), {}, silentLogger), /certmode gcp is not supported yet/);
    const psk = path.join(dir, 'mesh.key');
    writeFileSync(psk, 'nothex\n');
    await assert.rejects(configFromFlags(parseDerperFlags(['-a', ':1', '-c', keyFile, '-mesh-psk-file', psk]), {}, silentLogger), /invalid mesh key/);
    writeFileSync(psk, `${meshHex}\n`);
    const meshed = await configFromFlags(parseDerperFlags(['-a', ':1', '-c', keyFile, '-mesh-psk-file', psk]), {}, silentLogger);
    assert.equal(Buffer.from(meshed.meshKey!).toString('hex'), meshHex);
    assert.ok(readFileSync(keyFile, 'utf8').startsWith('{\n\t"PrivateKey": "privkey:'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('defaultCertDir follows XDG_CACHE_HOME, else ~/.cache', () => {
  assert.equal(defaultCertDir({ XDG_CACHE_HOME: '/x/cache' }), '/x/cache/tailscale/derper-certs');
  assert.equal(defaultCertDir({ HOME: '/home/u' }), '/home/u/.cache/tailscale/derper-certs');
});
