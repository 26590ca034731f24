/**
 * The relay's fast path for connections carried by the native addon (spec/derp.md §9.1 routing, §9.3 queueing,
 * §9.4 "heard from"; docs/derp-server.md "Fast path"). A read that starts with whole SendPacket frames for live
 * local destinations is relayed right in the addon's read buffer: each frame becomes its RecvPacket in place (the
 * type byte and the source key change, the length does not) and each run of frames for one destination goes to
 * the addon in one write. It touches one small object per connection (a FastPort) instead of the socket, its
 * stream state, the connection, its frame reader, the destination's outbox and writer: at 100 pairs those are cold
 * in cache on every read (docs/BENCHMARKS.md).
 *
 * The first frame it does not take, and everything after it in that read, goes the general way (ClientConn): a
 * partial frame, any other frame type, a bad length (rejected there), an unknown or remote destination, a
 * destination with anything pending (queued packets, a blocked writer, bytes the addon has not written yet: the
 * general path keeps their order and does the head drops), a receive limit in force. Mesh peers and keys with more
 * than one connection never get a port. Order per source holds: the fast path writes a destination only when
 * nothing of its output is waiting anywhere, and the addon appends to what it holds.
 */
import { FRAME_HEADER_LEN, FrameType, KEY_LEN } from '../constants.ts';
import { looksLikeDisco } from '../frame.ts';
import { MAX_SEND_PACKET_FRAME } from './constants.ts';
import type { Counters } from './metrics.ts';
import { RouteCache, writeKey } from './route-cache.ts';

const NOTHING = new Uint8Array(0);

/** What a stream's host (src/net/tls-native.ts NativeTlsServer) offers the fast path. */
export interface RawHost {
  /** Where the host puts each read's bytes before calling the tap. */
  readonly readBuffer: Buffer;
  setTap(tap: RawTap | null): void;
  /**
   * Takes `buf[start, end)` for connection `id` now; returns the bytes the host holds for it, not yet in the
   * kernel (-1: closed). An empty range only asks.
   */
  rawWrite(id: number, buf: Uint8Array, start: number, end: number): number;
}

/** The host's calls into the fast path. */
export interface RawTap {
  /** `readBuffer[0, n)` arrived on `id`: returns how many bytes were relayed (the rest goes to the stream). */
  read(id: number, n: number): number;
  /** A write to `id` through the stream left bytes in the host. */
  pending(id: number): void;
  /** Everything written to `id` is in the kernel (called before the stream hears of it). */
  drained(id: number): void;
  /** `id` is closed: its port goes before the id can name another connection. */
  released(id: number): void;
}

/** What a port needs of its connection (ClientConn). */
export interface FastConn {
  readonly key: Uint8Array;
  readonly keyId: string;
  /** A fast write left bytes in the host: the connection's write deadline covers them. */
  fastPending(): void;
  /**
   * Everything the host held for it is in the kernel (`fastBytes`: some came from the fast path, whose pending
   * write the deadline counted): the connection re-checks its backlog at its next flush.
   */
  fastDrained(fastBytes: boolean): void;
}

/** One connection's fast-path state: everything a relayed read touches of it, in one object. */
export class FastPort<C extends FastConn> {
  readonly conn: C;
  readonly host: RawHost;
  readonly id: number;
  readonly key: Uint8Array;
  readonly keyId: string;
  /** False once detached (closed, or its key got a second connection): cached routes to it are stale. */
  attached = true;
  /**
   * The general path may hold part of a frame of this source: its reads go there until the connection sees its
   * reader empty after a read. True at first (a port is made in the middle of the reader's work).
   */
  partial = true;
  /** The host holds bytes for this destination that are not in the kernel yet. */
  hostPending = false;
  /** Some of those bytes came from the fast path (the connection's write deadline was told). */
  fastBytesPending = false;
  /**
   * The general path has output waiting for this destination (queued packets or a blocked writer). True at first:
   * the connection's next flush says (a port can be made for a connection that has a backlog).
   */
  backlog = true;
  /** The last source relayed to this destination by the fast path (for the §9.4 record). */
  lastHeard: FastPort<C> | null = null;
  /** This source's last destination. */
  readonly route = new RouteCache<FastPort<C>>();

  constructor(conn: C, host: RawHost, id: number) {
    this.conn = conn;
    this.host = host;
    this.id = id;
    this.key = conn.key;
    this.keyId = conn.keyId;
  }
}

/** One host's ports by connection id, and its tap. */
class HostTap<C extends FastConn> implements RawTap {
  readonly ports: (FastPort<C> | undefined)[] = [];
  readonly #relay: FastRelay<C>;
  readonly #host: RawHost;
  readonly #view: DataView;

  constructor(relay: FastRelay<C>, host: RawHost) {
    this.#relay = relay;
    this.#host = host;
    const b = host.readBuffer;
    this.#view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  read(id: number, n: number): number {
    const p = this.ports[id];
    if (p === undefined || p.partial) return 0;
    const taken = this.#relay.relay(p, this.#host.readBuffer, this.#view, n);
    // The general path gets the rest from the start of a frame; if it ends inside one, later reads wait for it.
    if (taken < n) p.partial = true;
    return taken;
  }

