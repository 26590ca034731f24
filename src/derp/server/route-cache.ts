/**
 * A sender's last routing decision (spec/derp.md §9.1: SendPacket is routed by its 32-byte destination key). A DERP
 * client usually sends runs of packets to one peer, so the server keeps, per sender, the last destination key and
 * what it resolved to, and skips building a key string and a Map lookup while the next frame names the same key.
 * `gen` is the registry generation the entry was made in; the server bumps its generation whenever a key's entry
 * leaves the registry, which invalidates every cached entry at once.
 *
 * Keys are compared and written as four 64-bit words through a DataView (cached for the last buffer: the relay
 * reads nearly every frame from one reused read buffer), about half the cost of Buffer's per-byte readers.
 */
import { KEY_LEN } from '../constants.ts';

let viewed: Uint8Array | null = null;
let view: DataView | null = null;

/** A DataView of `buf`, reused while the same buffer is asked about again. */
function viewOf(buf: Uint8Array): DataView {
  if (buf !== viewed) {
    view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    viewed = buf;
  }
  return view!;
}

export class RouteCache<T> {
  /** Registry generation of the cached entry (-1: none). */
  gen = -1;
  #k0 = 0n;
  #k1 = 0n;
  #k2 = 0n;
  #k3 = 0n;
  #value: T | undefined = undefined;

  /** The cached value if `buf` holds the cached key at `off` (the caller checks `gen`). */
  lookup(buf: Uint8Array, off: number): T | undefined {
    if (this.gen < 0) return undefined;
    const d = viewOf(buf);
    return d.getBigInt64(off, true) === this.#k0 && d.getBigInt64(off + 8, true) === this.#k1 &&
      d.getBigInt64(off + 16, true) === this.#k2 && d.getBigInt64(off + 24, true) === this.#k3 ? this.#value : undefined;
  }

  /** Caches `value` for the key at `buf[off]`. */
  remember(buf: Uint8Array, off: number, value: T, gen: number): void {
    const d = new DataView(buf.buffer, buf.byteOffset + off, KEY_LEN);
    this.#k0 = d.getBigInt64(0, true);
    this.#k1 = d.getBigInt64(8, true);
    this.#k2 = d.getBigInt64(16, true);
    this.#k3 = d.getBigInt64(24, true);
    this.#value = value;
    this.gen = gen;
  }
}

/** The last key written by writeKey(), as words. */
let written: Uint8Array | null = null;
let w0 = 0n;
let w1 = 0n;
let w2 = 0n;
let w3 = 0n;

/**
 * Writes the 32-byte `key` at `buf[off]` (a relayed frame's source key: runs of frames share one key). Keys are
 * recognised by identity, so a key array must never change its bytes (connection keys never do).
 */
export function writeKey(buf: Uint8Array, off: number, key: Uint8Array): void {
  if (key !== written) {
    const k = new DataView(key.buffer, key.byteOffset, KEY_LEN);
    w0 = k.getBigInt64(0, true);
    w1 = k.getBigInt64(8, true);
    w2 = k.getBigInt64(16, true);
    w3 = k.getBigInt64(24, true);
    written = key;
  }
  const d = viewOf(buf);
  d.setBigInt64(off, w0, true);
  d.setBigInt64(off + 8, w1, true);
  d.setBigInt64(off + 16, w2, true);
  d.setBigInt64(off + 24, w3, true);
}
