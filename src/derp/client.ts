/**
 * DERP client engine (spec/derp.md §6 client side, §14): handshake (ServerKey → ClientInfo → ServerInfo, or fast
 * start with a known server key), typed receive with bounded buffering and socket backpressure, Ping/Pong
 * matching, the optional client-side token bucket, and the mesh-only frames. The transport (TCP/TLS upgrade or
 * WebSocket) comes from ./client-http.ts; DerpClient.overStream runs the same engine over any ByteStream.
 */
import { WiremeshError } from '../errors.ts';
import { realClock, type Clock, type Timer } from '../time/clock.ts';
import { nodePublicFromBytes, publicFromPrivate, toHex, type NodePrivate, type NodePublic } from '../types/key.ts';
import type { AddrPort } from '../net/packet.ts';
import { encodeClientInfo, openServerInfo, type ServerInfo } from './client-info.ts';
import {
  CLIENT_MAX_FRAME_LEN, FrameType, KEY_LEN, MAX_PACKET_SIZE, PING_LEN, SERVER_KEY_MAX_LEN, SERVER_KEY_MIN_LEN,
} from './constants.ts';
import {
  decodeServerKey, encodeClosePeer, encodeForwardPacket, encodeFrame, encodeNotePreferred, encodePing, encodePong,
  encodeSendPacket, encodeWatchConns, FrameReader,
} from './frame.ts';
import {
  CONNECT_TIMEOUT_MS, PING_TIMEOUT_MS, RECV_QUEUE_HIGH_BYTES, RECV_QUEUE_HIGH_WATER,
  RECV_QUEUE_LOW_WATER, TOKEN_BUCKET_FRAME_OVERHEAD,
} from './client-constants.ts';
import { dialDerp, type ByteStream, type TlsOptions } from './client-http.ts';
import { decodeServerFrame, type DerpMessage } from './client-messages.ts';

export type { DerpMessage } from './client-messages.ts';
export type { ByteStream } from './client-http.ts';
export { encodeClientInfo, type ServerInfo } from './client-info.ts';

export interface DerpClientOptions {
  privateKey: NodePrivate;
  /** 32-byte mesh PSK: makes this a privileged (mesh) client. */
  meshKey?: Uint8Array;
  isProber?: boolean;
  canAckPings?: boolean;
  /** Known server key: enables fast start (Derp-Fast-Start: 1, ClientInfo pipelined with the GET). */
  serverKey?: NodePublic;
  websocket?: boolean;
  tls?: TlsOptions;
  connectTimeoutMs?: number;
  clock?: Clock;
  idealNode?: string;
}

const protocolError = (message: string): WiremeshError => new WiremeshError('derp_protocol', message);
const closedError = (): WiremeshError => new WiremeshError('derp_closed', 'DERP client closed');

interface PendingPing {
  resolve(rtt: number): void;
  reject(e: Error): void;
  timer: Timer;
}

type State = 'serverKey' | 'serverInfo' | 'open' | 'closed';

export class DerpClient {
  #serverKey: NodePublic | null = null;
  #serverInfo: ServerInfo = { version: 0 };
  readonly publicKey: NodePublic;
  /** Resolves once when the connection ends: null after close(), else the error that ended it. */
  readonly closed: Promise<Error | null>;
  /** Packets dropped by the client-side token bucket (only when ServerInfo carried one). */
  droppedByTokenBucket = 0;

  readonly #stream: ByteStream;
  readonly #opts: DerpClientOptions;
  readonly #clock: Clock;
  readonly #reader: FrameReader;
  #state: State;
  #resolveClosed!: (e: Error | null) => void;
  #closeErr: Error | null = null;
  #handshake: { resolve(): void; reject(e: Error): void } | null = null;
  #queue: DerpMessage[] = [];
  #queueBytes = 0;
  #waiters: { resolve(m: DerpMessage): void; reject(e: Error): void }[] = [];
  #paused = false;
  #out: Uint8Array[] = [];
  #flushQueued = false;
  #writable = true;
  #drainWaiters: (() => void)[] = [];
  #pings = new Map<string, PendingPing>();
  #tokens = 0;
  #tokensAt = 0;

