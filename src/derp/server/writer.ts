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
import { BATCH_ARENA_BYTES, WRITE_BATCH_BYTES, WRITE_BATCH_MIN_BYTES, WRITE_BUFFER_LIMIT } from './constants.ts';
import { directStream, type DirectStream } from './stream-fast.ts';

export class BatchWriter {
  readonly #stream: Duplex;
  readonly #direct: DirectStream | null;
  /** A direct write left bytes behind: one pending write until 'drain'. */
  #directPending = false;
  readonly #clock: Clock;
  readonly #onTimeout: () => void;
  timeoutMs: number;
  readonly #arena: BatchArena | null;
  #buf: Buffer | null = null;
  /** The batch is #buf[#start, #pos), with room up to #limit. */
  #start = 0;
  #pos = 0;
  #limit = 0;
  /** #buf is a region of #arena (released at flush). */
  #inArena = false;
  /** The batch is frames in a read buffer the writer does not own (appendInPlace): never written into. */
  #borrowed = false;
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

  /** `arena`: where batches for a direct-write stream come from (writeDirect copies, so a region is reusable). */
  constructor(stream: Duplex, clock: Clock, timeoutMs: number, onTimeout: () => void, onDrain: () => void, arena: BatchArena | null = null) {
    this.#stream = stream;
    this.#direct = directStream(stream);
    this.#arena = this.#direct === null ? null : arena;
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

  /** True when batches go to the stream by writeDirect (the native addon), which takes the bytes at once. */
  get direct(): boolean {
    return this.#direct !== null;
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
    if (this.#buf !== null && (this.#borrowed || this.#pos + total > this.#limit)) this.flush();
    if (this.#buf === null) {
      const want = hint > 0 ? hint : Math.max(WRITE_BATCH_MIN_BYTES, 2 * this.#lastBatch);
      const size = Math.max(total, Math.min(want, WRITE_BATCH_BYTES));
      const at = this.#arena?.take(size) ?? -1;
      this.#inArena = at >= 0;
      this.#buf = at >= 0 ? this.#arena!.buffer : Buffer.allocUnsafe(size);
      this.#start = this.#pos = Math.max(at, 0);
      this.#limit = this.#start + size;
    }
    writeHeader(this.#buf, this.#pos, type, payloadLen);
    const off = this.#pos + FRAME_HEADER_LEN;
    this.#pos += total;
    return off;
  }

  /**
   * Adds the finished frame `buf[start, end)` by reference: `buf` is a read buffer that stays untouched until
   * this writer is flushed (the end of the read). Frames that follow on from the previous ones in the same buffer
   * join them, so one run of a sender's packets goes out as one write. For direct writers only. When flushing the
   * batch before it blocks the writer, the frame is copied instead (the next flush waits for 'drain').
   */
  appendInPlace(buf: Buffer, start: number, end: number): void {
    if (this.#buf === buf && this.#borrowed && this.#pos === start) {
      this.#pos = end;
      return;
    }
    if (this.#buf !== null) this.flush();
    if (this.#blocked) {
      // That flush blocked the writer: its next flush waits for 'drain', after `buf` is reused. Keep a copy.
      const off = this.reserve(buf[start]!, end - start - FRAME_HEADER_LEN, 0);
      buf.copy(this.#buf!, off, start + FRAME_HEADER_LEN, end);
      return;
    }
    this.#buf = buf;
    this.#borrowed = true;
    this.#start = start;
    this.#pos = this.#limit = end;
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
    if (buf === null) return;
    if (this.#closed) {
      this.#releaseRegion();
      this.#buf = null;
      this.#borrowed = false;
      return;
    }
    const start = this.#start;
    const end = this.#pos;
    this.#lastBatch = end - start;
    this.#buf = null;
    if (this.#pending === 0) this.#lastProgress = this.#clock.now();
    // Native TLS: hand the batch straight to the addon when nothing is queued before it (stream-fast.ts).
    const left = this.#direct?.writeDirect(buf, start, end) ?? null;
    // write() keeps its chunk: a copy of an arena region or a borrowed read buffer, else the batch itself.
    const chunk = left !== null ? null : this.#inArena || this.#borrowed ? Buffer.from(buf.subarray(start, end))
      : start === 0 && end === buf.length ? buf : buf.subarray(start, end);
    this.#borrowed = false;
    this.#releaseRegion();
    if (left !== null && left <= 0) return; // all in the kernel (or closed: the stream's 'close' ends us)
    this.#pending++;
    const s = this.#stream;
    if (chunk === null) this.#directPending = true;
    else if (!s.write(chunk, this.#afterWrite) && s.writableLength > WRITE_BUFFER_LIMIT) this.#blocked = true;
    if (this.timeoutMs > 0 && this.#timer === null) this.#timer = this.#clock.setTimeout(this.#check, this.timeoutMs);
  }

  /** Bytes written to the stream around this writer (the relay's fast path) wait there: the deadline covers them. */
  aroundPending(): void {
    if (this.#pending === 0) this.#lastProgress = this.#clock.now();
    this.#pending++;
    if (this.timeoutMs > 0 && this.#timer === null) this.#timer = this.#clock.setTimeout(this.#check, this.timeoutMs);
  }

  /** Those bytes are out. */
  aroundDrained(): void {
    this.#pending--;
    this.#lastProgress = this.#clock.now();
  }

  /** Stops timers and drops any unwritten batch. */
  close(): void {
    this.#closed = true;
    if (this.#buf !== null) this.#releaseRegion();
    this.#buf = null;
    this.#borrowed = false;
    this.#timer?.cancel();
    this.#timer = null;
  }

  #releaseRegion(): void {
    if (!this.#inArena) return;
    this.#inArena = false;
    this.#arena!.release();
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

/**
 * Batch buffers for direct-write streams (native TLS): writeDirect() takes the bytes at once, so a batch's memory
 * is free again right after its flush. Regions are handed out from one buffer and the whole buffer is reused once
 * every region is back (batches live at most until the end of a loop turn); when it is full, writers allocate as
 * usual. This keeps the relay's hot path free of a Buffer per batch (young-generation GC work).
 */
export class BatchArena {
  readonly buffer: Buffer;
  #top = 0;
  #out = 0;

  constructor(bytes = BATCH_ARENA_BYTES) {
    this.buffer = Buffer.allocUnsafeSlow(bytes);
  }

  /** Offset of a free region of `n` bytes, or -1 when the buffer is full. */
  take(n: number): number {
    if (this.#top + n > this.buffer.length) return -1;
    const at = this.#top;
    this.#top += n;
    this.#out++;
    return at;
  }

  /** Gives back one region. */
  release(): void {
    if (--this.#out === 0) this.#top = 0;
  }

  /** Regions handed out and not yet given back. */
  get outstanding(): number {
    return this.#out;
  }
}
