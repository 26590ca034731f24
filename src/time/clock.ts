/**
 * The clock seam (DESIGN.md "Engines"): engines take a Clock instead of calling Date.now/setTimeout, so they run
 * unchanged on real time and on the virtual lab's manual clock. This is the only module that touches real time.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds, monotonic within one clock. */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): Timer;
  /** Runs `fn` every `ms` milliseconds until cancelled. */
  setInterval(fn: () => void, ms: number): Timer;
}

/** The real clock: performance.now() for time, Node timers (unref'd so they never keep a process alive). */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
};

/** Resolves after `ms` on the given clock. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}

interface Scheduled {
  at: number;
  seq: number;
  fn: () => void;
  every: number | null;
  cancelled: boolean;
}

/**
 * A manual clock for deterministic tests: time moves only when `advance` is called, and timers fire in
 * deadline order (ties in scheduling order).
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #queue: Scheduled[] = [];

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    return this.#schedule(fn, ms, null);
  }

  setInterval(fn: () => void, ms: number): Timer {
    return this.#schedule(fn, ms, Math.max(1, ms));
  }

  /** Number of timers still pending. */
  get pending(): number {
    return this.#queue.filter((s) => !s.cancelled).length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      this.#queue = this.#queue.filter((s) => !s.cancelled);
      this.#queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.#queue[0];
      if (next === undefined || next.at > end) break;
      this.#now = next.at;
      if (next.every === null) {
        next.cancelled = true;
      } else {
        next.at += next.every;
        next.seq = this.#seq++;
      }
      next.fn();
    }
    this.#now = end;
  }

  #schedule(fn: () => void, ms: number, every: number | null): Timer {
    const s: Scheduled = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn, every, cancelled: false };
    this.#queue.push(s);
    return { cancel: () => { s.cancelled = true; } };
  }
}
