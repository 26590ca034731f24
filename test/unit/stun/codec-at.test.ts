// Allocation-free STUN codec for the batched server path (src/stun/codec-at.ts): golden vectors, and fast-check
// properties that it is byte-for-byte the same as codec.ts (writer = buildResponse, classifier = parseRequest /
// parseTailnodeRequest, crc32At = zlib crc32), including at offsets inside a larger slab.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32 } from 'node:zlib';
import {
  classifyRequestAt, crc32At, isTailnodeRequestAt, MAX_BINDING_RESPONSE_LEN, RequestClass, writeBindingResponseAt,
} from '../../../src/stun/codec-at.ts';
import { buildBindingRequest, buildResponse, buildTailnodeRequest, parseRequest, parseTailnodeRequest } from '../../../src/stun/codec.ts';
import { isV4Mapped, parseIp } from '../../../src/net/ip.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const TXID = unhex('0102030405060708090a0b0c');

/** Writes a response into a slab at `off` and returns just the written bytes. */
function writeAt(off: number, txid: Uint8Array, ip: Uint8Array, port: number, fp: boolean): Uint8Array {
  const slab = new Uint8Array(off + MAX_BINDING_RESPONSE_LEN + 16).fill(0xee);
  const src = new Uint8Array(40).fill(0x77);
  src.set(txid, 5);
  const addr = new Uint8Array(32).fill(0x55);
  addr.set(ip, 3);
  const n = writeBindingResponseAt(slab, off, src, 5, ip.length === 4 ? 4 : 6, addr, 3, port, fp);
  assert.ok(slab.subarray(0, off).every((x) => x === 0xee), 'nothing written before off');
  assert.ok(slab.subarray(off + n).every((x) => x === 0xee), 'nothing written after the response');
  return slab.subarray(off, off + n);
}

test('golden vectors (spec/derp.md §20) written at an offset', () => {
  assert.equal(hex(writeAt(0, TXID, unhex('c0000201'), 54321, false)), '0101000c2112a4420102030405060708090a0b0c002000080001f523e112a643');
  assert.equal(hex(writeAt(100, TXID, parseIp('2001:db8::1')!, 443, false)),
    '010100182112a4420102030405060708090a0b0c00200014000220a90113a9fa0102030405060708090a0b0d');
  // With FINGERPRINT: header length 20, CRC over the first 32 bytes.
  const fp = writeAt(7, TXID, unhex('c0000201'), 54321, true);
  assert.equal(hex(fp), hex(buildResponse(TXID, { address: '192.0.2.1', port: 54321 }, { fingerprint: true })));
  assert.equal(fp.length, 40);
});

/** Raw address bytes as the batch socket reports them: IPv4 (and IPv4-mapped) as 4 bytes, else 16. */
function rawIp(text: string): Uint8Array {
  const b = parseIp(text)!;
  return isV4Mapped(b) ? b.subarray(12) : b;
}

test('writeBindingResponseAt equals buildResponse (fast-check)', () => {
  const arbIp = fc.oneof(fc.ipV4(), fc.ipV6());
  fc.assert(fc.property(fc.uint8Array({ minLength: 12, maxLength: 12 }), arbIp, fc.integer({ min: 0, max: 65535 }), fc.boolean(), fc.nat(3000),
    (txid, ip, port, fp, off) => {
      const want = buildResponse(txid, { address: ip, port }, { fingerprint: fp });
      assert.equal(hex(writeAt(off, txid, rawIp(ip), port, fp)), hex(want));
    }), { numRuns: 1000 });
});

test('crc32At equals zlib crc32 on any range (fast-check)', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), (b, x, y) => {
    const start = b.length === 0 ? 0 : x % (b.length + 1);
    const end = start + (b.length - start === 0 ? 0 : y % (b.length - start + 1));
    assert.equal(crc32At(b, start, end), crc32(b.subarray(start, end)));
  }), { numRuns: 1000 });
});

