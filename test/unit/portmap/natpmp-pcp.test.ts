/**
 * NAT-PMP and PCP codecs: golden vectors (bytes as in RFC 6886 / RFC 6887 and as miniupnpd sent them in the lab),
 * typed rejections (truncated, malformed, wrong opcode, result codes, wrong nonce), and fast-check fuzzing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { WiremeshError } from '../../../src/errors.ts';
import { PortmapErrorCode } from '../../../src/portmap/constants.ts';
import {
  encodePmpExternalAddressRequest, encodePmpMapRequest, parsePmpResponse,
} from '../../../src/portmap/natpmp.ts';
import {
  encodePcpAnnounceRequest, encodePcpMapRequest, parsePcpResponse, verifyPcpMapResponse,
} from '../../../src/portmap/pcp.ts';
import { returnsOrThrowsTyped, throwsCode } from '../typed-errors.ts';

const h = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('NAT-PMP codec', () => {
  it('encodes the external-address request as 00 00', () => {
    assert.equal(hex(encodePmpExternalAddressRequest()), '0000');
  });
  it('encodes a UDP map request (golden)', () => {
    const b = encodePmpMapRequest({ protocol: 'udp', internalPort: 41641, externalPort: 0, lifetime: 7200 });
    assert.equal(hex(b), '00010000' + 'a2a9' + '0000' + '00001c20');
  });
  it('encodes a delete (lifetime 0, external 0)', () => {
    assert.equal(hex(encodePmpMapRequest({ protocol: 'udp', internalPort: 7777, externalPort: 0, lifetime: 0 })), '0001000' + '01e61000000000000');
  });
  it('parses an external-address response (golden)', () => {
    const r = parsePmpResponse(h('00 80 0000 000004ae cb007101'));
    assert.deepEqual(r, { kind: 'externalAddress', epoch: 1198, externalIp: '203.0.113.1' });
  });
  it('parses a UDP map response (golden)', () => {
    const r = parsePmpResponse(h('00 81 0000 000004af 1e61 1e61 00000e10'));
    assert.deepEqual(r, { kind: 'map', protocol: 'udp', epoch: 1199, internalPort: 7777, externalPort: 7777, lifetime: 3600 });
  });
  it('returns null for a PCP datagram (version 2)', () => {
    assert.equal(parsePmpResponse(h('02 80 0000 00000000 00000000 000000000000000000000000')), null);
  });
  it('rejects truncated responses', () => {
    throwsCode(() => parsePmpResponse(new Uint8Array(0)), PortmapErrorCode.Truncated);
    throwsCode(() => parsePmpResponse(h('00 80 0000')), PortmapErrorCode.Truncated);
    throwsCode(() => parsePmpResponse(h('00 80 0000 000004ae cb00')), PortmapErrorCode.Truncated);
    throwsCode(() => parsePmpResponse(h('00 81 0000 000004af 1e61 1e61 0000')), PortmapErrorCode.Truncated);
  });
  it('rejects requests and unknown opcodes', () => {
    throwsCode(() => parsePmpResponse(h('00 01 0000 000004af 1e61 1e61 00000e10')), PortmapErrorCode.UnexpectedOpcode);
    throwsCode(() => parsePmpResponse(h('00 85 0000 000004af 1e61 1e61 00000e10')), PortmapErrorCode.UnexpectedOpcode);
  });
  it('turns a non-zero result into PORTMAP_RESULT_CODE naming it', () => {
    assert.throws(() => parsePmpResponse(h('00 81 0002 000004af')), /NotAuthorized/);
    throwsCode(() => parsePmpResponse(h('00 81 0003 000004af')), PortmapErrorCode.ResultCode);
  });
  it('rejects a map response for port 0', () => {
    throwsCode(() => parsePmpResponse(h('00 81 0000 000004af 0000 1e61 00000e10')), PortmapErrorCode.Malformed);
  });
  it('refuses to encode bad ports and lifetimes', () => {
    throwsCode(() => encodePmpMapRequest({ protocol: 'udp', internalPort: 0, externalPort: 0, lifetime: 1 }), PortmapErrorCode.Malformed);
    throwsCode(() => encodePmpMapRequest({ protocol: 'udp', internalPort: 1, externalPort: 70000, lifetime: 1 }), PortmapErrorCode.Malformed);
    throwsCode(() => encodePmpMapRequest({ protocol: 'udp', internalPort: 1, externalPort: 0, lifetime: -1 }), PortmapErrorCode.Malformed);
  });
  it('fuzz: any bytes parse or throw a WiremeshError; round-trips map responses', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => void returnsOrThrowsTyped(() => parsePmpResponse(b))), { numRuns: 2000 });
    fc.assert(fc.property(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 65535 }), fc.nat(), fc.nat(), (ip, ep, life, epoch) => {
      const b = new Uint8Array(16);
      const v = new DataView(b.buffer);
      b[1] = 0x81;
      v.setUint32(4, epoch);
      v.setUint16(8, ip);
      v.setUint16(10, ep);
      v.setUint32(12, life);
      assert.deepEqual(parsePmpResponse(b), { kind: 'map', protocol: 'udp', epoch, internalPort: ip, externalPort: ep, lifetime: life });
    }));
  });
});

// The PCP MAP request of spec/lab.md §7e (pcpmap.py 10.1.0.2 9999 → 19999, 600 s, nonce 00112233445566778899aabb).
const NONCE = h('00112233445566778899aabb');
const MAP_REQ = '02010000' + '00000258' + '00000000000000000000ffff0a010002' +
  '00112233445566778899aabb' + '11000000' + '270f' + '4e1f' + '00000000000000000000ffff00000000';
const mapResponse = (over: { result?: number; nonce?: string; proto?: string; iport?: string; eport?: string } = {}): Uint8Array =>
  h('02 81 00' + (over.result ?? 0).toString(16).padStart(2, '0') + '00000258' + '000004be' + '000000000000000000000000' +
    (over.nonce ?? '00112233445566778899aabb') + (over.proto ?? '11') + '000000' + (over.iport ?? '270f') + (over.eport ?? '4e1f') +
    '00000000000000000000ffffcb007101');
const REQ = { clientIp: '10.1.0.2', lifetime: 600, nonce: NONCE, internalPort: 9999, externalPort: 19999 };

describe('PCP codec', () => {
  it('encodes ANNOUNCE (24 bytes, opcode 0, lifetime 0, v4-mapped client)', () => {
    assert.equal(hex(encodePcpAnnounceRequest('10.1.0.2')), '02000000' + '00000000' + '00000000000000000000ffff0a010002');
  });
  it('encodes MAP exactly like the lab reference client (golden)', () => {
    assert.equal(hex(encodePcpMapRequest(REQ)), MAP_REQ);
  });
  it('parses a MAP response and verifies it against the request (golden)', () => {
    const r = parsePcpResponse(mapResponse());
    assert.ok(r !== null);
    assert.equal(r.opcode, 1);
    assert.equal(r.lifetime, 600);
    assert.equal(r.epoch, 1214);
    const m = verifyPcpMapResponse(r, REQ);
    assert.equal(m.externalIp, '203.0.113.1');
    assert.equal(m.externalPort, 19999);
    assert.equal(m.internalPort, 9999);
  });
  it('parses an ANNOUNCE response', () => {
    const r = parsePcpResponse(h('02 80 0000 00000000 00000010 000000000000000000000000'));
    assert.deepEqual(r, { opcode: 0, result: 0, lifetime: 0, epoch: 16 });
  });
  it('returns null for NAT-PMP (version 0)', () => {
    assert.equal(parsePcpResponse(h('00 80 0000 000004ae cb007101')), null);
  });
  it('rejects a wrong nonce with PORTMAP_NONCE_MISMATCH (before looking at the result)', () => {
    const r = parsePcpResponse(mapResponse({ nonce: 'ffffffffffffffffffffffff', result: 2 }))!;
    throwsCode(() => verifyPcpMapResponse(r, REQ), PortmapErrorCode.NonceMismatch);
  });
  it('rejects NOT_AUTHORIZED and other results with PORTMAP_RESULT_CODE', () => {
    assert.throws(() => verifyPcpMapResponse(parsePcpResponse(mapResponse({ result: 2 }))!, REQ), /NotAuthorized/);
    throwsCode(() => verifyPcpMapResponse(parsePcpResponse(mapResponse({ result: 8 }))!, REQ), PortmapErrorCode.ResultCode);
  });
  it('rejects a grant for another protocol or port, or external port 0', () => {
    throwsCode(() => verifyPcpMapResponse(parsePcpResponse(mapResponse({ proto: '06' }))!, REQ), PortmapErrorCode.Malformed);
    throwsCode(() => verifyPcpMapResponse(parsePcpResponse(mapResponse({ iport: '2710' }))!, REQ), PortmapErrorCode.Malformed);
    throwsCode(() => verifyPcpMapResponse(parsePcpResponse(mapResponse({ eport: '0000' }))!, REQ), PortmapErrorCode.Malformed);
  });
  it('rejects truncated, oversized, misaligned and request datagrams', () => {
    const full = mapResponse();
    throwsCode(() => parsePcpResponse(new Uint8Array(0)), PortmapErrorCode.Truncated);
    throwsCode(() => parsePcpResponse(full.slice(0, 20)), PortmapErrorCode.Truncated);
    throwsCode(() => parsePcpResponse(full.slice(0, 56)), PortmapErrorCode.Truncated);
    throwsCode(() => parsePcpResponse(full.slice(0, 58)), PortmapErrorCode.Malformed);
    const big = new Uint8Array(1104);
    big[0] = 2;
    big[1] = 0x81;
    throwsCode(() => parsePcpResponse(big), PortmapErrorCode.TooLarge);
    throwsCode(() => parsePcpResponse(h(MAP_REQ)), PortmapErrorCode.UnexpectedOpcode);
    const peer = full.slice();
    peer[1] = 0x82;
    throwsCode(() => parsePcpResponse(peer), PortmapErrorCode.UnexpectedOpcode);
  });
  it('refuses to encode a nonce of the wrong size', () => {
    throwsCode(() => encodePcpMapRequest({ ...REQ, nonce: new Uint8Array(8) }), PortmapErrorCode.Malformed);
  });
  it('fuzz: any bytes parse or throw a WiremeshError; verify never accepts a different nonce', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1200 }), (b) => void returnsOrThrowsTyped(() => parsePcpResponse(b))), { numRuns: 2000 });
    fc.assert(fc.property(fc.uint8Array({ minLength: 36, maxLength: 36 }), fc.nat(255), (body, result) => {
      const b = new Uint8Array(60);
      b[0] = 2;
      b[1] = 0x81;
      b[3] = result;
      b.set(body, 24);
      const r = parsePcpResponse(b)!;
      try {
        verifyPcpMapResponse(r, REQ);
        assert.equal(hex(r.map!.nonce), hex(NONCE));
      } catch (e) {
        assert.ok(e instanceof WiremeshError);
      }
    }), { numRuns: 2000 });
  });
});
