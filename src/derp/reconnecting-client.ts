/**
 * A DERP client that stays connected (spec/derp.md §14: clients redial after a server restart; the `Restarting`
 * frame of §8 suggests when): wraps DerpClient, redials with capped exponential backoff and jitter after any
 * disconnect or failed dial, honours a server's `restarting` hint, and hands every received message to a
 * callback. Engine: time comes from an injected Clock and jitter from an injected random source; the dial is a
 * seam (default DerpClient.connect) so tests run it on a ManualClock.
 */
import { realClock, type Clock, type Timer } from '../time/clock.ts';
import type { NodePublic } from '../types/key.ts';
import { DerpClient, type DerpClientOptions, type DerpMessage } from './client.ts';

/** First redial delay: short, so a restarted server is rejoined almost at once. */
export const RECONNECT_MIN_MS = 250;
/** Backoff cap: a server down for long is retried every 10 s at most (Tailscale's derphttp uses the same order). */
export const RECONNECT_MAX_MS = 10_000;
/** Upper bound honoured for a server's `restarting` reconnect hint, so a bogus frame cannot park the client. */
export const RESTART_HINT_MAX_MS = 60_000;

/** Delay before redial number `failures` (0 = first): min·2^n capped at max, jittered uniformly into [½d, d]. */
export function backoffDelay(failures: number, random: () => number, minMs = RECONNECT_MIN_MS, maxMs = RECONNECT_MAX_MS): number {
  const d = Math.min(maxMs, minMs * 2 ** Math.min(failures, 30));
  return Math.round(d / 2 + (random() * d) / 2);
}

export type ReconnectState = 'connecting' | 'connected' | 'backoff' | 'closed';

export interface ReconnectingClientOptions extends DerpClientOptions {
  url: string;
  onMessage?: (m: DerpMessage) => void;
  onState?: (s: ReconnectState, detail: { attempt: number; delayMs?: number; err?: Error }) => void;
  random?: () => number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Dial seam; default DerpClient.connect. */
  dial?: (url: string, opts: DerpClientOptions) => Promise<DerpClient>;
}

export class ReconnectingDerpClient {
  readonly #o: ReconnectingClientOptions;
  readonly #clock: Clock;
  #client: DerpClient | null = null;
  #state: ReconnectState = 'connecting';
  #failures = 0;
  #timer: Timer | null = null;
  #hintMs: number | null = null;
  #waiters: Array<(c: DerpClient) => void> = [];
  /** Successful connections so far (the first one included). */
  connects = 0;

  constructor(o: ReconnectingClientOptions) {
    this.#o = o;
    this.#clock = o.clock ?? realClock;
    void this.#dial();
  }

  get state(): ReconnectState {
    return this.#state;
  }

  /** The live client, or null while disconnected. */
  get client(): DerpClient | null {
    return this.#client;
  }

  /** Resolves with the live client (at once if connected). */
  connected(): Promise<DerpClient> {
    if (this.#client !== null) return Promise.resolve(this.#client);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Sends when connected; returns false (packet dropped, as on a real link) while disconnected. */
  send(dst: NodePublic, packet: Uint8Array): boolean {
    if (this.#client === null) return false;
    this.#client.send(dst, packet);
    return true;
  }

  close(): void {
    this.#setState('closed', {});
    this.#timer?.cancel();
    this.#client?.close();
    this.#client = null;
  }

  #setState(s: ReconnectState, detail: { delayMs?: number; err?: Error }): void {
    if (this.#state === 'closed') return;
    this.#state = s;
    this.#o.onState?.(s, { attempt: this.#failures, ...detail });
  }

  async #dial(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#setState('connecting', {});
    const { url, onMessage: _m, onState: _s, random: _r, minBackoffMs: _a, maxBackoffMs: _b, dial, ...clientOpts } = this.#o;
    let c: DerpClient;
    try {
      c = await (dial ?? DerpClient.connect)(url, { ...clientOpts, clock: this.#clock });
    } catch (e) {
      this.#retry(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if ((this.#state as ReconnectState) === 'closed') {
      c.close();
      return;
    }
    this.#client = c;
    this.#failures = 0;
    this.#hintMs = null;
    this.connects++;
    this.#setState('connected', {});
    for (const w of this.#waiters.splice(0)) w(c);
    void this.#pump(c);
  }

  async #pump(c: DerpClient): Promise<void> {
    for await (const m of c.recv()) {
      if (m.type === 'restarting') this.#hintMs = Math.min(Math.max(0, m.reconnectInMs), RESTART_HINT_MAX_MS);
      this.#o.onMessage?.(m);
    }
    const err = await c.closed;
    if (this.#client === c) this.#client = null;
    if (this.#state !== 'closed') this.#retry(err ?? new Error('connection closed'));
  }

  #retry(err: Error): void {
    if (this.#state === 'closed') return;
    const delayMs = this.#hintMs ?? backoffDelay(this.#failures, this.#o.random ?? Math.random, this.#o.minBackoffMs, this.#o.maxBackoffMs);
    this.#hintMs = null;
    this.#failures++;
    this.#setState('backoff', { delayMs, err });
    this.#timer = this.#clock.setTimeout(() => void this.#dial(), delayMs);
  }
}
