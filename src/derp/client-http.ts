/**
 * DERP client transport adapter (spec/derp.md §3.2–3.4, §21): dials `http(s)://host:port/derp`, performs the
 * HTTP/1.1 `Upgrade: DERP` request by hand (so the exact bytes, fast start and pipelining are under our control),
 * or a WebSocket upgrade with subprotocol `derp` using the `ws` package, and hands the client engine a
 * ByteStream plus any bytes that arrived after the response head. The only DERP client code touching sockets.
 */
import net from 'node:net';
import tls from 'node:tls';
import { WebSocket } from 'ws';
import { WiremeshError } from '../errors.ts';
import { FAST_START_HEADER, MAX_RESPONSE_HEAD_LEN, SEND_HIGH_WATER_BYTES, USER_AGENT, WS_MAX_MESSAGE_LEN,
  WS_MAX_SEND_MESSAGE_LEN } from './client-constants.ts';

/** A reliable byte stream carrying DERP frames (TCP, TLS or WebSocket binary messages). */
export interface ByteStream {
  /** Writes bytes; returns false when the transport is buffering beyond its high-water mark. */
  write(data: Uint8Array): boolean;
  onData(fn: (chunk: Buffer) => void): void;
  /** Called once when the stream ends; `err` is null for an orderly end. */
  onClose(fn: (err: Error | null) => void): void;
  /** Called when buffered outgoing bytes have been flushed after write() returned false. */
  onDrain(fn: () => void): void;
  pause(): void;
  resume(): void;
  close(): void;
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
}

export interface TlsOptions {
  ca?: string | Buffer;
  insecure?: boolean;
  servername?: string;
}

export interface DialOptions {
  websocket?: boolean;
  tls?: TlsOptions;
  /** Send `Derp-Fast-Start: 1` and do not wait for a 101 (not used with WebSocket). */
  fastStart?: boolean;
  /** Bytes written in the same TCP write as the request (fast start pipelines ClientInfo). */
  pipelined?: Uint8Array;
  idealNode?: string;
  /** Rejects the dial when this signal aborts (the caller's connect timeout). */
  signal: AbortSignal;
}

export interface Dialed {
  stream: ByteStream;
  /** Bytes received after the HTTP response head (already part of the DERP stream). */
  head: Buffer;
  tls: boolean;
}

const dialError = (message: string, cause?: unknown): WiremeshError =>
  new WiremeshError('derp_dial_failed', message, cause === undefined ? undefined : { cause });

interface ParsedUrl {
  secure: boolean;
  host: string;
  port: number;
  path: string;
  hostHeader: string;
}

export function parseDerpUrl(url: string): ParsedUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch (e) {
    throw new WiremeshError('bad_url', `not a URL: ${JSON.stringify(url)}`, { cause: e });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new WiremeshError('bad_url', `want http(s):// URL, got ${u.protocol}`);
  const secure = u.protocol === 'https:';
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const port = u.port === '' ? (secure ? 443 : 80) : Number(u.port);
  return { secure, host, port, path: (u.pathname === '' ? '/derp' : u.pathname) + u.search, hostHeader: u.host };
}

/** Dials and upgrades; resolves with a stream positioned at the first DERP byte. */
export function dialDerp(url: string, opts: DialOptions): Promise<Dialed> {
  const u = parseDerpUrl(url);
  return opts.websocket === true ? dialWebSocket(url, u, opts) : dialUpgrade(u, opts);
}

function tlsConnectOptions(u: ParsedUrl, t: TlsOptions | undefined): tls.ConnectionOptions {
  const servername = t?.servername ?? (net.isIP(u.host) === 0 ? u.host : undefined);
  return {
    host: u.host,
    port: u.port,
    ...(servername !== undefined ? { servername } : {}),
    ...(t?.ca !== undefined ? { ca: t.ca } : {}),
    rejectUnauthorized: t?.insecure !== true,
    ALPNProtocols: ['http/1.1'],
    minVersion: 'TLSv1.2',
  };
}

