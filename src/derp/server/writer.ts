/**
 * The per-connection batching writer (spec/node-performance.md §1, spec/derp.md §4 write timeout, §8): frames for
 * one destination are copied into one buffer of at most WRITE_BATCH_BYTES and written with a single write() per
 * event-loop turn. It reports backpressure (`blocked`) so the caller stops draining its queues, and it enforces the
 * write deadline: if a write makes no progress for `timeoutMs`, `onTimeout` runs.
 *
 * Backpressure is a byte bound of our own (WRITE_BUFFER_LIMIT of written-but-unfinished bytes), not the stream's
 * write() return value: a TLS socket finishes every write asynchronously, so write() reports "full" after any large
 * batch even when the kernel took it all, and waiting for 'drain' then made a relay head-drop packets for a receiver
 * that was keeping up (spec/derp.md §9.3: only a destination that does not read should lose packets).
 */
import type { Duplex } from 'node:stream';
import { FRAME_HEADER_LEN } from '../constants.ts';
import { writeHeader } from '../frame.ts';
import type { Clock, Timer } from '../../time/clock.ts';
import { WRITE_BATCH_BYTES, WRITE_BATCH_MIN_BYTES, WRITE_BUFFER_LIMIT } from './constants.ts';
import { directStream, type DirectStream } from './stream-fast.ts';

export class BatchWriter {
  readonly #stream: Duplex;
  readonly #direct: DirectStream | null;
  /** A direct write left bytes behind: one pending write until 'drain'. */
  #directPending = false;
  readonly #clock: Clock;
  readonly #onTimeout: () => void;
  timeoutMs: number;
  #buf: Buffer | null = null;
  #used = 0;
  /** Bytes in the previous batch: sizes the next one when the caller has no better hint. */
  #lastBatch = 0;
  #blocked = false;
  #pending = 0;
  #lastProgress = 0;
  #timer: Timer | null = null;
  #closed = false;
  readonly #afterWrite = (): void => {
    this.#pending--;
    this.#lastProgress = this.#clock.now();
  };

  constructor(stream: Duplex, clock: Clock, timeoutMs: number, onTimeout: () => void, onDrain: () => void) {
    this.#stream = stream;
    this.#direct = directStream(stream);
    this.#clock = clock;
    this.timeoutMs = timeoutMs;
    this.#onTimeout = onTimeout;
    stream.on('drain', () => {
      if (this.#directPending) {
        this.#directPending = false;
        this.#pending--;
      }
      this.#blocked = false;
      this.#lastProgress = this.#clock.now();
      if (!this.#closed) onDrain();
    });
  }

  /** True while more than WRITE_BUFFER_LIMIT bytes are written but unfinished (until 'drain'). */
  get blocked(): boolean {
    return this.#blocked;
  }

  /** The current batch buffer (valid after reserve()). */
  get buffer(): Buffer {
    return this.#buf!;
  }

  /**
   * Makes room for one frame with a `payloadLen`-byte payload, writes its header and returns the offset where the
   * caller copies the payload into `buffer`. `hint` sizes a new batch (bytes expected this turn; 0: twice the last
   * batch).
   */
  reserve(type: number, payloadLen: number, hint: number): number {
    const total = FRAME_HEADER_LEN + payloadLen;
    if (this.#buf !== null && this.#used + total > this.#buf.length) this.flush();
    if (this.#buf === null) {
      const want = hint > 0 ? hint : Math.max(WRITE_BATCH_MIN_BYTES, 2 * this.#lastBatch);
      this.#buf = Buffer.allocUnsafe(Math.max(total, Math.min(want, WRITE_BATCH_BYTES)));
      this.#used = 0;
    }
    writeHeader(this.#buf, this.#used, type, payloadLen);
    const off = this.#used + FRAME_HEADER_LEN;
    this.#used += total;
    return off;
  }

  /** Appends a whole frame from parts. */
  frame(type: number, hint: number, ...parts: Uint8Array[]): void {
    let len = 0;
    for (const p of parts) len += p.length;
    let off = this.reserve(type, len, hint);
    const buf = this.#buf!;
    for (const p of parts) {
      buf.set(p, off);
      off += p.length;
    }
  }

  /** Writes the batch, if any. */
  flush(): void {
    const buf = this.#buf;
    if (buf === null || this.#closed) return;
    const chunk = this.#used === buf.length ? buf : buf.subarray(0, this.#used);
    this.#lastBatch = this.#used;
    this.#buf = null;
    this.#used = 0;
    if (this.#pending === 0) this.#lastProgress = this.#clock.now();
    // Native TLS: hand the batch straight to the addon when nothing is queued before it (stream-fast.ts).
    const left = this.#direct?.writeDirect(chunk) ?? null;
    if (left !== null && left <= 0) return; // all in the kernel (or closed: the stream's 'close' ends us)
    this.#pending++;
    const s = this.#stream;
    if (left !== null) this.#directPending = true;
    else if (!s.write(chunk, this.#afterWrite) && s.writableLength > WRITE_BUFFER_LIMIT) this.#blocked = true;
    if (this.timeoutMs > 0 && this.#timer === null) this.#timer = this.#clock.setTimeout(this.#check, this.timeoutMs);
  }

  /** Stops timers and drops any unwritten batch. */
  close(): void {
    this.#closed = true;
    this.#buf = null;
    this.#timer?.cancel();
    this.#timer = null;
  }

  readonly #check = (): void => {
    this.#timer = null;
    if (this.#closed || (this.#pending === 0 && !this.#blocked)) return;
    const idle = this.#clock.now() - this.#lastProgress;
    if (idle >= this.timeoutMs) {
      this.#onTimeout();
      return;
    }
    this.#timer = this.#clock.setTimeout(this.#check, this.timeoutMs - idle);
  };
}
