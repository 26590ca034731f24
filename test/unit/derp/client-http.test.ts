/**
 * The DERP client transport (src/derp/client-http.ts) against a scripted loopback TCP server: the exact upgrade
 * request, fast start pipelining in one write, bytes after the 101 kept as DERP stream head, non-101 refusal and
 * the response-head bound.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { dialDerp, parseDerpUrl } from '../../../src/derp/client-http.ts';

async function scripted(onRequest: (sock: net.Socket, first: Buffer) => void): Promise<{ url: string; close(): void }> {
  const server = net.createServer((sock) => sock.once('data', (d: Buffer) => onRequest(sock, d)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/derp`, close: () => server.close() };
}

test('upgrade request bytes; bytes after the 101 become the stream head', async () => {
  let request = '';
  const s = await scripted((sock, first) => {
    request = first.toString('latin1');
    sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n\x01\x00\x00\x00\x28DERP');
  });
  try {
    const d = await dialDerp(s.url, { signal: new AbortController().signal, idealNode: 'n1' });
    assert.equal(request, `GET /derp HTTP/1.1\r\nHost: ${new URL(s.url).host}\r\nUser-Agent: wiremesh-derp-client/0.1\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nIdeal-Node: n1\r\n\r\n`);
    assert.deepEqual(d.head, Buffer.from('\x01\x00\x00\x00\x28DERP', 'latin1'));
    d.stream.close();
  } finally {
    s.close();
  }
});

test('fast start: Derp-Fast-Start header and the pipelined bytes travel in the same write, no 101 awaited', async () => {
  let first: Buffer = Buffer.alloc(0);
  const got = new Promise<void>((resolve) => {
    void scripted((_sock, d) => { first = d; resolve(); }).then((s) => {
      void dialDerp(s.url, { signal: new AbortController().signal, fastStart: true, pipelined: Buffer.from('CLIENTINFO') })
        .then((d) => { setTimeout(() => { d.stream.close(); s.close(); }, 50); });
    });
  });
  await got;
  const text = first.toString('latin1');
  assert.match(text, /\r\nDerp-Fast-Start: 1\r\n\r\nCLIENTINFO$/);
});

test('a non-101 response fails with derp_upgrade_failed "GET failed"', async () => {
  const s = await scripted((sock) => sock.end('HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n'));
  try {
    await assert.rejects(dialDerp(s.url, { signal: new AbortController().signal }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'derp_upgrade_failed');
      assert.match(e.message, /^GET failed: HTTP\/1\.1 426/);
      return true;
    });
  } finally {
    s.close();
  }
});

test('an endless response head is refused past MAX_RESPONSE_HEAD_LEN; a silent server hits the abort signal', async () => {
  const s = await scripted((sock) => sock.write('HTTP/1.1 101 OK\r\n' + 'X-Pad: y\r\n'.repeat(3000)));
  try {
    await assert.rejects(dialDerp(s.url, { signal: new AbortController().signal }), { code: 'derp_dial_failed' });
  } finally {
    s.close();
  }
  const quiet = await scripted(() => {});
  try {
    await assert.rejects(dialDerp(quiet.url, { signal: AbortSignal.timeout(100) }), /timed out/);
  } finally {
    quiet.close();
  }
});

test('parseDerpUrl: default ports, IPv6 brackets, non-http schemes rejected', () => {
  assert.deepEqual(parseDerpUrl('https://derp.example.com/derp'), { secure: true, host: 'derp.example.com', port: 443, path: '/derp', hostHeader: 'derp.example.com' });
  assert.equal(parseDerpUrl('http://[::1]:3340/derp').host, '::1');
  assert.equal(parseDerpUrl('http://h/derp').port, 80);
  assert.throws(() => parseDerpUrl('ftp://h/derp'), { code: 'bad_url' });
  assert.throws(() => parseDerpUrl('not a url'), { code: 'bad_url' });
});
