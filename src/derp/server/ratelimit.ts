/**
 * A token bucket on an injected clock (spec/derp.md §9.2: PeerGone NotHere replies, 1/s with burst 3, per
 * sending connection). Pure: time comes from the caller's Clock.
 */
import type { Clock } from '../../time/clock.ts';

export class TokenBucket {
  readonly #clock: Clock;
  readonly #perMs: number;
  readonly #burst: number;
  #tokens: number;
  #last: number;

  constructor(clock: Clock, perSecond: number, burst: number) {
    this.#clock = clock;
    this.#perMs = perSecond / 1000;
    this.#burst = burst;
    this.#tokens = burst;
    this.#last = clock.now();
  }

  /** Takes one token if available. */
  allow(): boolean {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#last) * this.#perMs);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/** A receive-limit configuration (§12); `gen` changes whenever it is replaced. */
export interface ReceiveLimitConfig {
  readonly bytesPerSecond: number;
  readonly burstBytes: number;
  readonly gen: number;
}

/**
 * One connection's `--rate-config` byte budget (§12): a token bucket that a frame may overdraw (the frame is
 * already read); while in debt the connection is not read. A new config generation starts with a full bucket.
 */
export class ReceiveBudget {
  #tokens = 0;
  #at = 0;
  #gen = -1;

  /** Refills for `lim` at time `now`; with no limit the budget is neutral (never in debt). */
  refill(lim: ReceiveLimitConfig | null, now: number): void {
    if (lim === null) {
      this.#tokens = 0;
    } else if (lim.gen !== this.#gen) {
      this.#gen = lim.gen;
      this.#tokens = lim.burstBytes;
    } else {
      this.#tokens = Math.min(lim.burstBytes, this.#tokens + ((now - this.#at) * lim.bytesPerSecond) / 1000);
    }
    this.#at = now;
  }

  charge(bytes: number): void {
    this.#tokens -= bytes;
  }

  get inDebt(): boolean {
    return this.#tokens < 0;
  }

  /** Milliseconds (≥ 1) until the debt is repaid at `bytesPerSecond`. */
  waitMs(bytesPerSecond: number): number {
    return Math.max(1, Math.ceil((-this.#tokens * 1000) / bytesPerSecond));
  }
}
