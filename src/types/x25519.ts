/**
 * X25519 (RFC 7748) on node:crypto, for the DERP handshake's NaCl box (spec/derp.md §2, §6) and key derivation.
 * OpenSSL's X25519 is ~20× faster than a pure-JS ladder: every DERP handshake costs the server one shared-secret
 * computation, so this is what bounds how fast a restarted relay takes its clients back. Raw 32-byte keys are
 * wrapped in the fixed PKCS#8 / SPKI DER prefixes for X25519 (RFC 8410); the server's own private KeyObject is
 * cached per key buffer.
 */
import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from 'node:crypto';
import { WiremeshError } from '../errors.ts';

/** PKCS#8 PrivateKeyInfo for id-X25519 (1.3.101.110) up to the 32-byte private key (RFC 8410 §7). */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
/** SubjectPublicKeyInfo for id-X25519 up to the 32-byte public key (RFC 8410 §4). */
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const KEY_LEN = 32;

const privateObjects = new WeakMap<Uint8Array, KeyObject>();

function privateObject(priv: Uint8Array): KeyObject {
  let k = privateObjects.get(priv);
  if (k === undefined) {
    if (priv.length !== KEY_LEN) throw new WiremeshError('bad_key', `X25519 private key must be ${KEY_LEN} bytes`);
    k = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, priv]), format: 'der', type: 'pkcs8' });
    privateObjects.set(priv, k);
  }
  return k;
}

/** X25519(priv, pub); throws `bad_key` for a malformed or low-order public key (all-zero shared secret). */
export function x25519Shared(priv: Uint8Array, pub: Uint8Array): Uint8Array {
  if (pub.length !== KEY_LEN) throw new WiremeshError('bad_key', `X25519 public key must be ${KEY_LEN} bytes`);
  try {
    const publicKey = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });
    return new Uint8Array(diffieHellman({ privateKey: privateObject(priv), publicKey }));
  } catch (e) {
    throw new WiremeshError('bad_key', 'X25519 failed (low-order or malformed public key)', { cause: e });
  }
}

/** The public key of a 32-byte private key (clamping as RFC 7748). */
export function x25519Public(priv: Uint8Array): Uint8Array {
  const der = createPublicKey(privateObject(priv)).export({ format: 'der', type: 'spki' });
  return new Uint8Array(der.subarray(SPKI_PREFIX.length));
}