/** codec.ts's verdict expressed as a RequestClass. */
function expected(b: Uint8Array, strictTailnode: boolean): number {
  if (strictTailnode) return parseTailnodeRequest(b) === null ? RequestClass.Ignore : RequestClass.Tailnode;
  const r = parseRequest(b);
  if (r === null) return RequestClass.Ignore;
  if (r.kind === 'tailnode') return RequestClass.Tailnode;
  if (r.unknownAttributes.length > 0) return RequestClass.UnknownAttribute;
  return r.fingerprint ? RequestClass.Rfc5389Fingerprint : RequestClass.Rfc5389;
}

/**
 * `b` embedded at `off` in a larger buffer of junk, viewed through a proxy that throws on any read outside
 * [off, off+len): catches a classifier reading a neighbour's bytes in the slab.
 */
function embedded(b: Uint8Array, off: number): Uint8Array {
  const slab = new Uint8Array(off + b.length + 64).fill(0x80);
  slab.set(b, off);
  return new Proxy(slab, {
    get(target, prop) {
      if (typeof prop === 'string' && /^-?\d+$/.test(prop)) {
        const i = Number(prop);
        if (i < off || i >= off + b.length) throw new RangeError(`read at ${i} outside [${off}, ${off + b.length})`);
        return target[i];
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const CHANGE_REQUEST = new Uint8Array([0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, ...TXID, 0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0]);
const BASES = [
  buildTailnodeRequest(TXID),
  buildBindingRequest(TXID),
  buildBindingRequest(TXID, { fingerprint: true }),
  buildBindingRequest(TXID, { software: 'tailnode' }),
  buildBindingRequest(TXID, { software: 'abc', fingerprint: true }),
  CHANGE_REQUEST,
  buildResponse(TXID, { address: '192.0.2.1', port: 1 }),
];

/** Arbitrary bytes, and valid requests with random byte flips / truncation / extension. */
const arbPacket = fc.oneof(
  fc.uint8Array({ maxLength: 120 }),
  fc.tuple(fc.constantFrom(...BASES), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.integer({ min: -8, max: 8 }))
    .map(([base, flips, delta]) => {
      const b = new Uint8Array(Math.max(0, base.length + delta));
      b.set(base.subarray(0, b.length));
      for (const [i, v] of flips) if (b.length > 0) b[i % b.length] = v;
      return b;
    }),
  fc.constantFrom(...BASES),
);

test('classifyRequestAt agrees with codec.ts and reads only its datagram (fast-check)', () => {
  fc.assert(fc.property(arbPacket, fc.nat(4096), fc.boolean(), (b, off, strictTailnode) => {
    const view = embedded(b, off);
    assert.equal(classifyRequestAt(view, off, b.length, strictTailnode), expected(b, strictTailnode));
    assert.equal(isTailnodeRequestAt(view, off, b.length), parseTailnodeRequest(b) !== null);
  }), { numRuns: 3000 });
});

test('classification of the known request kinds', () => {
  const cls = (b: Uint8Array, strictTailnode = false): number => classifyRequestAt(b, 0, b.length, strictTailnode);
  assert.equal(cls(buildTailnodeRequest(TXID)), RequestClass.Tailnode);
  assert.equal(cls(buildTailnodeRequest(TXID), true), RequestClass.Tailnode);
  assert.equal(cls(buildBindingRequest(TXID)), RequestClass.Rfc5389);
  assert.equal(cls(buildBindingRequest(TXID), true), RequestClass.Ignore);
  assert.equal(cls(buildBindingRequest(TXID, { fingerprint: true })), RequestClass.Rfc5389Fingerprint);
  assert.equal(cls(CHANGE_REQUEST), RequestClass.UnknownAttribute);
  assert.equal(cls(buildResponse(TXID, { address: '192.0.2.1', port: 1 })), RequestClass.Ignore);
  const badFp = buildTailnodeRequest(TXID);
  badFp[39]! ^= 1;
  assert.equal(cls(badFp), RequestClass.Ignore);
});
