/**
 * Wiring of the derper command (spec/derp.md §16): the DERP engine behind the HTTP routes on the main listener
 * (plain HTTP, or TLS in manual cert mode with the meta cert appended), the optional port-80 listener of TLS
 * mode, the STUN server, `/bootstrap-dns` and admission. `startDerper` resolves once everything listens and
 * returns the actual ports, so tests can run a whole derper in-process on port 0. The mesh client (mesh.ts) and the
 * accept limits / rate config (limits.ts) are wired here.
 */
import { readdirSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { DerpServer } from '../derp/server/server.ts';
import { handleDerpHttp, handleDerpRequest } from '../derp/server/upgrade.ts';
import { silentLogger, type Logger } from '../log.ts';
import { StunServer } from '../stun/server.ts';
import { realClock, type Clock } from '../time/clock.ts';
import { publicFromPrivate, type NodePrivate, type NodePublic } from '../types/key.ts';
import { emptyDebugPolicy, type DebugAccessPolicy } from './access.ts';
import { urlVerifier } from './admission.ts';
import { BootstrapDns, type Resolve } from './bootstrap-dns.ts';
import { HTTP_IDLE_TIMEOUT_MS, HTTP_MAX_HEADER_SIZE, HTTP_MAX_HEADERS_COUNT, HTTP_READ_TIMEOUT_MS } from './constants.ts';
import { openCertSource, type AcmeSettings } from './cert-source.ts';
import { createProfileRoutes } from './profile.ts';
import { createPort80Router, createRouter, splitTarget } from './routes.ts';
import { sniAllowed, tlsServerOptions } from './tls.ts';
import { createNativeTcpListener, createNativeTlsListener, type NativeListener, type NativeTlsListener } from './tls-listener.ts';
import { secureContextOptions } from './cert-reload.ts';
import { nativeTcpAvailable, nativeTcpUnavailableReason, nativeTlsAvailable, nativeTlsUnavailableReason } from '../net/tls-native.ts';
import { renderPrometheus } from './varz.ts';
import { generateMetaCert } from './x509.ts';
import { Mesh, meshVars, type MeshPeerSpec } from './mesh.ts';
import { AcceptLimiter, guardListener, readRateConfigFile, type AcceptLimits } from './limits.ts';
import { WiremeshError } from '../errors.ts';

export interface DerperConfig {
  /** Listen host ('' = all interfaces) and port (0 = ephemeral). */
  host: string;
  port: number;
  /** Manual cert mode (TLS); null = plain HTTP. */
  tls: { hostname: string; certDir: string } | null;
  /** Port-80 listener in TLS mode; −1 disables. Ignored without TLS. */
  httpPort: number;
  /** STUN UDP port; null disables STUN. */
  stunPort: number | null;
  /** false = `/derp` answers 404 "derp server disabled". */
  derp: boolean;
  privateKey: NodePrivate;
  meshKey: Uint8Array | null;
  home: string;
  hostname: string;
  bootstrapDnsNames: readonly string[];
  verifyClientUrl: string;
  verifyClientUrlFailOpen: boolean;
  /** Per-frame write deadline for ordinary clients; 0 = none. */
  tcpWriteTimeoutMs: number;
  /** TCP keepalive period on accepted sockets; 0 = off. */
  tcpKeepAliveMs: number;
  debugPolicy?: DebugAccessPolicy;
  /** `--certmode letsencrypt` with TLS: ACME settings (src/derper/acme.ts); null/absent = manual cert mode. */
  acme?: AcmeSettings | null;
  /** Manual mode: reload the cert files when they change (default true). */
  certReload?: boolean;
  logger?: Logger;
  clock?: Clock;
  /** Test seam for `/bootstrap-dns` lookups. */
  resolve?: Resolve;
  /** `--mesh-with` peers (needs meshKey), see mesh.ts. */
  meshWith?: readonly MeshPeerSpec[];
  /** TS_DEBUG_USE_DERP_HTTP=1: the mesh dials plain HTTP. */
  meshPlainHttp?: boolean;
  /** Extra trust for mesh TLS dials (labs). */
  meshTls?: { ca?: string | Buffer; insecure?: boolean };
  /** Accept rate/burst and per-IP cap on the main listener (limits.ts); absent = none. */
  acceptLimits?: AcceptLimits;
  /** Per-connection send queue depth (TS_DEBUG_DERP_PER_CLIENT_SEND_QUEUE_DEPTH); default the engine's 32. */
  queueDepth?: number;
  /** `--rate-config` file ('' or absent = none); re-read by reloadRateConfig(). */
  rateConfigPath?: string;
  /** TLS engine: 'native' (build/tls_conn.node, docs/tls-native.md), 'node' (node:https); default native when built. */
  tlsEngine?: 'native' | 'node';
  /** Who carries plain-HTTP connections: the addon ('native', default when built) or Node's net. */
  tcpEngine?: 'native' | 'node';
}

export interface RunningDerper {
  /** The main listener's actual port (TLS or plain). */
  httpPort: number;
  host: string;
  tls: boolean;
  /** The port-80 listener's actual port, or null. */
  port80: number | null;
  stunPort: number | null;
  publicKey: NodePublic;
  /** PEM of the meta cert appended to the chain (TLS mode), else null. */
  metaCertPem: string | null;
  /** DERPNode JSON pinning a self-signed IP cert (manual mode with an IP hostname), else null. */
  derpNodeJson: string | null;
  /** The line the CLI prints: `derper: listening http=HOST:PORT stun=PORT` (or `https=… port80=…`). */
  listeningLine(): string;
  /** Re-reads `--rate-config` (SIGHUP); a bad file keeps the old limit and rejects. */
  reloadRateConfig(): Promise<void>;
  /** The mesh client, or null without `--mesh-with`. */
  mesh: Mesh | null;
  close(): Promise<void>;
}

const hostPort = (host: string, port: number): string => `${host.includes(':') ? `[${host}]` : host}:${port}`;

function listen(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    server.once('error', onError);
    server.listen({ port, ...(host === '' ? {} : { host }) }, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function openFileDescriptors(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

export async function startDerper(cfg: DerperConfig): Promise<RunningDerper> {
  const logger = cfg.logger ?? silentLogger;
  const clock = cfg.clock ?? realClock;
  const publicKey = publicFromPrivate(cfg.privateKey);
  const debugPolicy = cfg.debugPolicy ?? emptyDebugPolicy();

  const certSource = cfg.tls === null ? null : await openCertSource({ ...cfg.tls, acme: cfg.acme ?? null, reload: cfg.certReload ?? true, port80: cfg.httpPort >= 0 }, { clock, logger });
  const cert = certSource?.initial ?? null;
  const meta = cert === null ? null : generateMetaCert(publicKey, Date.now());

  const engine = new DerpServer({
    privateKey: cfg.privateKey,
    meshKey: cfg.meshKey,
    clock,
    logger: logger.child({ c: 'derp' }),
    writeTimeoutMs: cfg.tcpWriteTimeoutMs,
    ...(cfg.queueDepth === undefined ? {} : { queueDepth: cfg.queueDepth }),
    ...(cfg.verifyClientUrl === '' ? {} : { verifyClient: urlVerifier({ url: cfg.verifyClientUrl, failOpen: cfg.verifyClientUrlFailOpen, logger }) }),
  });
  if ((cfg.meshWith?.length ?? 0) > 0 && cfg.meshKey === null) throw new WiremeshError('derper_usage', '--mesh-with requires a mesh key (--mesh-psk-file, or TAILSCALE_DERPER_MESH_KEY with --dev)');
  const rateConfigPath = cfg.rateConfigPath ?? '';
  const reloadRateConfig = async (): Promise<void> => {
    if (rateConfigPath === '') return;
    const rc = await readRateConfigFile(rateConfigPath);
    engine.setReceiveRateLimit(rc.bytesPerSecond > 0 ? rc : null);
    logger.info('rate config loaded', { path: rateConfigPath, bytesPerSecond: rc.bytesPerSecond, burstBytes: rc.burstBytes });
  };
  await reloadRateConfig();
  const acceptLimiter = cfg.acceptLimits === undefined ? null : new AcceptLimiter(clock, cfg.acceptLimits);
  const bootstrap = new BootstrapDns({ names: cfg.bootstrapDnsNames, logger, ...(cfg.resolve === undefined ? {} : { resolve: cfg.resolve }) });
  const tlsVersions: Record<string, number> = {};
  let stun: StunServer | null = null;

  let meshRef: Mesh | null = null;
  const varsSets = (): Record<string, object> => ({
    derp: { ...engine.metrics(), gauge_current_file_descriptors: openFileDescriptors(), gauge_memstats_sys0: process.memoryUsage().rss },
    ...(stun === null ? {} : { stun: stun.metrics() }),
    derper: { counter_tls_request_version: { ...tlsVersions }, counter_bootstrap_dns_requests: bootstrap.requests, ...certSource?.metrics() },
    ...(acceptLimiter === null ? {} : { tls_listener: { ...acceptLimiter.counters } }),
    ...(meshRef === null ? {} : { mesh: meshVars(meshRef) }),
  });

  const router = createRouter({
    derp: cfg.derp ? { handleRequest: (req, res) => handleDerpRequest(engine, req, res) } : null,
    home: cfg.home,
    hostname: cfg.hostname,
    debugPolicy,
    vars: () => ({ ...varsSets(), uptime_seconds: Math.round(process.uptime()), memstats: process.memoryUsage() }),
    varz: () => renderPrometheus(Object.entries(varsSets()).map(([prefix, values]) => ({ prefix, values }))),
    check: () => {
      const c = (engine as unknown as { consistencyCheck?: () => void }).consistencyCheck;
      if (typeof c === 'function') c.call(engine);
    },
    bootstrapDns: (q) => bootstrap.body(q),
    logger,
    extraDebug: createProfileRoutes({ clock, logger }),
  });

  const httpOpts: http.ServerOptions = {
    maxHeaderSize: HTTP_MAX_HEADER_SIZE,
    requestTimeout: HTTP_READ_TIMEOUT_MS,
    headersTimeout: HTTP_READ_TIMEOUT_MS,
    keepAliveTimeout: HTTP_IDLE_TIMEOUT_MS,
    ...(cfg.tcpKeepAliveMs > 0 ? { keepAlive: true, keepAliveInitialDelay: cfg.tcpKeepAliveMs } : {}),
    // Only /derp upgrades reach the 'upgrade' event; any other Upgrade request is served as a normal request.
    shouldUpgradeCallback: (req) => cfg.derp && splitTarget(req.url).path === '/derp',
  };
  const tlsHostname = cfg.tls?.hostname ?? cfg.hostname;
  const useNativeTls = cert !== null && meta !== null && (cfg.tlsEngine ?? (nativeTlsAvailable() ? 'native' : 'node')) === 'native';
  const main =
    cert === null || meta === null || useNativeTls
      ? http.createServer(httpOpts, router)
      : https.createServer({ ...httpOpts, ...tlsServerOptions(cert, meta.certPem, tlsHostname) }, router);
  main.maxHeadersCount = HTTP_MAX_HEADERS_COUNT;
  // Native TLS: the TCP listener is separate from the HTTP server that gets the finished TLS connections.
  const nativeTls: NativeTlsListener | null = !useNativeTls || cert === null || meta === null
    ? null
    : createNativeTlsListener(main, secureContextOptions(cert, meta.certPem), tlsHostname, tlsVersions, logger);
  // Plain HTTP (no certificate): the same addon carries the TCP connections, unless told otherwise.
  const useNativeTcp = cert === null && (cfg.tcpEngine ?? (nativeTcpAvailable() ? 'native' : 'node')) === 'native';
  const nativeListener: NativeListener | null = nativeTls ?? (useNativeTcp ? createNativeTcpListener(main) : null);
  if (acceptLimiter !== null && !acceptLimiter.unlimited) guardListener(nativeListener?.listener ?? main, acceptLimiter, logger);
  if (cert !== null) logger.info('tls engine', { engine: nativeTls === null ? 'node' : 'native', ...(nativeTls === null ? { why: nativeTlsUnavailableReason() ?? 'tlsEngine=node' } : {}) });
  else logger.info('tcp engine', { engine: useNativeTcp ? 'native' : 'node', ...(useNativeTcp ? {} : { why: nativeTcpUnavailableReason() ?? 'tcpEngine=node' }) });
  main.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => handleDerpHttp(engine, req, socket, head));
  main.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nCONNECT not enabled\n');
  });
  main.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    logger.debug('http client error', { err: err.code ?? err.message });
    if (socket.writable) socket.end(err.code === 'HPE_HEADER_OVERFLOW' ? 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n' : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  if (cert !== null && cfg.tls !== null && nativeTls === null) {
    const hostname = cfg.tls.hostname;
    main.on('secureConnection', (s: TLSSocket) => {
      const v = s.getProtocol() ?? 'unknown';
      tlsVersions[v] = (tlsVersions[v] ?? 0) + 1;
      // A ClientHello without SNI never reaches SNICallback; refuse it here for DNS hostnames (§16.1).
      if (!sniAllowed(hostname, s.servername)) s.destroy();
    });
    main.on('tlsClientError', (err: Error, s: TLSSocket) => {
      logger.debug('tls handshake failed', { err: err.message, remote: (s as Socket).remoteAddress });
    });
  }

  const servers: http.Server[] = [];
  const closers: (() => Promise<void>)[] = [];
  try {
    let port: number;
    if (nativeListener === null) {
      port = await listen(main, cfg.host, cfg.port);
      servers.push(main);
    } else {
      port = await listen(nativeListener.listener, cfg.host, cfg.port);
      closers.push(() => nativeListener.close());
      servers.push(main);
    }
    let port80: number | null = null;
    if (cert !== null && cfg.httpPort >= 0) {
      const plain = http.createServer({ ...httpOpts, shouldUpgradeCallback: () => false }, certSource?.wrapPort80(createPort80Router(router, { debugPolicy })) ?? createPort80Router(router, { debugPolicy }));
      plain.maxHeadersCount = HTTP_MAX_HEADERS_COUNT;
      port80 = await listen(plain, cfg.host, cfg.httpPort);
      servers.push(plain);
    }
    if (cfg.stunPort !== null) {
      stun = new StunServer({ logger: logger.child({ c: 'stun' }) });
      await stun.listen({ port: cfg.stunPort, ...(cfg.host === '' ? {} : { host: cfg.host }) });
    }
    bootstrap.start(clock);
    if (certSource !== null) await certSource.start(nativeTls ?? (main as https.Server), meta?.certPem ?? null);
    const mesh = meshRef = cfg.meshKey === null || (cfg.meshWith?.length ?? 0) === 0 ? null : new Mesh({
      server: engine,
      privateKey: cfg.privateKey,
      meshKey: cfg.meshKey,
      peers: cfg.meshWith ?? [],
      plainHttp: cfg.meshPlainHttp === true,
      ...(cfg.meshTls === undefined ? {} : { tls: cfg.meshTls }),
      clock,
      logger: logger.child({ c: 'mesh' }),
    });
    const stunPort = stun === null ? null : stun.port;
    const shownHost = cfg.host === '' ? '::' : cfg.host;
    let closing: Promise<void> | null = null;
    return {
      httpPort: port,
      host: shownHost,
      tls: cert !== null,
      port80,
      stunPort,
      publicKey,
      metaCertPem: meta?.certPem ?? null,
      derpNodeJson: cert?.derpNodeJson ?? null,
      listeningLine: () => {
        const s = `stun=${stunPort ?? 'off'}`;
        if (cert === null) return `derper: listening http=${hostPort(shownHost, port)} ${s}`;
        return `derper: listening https=${hostPort(shownHost, port)} ${s} port80=${port80 === null ? 'off' : hostPort(shownHost, port80)}`;
      },
      reloadRateConfig,
      mesh,
      close: () => {
        closing ??= (async () => {
          bootstrap.stop();
          certSource?.stop();
          await mesh?.close();
          await Promise.all([...closers.map((c) => c()), ...servers.map(closeServer), engine.close(), stun?.close() ?? Promise.resolve()]);
        })();
        return closing;
      },
    };
  } catch (e) {
    bootstrap.stop();
    certSource?.stop();
    await Promise.all([...closers.map((c) => c()), ...servers.map(closeServer), engine.close(), stun?.close() ?? Promise.resolve()]);
    throw e;
  }
}
