/**
 * DerpServer: the DERP relay engine (spec/derp.md §6–§11, §12 per-connection rules). It takes over byte streams
 * positioned right after the HTTP/WebSocket upgrade (see upgrade.ts) and runs the handshake, routing, queues,
 * duplicate-key policy and mesh hooks. It touches no sockets itself: any node:stream Duplex works (TCP, TLS,
 * WebSocket adapter, in-memory pairs in tests); time comes from the injected Clock.
 */
import type { Duplex } from 'node:stream';
import { WiremeshError } from '../../errors.ts';
import { silentLogger, type Logger } from '../../log.ts';
import { realClock, type Clock } from '../../time/clock.ts';
import { KEY_LEN } from '../constants.ts';
import { publicFromPrivate, type NodePrivate, type NodePublic } from '../../types/key.ts';
import { ClientConn } from './client-conn.ts';
import { DEFAULT_QUEUE_DEPTH, DEFAULT_WRITE_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS, RECEIVE_LIMIT_FRAME_COST_CAP } from './constants.ts';
import { Core, type PacketForwarder } from './core.ts';
import type { DerpMetrics } from './metrics.ts';

export type { PacketForwarder } from './core.ts';
export type { DerpMetrics, DropCounts, DropKind, DropReasonValue } from './metrics.ts';
export { DropReason } from './metrics.ts';

export interface DerpServerOptions {
  privateKey: NodePrivate;
  /** 32 bytes; clients presenting it are mesh peers (§11.1). */
  meshKey?: Uint8Array | null;
  /** Default realClock. */
  clock?: Clock;
  /** Default silentLogger. */
  logger?: Logger;
  /** Admission for non-mesh clients (§13); resolve false to reject silently. */
  verifyClient?: (req: { key: NodePublic; remoteAddress: string }) => Promise<boolean>;
  /** Per-write deadline, default 2000 ms (0 = none); mesh peers always get 30000. */
  writeTimeoutMs?: number;
  /** Depth of each of the two per-connection queues, default 32 (§9.3). */
  queueDepth?: number;
  /** Each of the two handshake windows (send ServerKey; receive ClientInfo + admission), default 10000 ms. */
  handshakeTimeoutMs?: number;
  /** Random bytes for ServerInfo nonces and keepalive jitter (tests); default crypto.getRandomValues. */
  random?: (n: number) => Uint8Array;
}

export interface AcceptInfo {
  remoteAddress: string;
  remotePort: number;
  /** Bytes already read past the HTTP request (may hold a fast-start ClientInfo). */
  head?: Uint8Array;
  /** The Ideal-Node request header; non-empty marks the connection not ideal (§3.1). */
  idealNode?: string;
}

export class DerpServer {
  readonly publicKey: NodePublic;
  readonly #core: Core;
  readonly #log: Logger;
  #nextId = 1;
  #rateGen = 0;
  #closed = false;

  constructor(opts: DerpServerOptions) {
    const meshKey = opts.meshKey ?? null;
    if (meshKey !== null && meshKey.length !== KEY_LEN) throw new WiremeshError('invalid_mesh_key', 'invalid mesh key: want 32 bytes');
    this.publicKey = publicFromPrivate(opts.privateKey);
    this.#log = opts.logger ?? silentLogger;
    this.#core = new Core({
      privateKey: opts.privateKey,
      publicKey: this.publicKey,
      meshKey: meshKey === null ? null : Uint8Array.from(meshKey),
      clock: opts.clock ?? realClock,
      logger: this.#log,
      queueDepth: Math.max(1, opts.queueDepth ?? DEFAULT_QUEUE_DEPTH),
      writeTimeoutMs: opts.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS,
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
      random: opts.random ?? ((n) => crypto.getRandomValues(new Uint8Array(n))),
      verifyClient: opts.verifyClient,
    });
  }

  /** Takes over a byte stream positioned right after the HTTP upgrade (`head` = bytes already read). */
  accept(stream: Duplex, info: AcceptInfo): void {
    if (this.#closed) {
      stream.destroy();
      return;
    }
    const id = this.#nextId++;
    this.#core.counters.accepts++;
    const log = this.#log.child({ conn: id, remote: info.remoteAddress });
    const conn = new ClientConn(this.#core, id, stream, info, log);
    this.#core.all.add(conn);
    conn.start(info.head);
  }

  /** Counts one accepted WebSocket upgrade (`derp_websocket_accepts`); called by the upgrade adapter. */
  noteWebSocketAccept(): void {
    this.#core.counters.websocketAccepts++;
  }

  /** Counters and gauges named as derper's expvar set `derp` (§16.4), plus drop counters by reason/kind. */
  metrics(): DerpMetrics {
    return this.#core.metrics();
  }

  /**
   * Sets (or with null / a zero rate, clears) the per-client receive limit of `--rate-config` (§12): each frame
   * from a non-mesh client costs its length (capped at 65568); over budget the server stops reading until the
   * bucket refills. The burst is raised to at least 65568. Applies to live connections at their next frame and
   * is announced in ServerInfo to new ones.
   */
  setReceiveRateLimit(limit: { bytesPerSecond: number; burstBytes: number } | null): void {
    const gen = ++this.#rateGen;
    if (limit === null || !(limit.bytesPerSecond > 0)) {
      this.#core.receiveLimit = null;
      return;
    }
    const burstBytes = Math.max(RECEIVE_LIMIT_FRAME_COST_CAP, Number.isFinite(limit.burstBytes) ? limit.burstBytes : 0);
    this.#core.receiveLimit = { bytesPerSecond: limit.bytesPerSecond, burstBytes, gen };
  }

  /** Registers a mesh forwarder for a key that is connected to a peer server (§11.4 uses it). */
  addPacketForwarder(key: NodePublic, fwd: PacketForwarder): void {
    this.#core.addPacketForwarder(key, fwd);
  }

  removePacketForwarder(key: NodePublic, fwd: PacketForwarder): void {
    this.#core.removePacketForwarder(key, fwd);
  }

  /** Throws a WiremeshError('inconsistent') if the registry's invariants do not hold (derper /debug/check). */
  consistencyCheck(): void {
    this.#core.consistencyCheck();
  }

  /** Closes all client connections and stops their timers; resolves when every stream has closed. */
  async close(): Promise<void> {
    this.#closed = true;
    const conns = [...this.#core.all];
    for (const c of conns) c.close(null, 'server closing');
    await Promise.all(conns.map((c) => c.closed));
  }
}
