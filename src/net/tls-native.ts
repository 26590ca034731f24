/**
 * TLS on the native addon build/tls_conn.node (native/tls_conn.c; docs/tls-native.md), for the
 * derper listener (spec/derp.md §3.3, §16.1; spec/node-performance.md §1 on what TLS costs per record in Node).
 * Adapter layer.
 *
 * A `NativeTlsServer` takes TCP sockets accepted by a `net.Server` created with `pauseOnConnect: true` (Node owns
 * and never reads them), runs the handshake in C and hands each finished connection over as a
 * `NativeTlsSocket`: a Duplex of plaintext that an `http.Server` accepts through `emit('connection', …)` and the
 * DERP server writes frames to. When the addon is not built, `nativeTlsAvailable()` is false and the derper uses
 * Node's https server.
 *
 * Without a context (`context: null`) the same server carries plain TCP: no handshake, the socket is handed over
 * at once, and reads and writes are plain recv/send with the same buffer reuse and direct paths (the derper's
 * HTTP port; `nativeTcpAvailable()`).
 *
 * `connect(raw, NativeTlsClientContext)` runs the client end on a connected socket: the benchmarks' load
 * generator uses it so that, over TLS, the relay and not the client's own TLS is what a run measures.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import path from 'node:path';
import { WiremeshError } from '../errors.ts';
import { NativeTlsSocket } from './tls-native-socket.ts';

export { NativeTlsSocket, type NativeTlsInfo } from './tls-native-socket.ts';

declare const brand: unique symbol;
type Handle<T extends string> = { readonly [brand]: T };
type CtxHandle = Handle<'ctx'>;
type ClientCtxHandle = Handle<'clientCtx'>;
type ServerHandle = Handle<'server'>;

/**
 * Where reads go first when set (the DERP relay's fast path, src/derp/server/fast-relay.ts RawTap): `read` returns
 * how many bytes of `readBuffer[0, n)` it took, the rest goes to the socket; it hears of writes left pending and of
 * drained connections.
 */
export interface ReadTap {
  read(id: number, n: number): number;
  pending(id: number): void;
  drained(id: number): void;
  /** `id` is closed (and may be reused by the next connection). */
  released(id: number): void;
}

/** Event kinds of onEvent (EV_* in native/tls_conn.c). */
const Ev = { Secure: 1, Drain: 2, Eof: 3, Error: 4 } as const;

interface Native {
  ABI: number;
  ctxNew(certPem: string, keyPem: string, sniHost: string): CtxHandle;
  ctxNewClient(servername: string, verify: boolean): ClientCtxHandle;
  /** onRead(id, n): `readBuffer[0, n)` holds new plaintext of `id`, valid until onRead returns. */
  server(onRead: (id: number, n: number) => void, onEvent: (id: number, kind: number, text: string) => void, readBuffer: Buffer): ServerHandle;
  attach(s: ServerHandle, ctx: CtxHandle | ClientCtxHandle | null, fd: number): number;
  /** Takes data[start, end) now: sends it, or copies what the socket did not take. Returns the bytes pending. */
  write(s: ServerHandle, id: number, data: Uint8Array, start: number, end: number): number;
  readStart(s: ServerHandle, id: number): boolean;
  readStop(s: ServerHandle, id: number): boolean;
  readNow(s: ServerHandle, id: number): boolean;
  shutdown(s: ServerHandle, id: number): boolean;
  close(s: ServerHandle, id: number): boolean;
  info(s: ServerHandle, id: number): [string?, string?, string?];
  trim(s: ServerHandle): number;
}

/** Version of the JS↔C contract this module speaks. */
const ADDON_ABI = 5;
/** Bytes of the per-server read buffer the addon decrypts into (TN_READ_CHUNK in native/tls_conn.c). */
export const TN_READ_CHUNK = 64 * 1024;
/** Where scripts/build-native.ts puts the addon. */
export const TLS_ADDON_PATH = path.resolve(import.meta.dirname, '../../build/tls_conn.node');

