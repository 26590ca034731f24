/**
 * The contract between one DERP connection (client-conn.ts) and the server core that routes between connections
 * (core.ts), spec/derp.md §9: what a connection may ask of the core, and what it is told about its peer at accept.
 * Types only.
 */
import type { Clock } from '../../time/clock.ts';
import type { NodePrivate, NodePublic } from '../../types/key.ts';
import type { ClientConn } from './client-conn.ts';
import type { FastRelay } from './fast-relay.ts';
import type { Counters } from './metrics.ts';
import type { ReceiveLimitConfig } from './ratelimit.ts';
import type { BatchArena } from './writer.ts';

/** The per-client receive limit in force (§12); `gen` changes on every reconfiguration. */
export type ReceiveLimit = ReceiveLimitConfig;

/** What a connection needs from the server core (implemented in core.ts). */
export interface ServerCore {
  /** null = no per-client receive limit. */
  readonly receiveLimit: ReceiveLimit | null;
  readonly clock: Clock;
  readonly counters: Counters;
  readonly privateKey: NodePrivate;
  readonly publicKey: NodePublic;
  readonly meshKey: Uint8Array | null;
  readonly queueDepth: number;
  /** The relay's fast path for connections on the native addon (fast-relay.ts). */
  readonly fast: FastRelay<ClientConn>;
  /** Batch buffers for connections with direct writes (writer.ts). */
  readonly batchArena: BatchArena;
  readonly writeTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly random: (n: number) => Uint8Array;
  verifyClient: ((req: { key: NodePublic; remoteAddress: string }) => Promise<boolean>) | undefined;
  schedule(c: ClientConn): void;
  /** Around one read's handling: flush at endRead() instead of scheduling an end-of-turn pass (core.ts). */
  beginRead(): boolean;
  endRead(outer: boolean): void;
  register(c: ClientConn): void;
  unregister(c: ClientConn): void;
  noteHeard(srcId: string, c: ClientConn): void;
  /**
   * Routes the SendPacket payload `buf[start, end)`: dst key(32) ∥ packet (`transient`: `buf` is reused after;
   * `inPlace`: the frame's header precedes it in `buf` and the frame may be rewritten there, reader.ts).
   */
  routeSend(from: ClientConn, buf: Buffer, start: number, end: number, transient: boolean, inPlace: boolean): void;
  routeForward(from: ClientConn, src: Uint8Array, dst: Uint8Array, packet: Uint8Array): void;
  addWatcher(c: ClientConn): void;
  closePeer(from: ClientConn, target: Uint8Array): void;
  homeChanged(delta: number): void;
  forget(c: ClientConn): void;
}

export interface ConnInfo {
  remoteAddress: string;
  remotePort: number;
  head?: Uint8Array;
  idealNode?: string;
}
