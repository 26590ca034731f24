// STUN codec: golden vectors (spec/derp.md §20), derper's acceptance rules (checklist 38–39), generic RFC 5389
// requests, lenient response parsing, round trips, and fast-check fuzzing of both parsers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32 } from 'node:zlib';
import {
  buildBindingRequest, buildErrorResponse, buildResponse, buildTailnodeRequest, fingerprint, isStunMessage,
  parseRequest, parseResponse, parseTailnodeRequest,
} from '../../../src/stun/codec.ts';
import { Attr, MAX_UNKNOWN_ATTRIBUTES, StunErrorCode } from '../../../src/stun/constants.ts';
import { formatIp, parseIp } from '../../../src/net/ip.ts';
import { hasCode, WiremeshError } from '../../../src/errors.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const TXID = unhex('0102030405060708090a0b0c');

/** A STUN message from parts; `fp` appends a FINGERPRINT computed over the final bytes ('bad' flips one bit). */
function msg(type: number, attrs: [number, Uint8Array][], opts: { fp?: 'good' | 'bad'; length?: number; txid?: Uint8Array } = {}): Uint8Array {
  const parts: number[] = [];
  for (const [t, v] of attrs) {
    parts.push(t >> 8, t & 0xff, v.length >> 8, v.length & 0xff, ...v);
    while (parts.length % 4 !== 0) parts.push(0);
  }
  const bodyLen = parts.length + (opts.fp ? 8 : 0);
  const len = opts.length ?? bodyLen;
  const out = new Uint8Array([type >> 8, type & 0xff, len >> 8, len & 0xff, 0x21, 0x12, 0xa4, 0x42, ...(opts.txid ?? TXID), ...parts, ...(opts.fp ? [0x80, 0x28, 0, 4, 0, 0, 0, 0] : [])]);
  if (opts.fp) {
    const v = (crc32(out.subarray(0, out.length - 8)) ^ 0x5354554e) >>> 0 ^ (opts.fp === 'bad' ? 1 : 0);
    new DataView(out.buffer).setUint32(out.length - 4, v >>> 0);
  }
  return out;
}
const SW_TAILNODE: [number, Uint8Array] = [Attr.Software, new TextEncoder().encode('tailnode')];

/**
 * A view that throws on any indexed read outside [0, length): catches out-of-bounds reads, which on a plain
 * Uint8Array silently yield undefined. Methods run on the real array.
 */
