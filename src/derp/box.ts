/**
 * NaCl crypto_box as DERP uses it (spec/derp.md §2, §6): X25519 → HSalsa20 → XSalsa20-Poly1305, byte-compatible
 * with Go's nacl/box and tweetnacl. The sealed form on the wire is nonce(24) ∥ tag(16) ∥ ciphertext.
 */
import { hsalsa, xsalsa20poly1305 } from '@noble/ciphers/salsa.js';
import { WiremeshError } from '../errors.ts';
import { isZeroKey } from '../types/key.ts';
import { x25519Shared } from '../types/x25519.ts';
import { NONCE_LEN } from './constants.ts';

const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);

function u8to32(b: Uint8Array): Uint32Array {
  const out = new Uint32Array(b.length / 4);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = v.getUint32(i * 4, true);
  return out;
}

/** The precomputed shared key of crypto_box_beforenm: HSalsa20(X25519(priv, pub), zero nonce). */
export function boxBeforeNm(priv: Uint8Array, peerPublic: Uint8Array): Uint8Array {
  if (isZeroKey(peerPublic) || isZeroKey(priv)) throw new WiremeshError('zero_key', 'box with an all-zero key');
  const shared = x25519Shared(priv, peerPublic);
  const out = new Uint32Array(8);
  hsalsa(SIGMA, u8to32(shared), new Uint32Array(4), out);
  const k = new Uint8Array(32);
  const v = new DataView(k.buffer);
  for (let i = 0; i < 8; i++) v.setUint32(i * 4, out[i]!, true);
  return k;
}

/** Seals `plaintext` and returns nonce ∥ tag ∥ ciphertext. */
export function sealBox(sharedKey: Uint8Array, plaintext: Uint8Array, nonce: Uint8Array = crypto.getRandomValues(new Uint8Array(NONCE_LEN))): Uint8Array {
  const sealed = xsalsa20poly1305(sharedKey, nonce).encrypt(plaintext);
  const out = new Uint8Array(NONCE_LEN + sealed.length);
  out.set(nonce, 0);
  out.set(sealed, NONCE_LEN);
  return out;
}

/** Opens nonce ∥ tag ∥ ciphertext; throws `box_open_failed` if it does not authenticate. */
export function openBox(sharedKey: Uint8Array, sealed: Uint8Array): Uint8Array {
  if (sealed.length < NONCE_LEN + 16) throw new WiremeshError('box_open_failed', 'sealed box too short');
  try {
    return xsalsa20poly1305(sharedKey, sealed.subarray(0, NONCE_LEN)).decrypt(sealed.subarray(NONCE_LEN));
  } catch (e) {
    throw new WiremeshError('box_open_failed', 'box did not open', { cause: e });
  }
}
