// Key text forms and clamping (spec/derp.md §2), NaCl box interop shape (nonce ∥ tag ∥ ciphertext).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  clamp, constantTimeEqual, generatePrivate, nodePublicText, parseNodePublic, parsePrivate, privateText, publicFromPrivate, shortKey,
} from '../../../src/types/key.ts';
import { boxBeforeNm, openBox, sealBox } from '../../../src/derp/box.ts';
import { hasCode } from '../../../src/errors.ts';

test('clamping as Tailscale generates keys', () => {
  const k = clamp(new Uint8Array(32).fill(0xff));
  assert.equal(k[0], 248);
  assert.equal(k[31], 127);
  assert.equal(clamp(new Uint8Array(32))[31], 64);
});

test('text forms round-trip and reject bad input with a typed error', () => {
  const priv = generatePrivate();
  const pub = publicFromPrivate(priv);
  assert.match(nodePublicText(pub), /^nodekey:[0-9a-f]{64}$/);
  assert.deepEqual(parseNodePublic(nodePublicText(pub)), Uint8Array.from(pub));
  assert.deepEqual(parsePrivate(privateText(priv)), Uint8Array.from(priv));
  for (const bad of ['nodekey:', 'nodekey:zz', `privkey:${'0'.repeat(64)}`, `nodekey:${'0'.repeat(63)}`]) {
    assert.throws(() => parseNodePublic(bad), (e: unknown) => hasCode(e, 'invalid_key'), bad);
  }
  assert.match(shortKey(pub), /^\[[A-Za-z0-9+/]{5}\]$/);
});

test('X25519 matches the RFC 7748 §6.1 test vector', () => {
  const alicePriv = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex');
  const alicePub = publicFromPrivate(clamp(alicePriv));
  assert.equal(Buffer.from(alicePub).toString('hex'), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
});

test('box: sealed form is nonce(24) ∥ tag(16) ∥ ciphertext and opens only with the right keys', () => {
  const a = generatePrivate();
  const b = generatePrivate();
  const ab = boxBeforeNm(a, publicFromPrivate(b));
  const ba = boxBeforeNm(b, publicFromPrivate(a));
  assert.ok(constantTimeEqual(ab, ba));
  const sealed = sealBox(ab, Buffer.from('{"version":2}'));
  assert.equal(sealed.length, 24 + 16 + 13);
  assert.equal(Buffer.from(openBox(ba, sealed)).toString(), '{"version":2}');
  const tampered = Uint8Array.from(sealed);
  tampered[30]! ^= 1;
  assert.throws(() => openBox(ba, tampered), (e: unknown) => hasCode(e, 'box_open_failed'));
  assert.throws(() => boxBeforeNm(a, new Uint8Array(32)), (e: unknown) => hasCode(e, 'zero_key'));
});

test('fast-check: openBox never throws anything but box_open_failed', () => {
  const k = boxBeforeNm(generatePrivate(), publicFromPrivate(generatePrivate()));
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
    try {
      openBox(k, b);
      assert.fail('random bytes opened');
    } catch (e) {
      assert.ok(hasCode(e, 'box_open_failed'));
    }
  }), { numRuns: 300 });
});
