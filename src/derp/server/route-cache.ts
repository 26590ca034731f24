/**
 * A sender's last routing decision (spec/derp.md §9.1: SendPacket is routed by its 32-byte destination key). A DERP
 * client usually sends runs of packets to one peer, so the server keeps, per sender, the last destination key and
 * what it resolved to, and skips building a key string and a Map lookup while the next frame names the same key.
 * `gen` is the registry generation the entry was made in; the server bumps its generation whenever a key's entry
 * leaves the registry, which invalidates every cached entry at once.
 */
import { KEY_LEN } from '../constants.ts';

const WORDS = KEY_LEN / 4;

export class RouteCache<T> {
  /** Registry generation of the cached entry (-1: none). */
  gen = -1;
  #key: Int32Array | null = null;
  #value: T | undefined = undefined;

  /** The cached value if `buf` holds the cached key at `off` (the caller checks `gen`). */
  lookup(buf: Buffer, off: number): T | undefined {
    const k = this.#key;
    if (k === null) return undefined;
    for (let i = 0; i < WORDS; i++) if (buf.readInt32LE(off + i * 4) !== k[i]) return undefined;
    return this.#value;
  }

  /** Caches `value` for the key at `buf[off]`. */
  remember(buf: Buffer, off: number, value: T, gen: number): void {
    const k = (this.#key ??= new Int32Array(WORDS));
    for (let i = 0; i < WORDS; i++) k[i] = buf.readInt32LE(off + i * 4);
    this.#value = value;
    this.gen = gen;
  }
}