let loaded: { native: Native | null; reason: string | null } | null = null;

function load(): { native: Native | null; reason: string | null } {
  if (loaded !== null) return loaded;
  if (!existsSync(TLS_ADDON_PATH)) return (loaded = { native: null, reason: `${TLS_ADDON_PATH} not built (node scripts/build-native.ts)` });
  try {
    const n = createRequire(import.meta.url)(TLS_ADDON_PATH) as Partial<Native>;
    loaded = n.ABI === ADDON_ABI && typeof n.attach === 'function'
      ? { native: n as Native, reason: null }
      : { native: null, reason: `${TLS_ADDON_PATH} is stale (rebuild it)` };
  } catch (e) {
    loaded = { native: null, reason: `cannot load ${TLS_ADDON_PATH}: ${String(e)}` };
  }
  return loaded;
}

/** True when the addon is built and loadable and WIREMESH_NODE_TLS=1 is not set: the derper's TLS uses it. */
export function nativeTlsAvailable(): boolean {
  return nativeTlsUnavailableReason() === null;
}

/** Why native TLS is not used (null when it is available). */
export function nativeTlsUnavailableReason(): string | null {
  return process.env.WIREMESH_NODE_TLS === '1' ? 'WIREMESH_NODE_TLS=1' : load().reason;
}

/** True when the addon is built and loadable and WIREMESH_NODE_TCP=1 is not set: the derper's plain HTTP uses it. */
export function nativeTcpAvailable(): boolean {
  return nativeTcpUnavailableReason() === null;
}

/** Why native plain TCP is not used (null when it is available). */
export function nativeTcpUnavailableReason(): string | null {
  return process.env.WIREMESH_NODE_TCP === '1' ? 'WIREMESH_NODE_TCP=1' : load().reason;
}

function addon(): Native {
  const { native, reason } = load();
  if (native === null) throw new WiremeshError('tls_native_unavailable', reason ?? 'tls addon unavailable');
  return native;
}

/** A certificate chain + key + SNI policy, ready for handshakes. */
export class NativeTlsContext {
  readonly handle: CtxHandle;
  /**
   * `chainPem`: leaf first, then every certificate to send after it. `sniHost`: '' accepts any SNI (or none);
   * otherwise a ClientHello whose SNI is missing or differs fails the handshake (unrecognized_name).
   */
  constructor(chainPem: string, keyPem: string, sniHost: string) {
    try {
      this.handle = addon().ctxNew(chainPem, keyPem, sniHost);
    } catch (e) {
      if (e instanceof WiremeshError) throw e;
      const x = e as { code?: unknown; message?: unknown };
      throw new WiremeshError(typeof x.code === 'string' ? x.code : 'tls_native_bad_cert', String(x.message ?? e), { cause: e });
    }
  }
}

/**
 * The client end: the servername to send as SNI (omitted for an IP literal) and, with `verify`, to check the
 * server's certificate against (chain to the system's CA store, name or IP match). Without `verify` any
 * certificate is accepted: for the benchmarks' load generator against a relay with a self-signed certificate.
 */
export class NativeTlsClientContext {
  readonly handle: ClientCtxHandle;
  constructor(servername: string, verify: boolean) {
    this.handle = addon().ctxNewClient(servername, verify);
  }
}

export interface NativeTlsServerOptions {
  /** null: plain TCP (no TLS; each attached socket is handed to onSecure at once). */
  context: NativeTlsContext | null;
  /** A connection that did not finish its handshake within this is closed. */
  handshakeTimeoutMs: number;
  /** Runs once per finished handshake; the socket is flowing-ready plaintext. */
  onSecure: (socket: NativeTlsSocket) => void;
  /** Runs for a handshake that failed or timed out (the TCP socket is already destroyed). */
  onHandshakeError?: (err: WiremeshError, raw: Socket) => void;
}

