/**
 * Incremental DERP frame reader for the server side (spec/derp.md §4, §7). Unlike the generic FrameReader it asks
 * its sink about each header before the payload arrives, so a bad length or a privileged frame from an ordinary
 * client is rejected before anything is buffered, and frames the server ignores are discarded *as they stream
 * in* (memory stays bounded by the largest frame the server reads, whatever the declared length).
 *
 * Payload views handed to the sink are stable: they are subarrays of received chunks (never reused) or fresh
 * copies for frames that straddle chunks, so queues may keep them without copying.
 */
import { FRAME_HEADER_LEN } from '../constants.ts';

export type HeaderVerdict = 'read' | 'skip';

export interface FrameSink {
  /** A complete header: throw to reject the connection, else say whether to read or discard the payload. */
  onHeader(type: number, length: number): HeaderVerdict;
  /** A complete frame that was asked for; return false to stop processing (paused or closed). */
  onFrame(type: number, payload: Buffer): boolean;
}

const EMPTY = Buffer.alloc(0);

export class StreamFrameReader {
  #chunks: Buffer[] = [];
  #off = 0;
  #buffered = 0;
  #skip = 0;
  #type = -1;
  #len = -1;

  /** Bytes held (received, not yet returned or discarded). */
  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.#buffered += chunk.length;
  }

  /** Feeds complete frames to the sink until it stops, or more bytes are needed. */
  process(sink: FrameSink): void {
    for (;;) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, this.#buffered);
        this.#discard(n);
        this.#skip -= n;
        if (this.#skip > 0) return;
      }
      if (this.#type < 0) {
        if (this.#buffered < FRAME_HEADER_LEN) return;
        const h = this.#take(FRAME_HEADER_LEN);
        const type = h[0]!;
        const len = h.readUInt32BE(1);
        if (sink.onHeader(type, len) === 'skip') {
          this.#skip = len;
          continue;
        }
        this.#type = type;
        this.#len = len;
      }
      if (this.#buffered < this.#len) return;
      const payload = this.#len === 0 ? EMPTY : this.#take(this.#len);
      const type = this.#type;
      this.#type = -1;
      this.#len = -1;
      if (!sink.onFrame(type, payload)) return;
    }
  }

  #discard(n: number): void {
    this.#buffered -= n;
    while (n > 0) {
      const c = this.#chunks[0]!;
      const k = Math.min(n, c.length - this.#off);
      n -= k;
      this.#off += k;
      if (this.#off === c.length) {
        this.#chunks.shift();
        this.#off = 0;
      }
    }
  }

  #take(n: number): Buffer {
    this.#buffered -= n;
    const first = this.#chunks[0]!;
    if (first.length - this.#off >= n) {
      const out = first.subarray(this.#off, this.#off + n);
      this.#off += n;
      if (this.#off === first.length) {
        this.#chunks.shift();
        this.#off = 0;
      }
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let o = 0;
    while (o < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(n - o, c.length - this.#off);
      c.copy(out, o, this.#off, this.#off + k);
      o += k;
      this.#off += k;
      if (this.#off === c.length) {
        this.#chunks.shift();
        this.#off = 0;
      }
    }
    return out;
  }
}
