/**
 * One accepted DERP connection (spec/derp.md §6–§8, §9.3, §12): the handshake with its deadlines and admission,
 * the read loop that validates each header before reading its payload (with the per-client receive throttle),
 * the frame dispatch once live, and the batching writer that drains the Outbox (outbox.ts: packet queues and
 * pending control frames) once per event-loop turn. Routing decisions belong to the ServerCore (core.ts), whose
 * interface is in conn-api.ts.
 */
import type { Duplex } from 'node:stream';
import { WiremeshError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { Timer } from '../../time/clock.ts';
import { keyId, shortKey, type NodePublic } from '../../types/key.ts';
import {
  FrameType, KEEPALIVE_INTERVAL_MS, KEEPALIVE_JITTER_MS, KEY_LEN, NONCE_LEN, PeerGoneReason, PeerPresentFlags,
  type PeerGoneReasonValue,
} from '../constants.ts';
import { encodeServerKey } from '../frame.ts';
import { unmapAddress } from '../../net/packet.ts';
import {
  HOME_MOVE_GRACE_MS, MAX_PENDING_WATCHER_UPDATES, MESH_WRITE_TIMEOUT_MS, NOT_HERE_BURST, NOT_HERE_PER_SECOND,
  RECEIVE_LIMIT_FRAME_COST_CAP,
} from './constants.ts';
import type { ConnInfo, ReceiveLimit, ServerCore } from './conn-api.ts';
import { checkLiveHeader } from './frame-rules.ts';
import { checkClientInfoHeader, isMeshPeer, openClientInfo, sealServerInfo, type OpenedClientInfo } from './handshake.ts';
import type { KeyConns } from './dup.ts';
import { ip16 } from './ip.ts';
import { DropReason } from './metrics.ts';
import { Outbox } from './outbox.ts';
import { ReceiveBudget, TokenBucket } from './ratelimit.ts';
import { RouteCache } from './route-cache.ts';
import { StreamFrameReader, type FrameSink, type HeaderVerdict } from './reader.ts';
import type { FastConn, FastPort, FastRelay } from './fast-relay.ts';
import { directStream, rawEndpoint, type RawEndpoint } from './stream-fast.ts';
import { BatchWriter } from './writer.ts';

export type { ConnInfo, ReceiveLimit, ServerCore } from './conn-api.ts';

type State = 'handshake' | 'admitting' | 'live' | 'closed';

const err = (code: string, message: string): WiremeshError => new WiremeshError(code, message);

export class ClientConn implements FrameSink, FastConn {
  readonly id: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly ip16: Uint8Array;
  readonly notIdeal: boolean;
  key!: NodePublic;
  keyId = '';
  canMesh = false;
  isProber = false;
  preferred = false;
  isWatcher = false;
  /** The registry entry of this connection's key while live (set by the core). */
  keyConns: KeyConns<ClientConn> | null = null;
  /** This sender's last destination (route-cache.ts), used by the core's routeSend. */
  readonly route = new RouteCache<KeyConns<ClientConn>>();
  /** Sources this connection has been sent packets from (the §9.4 "heard from" record). */
  readonly heardFrom = new Set<string>();
  /** This connection's place in the relay's fast path (fast-relay.ts), while it has one. */
  fastPort: FastPort<ClientConn> | null = null;
  /** Resolves when the underlying stream has closed. */
  readonly closed: Promise<void>;

  readonly #core: ServerCore;
  readonly #stream: Duplex;
  readonly #log: Logger;
  readonly #reader = new StreamFrameReader();
  readonly #writer: BatchWriter;
  readonly #outbox: Outbox;
  #state: State = 'handshake';
  #dirty = false;
  #flushAfterRead = false; // after each read (addon streams) instead of once per event-loop turn
  #raw: RawEndpoint | null = null;
  #connectedAt = 0;
  #notHere: TokenBucket | null = null;
  #handshakeTimer: Timer | null = null;
  #keepAliveTimer: Timer | null = null;
  readonly #budget = new ReceiveBudget();
  #throttleTimer: Timer | null = null;

  constructor(core: ServerCore, id: number, stream: Duplex, info: ConnInfo, log: Logger) {
    this.#core = core;
    this.id = id;
    this.#stream = stream;
    this.remoteAddress = info.remoteAddress;
    this.remotePort = info.remotePort;
    this.ip16 = ip16(info.remoteAddress);
    this.notIdeal = (info.idealNode ?? '') !== '';
    this.#log = log;
    this.#outbox = new Outbox(core.counters, core.queueDepth);
    this.#writer = new BatchWriter(stream, core.clock, core.writeTimeoutMs, this.#onWriteTimeout, () => this.#markDirty(), core.batchArena);
    this.closed = new Promise((resolve) => stream.once('close', () => resolve()));
  }

  get live(): boolean {
    return this.#state === 'live';
  }

  /** PeerPresent flags for this connection (§4.1). */
  get presentFlags(): number {
    let f = 0;
    if (this.canMesh) f |= PeerPresentFlags.IsMeshPeer;
    if (this.isProber) f |= PeerPresentFlags.IsProber;
    if (this.notIdeal) f |= PeerPresentFlags.NotIdeal;
    return f === 0 ? PeerPresentFlags.IsRegular : f;
  }

  /** Sends ServerKey, arms the handshake deadline and starts reading (`head` = bytes read with the HTTP request). */
  start(head: Uint8Array | undefined): void {
    const s = this.#stream;
    (s as Duplex & { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    s.on('data', (chunk: Buffer) => this.#onData(chunk, false, chunk.length));
    const direct = directStream(s);
    direct?.setDirectReader((buf, length, transient) => this.#onData(buf, transient, length));
    this.#flushAfterRead = direct !== null;
    this.#raw = direct === null ? null : rawEndpoint(s);
    s.on('end', () => this.close(null, 'eof'));
    s.on('error', (e: Error) => this.close(new WiremeshError('stream_error', e.message, { cause: e })));
    s.on('close', () => this.close(null, 'stream closed'));
    this.#handshakeTimer = this.#core.clock.setTimeout(this.#onHandshakeTimeout, this.#core.handshakeTimeoutMs);
    s.write(encodeServerKey(this.#core.publicKey), () => {
      // ServerKey is out: a fresh window for ClientInfo and admission (§4, §6).
      if (this.#state !== 'handshake' && this.#state !== 'admitting') return;
      this.#handshakeTimer?.cancel();
      this.#handshakeTimer = this.#core.clock.setTimeout(this.#onHandshakeTimeout, this.#core.handshakeTimeoutMs);
    });
    if (head !== undefined && head.length > 0) this.#onData(head, false, head.length);
  }

  // ---- reading ----

  /** `chunk[0, length)` arrived; `transient`: `chunk` is a read buffer reused after this returns (stream-fast.ts). */
  #onData(chunk: Uint8Array, transient: boolean, length: number): void {
    if (this.#state === 'closed') return;
    this.#reader.push(chunk, transient, length);
    // Native TLS: forward what this read produced now, as a per-connection writer would, instead of after every
    // other readable socket of this turn (docs/derp-server.md "Writer batching").
    if (this.#flushAfterRead) {
      const outer = this.#core.beginRead();
      this.#pump(); // never throws: errors close the connection
      this.#core.endRead(outer);
    } else this.#pump();
    if (transient) this.#reader.release();
    const p = this.fastPort;
    if (p !== null && p.partial && this.#reader.atFrameStart) p.partial = false;
  }

  #pump(): void {
    if (this.#state !== 'handshake' && this.#state !== 'live') return;
    if (this.#throttleTimer !== null) return;
    try {
      this.#reader.process(this);
    } catch (e) {
      this.close(e instanceof WiremeshError ? e : new WiremeshError('internal_error', String(e), { cause: e }));
      return;
    }
    this.#throttleIfInDebt();
  }

  /** Refills the receive budget; returns the limit in force for this connection (null: none, or a mesh peer). */
  #refill(): ReceiveLimit | null {
    const lim = this.canMesh ? null : this.#core.receiveLimit;
    // No limit: neutral budget, and no clock read per frame.
    this.#budget.refill(lim, lim === null ? 0 : this.#core.clock.now());
    return lim;
  }

  /** Over the receive budget: stop reading (TCP backpressure, never a drop) until the debt is paid back (§12). */
  #throttleIfInDebt(): void {
    if (this.#state !== 'live' || !this.#budget.inDebt) return;
    const lim = this.#refill();
    if (lim === null || !this.#budget.inDebt) return;
    this.#core.counters.receiveThrottles++;
    this.#stream.pause();
    const waitMs = this.#budget.waitMs(lim.bytesPerSecond);
    this.#throttleTimer = this.#core.clock.setTimeout(() => {
      this.#throttleTimer = null;
      if (this.#state !== 'live') return;
      this.#stream.resume();
      this.#pump();
    }, waitMs);
  }

  onHeader(type: number, length: number): HeaderVerdict {
    if (this.#state === 'handshake') {
      checkClientInfoHeader(type, length);
      return 'read';
    }
    const kc = this.keyConns;
    if (kc !== null && kc.size > 1) kc.noteActivity(this);
    const verdict = checkLiveHeader(type, length, this.canMesh);
    if (this.#refill() !== null) this.#budget.charge(Math.min(length, RECEIVE_LIMIT_FRAME_COST_CAP));
    if (verdict === 'unknown') {
      this.#core.counters.unknownFrames++;
      return 'skip';
    }
    return verdict;
  }

  onFrame(type: number, buf: Buffer, start: number, end: number, transient: boolean, inPlace: boolean): boolean {
    const core = this.#core;
    if (type === FrameType.SendPacket) {
      core.routeSend(this, buf, start, end, transient, inPlace);
      return this.#state === 'live' && !this.#budget.inDebt;
    }
    // Everything else is rare: a payload of its own (a copy when `buf` is reused), so the cases below may keep it.
    const payload = transient ? Buffer.from(buf.subarray(start, end))
      : start === 0 && end === buf.length ? buf : buf.subarray(start, end);
    switch (type) {
      case FrameType.ForwardPacket:
        core.routeForward(this, payload.subarray(0, KEY_LEN), payload.subarray(KEY_LEN, 2 * KEY_LEN), payload.subarray(2 * KEY_LEN));
        break;
      case FrameType.NotePreferred:
        this.#setPreferred(payload[0] !== 0);
        break;
      case FrameType.Ping:
        core.counters.gotPing++;
        if (this.#outbox.pong(payload)) this.#markDirty();
        break;
      case FrameType.WatchConns:
        core.addWatcher(this);
        break;
      case FrameType.ClosePeer:
        core.closePeer(this, payload);
        break;
      case FrameType.ClientInfo:
        if (this.#state === 'handshake') return this.#onClientInfo(payload);
        break;
    }
    return this.#state === 'live' && !this.#budget.inDebt;
  }

  // ---- handshake ----

  #onClientInfo(payload: Buffer): boolean {
    const opened = openClientInfo(this.#core.privateKey, payload);
    this.key = opened.key;
    this.keyId = keyId(opened.key);
    this.canMesh = isMeshPeer(opened.info.meshKey, this.#core.meshKey);
    this.isProber = opened.info.isProber;
    const verify = this.#core.verifyClient;
    if (this.canMesh || verify === undefined) {
      this.#goLive(opened);
      return this.#state === 'live';
    }
    this.#state = 'admitting';
    this.#stream.pause();
    const remoteAddress = unmapAddress(this.remoteAddress);
    verify({ key: opened.key, remoteAddress }).then(
      (ok) => {
        if (this.#state !== 'admitting') return;
        if (!ok) return this.close(err('not_admitted', `client ${shortKey(opened.key)} rejected by admission`));
        this.#goLive(opened);
        this.#stream.resume();
        this.#pump();
      },
      (e: unknown) => this.close(new WiremeshError('not_admitted', `admission check failed: ${String(e)}`, { cause: e })),
    );
    return false;
  }

  #goLive(opened: OpenedClientInfo): void {
    const core = this.#core;
    this.#handshakeTimer?.cancel();
    this.#handshakeTimer = null;
    this.#state = 'live';
    this.#connectedAt = core.clock.now();
    if (this.canMesh) this.#writer.timeoutMs = MESH_WRITE_TIMEOUT_MS;
    core.register(this);
    // ServerInfo is written synchronously right after registering: nothing can be queued ahead of it (§6.5).
    // A per-client receive limit is announced so clients pace themselves (beyond Go, whose server never sends it).
    const lim = this.#refill();
    const bucket = lim === null ? undefined : { bytesPerSecond: lim.bytesPerSecond, burstBytes: lim.burstBytes };
    this.#writer.frame(FrameType.ServerInfo, 192, sealServerInfo(opened.shared, core.random(NONCE_LEN), bucket));
    this.#writer.flush();
    const jitter = Math.floor((new DataView(core.random(4).buffer).getUint32(0) / 2 ** 32) * KEEPALIVE_JITTER_MS);
    this.#keepAliveTimer = core.clock.setInterval(() => {
      this.#outbox.keepAlive();
      this.#markDirty();
    }, KEEPALIVE_INTERVAL_MS + jitter);
    this.#log.debug('client connected', { key: shortKey(opened.key), mesh: this.canMesh, prober: this.isProber });
  }

  readonly #onHandshakeTimeout = (): void => {
    this.close(err('handshake_timeout', `handshake not finished within ${this.#core.handshakeTimeoutMs} ms`));
  };

  readonly #onWriteTimeout = (): void => {
    this.#core.counters.writeTimeouts++;
    this.close(err('write_timeout', `write did not complete within ${this.#writer.timeoutMs} ms`));
  };

  #setPreferred(v: boolean): void {
    if (v === this.preferred) return;
    this.preferred = v;
    this.#core.homeChanged(v ? 1 : -1);
    if (this.#core.clock.now() - this.#connectedAt > HOME_MOVE_GRACE_MS) {
      if (v) this.#core.counters.homeMovesIn++;
      else this.#core.counters.homeMovesOut++;
    }
  }

  // ---- queueing (called by the core) ----

  /**
   * Queues a RecvPacket whose payload is `buf[off, end)`; on a full queue drops the oldest (queue_head), up to
   * ENQUEUE_ATTEMPTS times. `transient`: `buf` is reused after this returns (a queued payload is copied);
   * `inPlace`: `buf` holds its whole SendPacket frame, which may become the RecvPacket there (reader.ts).
   */
  enqueuePacket(src: Uint8Array, srcId: string, buf: Uint8Array, off: number, end: number, disco: boolean, transient: boolean, inPlace = false): void {
    const counters = this.#core.counters;
    if (this.#state !== 'live') {
      counters.drop(DropReason.GoneDisconnected, disco, end - off);
      return;
    }
    // A destination that keeps up gets the packet straight into its batch (copied, or the frame rewritten in place);
    // the queues (and head drops, like Go) are for a destination whose writer pushes back.
    if (!this.#writer.blocked && this.#outbox.queuedPackets === 0) {
      this.#outbox.write(this.#writer, src, srcId, buf, off, end, 0, this.#noteHeard, inPlace);
      this.#markDirty();
      return;
    }
    // A burst routed within one read (a 64 KiB chunk holds ~100 small frames) must not overflow a queue whose
    // socket is keeping up: a full queue is written out first. Only a destination that pushes back drops (like Go).
    if (this.fastPort !== null) this.fastPort.backlog = true; // the fast path must not overtake what waits here
    const payload = transient ? Uint8Array.prototype.slice.call(buf, off, end) : off === 0 && end === buf.length ? buf : buf.subarray(off, end);
    if (this.#outbox.packet(src, srcId, payload, disco, this.#flushIfWritable, transient)) this.#markDirty();
  }

  readonly #flushIfWritable = (): void => {
    if (!this.#writer.blocked) this.flush();
  };

  /** Queues PeerGone(key, reason) unless too many are pending. */
  enqueuePeerGone(key: Uint8Array, reason: PeerGoneReasonValue): void {
    if (this.#state === 'live' && this.#outbox.peerGone(key, reason)) this.#markDirty();
  }

  /** Replies PeerGone(dst, NotHere) to a disco packet for an unknown key, 1/s burst 3 per connection (§9.2). */
  notHere(dst: Uint8Array): void {
    this.#notHere ??= new TokenBucket(this.#core.clock, NOT_HERE_PER_SECOND, NOT_HERE_BURST);
    if (this.#notHere.allow()) this.enqueuePeerGone(Uint8Array.prototype.slice.call(dst), PeerGoneReason.NotHere);
  }

  /** Queues a pre-encoded watcher frame (PeerPresent/PeerGone); a watcher too far behind is closed. */
  enqueueWatcherFrame(frame: Buffer): void {
    if (this.#state !== 'live') return;
    if (this.#outbox.watcherBacklog >= MAX_PENDING_WATCHER_UPDATES) {
      this.close(err('watcher_backlog', `watcher has ${MAX_PENDING_WATCHER_UPDATES} updates pending`));
      return;
    }
    this.#outbox.watcherFrame(frame);
    this.#markDirty();
  }

  #markDirty(): void {
    if (this.#dirty || this.#state !== 'live' || this.#writer.blocked) return;
    this.#dirty = true;
    this.#core.schedule(this);
  }

  // ---- writing ----

  /** Drains pending frames into the batch writer until done or the stream pushes back. Once per loop turn. */
  flush(): void {
    this.#dirty = false;
    const w = this.#writer;
    if (this.#state === 'live' && !w.blocked) this.#outbox.drain(w, this.#noteHeard);
    const p = this.fastPort;
    if (p !== null) p.backlog = this.#outbox.queuedPackets > 0 || w.blocked;
  }

  // ---- the fast path (fast-relay.ts; attached by the core while this is its key's only live connection) ----

  attachFast(fast: FastRelay<ClientConn>): void {
    const raw = this.#raw;
    if (raw === null || this.canMesh || this.#state !== 'live' || this.fastPort !== null) return;
    this.fastPort = fast.attach(this, raw.rawHost, raw.rawId);
    this.#markDirty(); // the flush sets the port's backlog
  }

  detachFast(fast: FastRelay<ClientConn>): void {
    if (this.fastPort === null) return;
    fast.detach(this.fastPort);
    this.fastPort = null;
  }

  fastPending(): void {
    this.#writer.aroundPending();
  }

  fastDrained(fastBytes: boolean): void {
    if (fastBytes) this.#writer.aroundDrained();
    this.#markDirty();
  }

  readonly #noteHeard = (srcId: string): void => {
    this.#core.noteHeard(srcId, this);
  };

  // ---- closing ----

  /** Closes this connection once: logs the reason, unregisters, drops what is queued, destroys the stream. */
  close(error: WiremeshError | null, reason = 'closed'): void {
    if (this.#state === 'closed') return;
    const wasLive = this.#state === 'live';
    this.#state = 'closed';
    const core = this.#core;
    if (error !== null) {
      core.counters.closed(error.code);
      const quiet = error.code === 'stream_error';
      this.#log[quiet ? 'debug' : 'warn']('closing connection', { code: error.code, reason: error.message, ...this.#logKey() });
    } else {
      this.#log.debug('connection closed', { reason, ...this.#logKey() });
    }
    this.#handshakeTimer?.cancel();
    this.#keepAliveTimer?.cancel();
    this.#throttleTimer?.cancel();
    this.#throttleTimer = null;
    this.#writer.close();
    this.#outbox.clear();
    this.detachFast(core.fast);
    if (wasLive) core.unregister(this);
    core.forget(this);
    this.#stream.destroy();
  }

  #logKey(): Record<string, unknown> {
    return this.keyId === '' ? {} : { key: shortKey(this.key) };
  }
}