function strict(b: Uint8Array): Uint8Array {
  return new Proxy(b, {
    get(target, prop) {
      if (typeof prop === 'string' && /^-?\d+$/.test(prop)) {
        const i = Number(prop);
        if (i < 0 || i >= target.length) throw new RangeError(`out-of-bounds read at ${i} (length ${target.length})`);
        return target[i];
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

test('golden vectors from spec §20', () => {
  assert.equal(hex(buildTailnodeRequest(TXID)), '000100142112a4420102030405060708090a0b0c802200087461696c6e6f646580280004b32c370f');
  assert.equal(hex(buildResponse(TXID, { address: '192.0.2.1', port: 54321 })), '0101000c2112a4420102030405060708090a0b0c002000080001f523e112a643');
  assert.equal(hex(buildResponse(TXID, { address: '2001:db8::1', port: 443 })),
    '010100182112a4420102030405060708090a0b0c00200014000220a90113a9fa0102030405060708090a0b0d');
  assert.equal(buildTailnodeRequest(TXID).length, 40);
  // IPv4-mapped input is answered as family 1, like an IPv4 client.
  assert.equal(hex(buildResponse(TXID, { address: '::ffff:192.0.2.1', port: 54321 })), '0101000c2112a4420102030405060708090a0b0c002000080001f523e112a643');
});

test('golden vectors parse back', () => {
  assert.deepEqual(parseResponse(unhex('0101000c2112a4420102030405060708090a0b0c002000080001f523e112a643')), { txid: TXID, address: { address: '192.0.2.1', port: 54321 } });
  assert.deepEqual(parseResponse(unhex('010100182112a4420102030405060708090a0b0c00200014000220a90113a9fa0102030405060708090a0b0d')).address, { address: '2001:db8::1', port: 443 });
  const req = parseRequest(unhex('000100142112a4420102030405060708090a0b0c802200087461696c6e6f646580280004b32c370f'));
  assert.deepEqual(req, { txid: TXID, kind: 'tailnode', fingerprint: true, unknownAttributes: [] });
});

test('derper acceptance rules (checklist 39)', () => {
  const ok = msg(0x0001, [SW_TAILNODE], { fp: 'good' });
  assert.equal(hex(ok), hex(buildTailnodeRequest(TXID)));
  assert.ok(parseTailnodeRequest(ok));
  const rejected: [string, Uint8Array][] = [
    ['no SOFTWARE', msg(0x0001, [], { fp: 'good' })],
    ['other SOFTWARE', msg(0x0001, [[Attr.Software, new TextEncoder().encode('tailnodf')]], { fp: 'good' })],
    ['SOFTWARE with trailing NUL', msg(0x0001, [[Attr.Software, new TextEncoder().encode('tailnode\0')]], { fp: 'good' })],
    ['bad FINGERPRINT', msg(0x0001, [SW_TAILNODE], { fp: 'bad' })],
    ['no FINGERPRINT', msg(0x0001, [SW_TAILNODE])],
    ['FINGERPRINT not last', (() => {
      const m = msg(0x0001, [SW_TAILNODE], { fp: 'good' });
      return msg(0x0001, [SW_TAILNODE, [Attr.Fingerprint, m.subarray(36)], [0x8030, new Uint8Array(4)]]);
    })()],
    ['binding indication', msg(0x0011, [SW_TAILNODE], { fp: 'good' })],
    ['binding success response', msg(0x0101, [SW_TAILNODE], { fp: 'good' })],
    ['allocate request', msg(0x0003, [SW_TAILNODE], { fp: 'good' })],
    ['truncated attribute', buildTailnodeRequest(TXID).subarray(0, 38)],
    ['top bits set', (() => { const m = buildTailnodeRequest(TXID); m[0] = 0x40; return m; })()],
    ['no cookie', (() => { const m = buildTailnodeRequest(TXID); m[4] = 0; return m; })()],
    ['19 bytes', buildTailnodeRequest(TXID).subarray(0, 19)],
    ['empty', new Uint8Array(0)],
    ['text', new TextEncoder().encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
  ];
  for (const [name, b] of rejected) {
    assert.equal(parseTailnodeRequest(b), null, name);
    const r = parseRequest(b);
    assert.ok(r === null || r.kind === 'rfc5389', name);
  }
  // Not answered at all even in generic mode:
  for (const name of ['bad FINGERPRINT', 'FINGERPRINT not last', 'binding indication', 'binding success response', 'allocate request', 'top bits set', 'no cookie', '19 bytes', 'empty', 'text']) {
    assert.equal(parseRequest(rejected.find(([n]) => n === name)![1]), null, name);
  }
  // derper ignores the header length field; the FINGERPRINT still covers the header as sent.
  assert.ok(parseTailnodeRequest(msg(0x0001, [SW_TAILNODE], { fp: 'good', length: 0 })));
  assert.ok(parseTailnodeRequest(msg(0x0001, [[0x8030, unhex('aabbcc')], SW_TAILNODE], { fp: 'good' })), 'extra attributes are fine');
});

test('generic RFC 5389 requests', () => {
  assert.deepEqual(parseRequest(buildBindingRequest(TXID)), { txid: TXID, kind: 'rfc5389', fingerprint: false, unknownAttributes: [] });
  assert.equal(hex(buildBindingRequest(TXID)), '000100002112a4420102030405060708090a0b0c');
  const withFp = buildBindingRequest(TXID, { fingerprint: true, software: 'x' });
  assert.equal(withFp.length, 20 + 8 + 8);
  assert.deepEqual(parseRequest(withFp), { txid: TXID, kind: 'rfc5389', fingerprint: true, unknownAttributes: [] });
  assert.equal(parseRequest(buildBindingRequest(TXID, { software: 'tailnode', fingerprint: true }))?.kind, 'tailnode');
  // Header length must be a multiple of 4 and cover the datagram exactly.
  assert.equal(parseRequest(msg(0x0001, [], { length: 4 })), null);
  assert.equal(parseRequest(msg(0x0001, [[0x8030, new Uint8Array(4)]], { length: 6 })), null);
  assert.equal(parseRequest(new Uint8Array([...buildBindingRequest(TXID), 1, 2, 3, 4])), null);
  assert.equal(parseRequest(new Uint8Array([...buildBindingRequest(TXID, { fingerprint: true }), 0x80, 0x30, 0, 0])), null, 'FINGERPRINT not last');
  // Unknown comprehension-required attributes are reported (for a 420); optional ones are ignored.
  const changeReq = msg(0x0001, [[0x0003, new Uint8Array(4)], [0x0003, new Uint8Array(4)], [0x8030, new Uint8Array(2)], [Attr.Username, unhex('61')]], { fp: 'good' });
  assert.deepEqual(parseRequest(changeReq), { txid: TXID, kind: 'rfc5389', fingerprint: true, unknownAttributes: [0x0003] });
  const many = msg(0x0001, Array.from({ length: 40 }, (_, i): [number, Uint8Array] => [0x0100 + i, new Uint8Array(0)]));
  assert.equal(parseRequest(many)?.unknownAttributes.length, MAX_UNKNOWN_ATTRIBUTES);
  // FINGERPRINT must be last and correct; a wrong-length one is malformed.
  assert.equal(parseRequest(msg(0x0001, [[Attr.Fingerprint, new Uint8Array(2)]])), null);
});

test('error response layout (420 Unknown Attribute)', () => {
  const b = buildErrorResponse(TXID, 420, 'Unknown Attribute', { unknownAttributes: [0x0003], fingerprint: true });
  assert.equal(hex(b.subarray(0, 20)), '0111002c2112a4420102030405060708090a0b0c');
  assert.equal(hex(b.subarray(20, 56)), '0009001500000414' + hex(new TextEncoder().encode('Unknown Attribute')) + '000000' + '000a00020003' + '0000');
  assert.equal(b.length, 64);
  assert.equal(hex(b.subarray(56, 60)), '80280004');
  assert.equal(new DataView(b.buffer).getUint32(60), fingerprint(b.subarray(0, 56)));
  assert.ok(hasCode(catchErr(() => parseResponse(b)), StunErrorCode.NotSuccessResponse));
});

function catchErr(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

test('response parsing as Tailscale clients do', () => {
  const xor = buildResponse(TXID, { address: '198.51.100.7', port: 4242 });
  const xorVal = xor.subarray(24, 32);
  const mapped: [number, Uint8Array] = [Attr.MappedAddress, unhex('00010d05cb007101')]; // 203.0.113.1:3333
  assert.deepEqual(parseResponse(msg(0x0101, [[0x8020, xorVal]])).address, { address: '198.51.100.7', port: 4242 }, '0x8020 accepted');
  assert.deepEqual(parseResponse(msg(0x0101, [mapped])).address, { address: '203.0.113.1', port: 3333 }, 'MAPPED-ADDRESS fallback');
  assert.deepEqual(parseResponse(msg(0x0101, [mapped, [0x0020, xorVal]])).address, { address: '198.51.100.7', port: 4242 }, 'XOR preferred');
  // XOR-MAPPED-ADDRESS carrying a v4-mapped IPv6 address is unmapped.
  const v6 = buildResponse(TXID, { address: '::1', port: 9 });
  const mappedV6 = unhex(hex(v6));
  const ip = parseIp('::ffff:10.1.2.3')!;
  for (let i = 0; i < 16; i++) mappedV6[28 + i] = ip[i]! ^ (i < 4 ? [0x21, 0x12, 0xa4, 0x42][i]! : TXID[i - 4]!);
  assert.deepEqual(parseResponse(mappedV6).address, { address: '10.1.2.3', port: 9 });
  // Body trimmed to the header length: a trailing attribute past it is ignored.
  assert.deepEqual(parseResponse(new Uint8Array([...xor, 0xff, 0xff])).address.port, 4242);
  // coturn's real answer (XOR-MAPPED, MAPPED, RESPONSE-ORIGIN, SOFTWARE), captured from coturn 4.6.1.
  const coturn = unhex('0101003c2112a4421bd083daf3094e0a47ff789b00200008000181aa5e12a443000100080001a0b87f000001802b00080001db487f00000180220014436f7475726e2d342e362e312027476f72737427');
  assert.deepEqual(parseResponse(coturn), { txid: unhex('1bd083daf3094e0a47ff789b'), address: { address: '127.0.0.1', port: 41144 } });
  const errs: [string, Uint8Array, string][] = [
    ['not stun', unhex('deadbeef'), StunErrorCode.NotStun],
    ['request', buildTailnodeRequest(TXID), StunErrorCode.NotSuccessResponse],
    ['length past end', msg(0x0101, [], { length: 8 }), StunErrorCode.MalformedAttrs],
    ['short xor', msg(0x0101, [[0x0020, unhex('0001')]]), StunErrorCode.MalformedAttrs],
    ['truncated v6', msg(0x0101, [[0x0020, unhex('00020000aabbccdd')]]), StunErrorCode.MalformedAttrs],
    ['no address', msg(0x0101, [[Attr.Software, unhex('61')]]), StunErrorCode.NoAddress],
    ['unknown family only', msg(0x0101, [[0x0020, unhex('00030000aabbccdd')]]), StunErrorCode.NoAddress],
  ];
  for (const [name, b, code] of errs) assert.ok(hasCode(catchErr(() => parseResponse(b)), code), name);
});

test('isStunMessage', () => {
  assert.ok(isStunMessage(buildTailnodeRequest(TXID)));
  assert.ok(!isStunMessage(new Uint8Array(19)));
  assert.ok(!isStunMessage(new Uint8Array(20)));
});

test('encoders reject bad arguments with stun_bad_argument', () => {
  for (const fn of [
    () => buildTailnodeRequest(new Uint8Array(11)),
    () => buildResponse(TXID, { address: 'example.com', port: 1 }),
    () => buildResponse(TXID, { address: '1.2.3.4', port: 70000 }),
    () => buildResponse(TXID, { address: '1.2.3.256', port: 1 }),
    () => buildResponse(TXID, { address: '1::2::3', port: 1 }),
    () => buildBindingRequest(TXID, { software: 'x'.repeat(800) }),
    () => buildErrorResponse(TXID, 200, 'x'),
  ]) assert.ok(hasCode(catchErr(fn), StunErrorCode.BadArgument), fn.toString());
});

const arbIp = fc.oneof(fc.ipV4(), fc.ipV6());

test('round trip: responses (fast-check)', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 12, maxLength: 12 }), arbIp, fc.integer({ min: 0, max: 65535 }), fc.boolean(), (txid, ip, port, fp) => {
    const want = formatIp(parseIp(ip)!, true);
    const b = buildResponse(txid, { address: ip, port }, { fingerprint: fp });
    assert.equal(b.length, (want.includes(':') ? 44 : 32) + (fp ? 8 : 0));
    const r = parseResponse(strict(b));
    assert.deepEqual(r, { txid, address: { address: want, port } });
  }), { numRuns: 500 });
});

test('round trip: requests (fast-check)', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 12, maxLength: 12 }), fc.option(fc.string({ maxLength: 40 })), fc.boolean(), (txid, software, fp) => {
    const b = buildBindingRequest(txid, { ...(software === null ? {} : { software }), fingerprint: fp });
    const r = parseRequest(strict(b));
    assert.ok(r);
    assert.deepEqual(r.txid, txid);
    assert.equal(r.kind, software === 'tailnode' && fp ? 'tailnode' : 'rfc5389');
    assert.deepEqual(parseRequest(strict(buildTailnodeRequest(txid)))?.kind, 'tailnode');
  }), { numRuns: 300 });
});

