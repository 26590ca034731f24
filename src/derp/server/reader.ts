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
import { ByteQueue } from '../../net/byte-queue.ts';

export type HeaderVerdict = 'read' | 'skip';

export interface FrameSink {
  /** A complete header: throw to reject the connection, else say whether to read or discard the payload. */
  onHeader(type: number, length: number): HeaderVerdict;
  /** A complete frame that was asked for; return false to stop processing (paused or closed). */
  onFrame(type: number, payload: Buffer): boolean;
}

const EMPTY = Buffer.alloc(0);

export class StreamFrameReader {
  readonly #q = new ByteQueue();
  #skip = 0;
  #type = -1;
  #len = -1;

  /** Bytes held (received, not yet returned or discarded). */
  get buffered(): number {
    return this.#q.length;
  }

  push(chunk: Uint8Array): void {
    this.#q.push(chunk);
  }

  /** Feeds complete frames to the sink until it stops, or more bytes are needed. */
  process(sink: FrameSink): void {
    const q = this.#q;
    for (;;) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, q.length);
        q.discard(n);
        this.#skip -= n;
        if (this.#skip > 0) return;
      }
      if (this.#type < 0) {
        if (q.length < FRAME_HEADER_LEN) return;
        const h = q.take(FRAME_HEADER_LEN);
        const type = h[0]!;
        const len = h.readUInt32BE(1);
        if (sink.onHeader(type, len) === 'skip') {
          this.#skip = len;
          continue;
        }
        this.#type = type;
        this.#len = len;
      }
      if (q.length < this.#len) return;
      const payload = this.#len === 0 ? EMPTY : q.take(this.#len);
      const type = this.#type;
      this.#type = -1;
      this.#len = -1;
      if (!sink.onFrame(type, payload)) return;
    }
  }
}
