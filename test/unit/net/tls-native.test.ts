// Server-side TLS on the native addon (src/net/tls-native.ts + native/tls_conn.c) against Node's own TLS client
// over real loopback sockets: handshake facts (TLS 1.3, ALPN, SNI), the SNI policy, plaintext both ways in any
// chunking (fast-check), backpressure on a slow reader with nothing lost, half-close both ways, the handshake
// deadline, garbage instead of a ClientHello (typed error, other connections unaffected), certificate swap, and
// typed errors for bad PEM; and the same server without a context carrying plain TCP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { WiremeshError } from '../../../src/errors.ts';
import { NativeTlsContext, NativeTlsServer, type NativeTlsSocket, nativeTlsAvailable, nativeTlsUnavailableReason, TLS_ADDON_PATH, TN_READ_CHUNK } from '../../../src/net/tls-native.ts';
import { generateIpCert } from '../../../src/derper/x509.ts';

const SKIP = nativeTlsAvailable() ? false : `tls addon not built: ${nativeTlsUnavailableReason()}`;

const certA = generateIpCert('127.0.0.1', Date.now());
const certB = generateIpCert('127.0.0.1', Date.now());

interface Harness {
  port: number;
  tls: NativeTlsServer;
  accepted: NativeTlsSocket[];
  handshakeErrors: WiremeshError[];
  close(): Promise<void>;
}

/** A listener whose TLS connections are handed to `onSocket` (default: echo). */
async function harness(opts: { sni?: string; handshakeTimeoutMs?: number; onSocket?: (s: NativeTlsSocket) => void; plain?: boolean } = {}): Promise<Harness> {
  const accepted: NativeTlsSocket[] = [];
  const handshakeErrors: WiremeshError[] = [];
  const server = new NativeTlsServer({
    context: opts.plain === true ? null : new NativeTlsContext(certA.certPem, certA.keyPem, opts.sni ?? ''),
    handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 5000,
    onSecure: (s) => {
      accepted.push(s);
      s.on('error', () => {});
      if (opts.onSocket !== undefined) opts.onSocket(s);
      else s.pipe(s);
    },
    onHandshakeError: (e) => handshakeErrors.push(e),
  });
  const listener = net.createServer({ pauseOnConnect: true }, (raw) => server.attach(raw));
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  return {
    port: (listener.address() as net.AddressInfo).port,
    tls: server,
    accepted,
    handshakeErrors,
    close: async () => {
      server.closeAll();
      await new Promise<void>((r) => listener.close(() => r()));
    },
  };
}

function dial(port: number, extra: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: certA.certPem, ...extra }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves when `s` closes (an 'error' first, e.g. a reset, is fine). */
const closed = (s: net.Socket): Promise<void> => new Promise((r) => s.once('close', () => r()));

