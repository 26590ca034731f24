/**
 * The derper's TLS listener on the native TLS addon (docs/tls-native.md; spec/derp.md §3.3 meta cert, §16.1
 * SNI rules): a `net.Server` that accepts paused TCP sockets, a `NativeTlsServer` that runs their handshakes,
 * and each finished connection handed to the HTTP server as if it had accepted it. Same policy as the Node
 * https path in tls.ts: TLS ≥ 1.2, ALPN http/1.1, SNI must equal a DNS hostname, the handshake deadline, the meta
 * cert after the served chain, and `setSecureContext` for certificate reloads. Adapter.
 *
 * `createNativeTcpListener` is the same listener for the plain HTTP port: connections are handed over at once and
 * carried by the addon without TLS, so plain DERP gets the same reused read buffer and direct writes (no
 * per-read Buffer: Node's per-read ArrayBuffers drove a full GC every ~0.4 s under load, docs/BENCHMARKS.md).
 */
import type http from 'node:http';
import net from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import type { Logger } from '../log.ts';
import { NativeTlsContext, NativeTlsServer } from '../net/tls-native.ts';
import { TLS_BUFFER_TRIM_INTERVAL_MS, TLS_HANDSHAKE_TIMEOUT_MS } from './constants.ts';
import { sniAllowed } from './tls.ts';

/** What a certificate source installs new certificates into (tls.Server has the same method). */
export interface SecureContextTarget {
  setSecureContext(options: SecureContextOptions): void;
}

export interface NativeListener {
  /** Listen on this; guard its 'connection' event for accept limits. */
  readonly listener: net.Server;
  /** Stops accepting and closes every connection. */
  close(): Promise<void>;
}

export interface NativeTlsListener extends NativeListener, SecureContextTarget {}

/** A net.Server of paused sockets, each attached to `server`; `close` stops both. */
function listenerFor(server: NativeTlsServer, onClose: () => void): NativeListener {
  const listener = net.createServer({ pauseOnConnect: true, noDelay: true });
  listener.on('connection', (raw: net.Socket) => {
    // The accept limiter (limits.ts) runs first and may have destroyed it already.
    if (!raw.destroyed) server.attach(raw);
  });
  return {
    listener,
    close: () =>
      new Promise<void>((resolve) => {
        onClose();
        listener.close(() => resolve());
        server.closeAll();
      }),
  };
}

/** Listener whose plain TCP connections become 'connection' events of `http`, carried by the addon. */
export function createNativeTcpListener(http: http.Server): NativeListener {
  const tcp = new NativeTlsServer({
    context: null,
    handshakeTimeoutMs: TLS_HANDSHAKE_TIMEOUT_MS,
    onSecure: (s) => http.emit('connection', s),
  });
  return listenerFor(tcp, () => {});
}

function pemOf(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  throw new TypeError('native TLS needs the certificate and key as one PEM string each');
}

/** Listener whose TLS connections become 'connection' events of `http`, counted per protocol in `versions`. */
export function createNativeTlsListener(
  http: http.Server,
  initial: SecureContextOptions,
  hostname: string,
  versions: Record<string, number>,
  logger: Logger,
): NativeTlsListener {
  // SNI is enforced in the handshake for a DNS hostname; an IP hostname accepts any (§16.1).
  const sniHost = sniAllowed(hostname, undefined) ? '' : hostname;
  const contextOf = (o: SecureContextOptions): NativeTlsContext => new NativeTlsContext(pemOf(o.cert), pemOf(o.key), sniHost);
  const tls = new NativeTlsServer({
    context: contextOf(initial),
    handshakeTimeoutMs: TLS_HANDSHAKE_TIMEOUT_MS,
    onSecure: (s) => {
      const v = s.getProtocol() || 'unknown';
      versions[v] = (versions[v] ?? 0) + 1;
      http.emit('connection', s);
    },
    onHandshakeError: (err, raw) => logger.debug('tls handshake failed', { err: err.message, remote: raw.remoteAddress }),
  });
  const trimTimer = setInterval(() => tls.trim(), TLS_BUFFER_TRIM_INTERVAL_MS);
  trimTimer.unref();
  return { ...listenerFor(tls, () => clearInterval(trimTimer)), setSecureContext: (o) => tls.setContext(contextOf(o)) };
}
