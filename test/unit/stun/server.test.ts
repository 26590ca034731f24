// STUN server over loopback UDP (port 0): derper-exact answers to tailnode requests on IPv4 and IPv6
// (checklist 38), silence for everything else (39), metrics (40), and the RFC 5389 answers beyond derper.
// Every behaviour test runs on both I/O paths: node:dgram and the recvmmsg/sendmmsg addon (`batch`).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { setTimeout as delay } from 'node:timers/promises';
import { StunServer } from '../../../src/stun/server.ts';
import { batchUdpAvailable, batchUdpUnavailableReason } from '../../../src/net/udp-batch.ts';
import {
  buildBindingRequest, buildResponse, buildTailnodeRequest, fingerprint, parseResponse,
} from '../../../src/stun/codec.ts';
import { canBindV6 } from '../../support/ipv6.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const txid = (n: number): Uint8Array => Uint8Array.from({ length: 12 }, (_, i) => (n * 16 + i) & 0xff);

const HAS_V6 = await canBindV6();
const NO_V6 = 'no IPv6 loopback (::1) on this host';

const PATHS = ['dgram', 'batch'] as const;
type IoPath = (typeof PATHS)[number];
/** Skip reason for a path, or false. The batch path needs build/udp_batch.node (CI builds it). */
const skipPath = (io: IoPath): string | false =>
  io === 'batch' && !batchUdpAvailable() ? `batch addon not built: ${batchUdpUnavailableReason()}` : false;

interface Client {
  sock: dgram.Socket;
  port: number;
  replies: Buffer[];
  send(b: Uint8Array): void;
  waitReplies(n: number): Promise<void>;
}

async function client(host: '127.0.0.1' | '::1', serverPort: number): Promise<Client> {
  const sock = dgram.createSocket(host === '::1' ? 'udp6' : 'udp4');
  await new Promise<void>((r) => sock.bind(0, host, r));
  const replies: Buffer[] = [];
  sock.on('message', (m) => replies.push(m));
  return {
    sock,
    port: sock.address().port,
    replies,
    send: (b) => sock.send(b, serverPort, host),
    async waitReplies(n) {
      for (let i = 0; i < 200 && replies.length < n; i++) await delay(10);
      assert.ok(replies.length >= n, `expected ${n} replies, got ${replies.length}`);
    },
  };
}

/** Packets derper ignores (checklist 39). */
function ignoredByDerper(): [string, Uint8Array][] {
  const noSoftware = buildBindingRequest(txid(3), { fingerprint: true });
  const otherSoftware = buildBindingRequest(txid(3), { software: 'tailnodX', fingerprint: true });
  const badFp = buildTailnodeRequest(txid(3));
  badFp[39]! ^= 1;
  const fpNotLast = new Uint8Array([...buildTailnodeRequest(txid(3)), 0x80, 0x30, 0x00, 0x00]);
  const indication = buildTailnodeRequest(txid(3));
  indication[1] = 0x11;
  return [
    ['no SOFTWARE tailnode', noSoftware],
    ['other SOFTWARE', otherSoftware],
    ['bad FINGERPRINT', badFp],
    ['FINGERPRINT not last', fpNotLast],
    ['binding indication', indication],
    ['non-STUN', new TextEncoder().encode('hello, not stun at all')],
    ['plain binding request', buildBindingRequest(txid(3))],
  ];
}

async function expectOnlyFinalReply(t: TestContext, server: StunServer, bad: Uint8Array[]): Promise<void> {
  const c = await client('127.0.0.1', server.port);
  t.after(() => c.sock.close());
  for (const b of bad) c.send(b);
  c.send(buildTailnodeRequest(txid(9)));
  await c.waitReplies(1);
  await delay(100); // loopback delivers in order: anything answered would have arrived before the final reply
  assert.equal(c.replies.length, 1, `replies: ${c.replies.map(hex).join(', ')}`);
  assert.deepEqual(parseResponse(c.replies[0]!).txid, txid(9));
}

