/**
 * A queue of received chunks read as one byte stream, for incremental parsers (DERP frames, HTTP heads). Taking
 * bytes that lie within one chunk returns a view of it (chunks are never reused, so views stay valid); bytes that
 * straddle chunks are copied once. Shared engine helper (DESIGN.md "Architecture: four layers"); the DERP framing
 * it serves is spec/derp.md §3.
 */
export class ByteQueue {
  #chunks: Buffer[] = [];
  #off = 0;
  #buffered = 0;

  /** Bytes held. */
  get length(): number {
    return this.#buffered;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.#buffered += chunk.length;
  }

  /** Byte `i` ahead of the read position (i < length). */
  at(i: number): number {
    let off = this.#off + i;
    for (const c of this.#chunks) {
      if (off < c.length) return c[off]!;
      off -= c.length;
    }
    throw new RangeError(`ByteQueue.at(${i}) beyond ${this.#buffered} bytes`);
  }

  /** Removes and returns the next `n` bytes (n ≤ length). */
  take(n: number): Buffer {
    this.#buffered -= n;
    const first = this.#chunks[0];
    if (n === 0 || first === undefined) return Buffer.alloc(0);
    if (first.length - this.#off >= n) {
      const out = first.subarray(this.#off, this.#off + n);
      this.#advance(first, n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    for (let o = 0; o < n;) {
      const c = this.#chunks[0]!;
      const k = Math.min(n - o, c.length - this.#off);
      c.copy(out, o, this.#off, this.#off + k);
      o += k;
      this.#advance(c, k);
    }
    return out;
  }

  /** Drops the next `n` bytes (n ≤ length) without copying. */
  discard(n: number): void {
    this.#buffered -= n;
    while (n > 0) {
      const c = this.#chunks[0]!;
      const k = Math.min(n, c.length - this.#off);
      n -= k;
      this.#advance(c, k);
    }
  }

  #advance(c: Buffer, k: number): void {
    this.#off += k;
    if (this.#off === c.length) {
      this.#chunks.shift();
      this.#off = 0;
    }
  }
}
