// The client end of the native addon (NativeTlsServer.connect with a NativeTlsClientContext; src/net/tls-native.ts,
// native/tls_conn.c) over real loopback sockets: against Node's own TLS server (handshake facts, SNI sent for a
// name and not for an IP, every byte of a fast-check of writes echoed), certificate verification refusing a
// self-signed relay with a typed error, a 16 MiB echo through the native server (both ends on the addon, with
// backpressure), the handshake deadline and a server that hangs up mid-handshake, and plain TCP without a context.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import fc from 'fast-check';
import { WiremeshError } from '../../../src/errors.ts';
import { NativeTlsClientContext, NativeTlsContext, NativeTlsServer, type NativeTlsSocket, nativeTlsAvailable, nativeTlsUnavailableReason } from '../../../src/net/tls-native.ts';
import { generateIpCert } from '../../../src/derper/x509.ts';

const SKIP = nativeTlsAvailable() ? false : `tls addon not built: ${nativeTlsUnavailableReason()}`;
const cert = generateIpCert('127.0.0.1', Date.now());

/** A connection table for client ends only (its server callbacks never run). */
const clients = (handshakeTimeoutMs = 5000): NativeTlsServer =>
  new NativeTlsServer({ context: null, handshakeTimeoutMs, onSecure: () => assert.fail('client table got a server socket') });

/** A TCP connection to `port`, paused before it connected so Node never reads it. */
function dialRaw(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: '127.0.0.1', port });
    raw.pause();
    raw.once('connect', () => resolve(raw));
    raw.once('error', reject);
  });
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

const close = (server: net.Server): Promise<void> => new Promise((r) => server.close(() => r()));

async function readN(s: NativeTlsSocket | net.Socket, n: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  while (got < n) {
    const chunk = s.read() as Buffer | null;
    if (chunk === null) {
      await once(s, 'readable');
      continue;
    }
    parts.push(chunk);
    got += chunk.length;
  }
  return Buffer.concat(parts);
}

test('against Node\'s TLS server: TLS 1.3, SNI sent for a name, none for an IP, every byte of any chunking echoed (fast-check)', { skip: SKIP }, async () => {
  const seen: (string | false | null)[] = [];
  const server = tls.createServer({ cert: cert.certPem, key: cert.keyPem }, (s) => {
    seen.push(s.servername);
    s.pipe(s);
  });
  const port = await listen(server);
  const table = clients();
  try {
    const named = await table.connect(await dialRaw(port), new NativeTlsClientContext('relay.example.net', false));
    assert.equal(named.encrypted, true);
    assert.equal(named.getProtocol(), 'TLSv1.3');
    named.destroy();
    const c = await table.connect(await dialRaw(port), new NativeTlsClientContext('127.0.0.1', false));
    for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(seen, ['relay.example.net', false]);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 20_000 }), { minLength: 1, maxLength: 12 }), async (chunks) => {
        for (const ch of chunks) c.write(ch);
        const want = Buffer.concat(chunks);
        assert.ok((await readN(c, want.length)).equals(want));
      }),
      { numRuns: 25 },
    );
    c.destroy();
  } finally {
    table.closeAll();
    await close(server);
  }
});

test('verify: a self-signed certificate is refused with a typed error and the socket closed', { skip: SKIP }, async () => {
  const server = tls.createServer({ cert: cert.certPem, key: cert.keyPem }, (s) => s.on('error', () => {}));
  const port = await listen(server);
  const table = clients();
  try {
    const raw = await dialRaw(port);
    const err = await table.connect(raw, new NativeTlsClientContext('127.0.0.1', true)).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof WiremeshError, String(err));
    assert.equal(err.code, 'tls_error');
    assert.match(err.message, /certificate verify failed/);
    assert.equal(raw.destroyed, true);
    assert.equal(table.size, 0);
  } finally {
    table.closeAll();
    await close(server);
  }
});

test('both ends on the addon: 16 MiB each way through an echo, nothing lost or reordered', { skip: SKIP }, async () => {
  const srv = new NativeTlsServer({
    context: new NativeTlsContext(cert.certPem, cert.keyPem, ''),
    handshakeTimeoutMs: 5000,
    onSecure: (s) => s.pipe(s),
  });
  const listener = net.createServer({ pauseOnConnect: true }, (raw) => srv.attach(raw));
  const port = await listen(listener);
  const table = clients();
  try {
    const c = await table.connect(await dialRaw(port), new NativeTlsClientContext('127.0.0.1', false));
    const data = randomBytes(16 << 20);
    const got = readN(c, data.length);
    for (let o = 0; o < data.length; o += 100_003) {
      if (!c.write(data.subarray(o, Math.min(o + 100_003, data.length)))) await once(c, 'drain');
    }
    const back = await got;
    assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(data).digest('hex'));
    c.destroy();
  } finally {
    table.closeAll();
    srv.closeAll();
    await close(listener);
  }
});

test('a server that never answers hits the handshake deadline; one that hangs up fails at once; both typed', { skip: SKIP }, async () => {
  const silent: net.Socket[] = [];
  const mute = net.createServer((s) => silent.push(s));
  const hangup = net.createServer((s) => s.destroy());
  const [mutePort, hangupPort] = [await listen(mute), await listen(hangup)];
  const table = clients(150);
  const ctx = new NativeTlsClientContext('127.0.0.1', false);
  try {
    const t0 = Date.now();
    const timedOut = await table.connect(await dialRaw(mutePort), ctx).then(() => null, (e: unknown) => e);
    assert.ok(timedOut instanceof WiremeshError && timedOut.code === 'tls_handshake_timeout', String(timedOut));
    assert.ok(Date.now() - t0 >= 140);
    const refused = await table.connect(await dialRaw(hangupPort), ctx).then(() => null, (e: unknown) => e);
    assert.ok(refused instanceof WiremeshError, String(refused));
    assert.match(refused.code, /^tls_(error|socket_error)$/);
    assert.equal(table.size, 0);
  } finally {
    for (const s of silent) s.destroy();
    await Promise.all([close(mute), close(hangup)]);
  }
});

test('without a context: plain TCP, resolved at once, unencrypted, bytes both ways', { skip: SKIP }, async () => {
  const server = net.createServer((s) => s.pipe(s));
  const port = await listen(server);
  const table = clients();
  try {
    const c = await table.connect(await dialRaw(port), null);
    assert.equal(c.encrypted, false);
    const data = randomBytes(3 << 20);
    const got = readN(c, data.length);
    c.write(data);
    assert.ok((await got).equals(data));
    c.destroy();
  } finally {
    table.closeAll();
    await close(server);
  }
});
