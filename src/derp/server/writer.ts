/**
 * The per-connection batching writer (spec/node-performance.md §1, spec/derp.md §4 write timeout, §8): frames for
 * one destination are copied into one buffer of at most WRITE_BATCH_BYTES and written with a single write() per
 * event-loop turn. It reports backpressure (`blocked` until 'drain') so the caller stops draining its queues, and
 * it enforces the write deadline: if a write makes no progress for `timeoutMs`, `onTimeout` runs.
 */
import type { Duplex } from 'node:stream';
import { FRAME_HEADER_LEN } from '../constants.ts';
import { writeHeader } from '../frame.ts';
import type { Clock, Timer } from '../../time/clock.ts';
import { WRITE_BATCH_BYTES } from './constants.ts';

export class BatchWriter {
  readonly #stream: Duplex;
  readonly #clock: Clock;
  readonly #onTimeout: () => void;
  timeoutMs: number;
  #buf: Buffer | null = null;
  #used = 0;
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
    this.#clock = clock;
    this.timeoutMs = timeoutMs;
    this.#onTimeout = onTimeout;
    stream.on('drain', () => {
      this.#blocked = false;
      this.#lastProgress = this.#clock.now();
      if (!this.#closed) onDrain();
    });
  }

  /** True while the stream has more buffered than its high-water mark (waiting for 'drain'). */
  get blocked(): boolean {
    return this.#blocked;
  }

  /** The current batch buffer (valid after reserve()). */
  get buffer(): Buffer {
    return this.#buf!;
  }

  /**
   * Makes room for one frame with a `payloadLen`-byte payload, writes its header and returns the offset where the
   * caller copies the payload into `buffer`. `hint` sizes a new batch (bytes expected this turn).
   */
  reserve(type: number, payloadLen: number, hint: number): number {
    const total = FRAME_HEADER_LEN + payloadLen;
    if (this.#buf !== null && this.#used + total > this.#buf.length) this.flush();
    if (this.#buf === null) {
      this.#buf = Buffer.allocUnsafe(Math.max(total, Math.min(hint, WRITE_BATCH_BYTES)));
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
    this.#buf = null;
    this.#used = 0;
    if (this.#pending === 0) this.#lastProgress = this.#clock.now();
    this.#pending++;
    if (!this.#stream.write(chunk, this.#afterWrite)) this.#blocked = true;
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
