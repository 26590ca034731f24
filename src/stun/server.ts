/**
 * STUN server (adapter: the only STUN code touching node:dgram). A thin UDP loop around src/stun/codec.ts, like
 * Tailscale's `net/stunserver` (spec/derp.md §15, checklist 38–40), that also answers standard RFC 5389 clients.
 *
 * - Tailscale `tailnode` requests get exactly derper's answer: a Binding success response with only
 *   XOR-MAPPED-ADDRESS (family 1 for IPv4 clients, 2 for IPv6).
 * - Beyond derper (unless `strictTailnode`): any valid RFC 5389 Binding request gets XOR-MAPPED-ADDRESS, plus a
 *   FINGERPRINT when the request carried one (as coturn does); a request with unknown comprehension-required
 *   attributes (e.g. RFC 5780 CHANGE-REQUEST) gets a 420 error with UNKNOWN-ATTRIBUTES (RFC 5389 §7.3.1).
 * - Everything else (non-STUN, other types, bad FINGERPRINT, malformed) is dropped silently and counted as
 *   `not_stun`, as derper does.
 *
 * With a wildcard host (none, '' or '::') it binds two sockets on one port: udp4 0.0.0.0 and udp6 :: (v6-only),
 * so IPv4 clients are always seen as IPv4.
 *
 * Two I/O paths with the same answers and metrics (docs/stun.md "Batched UDP path"):
 * - `batch` (default when build/udp_batch.node is built, the host is an IP literal and WIREMESH_STUN_DGRAM is
 *   not `1`): recvmmsg/sendmmsg through the native addon, one JS call per batch (src/stun/server-batch.ts).
 * - `dgram`: node:dgram, one `message` callback and one synchronous callback-less send per datagram.
 */
import dgram from 'node:dgram';
import { isIP, isIPv6 } from 'node:net';
import { silentLogger, type Logger } from '../log.ts';
import { unmapAddress } from '../net/packet.ts';
import { batchUdpAvailable, batchUdpUnavailableReason, UdpBatchError, UdpBatchErrorCode } from '../net/udp-batch.ts';
import { buildErrorResponse, buildResponse, parseRequest, parseTailnodeRequest } from './codec.ts';
import { StunBatchListener } from './server-batch.ts';

export interface StunMetrics {
  /** derper's `counter_requests{disposition}`. */
  requests: { success: number; not_stun: number; read_error: number; write_error: number };
  /** derper's `counter_addrfamily{family}`: answered requests by client family. */
  addrfamily: { ipv4: number; ipv6: number };
  /** Beyond derper: answers by request kind (`unknown_attribute` = 420 error responses). */
  responses: { tailnode: number; rfc5389: number; unknown_attribute: number };
}

/** RFC 5389 §15.6 code for requests with unknown comprehension-required attributes. */
const ERROR_UNKNOWN_ATTRIBUTE = 420;
/** Attempts to find a port free on both families when binding a wildcard on port 0. */
const DUAL_BIND_ATTEMPTS = 8;

const WILDCARDS = new Set(['', '::']);
/** Environment switch: `WIREMESH_STUN_DGRAM=1` keeps the server on node:dgram even when the addon is built. */
export const STUN_DGRAM_ENV = 'WIREMESH_STUN_DGRAM';

/** `auto`: batch when available (see module doc); `batch`: require the addon; `dgram`: never use it. */
export type StunIo = 'auto' | 'batch' | 'dgram';

export interface StunServerOptions {
  logger?: Logger;
  strictTailnode?: boolean;
  /** I/O path; default `auto`. */
  io?: StunIo;
}

/** One bound socket of either path. */
interface Listener {
  readonly port: number;
  close(): Promise<void>;
  syncStats?(): void;
}

