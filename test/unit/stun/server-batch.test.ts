// The STUN server's batched path (src/stun/server-batch.ts) against its dgram path: identical answers and
// metrics for a mixed burst from many source ports (requests really arrive in batches), the truncation
// bound, path selection (auto / WIREMESH_STUN_DGRAM=1 / explicit) and its typed errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { setTimeout as delay } from 'node:timers/promises';
import { STUN_DGRAM_ENV, StunServer, type StunMetrics } from '../../../src/stun/server.ts';
import { batchUdpAvailable, batchUdpUnavailableReason, SLOT_BYTES, UdpBatchError, UdpBatchErrorCode } from '../../../src/net/udp-batch.ts';
import { buildBindingRequest, buildErrorResponse, buildResponse, buildTailnodeRequest } from '../../../src/stun/codec.ts';

const SKIP = batchUdpAvailable() ? false : `batch addon not built: ${batchUdpUnavailableReason()}`;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const txid = (c: number, k: number): Uint8Array => Uint8Array.from({ length: 12 }, (_, i) => (i === 0 ? c : i === 1 ? k : i));
const CLIENTS = 12;
const PER_CLIENT = 40;

/** Request k of a client: tailnode, generic, generic+FINGERPRINT, CHANGE-REQUEST (420), or junk. */
function request(c: number, k: number): { bytes: Uint8Array; answer: ((port: number) => Uint8Array) | null } {
  const id = txid(c, k);
  const at = (port: number) => ({ address: '127.0.0.1', port });
  switch (k % 5) {
    case 0: return { bytes: buildTailnodeRequest(id), answer: (p) => buildResponse(id, at(p)) };
    case 1: return { bytes: buildBindingRequest(id), answer: (p) => buildResponse(id, at(p)) };
    case 2: return { bytes: buildBindingRequest(id, { software: 'x', fingerprint: true }), answer: (p) => buildResponse(id, at(p), { fingerprint: true }) };
    case 3: return {
      bytes: new Uint8Array([0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, ...id, 0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0]),
      answer: () => buildErrorResponse(id, 420, 'Unknown Attribute', { unknownAttributes: [3], fingerprint: false }),
    };
    default: return { bytes: new TextEncoder().encode(`junk ${c} ${k}`), answer: null };
  }
}

/** Sends the burst from CLIENTS sockets; returns each client's replies (hex, sorted) and what it expected. */
async function burst(server: StunServer): Promise<{ got: string[][]; want: string[][] }> {
  const socks = await Promise.all(Array.from({ length: CLIENTS }, async () => {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    return s;
  }));
  const got: string[][] = socks.map(() => []);
  socks.forEach((s, c) => s.on('message', (m) => got[c]!.push(hex(m))));
  const want: string[][] = socks.map(() => []);
  for (let k = 0; k < PER_CLIENT; k++) {
    // Bursts of ~48 datagrams: enough to arrive as batches, small enough for dgram's default receive buffer.
    if (k % 4 === 0) await delay(2);
    socks.forEach((s, c) => {
      const r = request(c, k);
      s.send(r.bytes, server.port, '127.0.0.1');
      if (r.answer !== null) want[c]!.push(hex(r.answer(s.address().port)));
    });
  }
  const total = want.reduce((n, w) => n + w.length, 0);
  for (let i = 0; i < 300 && got.reduce((n, g) => n + g.length, 0) < total; i++) await delay(10);
  await delay(50); // anything extra (an answer to junk) would arrive now
  for (const s of socks) s.close();
  return { got: got.map((g) => g.sort()), want: want.map((w) => w.sort()) };
}

test('batch and dgram paths give identical answers and metrics for a mixed burst from many ports', { skip: SKIP }, async (t) => {
  const results: Record<string, { got: string[][]; want: string[][]; m: StunMetrics }> = {};
  for (const io of ['dgram', 'batch'] as const) {
    const server = new StunServer({ io });
    await server.listen({ host: '127.0.0.1', port: 0 });
    t.after(() => server.close());
    assert.equal(server.io, io);
    results[io] = { ...(await burst(server)), m: server.metrics() };
  }
  for (const io of ['dgram', 'batch']) {
    const r = results[io]!;
    r.got.forEach((g, c) => assert.deepEqual(g, r.want[c], `${io} client ${c}`));
  }
  const answered = CLIENTS * PER_CLIENT * 4 / 5;
  assert.deepEqual(results.batch!.m, results.dgram!.m);
  assert.deepEqual(results.batch!.m.requests, { success: answered, not_stun: CLIENTS * PER_CLIENT / 5, read_error: 0, write_error: 0 });
  assert.deepEqual(results.batch!.m.responses, { tailnode: answered / 4, rfc5389: answered / 2, unknown_attribute: answered / 4 });
});

test('batch path: a datagram longer than a slot is dropped as read_error; the next request is answered', { skip: SKIP }, async (t) => {
  const server = new StunServer({ io: 'batch' });
  await server.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => server.close());
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  t.after(() => s.close());
  const replies: Buffer[] = [];
  s.on('message', (m) => replies.push(m));
  const big = new Uint8Array(SLOT_BYTES + 100);
  big.set(buildBindingRequest(txid(1, 1)));
  s.send(big, server.port, '127.0.0.1');
  s.send(buildTailnodeRequest(txid(1, 2)), server.port, '127.0.0.1');
  for (let i = 0; i < 200 && replies.length < 1; i++) await delay(10);
  await delay(50);
  assert.equal(replies.length, 1);
  assert.equal(hex(replies[0]!), hex(buildResponse(txid(1, 2), { address: '127.0.0.1', port: s.address().port })));
  assert.deepEqual(server.metrics().requests, { success: 1, not_stun: 0, read_error: 1, write_error: 0 });
});

test('path selection: auto uses the addon unless WIREMESH_STUN_DGRAM=1; batch needs an IP literal', { skip: SKIP }, async (t) => {
  const saved = process.env[STUN_DGRAM_ENV];
  t.after(() => {
    if (saved === undefined) delete process.env[STUN_DGRAM_ENV];
    else process.env[STUN_DGRAM_ENV] = saved;
  });
  delete process.env[STUN_DGRAM_ENV];
  const auto = new StunServer();
  await auto.listen({ host: '127.0.0.1', port: 0 });
  assert.equal(auto.io, 'batch');
  await auto.close();
  process.env[STUN_DGRAM_ENV] = '1';
  const forced = new StunServer();
  await forced.listen({ host: '127.0.0.1', port: 0 });
  assert.equal(forced.io, 'dgram');
  await forced.close();
  const byName = new StunServer({ io: 'batch' });
  await assert.rejects(byName.listen({ host: 'localhost', port: 0 }), (e: unknown) => e instanceof UdpBatchError && e.code === UdpBatchErrorCode.BadArgument);
  delete process.env[STUN_DGRAM_ENV];
  const autoByName = new StunServer();
  await autoByName.listen({ host: 'localhost', port: 0 });
  assert.equal(autoByName.io, 'dgram', 'a host name falls back to dgram');
  await autoByName.close();
});

test('batch path: binding a port in use fails with errno EADDRINUSE', { skip: SKIP }, async (t) => {
  const a = new StunServer({ io: 'batch' });
  await a.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => a.close());
  const b = new StunServer({ io: 'batch' });
  await assert.rejects(b.listen({ host: '127.0.0.1', port: a.port }), (e: unknown) => e instanceof UdpBatchError && e.errno === 'EADDRINUSE');
});