  private constructor(stream: ByteStream, opts: DerpClientOptions, fastStart: boolean) {
    this.#stream = stream;
    this.#opts = opts;
    this.#clock = opts.clock ?? realClock;
    this.publicKey = publicFromPrivate(opts.privateKey);
    this.#state = fastStart ? 'serverInfo' : 'serverKey';
    if (fastStart && opts.serverKey !== undefined) this.#serverKey = opts.serverKey;
    this.closed = new Promise((resolve) => { this.#resolveClosed = resolve; });
    this.#reader = new FrameReader((type) => (this.#state === 'serverKey' && type === FrameType.ServerKey ? SERVER_KEY_MAX_LEN : CLIENT_MAX_FRAME_LEN));
  }

  /** Dials `http(s)://host:port/derp` (or WebSocket) and completes the DERP handshake. */
  static async connect(url: string, opts: DerpClientOptions): Promise<DerpClient> {
    const clock = opts.clock ?? realClock;
    const ac = new AbortController();
    const timer = clock.setTimeout(() => ac.abort(), opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS);
    try {
      const fastStart = opts.serverKey !== undefined && opts.websocket !== true;
      const dialed = await dialDerp(url, {
        ...(opts.websocket !== undefined ? { websocket: opts.websocket } : {}),
        ...(opts.tls !== undefined ? { tls: opts.tls } : {}),
        ...(opts.idealNode !== undefined ? { idealNode: opts.idealNode } : {}),
        fastStart,
        ...(fastStart && opts.serverKey !== undefined ? { pipelined: encodeClientInfo(opts, opts.serverKey) } : {}),
        signal: ac.signal,
      });
      return await DerpClient.overStream(dialed.stream, dialed.head, opts, { fastStartSent: fastStart, signal: ac.signal });
    } finally {
      timer.cancel();
    }
  }

  /**
   * Runs the handshake over an already-upgraded stream. With `fastStartSent`, ClientInfo was already written
   * (pipelined with the request) and a ServerKey frame, if any, is skipped.
   */
  static overStream(stream: ByteStream, head: Uint8Array, opts: DerpClientOptions, o: { fastStartSent?: boolean; signal?: AbortSignal } = {}): Promise<DerpClient> {
    const c = new DerpClient(stream, opts, o.fastStartSent === true);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => c.#finish(new WiremeshError('derp_dial_failed', 'DERP handshake timed out'));
      o.signal?.addEventListener('abort', onAbort, { once: true });
      c.#handshake = {
        resolve: () => { o.signal?.removeEventListener('abort', onAbort); resolve(c); },
        reject: (e) => { o.signal?.removeEventListener('abort', onAbort); reject(e); },
      };
      stream.onData((chunk) => c.#onData(chunk));
      stream.onClose((err) => c.#finish(err ?? new WiremeshError('derp_eof', 'server closed the connection')));
      stream.onDrain(() => c.#onDrain());
      if (head.length > 0) c.#onData(Buffer.from(head));
    });
  }

  /** The server's public key (from ServerKey, or the fast-start key). */
  get serverKey(): NodePublic {
    if (this.#serverKey === null) throw new WiremeshError('derp_protocol', 'server key not known yet');
    return this.#serverKey;
  }

  /** The ServerInfo the server sent (`{ version: 2 }` from current servers). */
  get serverInfo(): ServerInfo {
    return this.#serverInfo;
  }

  /** Local address of the underlying socket, if known. */
  get localAddr(): AddrPort | null {
    const a = this.#stream.localAddress;
    const p = this.#stream.localPort;
    return a === undefined || p === undefined ? null : { address: a, port: p };
  }

  /** False while the transport buffers more than its high-water mark; see drained(). */
  get writable(): boolean {
    return this.#writable;
  }

  /** Resolves when outgoing bytes are flushed below the high-water mark. */
  drained(): Promise<void> {
    return this.#writable ? Promise.resolve() : new Promise((r) => this.#drainWaiters.push(r));
  }

  /** Sends a packet to `dst` (≤ 64 KiB, rejected locally above). Over a server token bucket it is dropped silently. */
  send(dst: NodePublic, packet: Uint8Array): void {
    if (packet.length > MAX_PACKET_SIZE) throw new WiremeshError('packet_too_large', `packet of ${packet.length} bytes exceeds ${MAX_PACKET_SIZE}`);
    if (dst.length !== KEY_LEN) throw new WiremeshError('invalid_key', 'destination key must be 32 bytes');
    if (!this.#takeTokens(TOKEN_BUCKET_FRAME_OVERHEAD + packet.length)) {
      this.droppedByTokenBucket++;
      return;
    }
    this.#write(encodeSendPacket(dst, packet));
  }

  /** Mesh only: forwards a packet on behalf of `src`. */
  forwardPacket(src: NodePublic, dst: NodePublic, packet: Uint8Array): void {
    if (packet.length > MAX_PACKET_SIZE) throw new WiremeshError('packet_too_large', `packet of ${packet.length} bytes exceeds ${MAX_PACKET_SIZE}`);
    this.#write(encodeForwardPacket(src, dst, packet));
  }

  notePreferred(preferred: boolean): void {
    this.#write(encodeNotePreferred(preferred));
  }

  /** Mesh only: subscribe to PeerPresent/PeerGone for every local client of the server. */
  watchConns(): void {
    this.#write(encodeWatchConns());
  }

  /** Mesh only: asks the server to close every connection of `key`. */
  closePeer(key: NodePublic): void {
    this.#write(encodeClosePeer(key));
  }

  /** Sends a Ping with 8 bytes (random by default) and resolves with the RTT in ms when its Pong arrives. */
  ping(data: Uint8Array = crypto.getRandomValues(new Uint8Array(PING_LEN)), timeoutMs = PING_TIMEOUT_MS): Promise<number> {
    if (data.length !== PING_LEN) return Promise.reject(new WiremeshError('bad_ping', `ping data must be ${PING_LEN} bytes`));
    if (this.#state === 'closed') return Promise.reject(this.#closeErr ?? closedError());
    const id = toHex(data);
    if (this.#pings.has(id)) return Promise.reject(new WiremeshError('bad_ping', 'a ping with this data is already pending'));
    const start = this.#clock.now();
    return new Promise((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        this.#pings.delete(id);
        reject(new WiremeshError('ping_timeout', `no pong within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pings.set(id, { resolve: () => resolve(this.#clock.now() - start), reject, timer });
      this.#write(encodePing(data));
    });
  }

  sendPong(data: Uint8Array): void {
    this.#write(encodePong(data));
  }

  /** Debugging and conformance testing: writes one frame verbatim, with no checks. */
  writeRawFrame(type: number, payload: Uint8Array): void {
    this.#write(encodeFrame(type, payload));
  }

  /** The next message; rejects with the close reason once the connection has ended and the queue is empty. */
  next(timeoutMs?: number): Promise<DerpMessage> {
    const m = this.#take();
    if (m !== undefined) return Promise.resolve(m);
    if (this.#state === 'closed') return Promise.reject(this.#closeErr ?? closedError());
    return new Promise((resolve, reject) => {
      let timer: Timer | null = null;
      const w = {
        resolve: (msg: DerpMessage) => { timer?.cancel(); resolve(msg); },
        reject: (e: Error) => { timer?.cancel(); reject(e); },
      };
      if (timeoutMs !== undefined) {
        timer = this.#clock.setTimeout(() => {
          this.#waiters = this.#waiters.filter((x) => x !== w);
          reject(new WiremeshError('recv_timeout', `no DERP message within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.#waiters.push(w);
    });
  }

  /** Async iteration over received messages; ends when the connection closes. */
  async *recv(): AsyncIterableIterator<DerpMessage> {
    for (;;) {
      let m: DerpMessage;
      try {
        m = await this.next();
      } catch {
        return;
      }
      yield m;
    }
  }

  close(): void {
    this.#finish(null);
  }

  #write(frame: Uint8Array): void {
    if (this.#state === 'closed') throw this.#closeErr ?? closedError();
    this.#out.push(frame);
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    // Batch every frame written in this turn into one transport write (one WebSocket message).
    queueMicrotask(() => {
      this.#flushQueued = false;
      const out = this.#out;
      this.#out = [];
      if (this.#state === 'closed' || out.length === 0) return;
      const ok = this.#stream.write(out.length === 1 ? out[0]! : Buffer.concat(out));
      if (!ok) this.#writable = false;
    });
  }

  #onDrain(): void {
    this.#writable = true;
    const ws = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of ws) w();
  }

  #takeTokens(cost: number): boolean {
    const rate = this.serverInfo.tokenBucketBytesPerSecond;
    if (rate === undefined) return true;
    const burst = this.serverInfo.tokenBucketBytesBurst ?? rate;
    const now = this.#clock.now();
    this.#tokens = Math.min(burst, this.#tokens + ((now - this.#tokensAt) * rate) / 1000);
    this.#tokensAt = now;
    if (this.#tokens < cost) return false;
    this.#tokens -= cost;
    return true;
  }

  #onData(chunk: Buffer): void {
    if (this.#state === 'closed') return;
    this.#reader.push(chunk);
    try {
      for (let f = this.#reader.next(); f !== null; f = this.#isClosed() ? null : this.#reader.next()) {
        this.#onFrame(f.type, f.payload);
      }
    } catch (e) {
      this.#finish(e instanceof Error ? e : protocolError(String(e)));
    }
  }

  #isClosed(): boolean {
    return this.#state === 'closed';
  }

  #onFrame(type: number, payload: Uint8Array): void {
    if (this.#state === 'serverKey') {
      if (type !== FrameType.ServerKey) throw protocolError(`first frame type 0x${type.toString(16)}, want ServerKey`);
      if (payload.length < SERVER_KEY_MIN_LEN) throw protocolError(`ServerKey of ${payload.length} bytes`);
      const key = nodePublicFromBytes(decodeServerKey(payload));
      if (this.#opts.serverKey !== undefined && toHex(key) !== toHex(this.#opts.serverKey)) {
        throw new WiremeshError('server_key_mismatch', 'server key differs from the expected one');
      }
      this.#serverKey = key;
      this.#state = 'serverInfo';
      this.#write(encodeClientInfo(this.#opts, key));
      return;
    }
    if (type === FrameType.ServerKey) return; // fast start: the server still sends it; skip.
    if (this.#state === 'serverInfo' && type === FrameType.ServerInfo) {
      this.#serverInfo = openServerInfo(this.#opts.privateKey, this.serverKey, payload);
      this.#tokens = this.serverInfo.tokenBucketBytesBurst ?? this.serverInfo.tokenBucketBytesPerSecond ?? 0;
      this.#tokensAt = this.#clock.now();
      this.#state = 'open';
      const h = this.#handshake;
      this.#handshake = null;
      h?.resolve();
      return;
    }
    if (type === FrameType.ServerInfo) return;
    const m = decodeServerFrame(type, payload);
    if (m.type === 'pong') {
      const p = this.#pings.get(toHex(m.data));
      if (p !== undefined) {
        this.#pings.delete(toHex(m.data));
        p.timer.cancel();
        p.resolve(0);
        return;
      }
    }
    if (m.type === 'ping' && this.#opts.canAckPings === true) this.sendPong(m.data);
    this.#deliver(m);
  }

  #deliver(m: DerpMessage): void {
    const w = this.#waiters.shift();
    if (w !== undefined) {
      w.resolve(m);
      return;
    }
    this.#queue.push(m);
    this.#queueBytes += m.type === 'recvPacket' ? m.data.length : 0;
    if (!this.#paused && (this.#queue.length >= RECV_QUEUE_HIGH_WATER || this.#queueBytes >= RECV_QUEUE_HIGH_BYTES)) {
      this.#paused = true;
      this.#stream.pause();
    }
  }

  #take(): DerpMessage | undefined {
    const m = this.#queue.shift();
    if (m === undefined) return undefined;
    this.#queueBytes -= m.type === 'recvPacket' ? m.data.length : 0;
    if (this.#paused && this.#queue.length <= RECV_QUEUE_LOW_WATER && this.#queueBytes < RECV_QUEUE_HIGH_BYTES / 2) {
      this.#paused = false;
      this.#stream.resume();
    }
    return m;
  }

  #finish(err: Error | null): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#closeErr = err;
    this.#stream.close();
    const failure = err ?? closedError();
    for (const p of this.#pings.values()) {
      p.timer.cancel();
      p.reject(failure);
    }
    this.#pings.clear();
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(failure);
    const h = this.#handshake;
    this.#handshake = null;
    h?.reject(failure);
    this.#onDrain();
    this.#resolveClosed(err);
  }
}
