/**
 * The connections of one key and the duplicate-connection policy `lastWriterIsActive` (spec/derp.md §10): the
 * newest connection is active; any frame received on a duplicate makes it active; when the active one closes, the
 * most recently active survivor takes over. Connections are kept in activity order, the active one last.
 */
import type { NodePublic } from '../../types/key.ts';

export class KeyConns<C> {
  readonly key: NodePublic;
  readonly keyId: string;
  #conns: C[] = [];

  constructor(key: NodePublic, keyId: string) {
    this.key = key;
    this.keyId = keyId;
  }

  get size(): number {
    return this.#conns.length;
  }

  /** The connection that receives packets for this key. */
  get active(): C | undefined {
    return this.#conns[this.#conns.length - 1];
  }

  /** All connections, least recently active first. */
  get conns(): readonly C[] {
    return this.#conns;
  }

  /** A new connection becomes the active one. */
  add(c: C): void {
    this.#conns.push(c);
  }

  /** A frame arrived on `c`: it becomes active (cheap no-op for the single-connection case). */
  noteActivity(c: C): void {
    const n = this.#conns.length;
    if (n < 2 || this.#conns[n - 1] === c) return;
    const i = this.#conns.indexOf(c);
    if (i < 0) return;
    this.#conns.splice(i, 1);
    this.#conns.push(c);
  }

  /** Removes `c`; the most recently active survivor (if any) is active afterwards. */
  remove(c: C): boolean {
    const i = this.#conns.indexOf(c);
    if (i < 0) return false;
    this.#conns.splice(i, 1);
    return true;
  }
}
