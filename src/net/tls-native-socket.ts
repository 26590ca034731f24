/**
 * One connection carried by the native addon (src/net/tls-native.ts; docs/tls-native.md) as a plaintext Duplex:
 * TLS, or plain TCP when its server has no context. Shaped like a tls.TLSSocket where http.Server and the DERP
 * server look, with the DERP server's direct read and write paths (src/derp/server/stream-fast.ts). Adapter.
 */
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { WiremeshError } from '../errors.ts';
import type { NativeTlsServer } from './tls-native.ts';

export interface NativeTlsInfo {
  /** 'TLSv1.3', 'TLSv1.2'. */
  protocol: string;
  /** SNI the client sent ('' for none). */
  servername: string;
  /** Negotiated ALPN protocol ('' for none). */
  alpn: string;
}

/**
 * One established TLS connection as a plaintext Duplex, shaped like a tls.TLSSocket where http.Server and the
 * DERP server look (remoteAddress/Port, encrypted, setNoDelay, setKeepAlive, setTimeout).
 */
export class NativeTlsSocket extends Duplex {
  /** False for a plain TCP connection (NativeTlsServer without a context). */
  readonly encrypted: boolean;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly remoteFamily: string | undefined;
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  readonly servername: string;
  readonly alpnProtocol: string | false;
  readonly #protocol: string;
  readonly #server: NativeTlsServer;
  readonly #id: number;
  readonly #raw: Socket;
  #drainCb: ((err?: Error | null) => void) | null = null;
  /** A writeDirect() left bytes in the addon: emit 'drain' when they are out. */
  #directPending = false;
  #directReader: ((buf: Buffer, length: number, transient: boolean) => void) | null = null;
  #timeoutMs = 0;
  #timer: NodeJS.Timeout | null = null;
  #bytesRead = 0;
  #bytesWritten = 0;

  constructor(server: NativeTlsServer, id: number, raw: Socket, info: NativeTlsInfo, encrypted: boolean) {
    super({ allowHalfOpen: false });
    this.encrypted = encrypted;
    this.#server = server;
    this.#id = id;
    this.#raw = raw;
    this.remoteAddress = raw.remoteAddress;
    this.remotePort = raw.remotePort;
    this.remoteFamily = raw.remoteFamily;
    this.localAddress = raw.localAddress;
    this.localPort = raw.localPort;
    this.servername = info.servername;
    this.alpnProtocol = info.alpn === '' ? false : info.alpn;
    this.#protocol = info.protocol;
  }

  /** The server carrying this connection and its id there: the DERP relay's fast path writes and reads by these. */
  get rawHost(): NativeTlsServer {
    return this.#server;
  }

  get rawId(): number {
    return this.#id;
  }

  getProtocol(): string {
    return this.#protocol;
  }

  get bytesRead(): number {
    return this.#bytesRead;
  }

  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  setNoDelay(noDelay?: boolean): this {
    this.#raw.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    this.#raw.setKeepAlive(enable, initialDelay);
    return this;
  }

  /** As net.Socket: 'timeout' after `ms` without reads or writes (0 disables). */
  setTimeout(ms: number, cb?: () => void): this {
    this.#timeoutMs = ms;
    if (cb !== undefined) {
      if (ms === 0) this.off('timeout', cb);
      else this.once('timeout', cb);
    }
    this.#touch();
    return this;
  }

  #touch(): void {
    if (this.#timeoutMs === 0) {
      if (this.#timer !== null) clearTimeout(this.#timer);
      this.#timer = null;
      return;
    }
    if (this.#timer !== null) this.#timer.refresh();
    else this.#timer = setTimeout(() => {
      this.#timer = null;
      this.emit('timeout');
    }, this.#timeoutMs);
  }

  /**
   * Fast path for the DERP server (src/derp/server/stream-fast.ts): `fn` gets each chunk directly while the
   * stream is flowing with nothing buffered, instead of through push() and 'data'; otherwise chunks take the
   * Readable path as usual (as copies), so pause()/resume() and ordering hold. null removes it. The chunk is
   * `buf[0, length)`; with `transient` true `buf` is the server's read buffer, valid only until `fn` returns.
   */
  setDirectReader(fn: ((buf: Buffer, length: number, transient: boolean) => void) | null): void {
    this.#directReader = fn;
  }

  /**
   * Fast path for the DERP server: takes `buf[start, end)` now (the caller may reuse `buf` at once), without the
   * Writable machinery, when nothing written earlier is still waiting. Returns the bytes the kernel did not take
   * yet ('drain' follows when they are out), -1 when the connection is closed, or null when the caller must use
   * write() (to keep the byte order).
   */
  writeDirect(buf: Uint8Array, start: number, end: number): number | null {
    if (this.writableLength !== 0 || this.#drainCb !== null || this.#directPending || this.writableEnded || this.destroyed) return null;
    const pending = this.#server.write(this.#id, buf, start, end);
    this.#bytesWritten += end - start;
    if (this.#timer !== null) this.#touch();
    if (pending > 0) this.#directPending = true;
    return pending;
  }

  /** `buf[0, n)` is new plaintext; `buf` (the server's read buffer) is reused once this returns. @internal */
  deliverRead(buf: Buffer, n: number): void {
    this.#bytesRead += n;
    if (this.#timer !== null) this.#touch();
    const direct = this.#directReader;
    if (direct !== null && this.readableFlowing === true && this.readableLength === 0) direct(buf, n, true);
    else if (!this.push(Buffer.from(buf.subarray(0, n)))) this.#server.readStop(this.#id);
  }

  /** The peer closed. @internal */
  deliverEof(): void {
    this.push(null);
  }

  /** Everything written reached the kernel. @internal */
  drained(): void {
    const cb = this.#drainCb;
    this.#drainCb = null;
    cb?.();
    if (this.#directPending) {
      this.#directPending = false;
      this.emit('drain');
    }
  }

  override _read(): void {
    this.#server.readStart(this.#id);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const pending = this.#server.write(this.#id, chunk, 0, chunk.length);
    this.#bytesWritten += chunk.length;
    if (this.#timer !== null) this.#touch();
    if (pending < 0) cb(new WiremeshError('tls_closed', 'write after the TLS connection closed'));
    else if (pending === 0) cb();
    else this.#drainCb = cb;
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#server.shutdown(this.#id);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const drain = this.#drainCb;
    this.#drainCb = null;
    this.#server.release(this.#id, this.#raw);
    drain?.(err ?? new WiremeshError('tls_closed', 'TLS connection closed'));
    cb(err);
  }
}