for (const io of PATHS) {
  for (const host of ['127.0.0.1', '::1'] as const) {
    test(`[${io}] tailnode request on ${host} gets derper's exact answer (checklist 38, 40)`, { skip: skipPath(io) || (host === '::1' && !HAS_V6 ? NO_V6 : false) }, async (t) => {
      const server = new StunServer({ io });
      await server.listen({ host, port: 0 });
      t.after(() => server.close());
      assert.ok(server.port > 0);
      assert.equal(server.io, io);
      const c = await client(host, server.port);
      t.after(() => c.sock.close());
      c.send(buildTailnodeRequest(txid(1)));
      await c.waitReplies(1);
      const reply = c.replies[0]!;
      assert.equal(reply.length, host === '::1' ? 44 : 32);
      assert.equal(hex(reply), hex(buildResponse(txid(1), { address: host, port: c.port })));
      assert.deepEqual(parseResponse(reply).address, { address: host, port: c.port });
      const m = server.metrics();
      assert.deepEqual(m.requests, { success: 1, not_stun: 0, read_error: 0, write_error: 0 });
      assert.deepEqual(m.addrfamily, host === '::1' ? { ipv4: 0, ipv6: 1 } : { ipv4: 1, ipv6: 0 });
    });
  }

  test(`[${io}] wildcard listener answers IPv4 clients with family 1 and IPv6 clients with family 2`, { skip: skipPath(io) }, async (t) => {
    const server = new StunServer({ io });
    await server.listen({ port: 0 });
    t.after(() => server.close());
    const hosts = HAS_V6 ? (['127.0.0.1', '::1'] as const) : (['127.0.0.1'] as const);
    for (const host of hosts) {
      const c = await client(host, server.port);
      t.after(() => c.sock.close());
      c.send(buildTailnodeRequest(txid(2)));
      await c.waitReplies(1);
      const reply = c.replies[0]!;
      assert.equal(reply[25], host === '::1' ? 2 : 1, `family byte for ${host}`);
      assert.equal(hex(reply), hex(buildResponse(txid(2), { address: host, port: c.port })));
    }
    assert.deepEqual(server.metrics().addrfamily, { ipv4: 1, ipv6: HAS_V6 ? 1 : 0 });
  });

  test(`[${io}] strictTailnode: no reply to anything but a tailnode request (checklist 39, 40)`, { skip: skipPath(io) }, async (t) => {
    const server = new StunServer({ io, strictTailnode: true });
    await server.listen({ host: '127.0.0.1', port: 0 });
    t.after(() => server.close());
    const bad = ignoredByDerper();
    await expectOnlyFinalReply(t, server, bad.map(([, b]) => b));
    assert.deepEqual(server.metrics().requests, { success: 1, not_stun: bad.length, read_error: 0, write_error: 0 });
  });

  test(`[${io}] default mode: still silent for bad FINGERPRINT, FINGERPRINT not last, indications and non-STUN`, { skip: skipPath(io) }, async (t) => {
    const server = new StunServer({ io });
    await server.listen({ host: '127.0.0.1', port: 0 });
    t.after(() => server.close());
    const bad = ignoredByDerper().filter(([n]) => ['bad FINGERPRINT', 'FINGERPRINT not last', 'binding indication', 'non-STUN'].includes(n));
    await expectOnlyFinalReply(t, server, bad.map(([, b]) => b));
    assert.equal(server.metrics().requests.not_stun, 4);
  });

  test(`[${io}] default mode: RFC 5389 requests are answered; FINGERPRINT mirrored; 420 for unknown required attributes`, { skip: skipPath(io) }, async (t) => {
    const server = new StunServer({ io });
    await server.listen({ host: '127.0.0.1', port: 0 });
    t.after(() => server.close());
    const c = await client('127.0.0.1', server.port);
    t.after(() => c.sock.close());

    c.send(buildBindingRequest(txid(4)));
    await c.waitReplies(1);
    assert.equal(hex(c.replies[0]!), hex(buildResponse(txid(4), { address: '127.0.0.1', port: c.port })));

    c.send(buildBindingRequest(txid(5), { software: 'some client', fingerprint: true }));
    await c.waitReplies(2);
    const withFp = c.replies[1]!;
    assert.equal(withFp.length, 40);
    assert.equal(hex(withFp.subarray(32, 36)), '80280004');
    assert.equal(withFp.readUInt32BE(36), fingerprint(withFp.subarray(0, 32)));
    assert.equal(withFp.readUInt16BE(2), 20, 'header length counts the FINGERPRINT');
    assert.deepEqual(parseResponse(withFp).address, { address: '127.0.0.1', port: c.port });

    // RFC 5780 CHANGE-REQUEST (0x0003) is comprehension-required and not supported here.
    const changeReq = new Uint8Array([0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, ...txid(6), 0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0]);
    c.send(changeReq);
    await c.waitReplies(3);
    const err = c.replies[2]!;
    assert.equal(err.readUInt16BE(0), 0x0111);
    assert.deepEqual(new Uint8Array(err.subarray(8, 20)), txid(6));
    assert.equal(err.readUInt16BE(20), 0x0009);
    assert.equal(err[26]! * 100 + err[27]!, 420);
    const ua = err.indexOf(Buffer.from([0x00, 0x0a, 0x00, 0x02, 0x00, 0x03]));
    assert.ok(ua > 20, 'UNKNOWN-ATTRIBUTES lists 0x0003');

    const m = server.metrics();
    assert.deepEqual(m.responses, { tailnode: 0, rfc5389: 2, unknown_attribute: 1 });
    assert.equal(m.requests.success, 3);
  });

  test(`[${io}] close releases the port`, { skip: skipPath(io) }, async () => {
    const server = new StunServer({ io });
    await server.listen({ host: '127.0.0.1', port: 0 });
    const port = server.port;
    await server.close();
    const again = new StunServer({ io });
    await again.listen({ host: '127.0.0.1', port });
    assert.equal(again.port, port);
    await again.close();
  });
}