/** Waits until the server side has finished `n` handshakes (a TLS 1.3 client is done one flight earlier). */
async function accepted(h: Harness, n: number): Promise<NativeTlsSocket> {
  for (let i = 0; i < 200 && h.accepted.length < n; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(h.accepted.length, n);
  return h.accepted[n - 1]!;
}

async function readN(s: tls.TLSSocket, n: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  for await (const chunk of s) {
    parts.push(chunk as Buffer);
    got += (chunk as Buffer).length;
    if (got >= n) break;
  }
  return Buffer.concat(parts);
}

test('handshake: TLS 1.3, ALPN http/1.1 when offered, SNI and protocol reported; plaintext echoes', { skip: SKIP }, async () => {
  const h = await harness();
  try {
    const c = await dial(h.port, { servername: 'relay.example', ALPNProtocols: ['h2', 'http/1.1'], checkServerIdentity: () => undefined });
    assert.equal(c.getProtocol(), 'TLSv1.3');
    assert.equal(c.alpnProtocol, 'http/1.1');
    c.write('hello');
    assert.equal((await readN(c, 5)).toString(), 'hello');
    const s = await accepted(h, 1);
    assert.equal(s.getProtocol(), 'TLSv1.3');
    assert.equal(s.servername, 'relay.example');
    assert.equal(s.alpnProtocol, 'http/1.1');
    assert.equal(s.remoteAddress, '127.0.0.1');
    assert.equal(s.encrypted, true);
    c.destroy();
    // No ALPN offered: none selected, the handshake still succeeds (Go's DERP client offers none).
    const d = await dial(h.port, { ALPNProtocols: [] });
    assert.equal(d.alpnProtocol, false);
    d.destroy();
  } finally {
    await h.close();
  }
});

test('TLS 1.2 clients are served too', { skip: SKIP }, async () => {
  const h = await harness();
  try {
    const c = await dial(h.port, { maxVersion: 'TLSv1.2' });
    assert.equal(c.getProtocol(), 'TLSv1.2');
    c.write('v12');
    assert.equal((await readN(c, 3)).toString(), 'v12');
    c.destroy();
    await assert.rejects(dial(h.port, { maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }));
  } finally {
    await h.close();
  }
});

test('SNI policy: with a DNS hostname only that SNI (any case) completes the handshake', { skip: SKIP }, async () => {
  const h = await harness({ sni: 'derp.example.net' });
  try {
    const ok = await dial(h.port, { servername: 'DERP.example.net', checkServerIdentity: () => undefined });
    await accepted(h, 1);
    ok.destroy();
    await assert.rejects(dial(h.port, { servername: 'other.example.net', checkServerIdentity: () => undefined }), /unrecognized name|alert/i);
    await assert.rejects(dial(h.port, { checkServerIdentity: () => undefined }), /unrecognized name|alert/i);
    assert.equal(h.accepted.length, 1);
  } finally {
    await h.close();
  }
});

test('any chunking of writes arrives intact and in order (fast-check)', { skip: SKIP }, async () => {
  const h = await harness();
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 40_000 }), { minLength: 1, maxLength: 12 }), async (chunks) => {
        const c = await dial(h.port);
        const want = Buffer.concat(chunks);
        for (const ch of chunks) c.write(ch);
        const got = await readN(c, want.length);
        c.destroy();
        assert.deepEqual(got.subarray(0, want.length), want);
      }),
      { numRuns: 25 },
    );
  } finally {
    await h.close();
  }
});

test('a slow reader gets every byte: the server waits for drain, nothing is dropped', { skip: SKIP }, async () => {
  const TOTAL = 24 * 1024 * 1024;
  const block = Buffer.alloc(256 * 1024, 7);
  let writesPending = 0;
  let sawBackpressure = false;
  const h = await harness({
    onSocket: (s) => {
      let sent = 0;
      const pump = (): void => {
        while (sent < TOTAL) {
          sent += block.length;
          writesPending++;
          const more = s.write(block, () => writesPending--);
          if (!more) {
            sawBackpressure = true;
            s.once('drain', pump);
            return;
          }
        }
        s.end();
      };
      pump();
    },
  });
  try {
    const c = await dial(h.port);
    c.pause();
    await new Promise((r) => setTimeout(r, 300)); // let the kernel buffers fill
    const hash = createHash('sha256');
    let got = 0;
    c.on('data', (d: Buffer) => {
      got += d.length;
      hash.update(d);
    });
    c.resume();
    await once(c, 'end');
    assert.equal(got, TOTAL);
    assert.equal(hash.digest('hex'), createHash('sha256').update(Buffer.alloc(TOTAL, 7)).digest('hex'));
    assert.ok(sawBackpressure, 'the server saw write() return false');
    assert.equal(writesPending, 0);
  } finally {
    await h.close();
  }
});

test('half-close: the client ending gives the server "end"; the server ending gives the client "end"', { skip: SKIP }, async () => {
  let serverSawEnd = false;
  const h = await harness({
    onSocket: (s) => {
      s.on('data', () => {});
      s.on('end', () => {
        serverSawEnd = true;
      });
    },
  });
  try {
    const c = await dial(h.port);
    const s0 = await accepted(h, 1);
    c.end();
    await once(s0, 'close');
    assert.ok(serverSawEnd);
    const d = await dial(h.port);
    (await accepted(h, 2)).end('bye');
    assert.equal((await readN(d, 3)).toString(), 'bye');
    d.destroy();
  } finally {
    await h.close();
  }
});

