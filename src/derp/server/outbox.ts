/**
 * What one live DERP connection still has to send (spec/derp.md §8, §9.3): the two packet queues (disco and
 * other) with head-drop, one pong slot, the pending PeerGone notices, the pending watcher updates and the
 * keepalive flag — and the drain that writes them, in that priority order, into the connection's BatchWriter.
 * No I/O or timers of its own; the ClientConn (client-conn.ts) decides when to drain.
 */
import {
  FRAME_HEADER_LEN, FrameType, KEY_LEN, PING_LEN, PeerGoneReason, type PeerGoneReasonValue,
} from '../constants.ts';
import { COPY_WHEN_BACKLOG_AT_LEAST, ENQUEUE_ATTEMPTS, MAX_PENDING_PEER_GONE } from './constants.ts';
import { DropReason, type Counters } from './metrics.ts';
import { PacketQueue } from './queue.ts';
import { writeKey } from './route-cache.ts';
import type { BatchWriter } from './writer.ts';

const bufferCopy = Buffer.prototype.copy;
/** `src[from, end)` into `dst` at `at`, without allocating a view (Buffer#copy takes any Uint8Array as `this`). */
function copyBytesInto(src: Uint8Array, from: number, end: number, dst: Buffer, at: number): void {
  bufferCopy.call(src, dst, at, from, end);
}

export class Outbox {
  readonly #counters: Counters;
  readonly #disco: PacketQueue;
  readonly #other: PacketQueue;
  #pong: Uint8Array | null = null;
  #peerGone: { key: Uint8Array; reason: PeerGoneReasonValue }[] = [];
  #watcherFrames: Buffer[] = [];
  #keepAlive = false;
  #lastHeard = '';
  /** Packets in the two queues, kept here so that the relay's hot path does not visit the queue objects. */
  #queued = 0;
  /** Nothing at all is pending: drain() only flushes the writer (relaying in place: once per read). */
  #empty = true;

  constructor(counters: Counters, queueDepth: number) {
    this.#counters = counters;
    this.#disco = new PacketQueue(queueDepth);
    this.#other = new PacketQueue(queueDepth);
  }

  /** Packets waiting in the two queues. */
  get queuedPackets(): number {
    return this.#queued;
  }

  get watcherBacklog(): number {
    return this.#watcherFrames.length;
  }

  /** Asks for a KeepAlive on the next drain. */
  keepAlive(): void {
    this.#keepAlive = true;
    this.#empty = false;
  }