interface Entry {
  raw: Socket;
  timer: NodeJS.Timeout | null;
  socket: NativeTlsSocket | null;
  /** Client connections: where this one's outcome goes instead of the server's onSecure/onHandshakeError. */
  settle: { ok: (s: NativeTlsSocket) => void; fail: (e: WiremeshError) => void } | null;
}

export class NativeTlsServer {
  readonly #native: Native;
  readonly #handle: ServerHandle;
  readonly #conns = new Map<number, Entry>();
  /** Established sockets by id, for the read path: one array slot instead of a Map entry and an Entry per read. */
  readonly #sockets: (NativeTlsSocket | undefined)[] = [];
  /** Where the addon puts plaintext for #onRead (reused by every read). */
  readonly #readBuf = Buffer.allocUnsafeSlow(TN_READ_CHUNK);
  /** What a tap left of a read, for its socket (allocated on first use). */
  #restBuf: Buffer | null = null;
  #tap: ReadTap | null = null;
  #context: NativeTlsContext | null;
  readonly #opts: NativeTlsServerOptions;

  constructor(opts: NativeTlsServerOptions) {
    this.#native = addon();
    this.#opts = opts;
    this.#context = opts.context;
    this.#handle = this.#native.server(this.#onRead, this.#onEvent, this.#readBuf);
  }

