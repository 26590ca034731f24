/**
 * STUN client engine (spec/derp.md §15, spec/nat-traversal.md §7.2/§7.4): sends Tailscale `tailnode` Binding
 * requests (or generic RFC 5389 ones) over a PacketConn, retransmits, matches answers by transaction ID and
 * ignores strays. Time comes from a Clock and transaction IDs from a random source, so it runs unchanged on real
 * sockets and in the virtual lab.
 *
 * Demux: one `StunTransactions` per socket owns a single receive path and a txid → transaction map, so many
 * queries (several servers, several in flight) share one socket without stealing each other's answers; packets
 * that are not answers to our transactions go to `onUnmatched` handlers (or the caller feeds packets in itself
 * with `handlePacket` when it owns the socket's demux, like magicsock).
 *
 * Every (re)transmission uses a fresh transaction ID, as Tailscale's netcheck does, so the round-trip time is
 * measured from the exact send that was answered.
 */
import { WiremeshError } from '../errors.ts';
import { formatAddrPort, type AddrPort, type PacketConn, type PacketHandler } from '../net/packet.ts';
import type { Clock, Timer } from '../time/clock.ts';
import { buildBindingRequest, buildTailnodeRequest, isStunMessage, parseResponse } from './codec.ts';
import { MessageType, StunErrorCode, TXID_LEN } from './constants.ts';

/** Returns `n` random bytes (e.g. `(n) => crypto.getRandomValues(new Uint8Array(n))`). */
export type RandomBytes = (n: number) => Uint8Array;

export const cryptoRandom: RandomBytes = (n) => crypto.getRandomValues(new Uint8Array(n));

export interface StunQueryOptions {
  clock: Clock;
  /** Give up (reject with `stun_timeout`) this long after the first send. */
  timeoutMs: number;
  /** Retransmit (with a new txid) every `retryMs` until answered or timed out; ≥ timeoutMs means send once. */
  retryMs: number;
  random: RandomBytes;
  /** Send a plain RFC 5389 Binding request (no SOFTWARE/FINGERPRINT) instead of Tailscale's tailnode request. */
  generic?: boolean;
  /** Aborting rejects with `stun_aborted` and stops retransmitting. */
  signal?: AbortSignal;
}

export interface StunResult {
  /** The reflexive address the server saw (IPv4-mapped addresses unmapped). */
  address: AddrPort;
  /** Milliseconds from the answered send to its answer, on the query's clock. */
  rttMs: number;
  /** The server queried. */
  server: AddrPort;
  /** Where the answer came from (normally equal to `server`). */
  from: AddrPort;
  /** Number of requests sent for this query (1 + retransmissions). */
  sends: number;
}

interface Transaction {
  server: AddrPort;
  clock: Clock;
  sentAt: Map<string, number>;
  sends: number;
  timers: Timer[];
  resolve: (r: StunResult) => void;
  reject: (e: unknown) => void;
  abortCleanup: (() => void) | null;
  done: boolean;
}

function hexKey(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += (b[i]! < 16 ? '0' : '') + b[i]!.toString(16);
  return s;
}

/** Transaction table over one PacketConn: concurrent queries, matched by txid. */
export class StunTransactions {
  readonly #conn: PacketConn;
  readonly #byTxid = new Map<string, Transaction>();
  readonly #unmatched = new Set<PacketHandler>();
  readonly #detach: (() => void) | null;
  #closed = false;

