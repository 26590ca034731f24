/**
 * The DERP server's registry and routing (spec/derp.md §9, §10, §11.1–§11.3): keys → connections (with the
 * duplicate policy), SendPacket/ForwardPacket routing, the "heard from" records behind PeerGone(Disconnected),
 * mesh watchers, packet forwarders, and the once-per-turn flush scheduler for connections with pending output.
 */
import { WiremeshError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { Clock } from '../../time/clock.ts';
import { keyId, shortKey, type NodePrivate, type NodePublic } from '../../types/key.ts';
import { FrameType, KEY_LEN, PeerGoneReason } from '../constants.ts';
import { encodeFrame, encodePeerPresent, looksLikeDisco } from '../frame.ts';
import type { ClientConn, ReceiveLimit, ServerCore } from './client-conn.ts';
import { KeyConns } from './dup.ts';
import { Counters, DropReason, snapshot, type DerpMetrics } from './metrics.ts';
import { FastRelay } from './fast-relay.ts';
import { BatchArena } from './writer.ts';

export interface PacketForwarder {
  forwardPacket(src: NodePublic, dst: NodePublic, packet: Uint8Array): void;
  readonly name: string;
}

export interface CoreOptions {
  privateKey: NodePrivate;
  publicKey: NodePublic;
  meshKey: Uint8Array | null;
  clock: Clock;
  logger: Logger;
  queueDepth: number;
  writeTimeoutMs: number;
  handshakeTimeoutMs: number;
  random: (n: number) => Uint8Array;
  verifyClient: ((req: { key: NodePublic; remoteAddress: string }) => Promise<boolean>) | undefined;
}

interface Forwarders {
  key: NodePublic;
  list: PacketForwarder[];
}

export class Core implements ServerCore {
  readonly clock: Clock;
  readonly counters = new Counters();
  readonly privateKey: NodePrivate;
  readonly publicKey: NodePublic;
  readonly meshKey: Uint8Array | null;
  readonly queueDepth: number;
  readonly batchArena = new BatchArena();
  readonly writeTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly random: (n: number) => Uint8Array;
  verifyClient: ((req: { key: NodePublic; remoteAddress: string }) => Promise<boolean>) | undefined;
  /** Per-client receive limit (§12), set through DerpServer.setReceiveRateLimit. */
  receiveLimit: ReceiveLimit | null = null;

  /** The relay's fast path for connections on the native addon (fast-relay.ts). */
  readonly fast: FastRelay<ClientConn> = new FastRelay<ClientConn>(this);
  /** Every accepted connection, handshaking or live. */
  readonly all = new Set<ClientConn>();
  readonly #log: Logger;
  readonly #selfId: string;
  readonly #clients = new Map<string, KeyConns<ClientConn>>();
  readonly #forwarders = new Map<string, Forwarders>();
  /** src keyId → connections that were sent packets from src (§9.4). */
  readonly #sentTo = new Map<string, Set<ClientConn>>();
  readonly #watchers = new Set<ClientConn>();
  #liveConns = 0;
  #home = 0;
  #notIdeal = 0;
  /** Connections with pending output: slots [0, #dirtyCount) (reused, so marking allocates nothing). */
  readonly #dirty: (ClientConn | null)[] = [];
  #dirtyCount = 0;
  #flushScheduled = false;
  /** Inside readThenFlush: the flush at its end covers what is marked dirty now. */
  #readFlushPending = false;
  /** Bumped whenever a key's connection set leaves #clients: invalidates the senders' RouteCache entries. */
  #routeGen = 0;

  constructor(o: CoreOptions) {
    this.clock = o.clock;
    this.privateKey = o.privateKey;
    this.publicKey = o.publicKey;
    this.meshKey = o.meshKey;
    this.queueDepth = o.queueDepth;
    this.writeTimeoutMs = o.writeTimeoutMs;
    this.handshakeTimeoutMs = o.handshakeTimeoutMs;
    this.random = o.random;
    this.verifyClient = o.verifyClient;
    this.#log = o.logger;
    this.#selfId = keyId(o.publicKey);
  }

  // ---- flush scheduling: one pass per event-loop turn over connections with pending output ----

  schedule(c: ClientConn): void {
    this.#dirty[this.#dirtyCount++] = c;
    if (this.#flushScheduled || this.#readFlushPending) return;
    this.#flushScheduled = true;
    setImmediate(this.#runFlush);
  }

  readonly #runFlush = (): void => {
    this.#flushScheduled = false;
    this.flushNow();
  };

  /**
   * Brackets a connection's handling of one read that ends in a flush (flushAfterRead): what is marked dirty in
   * between goes out at endRead() instead of at the end of the loop turn, and no end-of-turn pass is scheduled
   * for it. Returns the state endRead() restores (reads nest when one connection's handling closes another).
   */
  beginRead(): boolean {
    const outer = this.#readFlushPending;
    this.#readFlushPending = true;
    return outer;
  }

  endRead(outer: boolean): void {
    this.#readFlushPending = outer;
    if (!outer) this.flushNow();
  }

  /** Flushes every dirty connection now (the pending end-of-turn pass then finds none). */
  flushNow(): void {
    const d = this.#dirty;
    // Connections marked while this runs are flushed in the same pass.
    try {
      for (let i = 0; i < this.#dirtyCount; i++) {
        const c = d[i]!;
        d[i] = null;
        c.flush();
      }
    } finally {
      this.#dirtyCount = 0;
    }
  }

  // ---- registry ----

  register(c: ClientConn): void {
    let set = this.#clients.get(c.keyId);
    if (set === undefined) {
      set = new KeyConns<ClientConn>(c.key, c.keyId);
      this.#clients.set(c.keyId, set);
    } else {
      this.counters.totalDupClientConns++;
    }
    set.add(c);
    c.keyConns = set;
    // A key with duplicates needs the general path's per-frame activity tracking (§10) on all of them.
    if (set.size === 1) c.attachFast(this.fast);
    else for (const o of set.conns) o.detachFast(this.fast);
    this.#liveConns++;
    if (c.notIdeal) this.#notIdeal++;
    if (this.#watchers.size > 0) {
      const frame = encodePeerPresent(c.key, c.ip16, c.remotePort, c.presentFlags);
      for (const w of this.#watchers) w.enqueueWatcherFrame(frame);
    }
  }

  unregister(c: ClientConn): void {
    this.#liveConns--;
    if (c.notIdeal) this.#notIdeal--;
    if (c.preferred) this.#home--;
    this.#watchers.delete(c);
    for (const src of c.heardFrom) {
      const s = this.#sentTo.get(src);
      if (s !== undefined && s.delete(c) && s.size === 0) this.#sentTo.delete(src);
    }
    c.heardFrom.clear();
    c.keyConns = null;
    const set = this.#clients.get(c.keyId);
    if (set === undefined || !set.remove(c)) return;
    if (set.size === 1) set.active!.attachFast(this.fast);
    if (set.size > 0) return;
    this.#clients.delete(c.keyId);
    this.#routeGen++; // every sender's cached destination set may be this one
    if (this.#watchers.size > 0) {
      const frame = encodeFrame(FrameType.PeerGone, c.key, Uint8Array.of(PeerGoneReason.Disconnected));
      for (const w of this.#watchers) w.enqueueWatcherFrame(frame);
    }
    if (!this.#forwarders.has(c.keyId)) this.#leftRegion(c.keyId, c.key);
  }

  forget(c: ClientConn): void {
    this.all.delete(c);
  }

  /** `key` has no local connection and no forwarder any more: tell everyone who heard from it (§9.4). */
  #leftRegion(id: string, key: Uint8Array): void {
    const heard = this.#sentTo.get(id);
    if (heard === undefined) return;
    this.#sentTo.delete(id);
    for (const c of heard) {
      c.heardFrom.delete(id);
      c.enqueuePeerGone(key, PeerGoneReason.Disconnected);
    }
  }

  noteHeard(srcId: string, c: ClientConn): void {
    if (c.heardFrom.has(srcId)) return;
    c.heardFrom.add(srcId);
    let s = this.#sentTo.get(srcId);
    if (s === undefined) this.#sentTo.set(srcId, (s = new Set()));
    s.add(c);
  }

  homeChanged(delta: number): void {
    this.#home += delta;
  }

  // ---- routing ----

  /**
   * Routes the SendPacket payload `buf[start, end)` (destination key, then the packet). No view of it is made on
   * the direct path; `transient`: `buf` is reused after this returns, so whatever is kept is copied.
   */
  routeSend(from: ClientConn, buf: Buffer, start: number, end: number, transient: boolean, inPlace: boolean): void {
    const counters = this.counters;
    const pstart = start + KEY_LEN;
    const len = end - pstart;
    const disco = looksLikeDisco(buf, pstart, end);
    counters.packetsReceived++;
    counters.bytesReceived += len;
    if (disco) counters.receivedDisco++;
    else counters.receivedOther++;
    // Most senders talk to one peer at a time: reuse the last destination's set while the key bytes match and no
    // set has left the registry since, instead of a 32-char string and a Map lookup per packet.
    const cache = from.route;
    let set = cache.gen === this.#routeGen ? cache.lookup(buf, start) : undefined;
    let dstId = '';
    if (set === undefined) {
      dstId = buf.toString('latin1', start, pstart); // same string as keyId(), one allocation fewer
      set = this.#clients.get(dstId);
      if (set !== undefined) cache.remember(buf, start, set, this.#routeGen);
    }
    if (set !== undefined) {
      const to = set.active;
      if (to !== undefined) to.enqueuePacket(from.key, from.keyId, buf, pstart, end, disco, transient, inPlace);
      else counters.drop(DropReason.DupClient, disco, len);
      return;
    }
    const fwd = this.#forwarders.get(dstId);
    if (fwd !== undefined && fwd.list.length > 0) {
      counters.packetsForwardedOut++;
      try {
        fwd.list[0]!.forwardPacket(from.key, fwd.key, buf.subarray(pstart, end)); // encoded (copied) at once
      } catch (e) {
        this.#log.debug('forwarder failed', { via: fwd.list[0]!.name, error: String(e) });
      }
      return;
    }
    counters.drop(DropReason.UnknownDest, disco, len);
    if (disco) from.notHere(buf.subarray(start, pstart)); // copied by notHere
  }

  routeForward(from: ClientConn, src: Uint8Array, dst: Uint8Array, packet: Uint8Array): void {
    const counters = this.counters;
    const disco = looksLikeDisco(packet);
    const to = this.#clients.get(keyId(dst))?.active;
    if (to === undefined) {
      counters.drop(DropReason.UnknownDestOnFwd, disco, packet.length);
      if (disco) from.notHere(dst);
      return;
    }
    counters.packetsForwardedIn++;
    to.enqueuePacket(src, keyId(src), packet, 0, packet.length, disco, false);
  }

  // ---- mesh ----

  addWatcher(c: ClientConn): void {
    if (c.keyId === this.#selfId) {
      this.#log.debug('ignoring WatchConns from our own key (self-mesh)');
      return;
    }
    if (this.#watchers.has(c)) return;
    this.#watchers.add(c);
    c.isWatcher = true;
    for (const set of this.#clients.values()) {
      const a = set.active;
      if (a !== undefined) c.enqueueWatcherFrame(encodePeerPresent(a.key, a.ip16, a.remotePort, a.presentFlags));
    }
  }

  closePeer(from: ClientConn, target: Uint8Array): void {
    const set = this.#clients.get(keyId(target));
    if (set === undefined) {
      this.#log.info('ClosePeer for an unknown key', { target: shortKey(target), from: shortKey(from.key) });
      return;
    }
    this.#log.info('closing peer on mesh request', { target: shortKey(target), from: shortKey(from.key) });
    for (const c of [...set.conns]) c.close(null, 'ClosePeer from a mesh peer');
  }

  addPacketForwarder(key: NodePublic, fwd: PacketForwarder): void {
    const id = keyId(key);
    let f = this.#forwarders.get(id);
    if (f === undefined) this.#forwarders.set(id, (f = { key: Uint8Array.prototype.slice.call(key) as NodePublic, list: [] }));
    if (f.list.includes(fwd)) return;
    f.list.push(fwd);
    if (f.list.length === 2) this.counters.multiforwarderCreated++;
  }

  removePacketForwarder(key: NodePublic, fwd: PacketForwarder): void {
    const id = keyId(key);
    const f = this.#forwarders.get(id);
    const i = f === undefined ? -1 : f.list.indexOf(fwd);
    if (f === undefined || i < 0) return;
    f.list.splice(i, 1);
    if (f.list.length === 1) this.counters.multiforwarderDeleted++;
    if (f.list.length > 0) return;
    this.#forwarders.delete(id);
    if (!this.#clients.has(id)) this.#leftRegion(id, f.key);
  }

  /** Throws if the registry's invariants do not hold (served at /debug/check by derper). */
  consistencyCheck(): void {
    const problems: string[] = [];
    let live = 0;
    for (const [id, set] of this.#clients) {
      if (set.size === 0) problems.push(`key ${shortKey(set.key)} registered with no connections`);
      for (const c of set.conns) {
        live++;
        if (!c.live) problems.push(`closed connection ${c.id} still registered`);
        if (c.keyId !== id) problems.push(`connection ${c.id} registered under another key`);
        if (c.keyConns !== set) problems.push(`connection ${c.id} has a stale registry entry`);
      }
    }
    if (live !== this.#liveConns) problems.push(`${live} registered connections, gauge says ${this.#liveConns}`);
    for (const w of this.#watchers) if (!w.live) problems.push(`closed watcher ${w.id}`);
    for (const [src, conns] of this.#sentTo) {
      for (const c of conns) if (!c.live || !c.heardFrom.has(src)) problems.push(`stale heard-from record on connection ${c.id}`);
    }
    if (problems.length > 0) throw new WiremeshError('inconsistent', problems.join('; '));
  }

  // ---- metrics ----

  metrics(): DerpMetrics {
    let dupKeys = 0;
    let dupConns = 0;
    for (const set of this.#clients.values()) {
      if (set.size > 1) {
        dupKeys++;
        dupConns += set.size;
      }
    }
    let remoteOnly = 0;
    for (const id of this.#forwarders.keys()) if (!this.#clients.has(id)) remoteOnly++;
    return snapshot(this.counters, {
      connections: this.#liveConns,
      home: this.#home,
      notIdeal: this.#notIdeal,
      watchers: this.#watchers.size,
      clientsTotal: this.#clients.size + remoteOnly,
      clientsLocal: this.#clients.size,
      clientsRemote: this.#forwarders.size,
      dupKeys,
      dupConns,
    });
  }
}