  pending(id: number): void {
    const p = this.ports[id];
    if (p !== undefined) p.hostPending = true;
  }

  drained(id: number): void {
    const p = this.ports[id];
    if (p === undefined) return;
    const fastBytes = p.fastBytesPending;
    p.hostPending = false;
    p.fastBytesPending = false;
    p.conn.fastDrained(fastBytes);
  }

  released(id: number): void {
    const p = this.ports[id];
    if (p !== undefined) this.#relay.detach(p);
  }
}

export interface FastRelayCore<C> {
  readonly counters: Counters;
  /** Non-null: a per-client receive limit is in force, which the general path meters. */
  readonly receiveLimit: unknown;
  noteHeard(srcId: string, c: C): void;
}

export class FastRelay<C extends FastConn> {
  readonly #core: FastRelayCore<C>;
  readonly #taps = new Map<RawHost, HostTap<C>>();
  readonly #byKey = new Map<string, FastPort<C>>();
  /** Bumped whenever a port is detached: invalidates every source's cached route. */
  #gen = 0;

  constructor(core: FastRelayCore<C>) {
    this.#core = core;
  }

  /** Gives `conn` (live, its key's only connection, not a mesh peer) a port on `host` as connection `id`. */
  attach(conn: C, host: RawHost, id: number): FastPort<C> {
    let tap = this.#taps.get(host);
    if (tap === undefined) {
      tap = new HostTap(this, host);
      this.#taps.set(host, tap);
      host.setTap(tap);
    }
    const p = new FastPort(conn, host, id);
    p.hostPending = host.rawWrite(id, NOTHING, 0, 0) > 0;
    tap.ports[id] = p;
    this.#byKey.set(p.keyId, p);
    return p;
  }

  /** Takes `p` out of the fast path (its connection closes, or another connection shares its key). */
  detach(p: FastPort<C>): void {
    if (!p.attached) return;
    p.attached = false;
    this.#gen++;
    // Its drain event will find no port: settle the write deadline's count now.
    if (p.fastBytesPending) {
      p.fastBytesPending = false;
      p.conn.fastDrained(true);
    }
    const tap = this.#taps.get(p.host);
    if (tap !== undefined && tap.ports[p.id] === p) tap.ports[p.id] = undefined;
    if (this.#byKey.get(p.keyId) === p) this.#byKey.delete(p.keyId);
  }

  /** Connections with a port. */
  get size(): number {
    return this.#byKey.size;
  }

  /** Relays the whole SendPacket frames at the start of `buf[0, n)` from `src`; returns the bytes taken. @internal */
  relay(src: FastPort<C>, buf: Buffer, view: DataView, n: number): number {
    if (this.#core.receiveLimit !== null) return 0;
    const gen = this.#gen;
    const route = src.route;
    let off = 0;
    let run: FastPort<C> | undefined;
    let runStart = 0;
    let packets = 0;
    let bytes = 0;
    let disco = 0;
    while (n - off >= FRAME_HEADER_LEN + KEY_LEN && buf[off] === FrameType.SendPacket) {
      const len = view.getUint32(off + 1);
      const end = off + FRAME_HEADER_LEN + len;
      if (len < KEY_LEN || len > MAX_SEND_PACKET_FRAME || end > n) break;
      const keyAt = off + FRAME_HEADER_LEN;
      let dst = route.gen === gen ? route.lookup(buf, keyAt) : undefined;
      if (dst === undefined) {
        dst = this.#byKey.get(buf.toString('latin1', keyAt, keyAt + KEY_LEN));
        if (dst === undefined) break;
        route.remember(buf, keyAt, dst, gen);
      }
      if (dst !== run) {
        if (dst.hostPending || dst.backlog) break;
        if (run !== undefined) this.#write(src, run, buf, runStart, off);
        run = dst;
        runStart = off;
      }
      const packetAt = keyAt + KEY_LEN;
      packets++;
      bytes += end - packetAt;
      if (looksLikeDisco(buf, packetAt, end)) disco++;
      buf[off] = FrameType.RecvPacket;
      writeKey(buf, keyAt, src.key);
      off = end;
    }
    if (run !== undefined) this.#write(src, run, buf, runStart, off);
    if (packets > 0) {
      const c = this.#core.counters;
      c.packetsReceived += packets;
      c.bytesReceived += bytes;
      c.receivedDisco += disco;
      c.receivedOther += packets - disco;
      c.packetsSent += packets;
      c.bytesSent += bytes;
      c.fastPathPackets += packets;
    }
    return off;
  }

  #write(src: FastPort<C>, dst: FastPort<C>, buf: Buffer, start: number, end: number): void {
    const left = dst.host.rawWrite(dst.id, buf, start, end);
    if (left > 0) {
      dst.hostPending = true;
      if (!dst.fastBytesPending) {
        dst.fastBytesPending = true;
        dst.conn.fastPending();
      }
    }
    if (dst.lastHeard !== src) {
      dst.lastHeard = src;
      this.#core.noteHeard(src.keyId, dst.conn);
    }
  }
}