  /** New handshakes use `ctx`; established connections keep theirs (certificate reload). Not for plain TCP. */
  setContext(ctx: NativeTlsContext): void {
    if (this.#context === null) throw new WiremeshError('tls_native_plain', 'a plain TCP server has no TLS context');
    this.#context = ctx;
  }

  /** Open connections (handshaking or established). */
  get size(): number {
    return this.#conns.size;
  }

  /** Starts the handshake on an accepted, paused TCP socket (net.Server with pauseOnConnect). */
  attach(raw: Socket): void {
    this.#start(raw, this.#context, null);
  }

  /**
   * The client end on a connected TCP socket that was paused before it connected (so Node never read from it):
   * resolves with the socket once the handshake is done (at once with `ctx` null: plain TCP), rejects with a
   * typed error when it fails or takes longer than handshakeTimeoutMs.
   */
  connect(raw: Socket, ctx: NativeTlsClientContext | null): Promise<NativeTlsSocket> {
    return new Promise((ok, fail) => this.#start(raw, ctx, { ok, fail }));
  }

  #start(raw: Socket, ctx: NativeTlsContext | NativeTlsClientContext | null, settle: Entry['settle']): void {
    const fd = (raw as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (raw.destroyed || typeof fd !== 'number' || fd < 0) {
      raw.destroy();
      settle?.fail(new WiremeshError('tls_socket_error', 'socket closed before the handshake'));
      return;
    }
    let id: number;
    try {
      id = this.#native.attach(this.#handle, ctx === null ? null : ctx.handle, fd);
    } catch (e) {
      raw.destroy();
      settle?.fail(new WiremeshError('tls_native_attach', String((e as Error).message ?? e), { cause: e }));
      return;
    }
    const e: Entry = { raw, timer: null, socket: null, settle };
    if (ctx !== null) e.timer = setTimeout(() => this.#fail(id, new WiremeshError('tls_handshake_timeout', 'tls handshake timed out'), raw), this.#opts.handshakeTimeoutMs);
    this.#conns.set(id, e);
    // Ids are reused once released: these late events only act while `id` still names this socket.
    raw.on('error', () => this.#fail(id, new WiremeshError('tls_socket_error', 'tcp socket error'), raw));
    raw.on('close', () => this.release(id, raw));
    if (ctx === null) {
      e.socket = new NativeTlsSocket(this, id, raw, { protocol: '', servername: '', alpn: '' }, false);
      this.#secure(id, e, e.socket);
    }
  }

  #secure(id: number, e: Entry, socket: NativeTlsSocket): void {
    this.#sockets[id] = socket;
    if (e.settle !== null) e.settle.ok(socket);
    else this.#opts.onSecure(socket);
  }

  // ---- for the DERP relay's fast path (src/derp/server/fast-relay.ts RawHost) ----

  get readBuffer(): Buffer {
    return this.#readBuf;
  }

  /** Reads go to `tap` first; it also hears of pending and drained writes. */
  setTap(tap: ReadTap | null): void {
    this.#tap = tap;
  }

  /** Writes to connection `id` around its socket (the tap tracks what is pending). */
  rawWrite(id: number, data: Uint8Array, start: number, end: number): number {
    return this.#native.write(this.#handle, id, data, start, end);
  }

  /** Frees OpenSSL record buffers of connections idle since the previous call. */
  trim(): number {
    return this.#native.trim(this.#handle);
  }

  /** Closes every connection. */
  closeAll(): void {
    for (const id of [...this.#conns.keys()]) {
      const e = this.#conns.get(id);
      if (e?.socket !== null && e?.socket !== undefined) e.socket.destroy();
      else this.release(id);
    }
  }

  // ---- used by NativeTlsSocket ----

  /** @internal */ write(id: number, data: Uint8Array, start: number, end: number): number {
    const left = this.#native.write(this.#handle, id, data, start, end);
    if (left > 0) this.#tap?.pending(id);
    return left;
  }
  /** @internal */ readStart(id: number): void {
    if (this.#native.readStart(this.#handle, id)) setImmediate(() => this.#native.readNow(this.#handle, id));
  }
  /** @internal */ readStop(id: number): void {
    this.#native.readStop(this.#handle, id);
  }
  /** @internal */ shutdown(id: number): void {
    this.#native.shutdown(this.#handle, id);
  }

  /** Closes the TLS state of `id` and destroys its TCP socket (idempotent; `raw`: only if `id` is still it). @internal */
  release(id: number, raw?: Socket): void {
    const e = this.#conns.get(id);
    if (e === undefined || (raw !== undefined && e.raw !== raw)) return;
    this.#conns.delete(id);
    if (e.socket !== null) this.#sockets[id] = undefined;
    this.#tap?.released(id);
    if (e.timer !== null) clearTimeout(e.timer);
    // Native first: it stops polling the fd before Node closes it.
    this.#native.close(this.#handle, id);
    e.raw.destroy();
    e.socket?.destroy();
  }

  #fail(id: number, err: WiremeshError, raw?: Socket): void {
    const e = this.#conns.get(id);
    if (e === undefined || (raw !== undefined && e.raw !== raw)) return;
    if (e.socket !== null) {
      e.socket.destroy(err);
      return;
    }
    this.release(id);
    if (e.settle !== null) e.settle.fail(err);
    else this.#opts.onHandshakeError?.(err, e.raw);
  }

  readonly #onRead = (id: number, n: number): void => {
    const taken = this.#tap === null ? 0 : this.#tap.read(id, n);
    if (taken === 0) this.#sockets[id]?.deliverRead(this.#readBuf, n);
    else if (taken < n) {
      const rest = (this.#restBuf ??= Buffer.allocUnsafeSlow(TN_READ_CHUNK));
      this.#readBuf.copy(rest, 0, taken, n);
      this.#sockets[id]?.deliverRead(rest, n - taken);
    }
  };

  readonly #onEvent = (id: number, kind: number, text: string): void => {
    const e = this.#conns.get(id);
    if (e === undefined) return;
    switch (kind) {
      case Ev.Secure: {
        if (e.timer !== null) clearTimeout(e.timer);
        e.timer = null;
        const [protocol = '', servername = '', alpn = ''] = this.#native.info(this.#handle, id);
        e.socket = new NativeTlsSocket(this, id, e.raw, { protocol, servername, alpn }, true);
        this.#secure(id, e, e.socket);
        break;
      }
      case Ev.Drain:
        this.#tap?.drained(id);
        e.socket?.drained();
        break;
      case Ev.Eof:
        e.socket?.deliverEof();
        break;
      case Ev.Error:
        this.#fail(id, new WiremeshError('tls_error', text));
        break;
    }
  };
}
