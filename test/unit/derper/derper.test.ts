// A whole derper in-process on 127.0.0.1:0 (spec/derp.md §3, §16): plain HTTP routes and the /derp upgrade,
// then manual cert mode with a generated IP cert where a TLS client sees the meta cert in the served chain.
import { nativeTcpAvailable, nativeTlsAvailable, nativeTlsUnavailableReason } from '../../../src/net/tls-native.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { testDerperConfig } from './config.ts';
import { startDerper, type DerperConfig, type RunningDerper } from '../../../src/derper/derper.ts';
import { basicConstraintsLeaf, buildCertificate, derToPem, subjectAltName } from '../../../src/derper/x509.ts';
import { toHex } from '../../../src/types/key.ts';

const config = (over: Partial<DerperConfig> = {}): DerperConfig => testDerperConfig({ stunPort: 0, ...over });

/** Sends raw bytes, collects the reply until `until` says it is complete (or the peer closes). */
function rawExchange(connect: () => Duplex, data: string, until: (b: Buffer) => boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect();
    let buf = Buffer.alloc(0);
    const done = (): void => {
      s.destroy();
      resolve(buf);
    };
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (until(buf)) done();
    });
    s.on('end', done);
    s.on('error', reject);
    s.write(data);
  });
}

const serverKeyFrameOf = (buf: Buffer, off: number): { type: number; len: number; magic: string; key: string } => ({
  type: buf[off]!,
  len: buf.readUInt32BE(off + 1),
  magic: buf.subarray(off + 5, off + 13).toString('hex'),
  key: buf.subarray(off + 13, off + 45).toString('hex'),
});

for (const tcpEngine of ['native', 'node'] as const) test(`[${tcpEngine} TCP] plain derper: 101 block + ServerKey, Upgrade without Connection, 426, CONNECT 403, 431, varz`, { skip: tcpEngine === 'native' && !nativeTcpAvailable() ? 'addon not built' : false }, async (t) => {
  const d = await startDerper(config({ tcpEngine }));
  t.after(() => d.close());
  assert.equal(d.tls, false);
  assert.ok(d.httpPort > 0 && d.stunPort !== null && d.stunPort > 0);
  assert.equal(d.listeningLine(), `derper: listening http=127.0.0.1:${d.httpPort} stun=${d.stunPort}`);
  const conn = (): Duplex => net.connect(d.httpPort, '127.0.0.1');
  const hex = toHex(d.publicKey);

  for (const headers of ['Upgrade: DERP\r\nConnection: Upgrade\r\n', 'Upgrade: derp\r\n']) {
    const reply = await rawExchange(conn, `GET /derp HTTP/1.1\r\nHost: x\r\n${headers}\r\n`, (b) => {
      const end = b.indexOf('\r\n\r\n');
      return end >= 0 && b.length >= end + 4 + 45;
    });
    const end = reply.indexOf('\r\n\r\n') + 4;
    assert.equal(
      reply.subarray(0, end).toString(),
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Version: 2\r\nDerp-Public-Key: ${hex}\r\n\r\n`,
      headers,
    );
    assert.deepEqual(serverKeyFrameOf(reply, end), { type: 1, len: 40, magic: '44455250f09f9491', key: hex });
  }
  const noUpgrade = await rawExchange(conn, 'GET /derp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', () => false);
  assert.match(noUpgrade.toString(), /^HTTP\/1\.1 426 /);
  assert.match(noUpgrade.toString(), /DERP requires connection upgrade\n$/);
  // An Upgrade request to another path is an ordinary request (here: the home page).
  const other = await rawExchange(conn, 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\r\n', () => false);
  assert.match(other.toString(), /^HTTP\/1\.1 200 /);
  assert.match(other.toString(), /<h1>DERP<\/h1>/);
  const connect = await rawExchange(conn, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', () => false);
  assert.match(connect.toString(), /^HTTP\/1\.1 403 [\s\S]*CONNECT not enabled\n$/);

  // Header block over HTTP_MAX_HEADER_SIZE (16 KiB) → 431 and close.
  const big = await rawExchange(conn, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\n\r\n`, () => false);
  assert.match(big.toString(), /^HTTP\/1\.1 431 /);

  const varz = await (await fetch(`http://127.0.0.1:${d.httpPort}/debug/varz`)).text();
  assert.match(varz, /^derp_accepts [1-9]\d*$/m, 'the two upgrades were accepted');
  assert.match(varz, /^# TYPE derp_current_connections gauge$/m);
  assert.match(varz, /^stun_requests\{disposition="success"\} 0$/m);
  assert.match(varz, /^derp_current_file_descriptors [1-9]/m);
  const vars = (await (await fetch(`http://127.0.0.1:${d.httpPort}/debug/vars`)).json()) as { derp: Record<string, unknown>; stun: unknown };
  assert.equal(typeof vars.derp.accepts, 'number');
  assert.ok(vars.stun);
  const check = await fetch(`http://127.0.0.1:${d.httpPort}/debug/check`);
  assert.equal(check.status, 200);
});

test('--derp=false: /derp 404 and no upgrade; stun disabled gives stun=off', async (t) => {
  const d = await startDerper(config({ derp: false, stunPort: null }));
  t.after(() => d.close());
  assert.equal(d.listeningLine(), `derper: listening http=127.0.0.1:${d.httpPort} stun=off`);
  const r = await rawExchange(() => net.connect(d.httpPort, '127.0.0.1'), 'GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade, close\r\n\r\n', () => false);
  assert.match(r.toString(), /^HTTP\/1\.1 404 [\s\S]*derp server disabled\n$/);
});

/** A pass-through Duplex over a TCP socket that records every byte the server sends. */
function tappedSocket(port: number, record: Buffer[]): Duplex {
  const raw = net.connect(port, '127.0.0.1');
  const tap = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      raw.write(chunk, cb);
    },
    final(cb) {
      raw.end(cb);
    },
    destroy(err, cb) {
      raw.destroy();
      cb(err);
    },
  });
  raw.on('data', (c: Buffer) => {
    record.push(c);
    tap.push(c);
  });
  raw.on('end', () => tap.push(null));
  raw.on('error', (e) => tap.destroy(e));
  return tap;
}

