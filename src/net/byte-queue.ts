/**
 * A queue of received chunks read as one byte stream, for incremental parsers (DERP frames, HTTP heads). Taking
 * bytes that lie within one chunk returns a view of it (chunks are never reused, so views stay valid); bytes that
 * straddle chunks are copied once. Shared engine helper (DESIGN.md "Architecture: four layers"); the DERP framing
 * it serves is spec/derp.md §3.
 *
 * The usual case on a relay is one chunk at a time, consumed whole before the next arrives: it is held in its own
 * field, so that case allocates nothing (an array that empties and refills reallocates its backing store), and
 * borrow() queues the first bytes of a buffer without making a view of them.
 */
export class ByteQueue {
  /** The chunk being read (null: empty). */
  #head: Buffer | null = null;
  /** Chunks after #head, in order. */
  #rest: Buffer[] = [];
  #off = 0;
  /** Where #head's bytes end (its length, or less for a borrowed buffer). */
  #end = 0;
  #buffered = 0;

  /** Bytes held. */
  get length(): number {
    return this.#buffered;
  }

  /** Bytes readable in place from the current chunk (see headChunk/headOffset). */
  get headAvailable(): number {
    return this.#head === null ? 0 : this.#end - this.#off;
  }

  /** The current chunk (valid while headAvailable > 0), read in place from headOffset. */
  get headChunk(): Buffer {
    return this.#head!;
  }

  get headOffset(): number {
    return this.#off;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.#head === null) {
      this.#head = b;
      this.#end = b.length;
    } else this.#rest.push(b);
    this.#buffered += chunk.length;
  }

  /** Queues `buf[0, n)` without a view of it; only while the queue is empty (else push a view). */
  borrow(buf: Buffer, n: number): void {
    if (this.#head !== null) throw new RangeError('ByteQueue.borrow on a non-empty queue');
    if (n === 0) return;
    this.#head = buf;
    this.#off = 0;
    this.#end = n;
    this.#buffered = n;
  }

  /** Byte `i` ahead of the read position (i < length). */
  at(i: number): number {
    let off = this.#off + i;
    const h = this.#head;
    if (h !== null) {
      if (off < this.#end) return h[off]!;
      off -= this.#end;
      for (const c of this.#rest) {
        if (off < c.length) return c[off]!;
        off -= c.length;
      }
    }
    throw new RangeError(`ByteQueue.at(${i}) beyond ${this.#buffered} bytes`);
  }

  /** Removes and returns the next `n` bytes (n ≤ length). */
  take(n: number): Buffer {
    this.#buffered -= n;
    const first = this.#head;
    if (n === 0 || first === null) return Buffer.alloc(0);
    if (this.#end - this.#off >= n) {
      const out = first.subarray(this.#off, this.#off + n);
      this.#advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    for (let o = 0; o < n;) {
      const c = this.#head!;
      const k = Math.min(n - o, this.#end - this.#off);
      c.copy(out, o, this.#off, this.#off + k);
      o += k;
      this.#advance(k);
    }
    return out;
  }

  /** Drops the next `n` bytes (n ≤ length) without copying. */
  discard(n: number): void {
    this.#buffered -= n;
    while (n > 0) {
      const k = Math.min(n, this.#end - this.#off);
      n -= k;
      this.#advance(k);
    }
  }

  #advance(k: number): void {
    this.#off += k;
    if (this.#off === this.#end) {
      const next = this.#rest.length > 0 ? this.#rest.shift()! : null;
      this.#head = next;
      this.#off = 0;
      this.#end = next === null ? 0 : next.length;
    }
  }
}