test('handshake deadline: a connection that never says hello is closed with a typed error', { skip: SKIP }, async () => {
  const h = await harness({ handshakeTimeoutMs: 200 });
  try {
    const raw = net.connect(h.port, '127.0.0.1');
    await once(raw, 'connect');
    raw.on('error', () => {});
    await closed(raw);
    assert.equal(h.handshakeErrors[0]?.code, 'tls_handshake_timeout');
    assert.equal(h.tls.size, 0);
  } finally {
    await h.close();
  }
});

test('garbage instead of a ClientHello: typed error, the socket closed, other connections unaffected', { skip: SKIP }, async () => {
  const h = await harness();
  try {
    const good = await dial(h.port);
    const raw = net.connect(h.port, '127.0.0.1');
    raw.on('error', () => {});
    raw.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await closed(raw);
    assert.equal(h.handshakeErrors[0]?.code, 'tls_error');
    assert.match(h.handshakeErrors[0]!.message, /tls handshake/);
    good.write('still here');
    assert.equal((await readN(good, 10)).toString(), 'still here');
    good.destroy();
  } finally {
    await h.close();
  }
});

test('garbage records after the handshake: typed error on that socket, it closes, others unaffected', { skip: SKIP }, async () => {
  const errors: unknown[] = [];
  const h = await harness({
    onSocket: (s) => {
      s.on('error', (e) => errors.push(e));
      s.pipe(s);
    },
  });
  try {
    const good = await dial(h.port);
    const raw = net.connect(h.port, '127.0.0.1');
    await once(raw, 'connect');
    const c = tls.connect({ socket: raw, ca: certA.certPem, checkServerIdentity: () => undefined });
    await once(c, 'secureConnect');
    c.on('error', () => {});
    c.write('ok?');
    assert.equal(String((await once(c, 'data'))[0]), 'ok?'); // not readN: ending its iterator would close c
    const victim = h.accepted.find((x) => x.remotePort === raw.localPort)!;
    const victimClosed = new Promise((r) => victim.once('close', r));
    raw.write(Buffer.from([23, 3, 3, 0, 40, ...new Uint8Array(40).fill(0xee)])); // an application_data record that fails to decrypt
    await victimClosed;
    assert.ok(errors.some((e) => e instanceof WiremeshError && e.code === 'tls_error' && /tls read/.test(e.message)), String(errors));
    good.write('fine');
    assert.equal((await readN(good, 4)).toString(), 'fine');
    good.destroy();
  } finally {
    await h.close();
  }
});

test('setContext: new handshakes get the new certificate, an established connection keeps working', { skip: SKIP }, async () => {
  const h = await harness();
  try {
    const old = await dial(h.port);
    h.tls.setContext(new NativeTlsContext(certB.certPem, certB.keyPem, ''));
    const fresh = await dial(h.port, { ca: certB.certPem });
    assert.equal(fresh.getPeerX509Certificate()?.fingerprint256, new (await import('node:crypto')).X509Certificate(certB.certPem).fingerprint256);
    await assert.rejects(dial(h.port, { ca: certA.certPem }), /self.signed|unable to verify|certificate/i);
    old.write('old');
    assert.equal((await readN(old, 3)).toString(), 'old');
    old.destroy();
    fresh.destroy();
  } finally {
    await h.close();
  }
});