/** The DER certificates of a TLS 1.2 Certificate handshake message found in raw server bytes. */
function certificatesFromTls12(bytes: Buffer): Buffer[] {
  let hs = Buffer.alloc(0);
  for (let off = 0; off + 5 <= bytes.length; ) {
    const len = bytes.readUInt16BE(off + 3);
    if (bytes[off] === 22) hs = Buffer.concat([hs, bytes.subarray(off + 5, off + 5 + len)]);
    off += 5 + len;
  }
  for (let off = 0; off + 4 <= hs.length; ) {
    const type = hs[off]!;
    const len = hs.readUIntBE(off + 1, 3);
    if (type === 11) {
      const body = hs.subarray(off + 4, off + 4 + len);
      const certs: Buffer[] = [];
      for (let p = 3; p + 3 <= body.length; ) {
        const n = body.readUIntBE(p, 3);
        certs.push(body.subarray(p + 3, p + 3 + n));
        p += 3 + n;
      }
      return certs;
    }
    off += 4 + len;
  }
  return [];
}

const skipEngine = (e: 'native' | 'node'): string | false => (e === 'native' && !nativeTlsAvailable() ? `tls addon not built: ${nativeTlsUnavailableReason()}` : false);

async function tlsStart(t: { after(fn: () => unknown): void }, over: Partial<DerperConfig>, dir: string): Promise<RunningDerper> {
  const d = await startDerper(config({ tls: { hostname: '127.0.0.1', certDir: dir }, ...over }));
  t.after(() => d.close());
  return d;
}