  /** `listen: false` leaves the socket's receive path to the caller, who passes packets to `handlePacket`. */
  constructor(conn: PacketConn, opts: { listen?: boolean } = {}) {
    this.#conn = conn;
    this.#detach = opts.listen === false ? null : conn.onMessage((data, from) => {
      if (!this.handlePacket(data, from)) for (const h of this.#unmatched) h(data, from);
    });
  }

  /** Receives packets this table did not consume (non-STUN, strays, late answers). Returns an unsubscribe. */
  onUnmatched(handler: PacketHandler): () => void {
    this.#unmatched.add(handler);
    return () => this.#unmatched.delete(handler);
  }

  /** Queries in flight. */
  get pending(): number {
    return new Set(this.#byTxid.values()).size;
  }

  /**
   * Offers a received datagram; returns true if it answered one of our transactions (consumed). Malformed
   * responses, error responses and unknown txids are not consumed.
   */
  handlePacket(data: Uint8Array, from: AddrPort): boolean {
    if (!isStunMessage(data)) return false;
    const type = (data[0]! << 8) | data[1]!;
    if (type !== MessageType.BindingSuccessResponse) return false;
    const key = hexKey(data.subarray(8, 8 + TXID_LEN));
    const tx = this.#byTxid.get(key);
    if (tx === undefined) return false;
    let address: AddrPort;
    try {
      address = parseResponse(data).address;
    } catch {
      return false; // a broken answer is treated as lost; retransmission may still succeed
    }
    const rttMs = tx.clock.now() - tx.sentAt.get(key)!;
    this.#finish(tx);
    tx.resolve({ address, rttMs, server: tx.server, from: { address: from.address, port: from.port }, sends: tx.sends });
    return true;
  }

  /** Sends a Binding request to `server` and resolves with the first answer to any of its transmissions. */
  query(server: AddrPort, opts: StunQueryOptions): Promise<StunResult> {
    if (this.#closed) return Promise.reject(new WiremeshError(StunErrorCode.Aborted, 'STUN transactions closed'));
    if (opts.signal?.aborted) return Promise.reject(new WiremeshError(StunErrorCode.Aborted, 'STUN query aborted'));
    return new Promise<StunResult>((resolve, reject) => {
      const tx: Transaction = {
        server: { address: server.address, port: server.port },
        clock: opts.clock,
        sentAt: new Map(),
        sends: 0,
        timers: [],
        resolve,
        reject,
        abortCleanup: null,
        done: false,
      };
      let lastSendError: unknown = undefined;
      const send = (): void => {
        const txid = opts.random(TXID_LEN);
        if (txid.length !== TXID_LEN) throw new WiremeshError(StunErrorCode.BadArgument, 'random source returned the wrong length');
        const key = hexKey(txid);
        const pkt = opts.generic ? buildBindingRequest(txid) : buildTailnodeRequest(txid);
        tx.sentAt.set(key, opts.clock.now());
        this.#byTxid.set(key, tx);
        tx.sends++;
        try {
          this.#conn.send(pkt, tx.server);
        } catch (e) {
          lastSendError = e; // treated as packet loss, like netcheck
        }
      };
      const fail = (e: WiremeshError): void => {
        if (tx.done) return;
        this.#finish(tx);
        reject(e);
      };
      if (opts.signal !== undefined) {
        const onAbort = (): void => fail(new WiremeshError(StunErrorCode.Aborted, 'STUN query aborted'));
        opts.signal.addEventListener('abort', onAbort, { once: true });
        const signal = opts.signal;
        tx.abortCleanup = () => signal.removeEventListener('abort', onAbort);
      }
      try {
        send();
      } catch (e) {
        this.#finish(tx);
        reject(e);
        return;
      }
      if (opts.retryMs > 0 && opts.retryMs < opts.timeoutMs) tx.timers.push(opts.clock.setInterval(send, opts.retryMs));
      tx.timers.push(opts.clock.setTimeout(() => {
        fail(new WiremeshError(StunErrorCode.Timeout, `no STUN answer from ${formatAddrPort(server)} after ${opts.timeoutMs} ms (${tx.sends} requests)`, lastSendError === undefined ? undefined : { cause: lastSendError }));
      }, opts.timeoutMs));
    });
  }

  /** Stops listening and rejects every pending query with `stun_aborted`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#detach?.();
    for (const tx of new Set(this.#byTxid.values())) {
      this.#finish(tx);
      tx.reject(new WiremeshError(StunErrorCode.Aborted, 'STUN transactions closed'));
    }
    this.#unmatched.clear();
  }

  #finish(tx: Transaction): void {
    tx.done = true;
    for (const t of tx.timers) t.cancel();
    tx.timers.length = 0;
    tx.abortCleanup?.();
    for (const key of tx.sentAt.keys()) this.#byTxid.delete(key);
  }
}

/** One query over `conn` (a temporary transaction table that detaches when done). */
export async function stunQuery(conn: PacketConn, server: AddrPort, opts: StunQueryOptions): Promise<StunResult> {
  const txs = new StunTransactions(conn);
  try {
    return await txs.query(server, opts);
  } finally {
    txs.close();
  }
}
