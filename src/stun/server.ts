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
 * so IPv4 clients are always seen as IPv4. Replies are sent synchronously from the message handler; the send
 * callback is one preallocated function.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { silentLogger, type Logger } from '../log.ts';
import { unmapAddress } from '../net/packet.ts';
import { buildErrorResponse, buildResponse, parseRequest, parseTailnodeRequest } from './codec.ts';

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

export class StunServer {
  readonly #log: Logger;
  readonly #strict: boolean;
  readonly #sockets: dgram.Socket[] = [];
  #port = 0;
  readonly #m: StunMetrics = {
    requests: { success: 0, not_stun: 0, read_error: 0, write_error: 0 },
    addrfamily: { ipv4: 0, ipv6: 0 },
    responses: { tailnode: 0, rfc5389: 0, unknown_attribute: 0 },
  };
  constructor(opts: { logger?: Logger; strictTailnode?: boolean } = {}) {
    this.#log = opts.logger ?? silentLogger;
    this.#strict = opts.strictTailnode ?? false;
  }

  /** The bound UDP port (0 before `listen`). */
  get port(): number {
    return this.#port;
  }

  /** Binds (see module doc for the wildcard rule). Port 0 picks a free port, the same for both families. */
  async listen(opts: { host?: string; port: number }): Promise<void> {
    if (this.#sockets.length > 0) throw new Error('StunServer already listening');
    const host = opts.host ?? '';
    if (!WILDCARDS.has(host)) {
      const s = await this.#bind(isIPv6(host) ? 'udp6' : 'udp4', host, opts.port, false);
      this.#port = s.address().port;
    } else {
      for (let attempt = 0; ; attempt++) {
        const s4 = await this.#bind('udp4', '0.0.0.0', opts.port, false);
        const port = s4.address().port;
        try {
          await this.#bind('udp6', '::', port, true);
          this.#port = port;
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL') {
            this.#log.warn('stun: no IPv6, serving IPv4 only', { error: String(e) });
            this.#port = port;
            break;
          }
          await closeSocket(s4);
          this.#sockets.length = 0;
          if (opts.port !== 0 || attempt + 1 >= DUAL_BIND_ATTEMPTS) throw e;
        }
      }
    }
    this.#log.info('stun listening', { host: host === '' ? '*' : host, port: this.#port, strictTailnode: this.#strict });
  }

  /** A snapshot of the counters. */
  metrics(): StunMetrics {
    return {
      requests: { ...this.#m.requests },
      addrfamily: { ...this.#m.addrfamily },
      responses: { ...this.#m.responses },
    };
  }

  async close(): Promise<void> {
    const socks = this.#sockets.splice(0);
    await Promise.all(socks.map(closeSocket));
  }

  async #bind(type: 'udp4' | 'udp6', address: string, port: number, ipv6Only: boolean): Promise<dgram.Socket> {
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
    this.#sockets.push(sock);
    return sock;
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
