/** X25519 on node:crypto (src/types/x25519.ts): RFC 7748 §6.1 golden vectors, low-order rejection, symmetry. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { x25519Public, x25519Shared } from '../../../src/types/x25519.ts';
import { WiremeshError } from '../../../src/errors.ts';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// RFC 7748 §6.1
const ALICE_PRIV = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
const ALICE_PUB = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a';
const BOB_PRIV = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
const BOB_PUB = 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f';
const SHARED = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';

describe('X25519 (node:crypto)', () => {
  it('derives the RFC 7748 §6.1 public keys', () => {
    assert.equal(toHex(x25519Public(ALICE_PRIV)), ALICE_PUB);
    assert.equal(toHex(x25519Public(BOB_PRIV)), BOB_PUB);
  });

  it('computes the RFC 7748 §6.1 shared secret from both sides', () => {
    assert.equal(toHex(x25519Shared(ALICE_PRIV, hex(BOB_PUB))), SHARED);
    assert.equal(toHex(x25519Shared(BOB_PRIV, hex(ALICE_PUB))), SHARED);
  });

  it('rejects a low-order public key and wrong lengths with bad_key', () => {
    for (const pub of [new Uint8Array(32), hex('0100000000000000000000000000000000000000000000000000000000000000'), new Uint8Array(31)]) {
      assert.throws(() => x25519Shared(ALICE_PRIV, pub), (e: unknown) => e instanceof WiremeshError && e.code === 'bad_key');
    }
    assert.throws(() => x25519Public(new Uint8Array(16)), (e: unknown) => e instanceof WiremeshError && e.code === 'bad_key');
  });

  it('is symmetric for random keys', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (a, b) => {
      assert.deepEqual(x25519Shared(a, x25519Public(b)), x25519Shared(b, x25519Public(a)));
    }), { numRuns: 50 });
  });
});
