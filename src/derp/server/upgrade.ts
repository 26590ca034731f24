/**
 * The HTTP side of `/derp` (spec/derp.md §3.1, §3.4, §21): turns an HTTP request into a DERP byte stream for the
 * DerpServer engine. `Upgrade: DERP` (or legacy `Upgrade: websocket` without the derp subprotocol) gets the exact
 * 101 block, or nothing under `Derp-Fast-Start: 1`; `Upgrade: websocket` with subprotocol `derp` is accepted via
 * `ws` (noServer); anything else gets 426. Works from an http.Server 'upgrade' event, and from a 'request' event
 * when the client sent `Upgrade` without `Connection: upgrade` (Node raises 'upgrade' only with both).
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { PROTOCOL_VERSION } from '../constants.ts';
import { toHex } from '../../types/key.ts';
import type { DerpServer } from './server.ts';
import { WS_MAX_MESSAGE_BYTES } from './constants.ts';
import { webSocketStream, WS_CLOSE_POLICY } from './ws-stream.ts';

const UPGRADE_REQUIRED_BODY = 'DERP requires connection upgrade\n';

/** The exact 101 block the Go derper writes (§3.1 step 4). */
export function switchingProtocols(serverPublic: Uint8Array): string {
  return 'HTTP/1.1 101 Switching Protocols\r\n' +
    'Upgrade: DERP\r\n' +
    'Connection: Upgrade\r\n' +
    `Derp-Version: ${PROTOCOL_VERSION}\r\n` +
    `Derp-Public-Key: ${toHex(serverPublic)}\r\n\r\n`;
}

function header(req: http.IncomingMessage, name: string): string {
  const v = req.headers[name];
  return Array.isArray(v) ? (v[0] ?? '') : (v ?? '');
}

type Kind = 'derp' | 'websocket' | 'none';

function upgradeKind(req: http.IncomingMessage): Kind {
  const up = header(req, 'upgrade').toLowerCase();
  if (up === 'websocket' && header(req, 'sec-websocket-protocol').includes('derp')) return 'websocket';
  if (up === 'derp' || up === 'websocket') return 'derp';
  return 'none';
}

interface SocketLike extends Duplex {
  remoteAddress?: string;
  remotePort?: number;
  cork(): void;
  uncork(): void;
  setTimeout?: (ms: number) => void;
}

const wsServers = new WeakMap<DerpServer, WebSocketServer>();

function wsServerFor(server: DerpServer): WebSocketServer {
  let wss = wsServers.get(server);
  if (wss === undefined) {
    wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      clientTracking: false,
      maxPayload: WS_MAX_MESSAGE_BYTES,
      handleProtocols: (protocols) => (protocols.has('derp') ? 'derp' : false),
    });
    wsServers.set(server, wss);
  }
  return wss;
}

function acceptInfo(req: http.IncomingMessage, socket: SocketLike, head: Uint8Array | undefined): Parameters<DerpServer['accept']>[1] {
  const idealNode = header(req, 'ideal-node');
  return {
    remoteAddress: socket.remoteAddress ?? req.socket.remoteAddress ?? '',
    remotePort: socket.remotePort ?? req.socket.remotePort ?? 0,
    ...(head !== undefined && head.length > 0 ? { head } : {}),
    ...(idealNode !== '' ? { idealNode } : {}),
  };
}

/** Handles `/derp` from an http.Server 'upgrade' event (or a hijacked request socket). */
export function handleDerpHttp(server: DerpServer, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  const s = socket as SocketLike;
  const kind = upgradeKind(req);
  if (kind === 'none') {
    socket.end('HTTP/1.1 426 Upgrade Required\r\n' +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      'X-Content-Type-Options: nosniff\r\n' +
      `Content-Length: ${Buffer.byteLength(UPGRADE_REQUIRED_BODY)}\r\n` +
      'Connection: close\r\n\r\n' + UPGRADE_REQUIRED_BODY);
    return;
  }
  s.setTimeout?.(0);
  if (kind === 'websocket') {
    const info = acceptInfo(req, s, undefined);
    wsServerFor(server).handleUpgrade(req, socket, head, (ws) => {
      if (ws.protocol !== 'derp') {
        ws.close(WS_CLOSE_POLICY, 'derp subprotocol required');
        return;
      }
      server.noteWebSocketAccept();
      server.accept(webSocketStream(ws), info);
    });
    return;
  }
  const fastStart = header(req, 'derp-fast-start') === '1';
  // 101 and ServerKey leave in one write: cork, let accept() write ServerKey, uncork on the next tick.
  s.cork();
  if (!fastStart) s.write(switchingProtocols(server.publicKey));
  server.accept(socket, acceptInfo(req, s, head));
  process.nextTick(() => s.uncork());
}

/** Writes the 426 for a plain request to `/derp` (no or unknown Upgrade), as Go does. */
function upgradeRequired(res: http.ServerResponse): void {
  res.writeHead(426, {
    'Content-Type': 'text/plain; charset=utf-8',
    'X-Content-Type-Options': 'nosniff',
    'Content-Length': Buffer.byteLength(UPGRADE_REQUIRED_BODY),
  });
  res.end(UPGRADE_REQUIRED_BODY);
}

interface HijackableSocket extends SocketLike {
  parser?: { unconsume?: () => void } | null;
}

/**
 * Handles `/derp` from an http.Server 'request' event. A request with `Upgrade: DERP`/`websocket` but without
 * `Connection: upgrade` reaches here: the socket is taken from the HTTP server once the request has been parsed
 * (next turn; the client is waiting for our 101 so nothing else is in flight) and handed to handleDerpHttp.
 * Limitation: a fast-start client that pipelines ClientInfo *and* omits `Connection: upgrade` cannot be served
 * this way, because Node's HTTP parser consumes the pipelined bytes as a malformed next request (Go clients always
 * send `Connection: Upgrade`, which takes the 'upgrade' path).
 */
export function handleDerpRequest(server: DerpServer, req: http.IncomingMessage, res: http.ServerResponse): void {
  if (upgradeKind(req) === 'none') {
    upgradeRequired(res);
    return;
  }
  const socket = req.socket as HijackableSocket;
  setImmediate(() => {
    if (socket.destroyed || !socket.writable) return;
    res.detachSocket(req.socket);
    // Take the byte stream away from the HTTP server: its data/end/error handlers go, and the parser stops
    // consuming the socket. Its 'close' handler stays so Node still frees the parser when the socket closes.
    for (const ev of ['data', 'end', 'drain', 'timeout', 'error'] as const) socket.removeAllListeners(ev);
    socket.parser?.unconsume?.();
    handleDerpHttp(server, req, socket, Buffer.alloc(0));
  });
}