/** Arbitrary bytes, and valid messages with random byte flips / truncation / extension. */
const arbPacket = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  fc.tuple(fc.uint8Array({ maxLength: 120 })).map(([tail]) => new Uint8Array([0x00, 0x01, 0x00, tail.length & 0xfc, 0x21, 0x12, 0xa4, 0x42, ...TXID, ...tail])),
  fc.tuple(fc.constantFrom(buildTailnodeRequest(TXID), buildResponse(TXID, { address: '2001:db8::1', port: 1 }), buildBindingRequest(TXID, { fingerprint: true, software: 'abc' })),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.integer({ min: -8, max: 8 }))
    .map(([base, flips, delta]) => {
      const b = new Uint8Array(Math.max(0, base.length + delta));
      b.set(base.subarray(0, b.length));
      for (const [i, v] of flips) if (b.length > 0) b[i % b.length] = v;
      return b;
    }),
);

test('the strict view really catches out-of-bounds reads', () => {
  const v = strict(new Uint8Array(2));
  assert.equal(v[1], 0);
  assert.throws(() => v[2], RangeError);
  assert.equal(v.subarray(1).length, 1);
});

test('fuzz: parseRequest never throws and never reads out of bounds', () => {
  fc.assert(fc.property(arbPacket, (b) => {
    const r = parseRequest(strict(b));
    if (r !== null) {
      assert.equal(r.txid.length, 12);
      assert.ok(isStunMessage(b));
    }
    parseTailnodeRequest(strict(b));
  }), { numRuns: 2000 });
});

test('fuzz: parseResponse throws only WiremeshError and never reads out of bounds', () => {
  fc.assert(fc.property(arbPacket, (b) => {
    try {
      const r = parseResponse(strict(b));
      assert.ok(r.address.port >= 0 && r.address.port <= 65535);
      assert.ok(!r.address.address.toLowerCase().startsWith('::ffff:'));
    } catch (e) {
      assert.ok(e instanceof WiremeshError, String(e));
    }
  }), { numRuns: 2000 });
});
