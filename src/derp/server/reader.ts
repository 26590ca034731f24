/**
 * Incremental DERP frame reader for the server side (spec/derp.md §4, §7). Unlike the generic FrameReader it asks
 * its sink about each header before the payload arrives, so a bad length or a privileged frame from an ordinary
 * client is rejected before anything is buffered, and frames the server ignores are discarded *as they stream
 * in* (memory stays bounded by the largest frame the server reads, whatever the declared length).
 *
 * A payload is handed over in place, as `buf[start, end)`, without making a view: `buf` is the received chunk it
 * lies in, or a fresh copy for a frame that straddles chunks. A chunk pushed as *transient* (a read buffer the
 * caller reuses) is only valid during process(): the sink must copy what it keeps, and release() copies the
 * unread rest before the caller reuses the buffer. Other chunks are never reused, so the sink may keep views.
 */
import { FRAME_HEADER_LEN } from '../constants.ts';
import { ByteQueue } from '../../net/byte-queue.ts';

export type HeaderVerdict = 'read' | 'skip';

export interface FrameSink {
  /** A complete header: throw to reject the connection, else say whether to read or discard the payload. */
  onHeader(type: number, length: number): HeaderVerdict;
  /**
   * A complete frame that was asked for, its payload `buf[start, end)`; `transient`: `buf` is reused after this
   * call returns (copy what is kept). `inPlace`: `buf` is that transient buffer and the frame's header lies right
   * before the payload in it (`buf[start - FRAME_HEADER_LEN, start)`), so the whole frame may be rewritten there;
   * the caller of push() keeps the buffer until its read is flushed. Return false to stop processing.
   */
  onFrame(type: number, buf: Buffer, start: number, end: number, transient: boolean, inPlace: boolean): boolean;
}

const EMPTY = Buffer.alloc(0);

export class StreamFrameReader {
  readonly #q = new ByteQueue();
  /** The transient chunk pushed last (null: none held). */
  #transient: Buffer | null = null;
  /** The object that holds its bytes in the queue (itself, or the view of its first `length` bytes). */
  #transientChunk: Buffer | null = null;
  #skip = 0;
  #type = -1;
  #len = -1;

  /** Bytes held (received, not yet returned or discarded). */
  get buffered(): number {
    return this.#q.length;
  }

  /** Nothing held and no frame begun: the next byte starts a frame (not true after a header alone, or mid-skip). */
  get atFrameStart(): boolean {
    return this.#q.length === 0 && this.#type < 0 && this.#skip === 0;
  }

  /**
   * Queues `chunk[0, length)`; `transient`: the caller reuses `chunk` after process() (call release() before
   * that), and it must be a Buffer.
   */
  push(chunk: Uint8Array, transient = false, length = chunk.length): void {
    const q = this.#q;
    if (transient) {
      this.release();
      if (length === 0) return;
      this.#transient = this.#transientChunk = chunk as Buffer;
      if (q.length === 0) {
        q.borrow(chunk as Buffer, length); // the usual case: no view made
        return;
      }
    }
    const view = length === chunk.length ? chunk : chunk.subarray(0, length);
    if (transient) this.#transientChunk = view as Buffer;
    q.push(view);
  }

  /** Copies the unread bytes of a transient chunk, so its buffer may be reused. */
  release(): void {
    const t = this.#transient;
    if (t === null) return;
    this.#transient = this.#transientChunk = null;
    const q = this.#q;
    if (q.length === 0) return;
    // A transient chunk is the last one pushed: the unread rest of the queue is (a tail of) earlier chunks and
    // then it. Taking everything copies it whenever it spans chunks; one contiguous rest is a view that is copied.
    const rest = q.take(q.length);
    q.push(rest.buffer === t.buffer ? Buffer.from(rest) : rest);
  }

  /** Feeds complete frames to the sink until it stops, or more bytes are needed. */
  process(sink: FrameSink): void {
    const q = this.#q;
    // Where this iteration read its header in place (chunk, offset), to tell the sink the frame is contiguous.
    let hdrChunk: Buffer | null = null;
    let hdrAt = -1;
    for (;;) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, q.length);
        q.discard(n);
        this.#skip -= n;
        if (this.#skip > 0) return;
      }
      if (this.#type < 0) {
        if (q.length < FRAME_HEADER_LEN) return;
        let type: number;
        let len: number;
        if (q.headAvailable >= FRAME_HEADER_LEN) {
          // In place: no view per header.
          const c = q.headChunk;
          const o = q.headOffset;
          type = c[o]!;
          len = ((c[o + 1]! << 24) | (c[o + 2]! << 16) | (c[o + 3]! << 8) | c[o + 4]!) >>> 0;
          q.discard(FRAME_HEADER_LEN);
          hdrChunk = c;
          hdrAt = o;
        } else {
          hdrChunk = null;
          const h = q.take(FRAME_HEADER_LEN);
          type = h[0]!;
          len = h.readUInt32BE(1);
        }
        if (sink.onHeader(type, len) === 'skip') {
          this.#skip = len;
          continue;
        }
        this.#type = type;
        this.#len = len;
      }
      const len = this.#len;
      if (q.length < len) return;
      const type = this.#type;
      this.#type = -1;
      this.#len = -1;
      let go: boolean;
      if (len === 0) go = sink.onFrame(type, EMPTY, 0, 0, false, false);
      else if (q.headAvailable >= len) {
        const c = q.headChunk;
        const o = q.headOffset;
        q.discard(len);
        // Identity, not `c.buffer`: reading a typed array's buffer is a runtime call (~5 % of a relay's time).
        const transient = c === this.#transientChunk;
        go = sink.onFrame(type, c, o, o + len, transient, transient && c === hdrChunk && o === hdrAt + FRAME_HEADER_LEN);
      } else go = sink.onFrame(type, q.take(len), 0, len, false, false);
      hdrChunk = null;
      if (!go) return;
    }
  }
}