export class StunServer {
  readonly #log: Logger;
  readonly #strict: boolean;
  readonly #io: StunIo;
  readonly #listeners: Listener[] = [];
  #port = 0;
  #path: 'dgram' | 'batch' | null = null;
  readonly #m: StunMetrics = {
    requests: { success: 0, not_stun: 0, read_error: 0, write_error: 0 },
    addrfamily: { ipv4: 0, ipv6: 0 },
    responses: { tailnode: 0, rfc5389: 0, unknown_attribute: 0 },
  };
  constructor(opts: StunServerOptions = {}) {
    this.#log = opts.logger ?? silentLogger;
    this.#strict = opts.strictTailnode ?? false;
    this.#io = opts.io ?? 'auto';
  }

  /** The bound UDP port (0 before `listen`). */
  get port(): number {
    return this.#port;
  }

  /** The I/O path in use after `listen` (null before). */
  get io(): 'dgram' | 'batch' | null {
    return this.#path;
  }

  #choosePath(host: string): 'dgram' | 'batch' {
    if (this.#io === 'dgram') return 'dgram';
    if (this.#io === 'batch') {
      if (!batchUdpAvailable()) throw new UdpBatchError(UdpBatchErrorCode.Unavailable, batchUdpUnavailableReason() ?? 'addon unavailable');
      if (host !== '' && isIP(host) === 0) throw new UdpBatchError(UdpBatchErrorCode.BadArgument, `batch STUN path needs an IP literal host, got ${host}`);
      return 'batch';
    }
    const forced = process.env[STUN_DGRAM_ENV] === '1';
    return !forced && batchUdpAvailable() && (host === '' || isIP(host) !== 0) ? 'batch' : 'dgram';
  }

  /** Binds (see module doc for the wildcard rule). Port 0 picks a free port, the same for both families. */
  async listen(opts: { host?: string; port: number }): Promise<void> {
    if (this.#listeners.length > 0) throw new Error('StunServer already listening');
    const host = opts.host ?? '';
    const path = this.#choosePath(host);
    const bind = (family: 4 | 6, address: string, port: number, ipv6Only: boolean): Promise<Listener> =>
      path === 'batch' ? this.#bindBatch(family, address, port, ipv6Only) : this.#bind(family === 6 ? 'udp6' : 'udp4', address, port, ipv6Only);
    if (!WILDCARDS.has(host)) {
      const s = await bind(isIPv6(host) ? 6 : 4, host, opts.port, false);
      this.#port = s.port;
    } else {
      for (let attempt = 0; ; attempt++) {
        const s4 = await bind(4, '0.0.0.0', opts.port, false);
        const port = s4.port;
        try {
          await bind(6, '::', port, true);
          this.#port = port;
          break;
        } catch (e) {
          const code = errnoOf(e);
          if (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL') {
            this.#log.warn('stun: no IPv6, serving IPv4 only', { error: String(e) });
            this.#port = port;
            break;
          }
          await s4.close();
          this.#listeners.length = 0;
          if (opts.port !== 0 || attempt + 1 >= DUAL_BIND_ATTEMPTS) throw e;
        }
      }
    }
    this.#path = path;
    this.#log.info('stun listening', { host: host === '' ? '*' : host, port: this.#port, strictTailnode: this.#strict, io: path });
  }

  /** A snapshot of the counters. */
  metrics(): StunMetrics {
    for (const l of this.#listeners) l.syncStats?.();
    return {
      requests: { ...this.#m.requests },
      addrfamily: { ...this.#m.addrfamily },
      responses: { ...this.#m.responses },
    };
  }

  async close(): Promise<void> {
    const ls = this.#listeners.splice(0);
    await Promise.all(ls.map((l) => l.close()));
  }

  async #bindBatch(family: 4 | 6, host: string, port: number, ipv6Only: boolean): Promise<Listener> {
    const l = new StunBatchListener({ family, host, port, ipv6Only, strictTailnode: this.#strict, metrics: this.#m, log: this.#log });
    this.#listeners.push(l);
    return l;
  }

  async #bind(type: 'udp4' | 'udp6', address: string, port: number, ipv6Only: boolean): Promise<Listener> {
    const sock = dgram.createSocket({ type, ipv6Only });
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => {
        sock.close();
        reject(e);
      };
      sock.once('error', onError);
      sock.bind({ port, address }, () => {
        sock.off('error', onError);
        resolve();
      });
    });
    sock.on('message', (msg, rinfo) => this.#onMessage(sock, msg, rinfo));
    // Replies are sent without a callback (≈ +20 % send rate, spec/node-performance.md §2), so a failed send
    // surfaces here as an error whose syscall is `send`.
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (e.syscall === 'send') {
        this.#m.requests.write_error++;
        this.#m.requests.success--;
        this.#log.debug('stun write error', { error: e.message });
      } else {
        this.#m.requests.read_error++;
        this.#log.debug('stun read error', { error: e.message });
      }
    });
    const l: Listener = { port: sock.address().port, close: () => closeSocket(sock) };
    this.#listeners.push(l);
    return l;
  }

  #onMessage(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const address = unmapAddress(rinfo.address);
    const v4 = !address.includes(':');
    let reply: Uint8Array;
    if (this.#strict) {
      const txid = parseTailnodeRequest(msg);
      if (txid === null) {
        this.#m.requests.not_stun++;
        return;
      }
      reply = buildResponse(txid, { address, port: rinfo.port });
      this.#m.responses.tailnode++;
    } else {
      const req = parseRequest(msg);
      if (req === null) {
        this.#m.requests.not_stun++;
        return;
      }
      if (req.kind === 'tailnode') {
        reply = buildResponse(req.txid, { address, port: rinfo.port });
        this.#m.responses.tailnode++;
      } else if (req.unknownAttributes.length > 0) {
        reply = buildErrorResponse(req.txid, ERROR_UNKNOWN_ATTRIBUTE, 'Unknown Attribute', {
          unknownAttributes: req.unknownAttributes,
          fingerprint: req.fingerprint,
        });
        this.#m.responses.unknown_attribute++;
      } else {
        reply = buildResponse(req.txid, { address, port: rinfo.port }, { fingerprint: req.fingerprint });
        this.#m.responses.rfc5389++;
      }
    }
    if (v4) this.#m.addrfamily.ipv4++;
    else this.#m.addrfamily.ipv6++;
    try {
      sock.send(reply, rinfo.port, rinfo.address);
      this.#m.requests.success++;
    } catch (e) {
      this.#m.requests.write_error++;
      this.#log.debug('stun write error', { error: String(e) });
    }
  }
}

function closeSocket(s: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      s.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

/** errno name of a bind failure from either path (`EADDRINUSE`, `EAFNOSUPPORT`…). */
function errnoOf(e: unknown): string | undefined {
  if (e instanceof UdpBatchError) return e.errno ?? undefined;
  return (e as NodeJS.ErrnoException).code;
}