test('plain TCP (no context): handed over at once, unencrypted, every byte of a fast-check of writes and a 24 MiB slow read, half-close', { skip: SKIP }, async () => {
  const h = await harness({ plain: true });
  try {
    const dialPlain = async (): Promise<net.Socket> => {
      const c = net.connect(h.port, '127.0.0.1');
      await once(c, 'connect');
      return c;
    };
    const c = await dialPlain();
    // Reads without ending the stream (unlike readN's async iterator).
    let buf = Buffer.alloc(0);
    let wake: (() => void) | null = null;
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      wake?.();
    };
    c.on('data', onData);
    const take = async (n: number): Promise<Buffer> => {
      while (buf.length < n) await new Promise<void>((r) => (wake = r));
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return out;
    };
    c.write('hello');
    assert.equal((await take(5)).toString(), 'hello');
    const s = await accepted(h, 1);
    assert.equal(s.encrypted, false);
    assert.equal(s.getProtocol(), '');
    assert.equal(s.remoteAddress, '127.0.0.1');
    // Writes of any sizes come back intact (the echo's reads land in the reused read buffer and are copied).
    await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 6 }), async (sizes) => {
      const parts = sizes.map((n, i) => Buffer.alloc(n, (i * 37 + n) & 0xff));
      const want = Buffer.concat(parts);
      for (const p of parts) c.write(p);
      assert.ok((await take(want.length)).equals(want));
    }), { numRuns: 15 });
    c.off('data', onData);
    // A slow reader: the echo server's writes back up in the addon and drain without loss.
    const total = 24 * 1024 * 1024;
    const hash = createHash('sha256');
    const sent = createHash('sha256');
    let received = 0;
    const done = new Promise<void>((resolve) => {
      c.on('data', (d: Buffer) => {
        hash.update(d);
        received += d.length;
        if (received >= total) resolve();
        else if (received % (4 * 1024 * 1024) < d.length) {
          c.pause();
          setTimeout(() => c.resume(), 30);
        }
      });
    });
    for (let o = 0; o < total; o += 256 * 1024) {
      const b = Buffer.alloc(256 * 1024, (o / 1024) & 0xff);
      sent.update(b);
      if (!c.write(b)) await once(c, 'drain');
    }
    await done;
    assert.equal(hash.digest('hex'), sent.digest('hex'));
    // Half-close: the client's FIN reaches the server as 'end' (the echo then ends its side too).
    c.end();
    await once(c, 'end');
    await closed(c);
  } finally {
    await h.close();
  }
});

test('bad PEM and mismatched key are typed errors', { skip: SKIP }, () => {
  assert.throws(() => new NativeTlsContext('not a pem', certA.keyPem, ''), (e: unknown) => e instanceof WiremeshError && e.code === 'tls_native_bad_cert');
  assert.throws(() => new NativeTlsContext(certA.certPem, 'nope', ''), (e: unknown) => e instanceof WiremeshError && e.code === 'tls_native_bad_cert');
  assert.throws(() => new NativeTlsContext(certA.certPem, certB.keyPem, ''), (e: unknown) => e instanceof WiremeshError && /private key/.test(e.message));
});

test('the raw addon refuses bad arguments with typed errors and treats unknown ids as closed', { skip: SKIP }, () => {
  const addon = createRequire(import.meta.url)(TLS_ADDON_PATH) as Record<string, (...a: unknown[]) => unknown>;
  const bad = (e: unknown): boolean => (e as { code?: string }).code === 'tls_native_bad_argument';
  assert.throws(() => addon.write!(), bad);
  assert.throws(() => addon.write!({}, 0, Buffer.alloc(1)), bad);
  const rb = Buffer.alloc(TN_READ_CHUNK);
  assert.throws(() => addon.readStart!(addon.server!(() => {}, () => {}, rb), -1), bad);
  assert.throws(() => addon.server!(1, 2), bad);
  assert.throws(() => addon.server!(() => {}, () => {}), bad, 'no read buffer');
  assert.throws(() => addon.server!(() => {}, () => {}, Buffer.alloc(TN_READ_CHUNK - 1)), bad, 'read buffer too small');
  const srv = addon.server!(() => {}, () => {}, rb);
  assert.throws(() => addon.write!(srv, 5, Buffer.alloc(1)), bad, 'no range');
  assert.throws(() => addon.write!(srv, 5, Buffer.alloc(1), 0, 2), bad, 'end beyond the array');
  assert.throws(() => addon.write!(srv, 5, Buffer.alloc(4), 3, 2), bad, 'start after end');
  assert.equal(addon.write!(srv, 5, Buffer.alloc(1), 0, 1), -1, 'unknown id: closed');
  assert.equal(addon.close!(srv, 123456), false);
  assert.equal((addon.info!(srv, 7) as unknown[]).filter((x) => x !== undefined).length, 0, 'no facts for an unknown id');
});
