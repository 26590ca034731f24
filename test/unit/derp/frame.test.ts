// DERP frame codec: golden vectors (spec/derp.md §20), every-byte-boundary chunk splits, and fast-check fuzzing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  FrameReader, decodePeerGone, decodePeerPresent, decodeRestarting, decodeServerKey, encodeFrame, encodeHealth,
  encodeKeepAlive, encodeNotePreferred, encodePeerGone, encodePeerPresent, encodePing, encodeRestarting,
  encodeServerKey, encodeWatchConns, looksLikeDisco,
} from '../../../src/derp/frame.ts';
import { FrameType, MAX_PACKET_SIZE, PeerGoneReason } from '../../../src/derp/constants.ts';
import { hasCode, WiremeshError } from '../../../src/errors.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const KEY = Buffer.alloc(32, 0xab);

test('golden frames from spec §20', () => {
  const table: [string, Buffer, string][] = [
    ['Ping 01..08', encodePing(Buffer.from('0102030405060708', 'hex')), '12000000080102030405060708'],
    ['Health BAD', encodeHealth('BAD'), '1400000003424144'],
    ['Restarting 1ms 2ms', encodeRestarting(1, 2), '15000000080000000100000002'],
    ['KeepAlive', encodeKeepAlive(), '0600000000'],
    ['NotePreferred(true)', encodeNotePreferred(true), '070000000101'],
    ['WatchConns', encodeWatchConns(), '1000000000'],
    ['ServerKey', encodeServerKey(KEY), '010000002844455250f09f9491' + hex(KEY)],
    ['PeerGone NotHere', encodePeerGone(KEY, PeerGoneReason.NotHere), '0800000021' + hex(KEY) + '01'],
    ['PeerPresent', encodePeerPresent(KEY, Buffer.from('00000000000000000000ffffc0000201', 'hex'), 443, 0x06),
      '0900000033' + hex(KEY) + '00000000000000000000ffffc000020101bb06'],
  ];
  for (const [name, got, want] of table) assert.equal(hex(got), want, name);
});

test('payload decoders accept the short forms clients must tolerate', () => {
  assert.deepEqual(decodePeerGone(KEY), { key: Uint8Array.from(KEY), reason: 0 });
  const p = decodePeerPresent(KEY);
  assert.equal(p.ip16, null);
  const p50 = decodePeerPresent(Buffer.concat([KEY, Buffer.alloc(16, 1), Buffer.from([0x01, 0xbb])]));
  assert.equal(p50.port, 443);
  assert.equal(p50.flags, 0);
  assert.deepEqual(decodeRestarting(Buffer.from('0000000100000002', 'hex')), { reconnectInMs: 1, tryForMs: 2 });
  assert.deepEqual(decodeServerKey(encodeServerKey(KEY).subarray(5)), Uint8Array.from(KEY));
  assert.throws(() => decodeServerKey(Buffer.alloc(40)), (e: unknown) => hasCode(e, 'bad_magic'));
  assert.throws(() => decodePeerGone(Buffer.alloc(31)), (e: unknown) => hasCode(e, 'short_peer_gone'));
});

test('disco classification: 62-byte TS💬 prefix is the shortest disco payload', () => {
  const magic = Buffer.from('5453f09f92ac', 'hex');
  assert.equal(looksLikeDisco(Buffer.concat([magic, Buffer.alloc(56)])), true);
  assert.equal(looksLikeDisco(Buffer.concat([magic, Buffer.alloc(55)])), false);
  assert.equal(looksLikeDisco(Buffer.alloc(100)), false);
});

function readAll(chunks: Uint8Array[], limit = MAX_PACKET_SIZE + 64): { type: number; payload: string }[] {
  const r = new FrameReader(() => limit);
  const out: { type: number; payload: string }[] = [];
  for (const c of chunks) {
    r.push(c);
    for (let f = r.next(); f !== null; f = r.next()) out.push({ type: f.type, payload: hex(f.payload) });
  }
  assert.equal(r.buffered, 0);
  return out;
}

test('FrameReader: a stream split at every byte boundary yields the same frames', () => {
  const stream = Buffer.concat([encodePing(Buffer.alloc(8, 7)), encodeKeepAlive(), encodeFrame(FrameType.SendPacket, KEY, Buffer.alloc(300, 9)), encodeHealth('')]);
  const whole = readAll([stream]);
  assert.equal(whole.length, 4);
  for (let i = 0; i <= stream.length; i++) {
    assert.deepEqual(readAll([stream.subarray(0, i), stream.subarray(i)]), whole, `split at ${i}`);
  }
  assert.deepEqual(readAll([...stream].map((b) => Uint8Array.of(b))), whole, 'one byte at a time');
});

test('FrameReader: oversized length is rejected from the header, before the payload is buffered', () => {
  const r = new FrameReader((t) => (t === FrameType.SendPacket ? 32 + MAX_PACKET_SIZE : 0));
  r.push(Buffer.from([FrameType.SendPacket, 0x00, 0x01, 0x00, 0x21]));
  assert.throws(() => r.next(), (e: unknown) => e instanceof WiremeshError && e.code === 'frame_too_large');
});

test('fast-check: any frame sequence in any chunking round-trips', () => {
  const frameArb = fc.record({ type: fc.integer({ min: 0, max: 255 }), payload: fc.uint8Array({ maxLength: 2000 }) });
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }), (frames, cuts) => {
      const stream = Buffer.concat(frames.map((f) => encodeFrame(f.type, f.payload)));
      const chunks: Buffer[] = [];
      let o = 0;
      for (let i = 0; o < stream.length; i++) {
        const n = cuts[i % cuts.length]!;
        chunks.push(stream.subarray(o, o + n));
        o += n;
      }
      assert.deepEqual(readAll(chunks, 4096), frames.map((f) => ({ type: f.type, payload: hex(f.payload) })));
    }),
    { numRuns: 300 },
  );
});

test('fast-check: random bytes never crash the reader (only frame_too_large or partial frames)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 4000 }), (bytes) => {
      const r = new FrameReader(() => 1024);
      r.push(bytes);
      try {
        while (r.next() !== null) { /* drain */ }
      } catch (e) {
        assert.ok(hasCode(e, 'frame_too_large'));
      }
    }),
    { numRuns: 500 },
  );
});
