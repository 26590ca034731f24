/**
 * The STUN server's batched UDP path (adapter): one BatchUdpSocket (src/net/udp-batch.ts, recvmmsg/sendmmsg)
 * whose batch handler classifies every request in place in the receive slab and writes every answer in place in
 * the send slab with src/stun/codec-at.ts, then sends the whole batch with one sendmmsg. Same answers and the
 * same metrics as the node:dgram path in server.ts (spec/derp.md §15, checklist 38–40); docs/stun.md "Batched
 * UDP path". Nothing is allocated per answered packet except for the rare 420 error response.
 *
 * Difference from the dgram path: a datagram longer than SLOT_BYTES (2048) arrives truncated and is dropped,
 * counted as `read_error` (no STUN client sends Binding requests that long).
 */
import type { Logger } from '../log.ts';
import {
  BatchUdpSocket, FLAG_TRUNCATED, META_ADDR_OFFSET, META_BYTES, META_INTS, Meta, SLOT_BYTES,
} from '../net/udp-batch.ts';
import { classifyRequestAt, RequestClass, writeBindingResponseAt } from './codec-at.ts';
import { buildErrorResponse, parseRequest } from './codec.ts';
import type { StunMetrics } from './server.ts';

/** RFC 5389 §15.6 code for requests with unknown comprehension-required attributes. */
const ERROR_UNKNOWN_ATTRIBUTE = 420;

export interface StunBatchOptions {
  family: 4 | 6;
  host: string;
  port: number;
  ipv6Only: boolean;
  strictTailnode: boolean;
  /** The server's live counters; this path increments them in place. */
  metrics: StunMetrics;
  log: Logger;
}

export class StunBatchListener {
  readonly #sock: BatchUdpSocket;
  readonly #m: StunMetrics;
  readonly #strict: boolean;
  readonly #log: Logger;
  /** recvmmsg errors already folded into `read_error`. */
  #recvErrorsSeen = 0;

  /** Binds synchronously; throws UdpBatchError (e.g. errno EADDRINUSE) like dgram's bind errors. */
  constructor(opts: StunBatchOptions) {
    this.#m = opts.metrics;
    this.#strict = opts.strictTailnode;
    this.#log = opts.log;
    this.#sock = BatchUdpSocket.open({
      family: opts.family,
      host: opts.host,
      port: opts.port,
      ipv6Only: opts.ipv6Only,
      onBatch: (sock, count) => this.#onBatch(sock, count),
    });
  }

  get port(): number {
    return this.#sock.port;
  }

  /** Folds the addon's receive-error counter into `read_error` (called before metrics are read). */
  syncStats(): void {
    if (this.#sock.closed) return;
    const errs = this.#sock.stats().recvErrors;
    this.#m.requests.read_error += errs - this.#recvErrorsSeen;
    this.#recvErrorsSeen = errs;
  }

  close(): Promise<void> {
    this.syncStats();
    this.#sock.close();
    return Promise.resolve();
  }

  #onBatch(sock: BatchUdpSocket, count: number): void {
    const m = this.#m;
    let n = 0;
    try {
      n = this.#answer(sock, count);
    } catch (e) {
      // A bug here must not take the server down: drop the rest of this batch and say so.
      this.#log.error('stun batch handler failed', { error: String(e) });
    }
    if (n === 0) return;
    let sent = 0;
    try {
      sent = sock.send(n);
    } catch (e) {
      this.#log.debug('stun write error', { error: String(e) });
    }
    m.requests.success += sent;
    m.requests.write_error += n - sent;
    if (sent < n) this.#log.debug('stun write error', { dropped: n - sent, error: sock.stats().lastError });
  }

  /** Classifies records 0..count-1 and writes the answers to send slots 0..n-1; returns n. */
  #answer(sock: BatchUdpSocket, count: number): number {
    const m = this.#m;
    const rd = sock.recvData;
    const rm = sock.recvMeta;
    const rmb = sock.recvMetaBytes;
    const sd = sock.sendData;
    const sm = sock.sendMeta;
    const smb = sock.sendMetaBytes;
    let n = 0;
    for (let i = 0; i < count; i++) {
      const mi = i * META_INTS;
      if ((rm[mi + Meta.Flags]! & FLAG_TRUNCATED) !== 0) {
        m.requests.read_error++;
        continue;
      }
      const off = i * SLOT_BYTES;
      const len = rm[mi + Meta.Length]!;
      const cls = classifyRequestAt(rd, off, len, this.#strict);
      if (cls === RequestClass.Ignore) {
        m.requests.not_stun++;
        continue;
      }
      const family = rm[mi + Meta.Family] === 4 ? 4 : 6;
      const port = rm[mi + Meta.Port]!;
      const addrOff = i * META_BYTES + META_ADDR_OFFSET;
      const out = n * SLOT_BYTES;
      let replyLen: number;
      if (cls === RequestClass.UnknownAttribute) {
        const req = parseRequest(rd.subarray(off, off + len))!;
        const reply = buildErrorResponse(req.txid, ERROR_UNKNOWN_ATTRIBUTE, 'Unknown Attribute', {
          unknownAttributes: req.unknownAttributes,
          fingerprint: req.fingerprint,
        });
        sd.set(reply, out);
        replyLen = reply.length;
        m.responses.unknown_attribute++;
      } else {
        replyLen = writeBindingResponseAt(sd, out, rd, off + 8, family, rmb, addrOff, port, cls === RequestClass.Rfc5389Fingerprint);
        if (cls === RequestClass.Tailnode) m.responses.tailnode++;
        else m.responses.rfc5389++;
      }
      if (family === 4) m.addrfamily.ipv4++;
      else m.addrfamily.ipv6++;
      const so = n * META_INTS;
      sm[so + Meta.Length] = replyLen;
      sm[so + Meta.Family] = family;
      sm[so + Meta.Port] = port;
      const sa = n * META_BYTES + META_ADDR_OFFSET;
      for (let k = 0; k < 16; k++) smb[sa + k] = rmb[addrOff + k]!;
      n++;
    }
    return n;
  }
}