  /** Stores the Ping payload to echo; false (ignored) while a pong is already pending. */
  pong(payload: Uint8Array): boolean {
    if (this.#pong !== null) return false;
    this.#pong = payload.subarray(0, PING_LEN);
    this.#empty = false;
    return true;
  }

  /** Queues PeerGone(key, reason); false when MAX_PENDING_PEER_GONE are already pending. */
  peerGone(key: Uint8Array, reason: PeerGoneReasonValue): boolean {
    if (this.#peerGone.length >= MAX_PENDING_PEER_GONE) return false;
    this.#peerGone.push({ key, reason });
    this.#empty = false;
    return true;
  }

  /** Queues a pre-encoded watcher frame (the caller enforces the backlog limit). */
  watcherFrame(frame: Buffer): void {
    this.#watcherFrames.push(frame);
    this.#empty = false;
  }

  /**
   * Queues a RecvPacket; on a full queue drops the oldest (queue_head), up to ENQUEUE_ATTEMPTS times. `flushNow`
   * is called first when the queue is full, so a socket that keeps up never drops. `owned`: `payload` is already a
   * copy of its own (never copied again). True when queued.
   */
  packet(src: Uint8Array, srcId: string, payload: Uint8Array, disco: boolean, flushNow: () => void, owned = false): boolean {
    const q = disco ? this.#disco : this.#other;
    if (q.length === q.depth) flushNow();
    if (!owned && q.length >= COPY_WHEN_BACKLOG_AT_LEAST) payload = Uint8Array.prototype.slice.call(payload);
    for (let i = 0; i < ENQUEUE_ATTEMPTS; i++) {
      if (q.push({ src, srcId, payload })) {
        this.#queued++;
        this.#empty = false;
        return true;
      }
      const head = q.shift();
      if (head === undefined) continue;
      this.#queued--;
      this.#counters.drop(DropReason.QueueHead, disco, head.payload.length);
    }
    this.#counters.drop(DropReason.QueueTail, disco, payload.length);
    return false;
  }

  /**
   * Writes pending frames into `w` until done or the stream pushes back, then flushes it. `noteHeard` is called
   * whenever the source of consecutive packets changes (the §9.4 "heard from" record).
   */
  drain(w: BatchWriter, noteHeard: (srcId: string) => void): void {
    if (this.#empty) {
      w.flush();
      return;
    }
    const counters = this.#counters;
    const hint = 64 + 64 * (this.#peerGone.length + this.#watcherFrames.length) +
      this.#disco.bytes + this.#other.bytes + 37 * (this.#disco.length + this.#other.length);
    if (this.#keepAlive) {
      this.#keepAlive = false;
      w.frame(FrameType.KeepAlive, hint);
    }
    if (this.#pong !== null) {
      w.frame(FrameType.Pong, hint, this.#pong);
      this.#pong = null;
      counters.sentPong++;
    }
    if (this.#peerGone.length > 0) {
      for (const g of this.#peerGone) {
        w.frame(FrameType.PeerGone, hint, g.key, Uint8Array.of(g.reason));
        if (g.reason === PeerGoneReason.NotHere) counters.peerGoneNotHere++;
        else counters.peerGoneDisconnected++;
      }
      this.#peerGone = [];
    }
    if (this.#watcherFrames.length > 0) {
      for (const f of this.#watcherFrames) {
        const off = w.reserve(f[0]!, f.length - 5, hint);
        f.copy(w.buffer, off, 5);
      }
      this.#watcherFrames = [];
    }
    for (;;) {
      const p = this.#disco.shift() ?? this.#other.shift();
      if (p === undefined) break;
      this.#queued--;
      this.write(w, p.src, p.srcId, p.payload, 0, p.payload.length, hint, noteHeard);
      if (w.blocked) break;
    }
    this.#empty = this.#queued === 0;
    w.flush();
  }

  /**
   * Copies one RecvPacket straight into the writer's batch, bypassing the queues: for a destination whose writer
   * is not blocked and whose queues are empty, so order and priority are the same as queueing it. The payload is
   * `data[from, end)` (copied without making a view). `inPlace` (reader.ts): `data` holds the whole SendPacket
   * frame, kept until the flush; a direct writer then takes the frame rewritten in place instead of a copy.
   */
  write(w: BatchWriter, src: Uint8Array, srcId: string, data: Uint8Array, from: number, end: number, hint: number, noteHeard: (srcId: string) => void, inPlace = false): void {
    if (inPlace && w.direct) {
      this.#writeInPlace(w, src, srcId, data as Buffer, from - KEY_LEN - FRAME_HEADER_LEN, end, noteHeard);
      return;
    }
    const len = end - from;
    const off = w.reserve(FrameType.RecvPacket, KEY_LEN + len, hint);
    const buf = w.buffer;
    buf.set(src, off);
    copyBytesInto(data, from, end, buf, off + KEY_LEN);
    this.#sent(len, srcId, noteHeard);
  }

  /**
   * The SendPacket frame `buf[frame, end)` becomes the RecvPacket in place (same length: the type byte changes and
   * the source key replaces the destination key) and joins the writer's batch by reference: no copy in JavaScript.
   */
  #writeInPlace(w: BatchWriter, src: Uint8Array, srcId: string, buf: Buffer, frame: number, end: number, noteHeard: (srcId: string) => void): void {
    buf[frame] = FrameType.RecvPacket;
    writeKey(buf, frame + FRAME_HEADER_LEN, src);
    w.appendInPlace(buf, frame, end);
    this.#sent(end - frame - FRAME_HEADER_LEN - KEY_LEN, srcId, noteHeard);
  }

  #sent(len: number, srcId: string, noteHeard: (srcId: string) => void): void {
    this.#counters.packetsSent++;
    this.#counters.bytesSent += len;
    if (srcId !== this.#lastHeard) {
      this.#lastHeard = srcId;
      noteHeard(srcId);
    }
  }

  /** Drops everything pending; queued packets count as gone_disconnected. */
  clear(): void {
    for (const q of [this.#disco, this.#other]) {
      for (const p of q.clear()) this.#counters.drop(DropReason.GoneDisconnected, q === this.#disco, p.payload.length);
    }
    this.#queued = 0;
    this.#pong = null;
    this.#peerGone = [];
    this.#watcherFrames = [];
    this.#empty = true;
  }
}
