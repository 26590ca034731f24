/**
 * Reconciler for mode `on` (spec/netfilter.md §8 — beyond Tailscale, which never re-checks; issues #11926,
 * #2908): every interval it compares the host with the desired state and, when our jumps are no longer first,
 * deleted, or our chains flushed, re-runs the idempotent `on` steps and logs what moved. It fights back at most
 * `maxRestores` times per `windowMs`; past that another manager is rewriting the same chains, so it warns once
 * and stops restoring for `pauseMs` instead of looping forever against it. Engine: time comes from the Clock.
 */
import type { Clock, Timer } from '../time/clock.ts';
import type { Logger } from '../log.ts';
import {
  RECONCILE_FIGHT_PAUSE_MS,
  RECONCILE_FIGHT_WINDOW_MS,
  RECONCILE_INTERVAL_MS,
  RECONCILE_MAX_RESTORES,
} from './constants.ts';

export interface ReconcilerBounds {
  intervalMs: number;
  maxRestores: number;
  windowMs: number;
  pauseMs: number;
}

export interface ReconcilerOptions extends Partial<ReconcilerBounds> {
  clock: Clock;
  log: Logger;
  /** Differences from the desired state (empty: in place). */
  check: () => Promise<string[]>;
  /** Puts the rules back; returns the commands run. */
  restore: () => Promise<string[]>;
}

export type TickResult = 'ok' | 'restored' | 'paused' | 'gave-up' | 'error' | 'busy';

export interface ReconcilerStats {
  checks: number;
  restores: number;
  /** Times the fight bound was hit. */
  giveUps: number;
  lastDrift: string[];
}

export class Reconciler {
  readonly bounds: ReconcilerBounds;
  readonly stats: ReconcilerStats = { checks: 0, restores: 0, giveUps: 0, lastDrift: [] };
  readonly #o: ReconcilerOptions;
  #timer: Timer | null = null;
  #busy = false;
  #recent: number[] = [];
  #pausedUntil = -Infinity;

  constructor(o: ReconcilerOptions) {
    this.#o = o;
    this.bounds = {
      intervalMs: o.intervalMs ?? RECONCILE_INTERVAL_MS,
      maxRestores: o.maxRestores ?? RECONCILE_MAX_RESTORES,
      windowMs: o.windowMs ?? RECONCILE_FIGHT_WINDOW_MS,
      pauseMs: o.pauseMs ?? RECONCILE_FIGHT_PAUSE_MS,
    };
  }

  start(): void {
    if (this.#timer !== null) return;
    this.#timer = this.#o.clock.setInterval(() => void this.tick(), this.bounds.intervalMs);
  }

  stop(): void {
    this.#timer?.cancel();
    this.#timer = null;
  }

  get running(): boolean {
    return this.#timer !== null;
  }

  /** One poll: check, and restore within the fight bound. Never throws. */
  async tick(): Promise<TickResult> {
    if (this.#busy) return 'busy';
    this.#busy = true;
    try {
      return await this.#tick();
    } catch (e) {
      this.#o.log.error('netfilter: reconcile failed', { error: (e as Error).message });
      return 'error';
    } finally {
      this.#busy = false;
    }
  }

  async #tick(): Promise<TickResult> {
    const { clock, log } = this.#o;
    this.stats.checks++;
    const drift = await this.#o.check();
    this.stats.lastDrift = drift;
    if (drift.length === 0) return 'ok';
    const now = clock.now();
    if (now < this.#pausedUntil) return 'paused';
    this.#recent = this.#recent.filter((t) => now - t < this.bounds.windowMs);
    if (this.#recent.length >= this.bounds.maxRestores) {
      this.stats.giveUps++;
      this.#pausedUntil = now + this.bounds.pauseMs;
      this.#recent = [];
      log.warn('netfilter: another program keeps changing our rules; not restoring them for a while', {
        drift,
        restores: this.bounds.maxRestores,
        windowMs: this.bounds.windowMs,
        pauseMs: this.bounds.pauseMs,
      });
      return 'gave-up';
    }
    this.#recent.push(now);
    const cmds = await this.#o.restore();
    this.stats.restores++;
    log.warn('netfilter: rules changed by another program; restored', { drift, changes: cmds.length });
    return 'restored';
  }
}