function dialUpgrade(u: ParsedUrl, opts: DialOptions): Promise<Dialed> {
  return new Promise((resolve, reject) => {
    const sock: net.Socket = u.secure ? tls.connect(tlsConnectOptions(u, opts.tls)) : net.connect({ host: u.host, port: u.port });
    sock.setNoDelay(true);
    let settled = false;
    const fail = (e: Error): void => {
      if (settled) return;
      settled = true;
      sock.destroy();
      reject(e);
    };
    const onAbort = (): void => fail(dialError(`connect to ${u.hostHeader} timed out`));
    if (opts.signal.aborted) return onAbort();
    opts.signal.addEventListener('abort', onAbort, { once: true });
    const done = (head: Buffer): void => {
      if (settled) return;
      settled = true;
      opts.signal.removeEventListener('abort', onAbort);
      sock.pause(); // hold later bytes until the engine attaches its data handler
      sock.off('data', onHeadData);
      sock.off('error', onError);
      sock.off('close', onEarlyClose);
      resolve({ stream: socketStream(sock), head, tls: u.secure });
    };
    const onError = (e: Error): void => fail(dialError(`connect to ${u.hostHeader}: ${e.message}`, e));
    const onEarlyClose = (): void => fail(dialError(`${u.hostHeader} closed the connection during the upgrade`));
    let buf: Buffer = Buffer.alloc(0);
    const onHeadData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > MAX_RESPONSE_HEAD_LEN) fail(dialError(`response head longer than ${MAX_RESPONSE_HEAD_LEN} bytes`));
        return;
      }
      const statusLine = buf.subarray(0, buf.indexOf('\r\n')).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
      if (m === null || m[1] !== '101') {
        fail(new WiremeshError('derp_upgrade_failed', `GET failed: ${statusLine.slice(0, 200) || 'no status line'}`));
        return;
      }
      done(buf.subarray(end + 4));
    };
    sock.on('error', onError);
    sock.on('close', onEarlyClose);
    sock.once(u.secure ? 'secureConnect' : 'connect', () => {
      const lines = [
        `GET ${u.path} HTTP/1.1`, `Host: ${u.hostHeader}`, `User-Agent: ${USER_AGENT}`, 'Upgrade: DERP', 'Connection: Upgrade',
      ];
      if (opts.fastStart === true) lines.push(`${FAST_START_HEADER}: 1`);
      if (opts.idealNode !== undefined && opts.idealNode !== '') lines.push(`Ideal-Node: ${opts.idealNode}`);
      const request = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
      // One write: under fast start the ClientInfo frame travels with the request (spec §3.3).
      sock.write(opts.pipelined !== undefined ? Buffer.concat([request, opts.pipelined]) : request);
      if (opts.fastStart === true) done(Buffer.alloc(0));
      else sock.on('data', onHeadData);
    });
  });
}

function socketStream(sock: net.Socket): ByteStream {
  return {
    write: (data) => sock.write(data) && sock.writableLength < SEND_HIGH_WATER_BYTES,
    onData(fn) {
      sock.on('data', fn);
      sock.resume();
    },
    onClose(fn) {
      let err: Error | null = null;
      sock.on('error', (e) => { err = e; });
      sock.once('close', () => fn(err));
    },
    onDrain: (fn) => void sock.on('drain', fn),
    pause: () => void sock.pause(),
    resume: () => void sock.resume(),
    close: () => void sock.destroy(),
    get localAddress() { return sock.localAddress; },
    get localPort() { return sock.localPort; },
  };
}

function dialWebSocket(url: string, u: ParsedUrl, opts: DialOptions): Promise<Dialed> {
  const wsUrl = url.replace(/^http/, 'ws');
  return new Promise((resolve, reject) => {
    const t = opts.tls;
    const ws = new WebSocket(wsUrl, ['derp'], {
      perMessageDeflate: false,
      maxPayload: WS_MAX_MESSAGE_LEN,
      headers: { 'User-Agent': USER_AGENT, ...(opts.idealNode ? { 'Ideal-Node': opts.idealNode } : {}) },
      ...(u.secure ? tlsConnectOptions(u, t) : {}),
    });
    let settled = false;
    const onAbort = (): void => {
      if (settled) return;
      settled = true;
      ws.terminate();
      reject(dialError(`websocket connect to ${u.hostHeader} timed out`));
    };
    if (opts.signal.aborted) return onAbort();
    opts.signal.addEventListener('abort', onAbort, { once: true });
    ws.once('error', (e) => {
      if (settled) return;
      settled = true;
      reject(dialError(`websocket to ${u.hostHeader}: ${e.message}`, e));
    });
    const stream = wsStream(ws);
    ws.once('open', () => {
      settled = true;
      opts.signal.removeEventListener('abort', onAbort);
      if (ws.protocol !== 'derp') {
        ws.terminate();
        reject(dialError(`websocket subprotocol ${JSON.stringify(ws.protocol)}, want "derp"`));
        return;
      }
      resolve({ stream, head: Buffer.alloc(0), tls: u.secure });
    });
  });
}

function wsStream(ws: WebSocket): ByteStream {
  // ws exposes the underlying socket only through this private field; used for local address reporting.
  const raw = (ws as unknown as { _socket?: net.Socket })._socket;
  const closeFns: ((err: Error | null) => void)[] = [];
  let closeErr: Error | null = null;
  let closed = false;
  ws.on('error', (e) => { closeErr = e; });
  // Messages can arrive in the same read as the 101: buffer them until the engine attaches its handler.
  let deliver: ((chunk: Buffer) => void) | null = null;
  const early: Buffer[] = [];
  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      closeErr = new WiremeshError('ws_text_message', 'server sent a text WebSocket message');
      ws.close(1003);
      return;
    }
    const chunk = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (deliver === null) early.push(chunk);
    else deliver(chunk);
  });
  ws.on('close', () => {
    if (closed) return;
    closed = true;
    for (const fn of closeFns) fn(closeErr);
  });
  return {
    write(data) {
      // Frames may span messages (spec §3.4); keep each message under the Go server's read limit.
      for (let o = 0; o < data.length; o += WS_MAX_SEND_MESSAGE_LEN) {
        ws.send(data.subarray(o, Math.min(data.length, o + WS_MAX_SEND_MESSAGE_LEN)), { binary: true });
      }
      return ws.bufferedAmount < SEND_HIGH_WATER_BYTES;
    },
    onData(fn) {
      deliver = fn;
      for (const c of early.splice(0)) fn(c);
    },
    onClose: (fn) => void closeFns.push(fn),
    onDrain: (fn) => void raw?.on('drain', fn),
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    close: () => ws.terminate(),
    get localAddress() { return raw?.localAddress; },
    get localPort() { return raw?.localPort; },
  };
}
