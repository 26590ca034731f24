/**
 * Conformance checklist 38–40 (spec/derp.md §15, §20): tailnode STUN binding over UDP, silent drops of anything
 * else, and the `stun_requests{disposition}` counters. Profile difference (documented, the only one allowed):
 * wiremesh also answers a well-formed RFC 5389 binding request without SOFTWARE `tailnode`; Go does not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { crc32 } from 'node:zlib';
import { metric, sleep, type SuiteContext } from './helpers.ts';

const COOKIE = Buffer.from([0x21, 0x12, 0xa4, 0x42]);

function attr(type: number, value: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(value.length, 2);
  const pad = Buffer.alloc((4 - (value.length % 4)) % 4);
  return Buffer.concat([h, value, pad]);
}

/** A binding request with the given attributes, a FINGERPRINT appended unless `fingerprint` is false/'bad'. */
export function stunRequest(txid: Buffer, o: { type?: number; software?: string | null; fingerprint?: 'good' | 'bad' | 'none' | 'not-last' } = {}): Buffer {
  const attrs: Buffer[] = [];
  if (o.software !== null) attrs.push(attr(0x8022, Buffer.from(o.software ?? 'tailnode')));
  const header = (bodyLen: number): Buffer => {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(o.type ?? 0x0001, 0);
    h.writeUInt16BE(bodyLen, 2);
    COOKIE.copy(h, 4);
    txid.copy(h, 8);
    return h;
  };
  const fp = o.fingerprint ?? 'good';
  if (fp === 'none') {
    const body = Buffer.concat(attrs);
    return Buffer.concat([header(body.length), body]);
  }
  const bodyLen = Buffer.concat(attrs).length + 8 + (fp === 'not-last' ? 12 : 0);
  const before = Buffer.concat([header(bodyLen), ...attrs]);
  const v = Buffer.alloc(4);
  v.writeUInt32BE((crc32(before) ^ 0x5354554e ^ (fp === 'bad' ? 1 : 0)) >>> 0, 0);
  const out = Buffer.concat([before, attr(0x8028, v)]);
  return fp === 'not-last' ? Buffer.concat([out, attr(0x8022, Buffer.from('tailnode'))]) : out;
}

async function exchange(port: number, packets: Buffer[], waitMs = 400): Promise<Buffer[]> {
  const sock = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  sock.on('message', (m) => got.push(m));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  try {
    for (const p of packets) sock.send(p, port, '127.0.0.1');
    await sleep(waitMs);
    return got;
  } finally {
    sock.close();
  }
}

export function stunTests(ctx: SuiteContext): void {
  test('38 tailnode request (40 bytes) → 32-byte response, same txid, XOR-MAPPED-ADDRESS of the sender', async () => {
    const txid = Buffer.from('0102030405060708090a0b0c', 'hex');
    const req = stunRequest(txid);
    assert.equal(req.toString('hex'), '000100142112a4420102030405060708090a0b0c802200087461696c6e6f646580280004b32c370f', 'spec §20 vector');
    const sock = dgram.createSocket('udp4');
    const reply = new Promise<Buffer>((resolve) => sock.once('message', resolve));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
    try {
      sock.send(req, ctx.server.stunPort, '127.0.0.1');
      const r = await Promise.race([reply, sleep(2000).then(() => null)]);
      assert.ok(r !== null, 'no STUN reply');
      assert.equal(r.length, 32);
      assert.equal(r.readUInt16BE(0), 0x0101);
      assert.equal(r.readUInt16BE(2), 12);
      assert.deepEqual(r.subarray(4, 8), COOKIE);
      assert.deepEqual(r.subarray(8, 20), txid);
      assert.equal(r.readUInt16BE(20), 0x0020);
      assert.equal(r.readUInt16BE(22), 8);
      assert.equal(r[25], 1, 'family IPv4');
      assert.equal(r.readUInt16BE(26) ^ 0x2112, sock.address().port);
      assert.deepEqual([...r.subarray(28, 32)].map((b, i) => b ^ COOKIE[i]!), [127, 0, 0, 1]);
    } finally {
      sock.close();
    }
  });

  test('39 bad fingerprint, FINGERPRINT not last, non-binding type, non-STUN → no reply; plain RFC 5389 per profile', async () => {
    const tx = (n: number): Buffer => Buffer.alloc(12, n);
    const bad = [
      stunRequest(tx(1), { fingerprint: 'bad' }),
      stunRequest(tx(2), { fingerprint: 'not-last' }),
      stunRequest(tx(3), { type: 0x0111 }),
      Buffer.from('GET / HTTP/1.1\r\n\r\n this is not STUN at all'),
      Buffer.alloc(10),
    ];
    const good = stunRequest(tx(9));
    const got = await exchange(ctx.server.stunPort, [...bad, good]);
    assert.deepEqual(got.map((r) => r.subarray(8, 20).toString('hex')), [tx(9).toString('hex')], 'only the good request is answered');
    const plain = stunRequest(tx(7), { software: null });
    const other = stunRequest(tx(8), { software: 'somethingelse' });
    const replies = await exchange(ctx.server.stunPort, [plain, other]);
    const answered = replies.map((r) => r.subarray(8, 20).toString('hex'));
    if (ctx.server.profile === 'go') {
      assert.deepEqual(answered, [], 'Go derper answers only SOFTWARE tailnode requests');
    } else {
      // wiremesh goes beyond derper: a well-formed RFC 5389 binding request gets a reply.
      assert.ok(answered.includes(tx(7).toString('hex')), 'wiremesh answers a plain RFC 5389 binding request');
    }
  });

  test('40 stun_requests{disposition} counters move', async () => {
    const url = ctx.server.url;
    const success0 = await metric(url, 'stun_requests{disposition="success"}');
    const notStun0 = await metric(url, 'stun_requests{disposition="not_stun"}');
    const got = await exchange(ctx.server.stunPort, [stunRequest(Buffer.alloc(12, 0x21)), stunRequest(Buffer.alloc(12, 0x22)), Buffer.from('not stun')]);
    assert.equal(got.length, 2);
    assert.equal(await metric(url, 'stun_requests{disposition="success"}'), success0 + 2);
    assert.equal(await metric(url, 'stun_requests{disposition="not_stun"}'), notStun0 + 1);
  });
}