// Both TLS engines: the native addon (the default when built) and node:https (the fallback).
for (const tlsEngine of ['native', 'node'] as const) {
  test(`[${tlsEngine} TLS] manual cert mode with an IP: generated cert files, TLS 1.3 + ALPN, meta cert served last in the chain`, { skip: skipEngine(tlsEngine) }, async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'derper-tls-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const d = await tlsStart(t, { httpPort: 0, tlsEngine }, dir);
    assert.equal(d.tls, true);
    assert.equal(statSync(path.join(dir, '127.0.0.1.key')).mode & 0o777, 0o600);
    assert.equal(statSync(path.join(dir, '127.0.0.1.crt')).mode & 0o777, 0o644);
    assert.match(d.derpNodeJson ?? '', /^\{"Name":"custom","RegionID":900,"HostName":"127\.0\.0\.1","CertName":"sha256-raw:[0-9a-f]{64}"\}$/);
    assert.match(d.listeningLine(), new RegExp(`^derper: listening https=127\\.0\\.0\\.1:${d.httpPort} stun=\\d+ port80=127\\.0\\.0\\.1:${d.port80}$`));

    // TLS 1.3 with the generated cert as the trust anchor (SNI may be anything for an IP hostname).
    const s = tls.connect({ port: d.httpPort, host: '127.0.0.1', servername: 'anything.example', ca: (await import('node:fs')).readFileSync(path.join(dir, '127.0.0.1.crt')), checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] });
    await new Promise<void>((resolve, reject) => s.once('secureConnect', resolve).once('error', reject));
    assert.equal(s.getProtocol(), 'TLSv1.3');
    // Node's client offers AES-256-GCM first; the server's order (Go's) picks AES-128-GCM.
    assert.equal(tls.DEFAULT_CIPHERS.split(':')[0], 'TLS_AES_256_GCM_SHA384');
    assert.equal(s.getCipher().name, 'TLS_AES_128_GCM_SHA256');
    assert.equal(s.alpnProtocol, 'http/1.1');
    assert.equal(s.getPeerX509Certificate()?.subject, 'CN=127.0.0.1');
    // Fast start over TLS: no HTTP response, the first bytes are the ServerKey frame.
    const first = await new Promise<Buffer>((resolve) => {
      s.once('data', resolve);
      s.write('GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Fast-Start: 1\r\n\r\n');
    });
    assert.deepEqual(serverKeyFrameOf(first, 0), { type: 1, len: 40, magic: '44455250f09f9491', key: toHex(d.publicKey) });
    s.destroy();

    // TLS 1.2 sends the Certificate message in clear: read the served chain off the wire.
    const recorded: Buffer[] = [];
    const s12 = tls.connect({ socket: tappedSocket(d.httpPort, recorded), servername: '127.0.0.1', rejectUnauthorized: false, maxVersion: 'TLSv1.2' });
    await new Promise<void>((resolve, reject) => s12.once('secureConnect', resolve).once('error', reject));
    assert.equal(s12.getProtocol(), 'TLSv1.2');
    assert.match(s12.getCipher().name, /^ECDHE-(RSA|ECDSA)-AES128-GCM-SHA256$/);
    s12.destroy();
    const chain = certificatesFromTls12(Buffer.concat(recorded)).map((b) => new X509Certificate(b));
    assert.equal(chain.length, 2);
    assert.equal(chain[0]!.subject, 'CN=127.0.0.1');
    assert.equal(chain[1]!.subject, `CN=derpkey${toHex(d.publicKey)}`);
    assert.equal(chain[1]!.serialNumber, '02');

    // TLS 1.1 is refused (MinVersion 1.2).
    const old = tls.connect({ port: d.httpPort, host: '127.0.0.1', rejectUnauthorized: false, minVersion: 'TLSv1', maxVersion: 'TLSv1.1' });
    await assert.rejects(new Promise((resolve, reject) => old.once('secureConnect', resolve).once('error', reject)));
    old.destroy();

    // Port-80 listener: generate_204 served, other GETs redirected to HTTPS.
    const g = await fetch(`http://127.0.0.1:${d.port80}/generate_204`, { headers: { 'X-Tailscale-Challenge': 'ts_abc' } });
    assert.equal(g.status, 204);
    assert.equal(g.headers.get('x-tailscale-response'), 'response ts_abc');
    const r = await fetch(`http://127.0.0.1:${d.port80}/derp`, { redirect: 'manual' });
    assert.equal(r.status, 302);
    assert.equal(r.headers.get('location'), `https://127.0.0.1:${d.port80}/derp`);

    // A restart reuses the files (same pin).
    const again = await tlsStart(t, { tlsEngine }, dir);
    assert.equal(again.derpNodeJson, d.derpNodeJson);
  });

  test(`[${tlsEngine} TLS] manual cert mode with a DNS hostname: SNI must match ("cert mismatch with hostname")`, { skip: skipEngine(tlsEngine) }, async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'derper-sni-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const host = 'derp.example.test';
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const der = buildCertificate({ serial: Uint8Array.of(7), commonName: host, notBeforeMs: Date.now() - 1000, notAfterMs: Date.now() + 86_400_000, publicKey, privateKey, extensions: [basicConstraintsLeaf(), subjectAltName({ dns: [host] })] });
    writeFileSync(path.join(dir, `${host}.crt`), derToPem(der));
    writeFileSync(path.join(dir, `${host}.key`), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const d = await startDerper(config({ tls: { hostname: host, certDir: dir }, hostname: host, stunPort: null, tlsEngine }));
    t.after(() => d.close());
    assert.equal(d.derpNodeJson, null);
    const ca = derToPem(der);
    const ok = tls.connect({ port: d.httpPort, host: '127.0.0.1', servername: host, ca });
    await new Promise<void>((resolve, reject) => ok.once('secureConnect', resolve).once('error', reject));
    assert.equal(ok.authorized, true);
    ok.destroy();
    const bad = tls.connect({ port: d.httpPort, host: '127.0.0.1', servername: 'other.example.test', rejectUnauthorized: false });
    await assert.rejects(new Promise((resolve, reject) => bad.once('secureConnect', resolve).once('error', reject)));
    bad.destroy();
    // No SNI at all: refused right after the handshake.
    const none = tls.connect({ port: d.httpPort, host: '127.0.0.1', rejectUnauthorized: false });
    none.on('error', () => {});
    const closed = await new Promise<boolean>((resolve) => {
      none.once('close', () => resolve(true));
      none.once('secureConnect', () => none.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      none.once('data', () => resolve(false));
    });
    assert.equal(closed, true);
    // A cert that does not cover the hostname is refused at start.
    await assert.rejects(startDerper(config({ tls: { hostname: 'wrong.example.test', certDir: dir }, stunPort: null })), { code: 'tls_cert_missing' });
    writeFileSync(path.join(dir, 'wrong.example.test.crt'), derToPem(der));
    writeFileSync(path.join(dir, 'wrong.example.test.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await assert.rejects(startDerper(config({ tls: { hostname: 'wrong.example.test', certDir: dir }, stunPort: null })), { code: 'tls_cert_hostname' });
  });
}
