/**
 * The probe scheduler (spec/derp.md §18; the shape of Tailscale's `prober` package): named probes of a class
 * run every interval on an injected Clock, the first run optionally spread by a deterministic delay in
 * [0, interval), each run bounded by a timeout of 0.8 × interval, at most one run per probe at a time, and the
 * last HISTORY_SIZE results kept. "Once" mode runs each probe a single time; `wait()` resolves when every
 * registered probe (including those a probe registers while running) has finished. Engine layer: no I/O.
 */
import type { Clock, Timer } from '../time/clock.ts';
import { WiremeshError } from '../errors.ts';
import { HISTORY_SIZE, TIMEOUT_FRACTION } from './constants.ts';

export type Labels = Readonly<Record<string, string>>;

/** What a probe function is given: a signal aborted at the run's deadline, and the clock to measure with. */
export interface ProbeContext {
  signal: AbortSignal;
  clock: Clock;
}

/** A metric sample a probe class exports besides the standard ones (rendered by metrics.ts). */
export interface ClassMetric {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  value: number;
  /** `le` buckets for a histogram sample family: rendered as `<name>_bucket`, `_sum`, `_count`. */
  histogram?: { buckets: ReadonlyArray<readonly [number, number]>; sum: number; count: number };
}

export interface ProbeClass {
  /** User-facing class (the `class` metric label): derp_tls, derp_udp, derp_mesh, derp_bw, derp_qd, derp_map. */
  class: string;
  labels?: Labels;
  /**
   * Resolves on success; rejects with the reason on failure. Must honour `ctx.signal`. A probe may report its
   * own latency (the qd probe reports the median queuing delay); by default it is the run's duration.
   */
  probe: (ctx: ProbeContext) => Promise<void | { latencyMs: number }>;
  /** Overrides the default timeout of TIMEOUT_FRACTION × interval. */
  timeoutMs?: number;
  /** Continuous probes run back to back without a timeout; after a failure they pause for the interval. */
  continuous?: boolean;
  metrics?: () => ClassMetric[];
}

export type ProbeStatus = 'unknown' | 'running' | 'succeeded' | 'failed';

export interface ProbeResult {
  start: number;
  end: number;
  ok: boolean;
  latencyMs: number;
  error: string | null;
}

/** A snapshot of one probe, for output, the status page and metrics. Times are clock milliseconds. */
export interface ProbeInfo {
  name: string;
  class: string;
  labels: Labels;
  intervalMs: number;
  continuous: boolean;
  status: ProbeStatus;
  start: number | null;
  end: number | null;
  /** Latency of the last run when it succeeded. */
  latencyMs: number | null;
  error: string | null;
  /** Oldest first, at most HISTORY_SIZE. */
  history: ProbeResult[];
  attempts: { ok: number; fail: number };
  seconds: { ok: number; fail: number };
}

export interface ProberOptions {
  clock: Clock;
  /** Delay each probe's first run by a deterministic fraction of its interval (derpprobe --spread). */
  spread?: boolean;
  /** Run each probe once (derpprobe --once). */
  once?: boolean;
  /** Called with each finished run (logging). */
  onResult?: (name: string, r: ProbeResult) => void;
}

/** Deterministic fraction in [0, 1) from a probe name (FNV-1a), so restarts keep the same spread. */
export function spreadFraction(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h / 2 ** 32;
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export class Probe {
  readonly name: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly pc: ProbeClass;
  readonly #prober: Prober;
  #timer: Timer | null = null;
  #running: Promise<ProbeResult> | null = null;
  #start: number | null = null;
  #last: ProbeResult | null = null;
  #history: ProbeResult[] = [];
  #attempts = { ok: 0, fail: 0 };
  #seconds = { ok: 0, fail: 0 };
  #closed = false;
  /** Once mode: the single run has finished. */
  done = false;

  constructor(prober: Prober, name: string, intervalMs: number, pc: ProbeClass) {
    this.#prober = prober;
    this.name = name;
    this.intervalMs = intervalMs;
    this.pc = pc;
    this.timeoutMs = pc.timeoutMs ?? intervalMs * TIMEOUT_FRACTION;
  }

  get running(): boolean {
    return this.#running !== null;
  }

  /** Runs the probe now, or joins the run in progress; never rejects. */
  runNow(): Promise<ProbeResult> {
    if (this.#running !== null) return this.#running;
    const p = this.#runOnce().finally(() => {
      this.#running = null;
    });
    this.#running = p;
    return p;
  }

  async #runOnce(): Promise<ProbeResult> {
    const clock = this.#prober.clock;
    const start = clock.now();
    this.#start = start;
    const ac = new AbortController();
    let timer: Timer | null = null;
    const timeout = new Promise<never>((_, reject) => {
      if (this.pc.continuous === true) return;
      timer = clock.setTimeout(() => {
        const err = new WiremeshError('probe_timeout', `timeout after ${this.timeoutMs}ms`);
        ac.abort(err);
        reject(err);
      }, this.timeoutMs);
    });
    let error: string | null = null;
    let reported: number | null = null;
    try {
      const out = await Promise.race([this.pc.probe({ signal: ac.signal, clock }), timeout]);
      if (out !== undefined) reported = out.latencyMs;
    } catch (e) {
      error = errorText(e);
    } finally {
      (timer as Timer | null)?.cancel();
      if (!ac.signal.aborted) ac.abort(new WiremeshError('probe_done', 'probe run finished'));
    }
    const end = clock.now();
    const r: ProbeResult = { start, end, ok: error === null, latencyMs: reported ?? end - start, error };
    this.#last = r;
    this.#history.push(r);
    if (this.#history.length > HISTORY_SIZE) this.#history.shift();
    const k = r.ok ? 'ok' : 'fail';
    this.#attempts[k]++;
    this.#seconds[k] += (end - start) / 1000;
    this.#prober.resultRecorded(this, r);
    return r;
  }

  /** Starts the schedule (called by Prober.run). */
  start(): void {
    const clock = this.#prober.clock;
    const delay = this.#prober.spread ? spreadFraction(this.name) * this.intervalMs : 0;
    const begin = (): void => {
      if (this.#closed) return;
      if (this.#prober.once) {
        void this.runNow().then(() => {
          this.done = true;
          this.#prober.checkDone();
        });
      } else if (this.pc.continuous === true) {
        void this.#continuousLoop();
      } else {
        void this.runNow();
        this.#timer = clock.setInterval(() => {
          if (!this.#closed && this.#running === null) void this.runNow();
        }, this.intervalMs);
      }
    };
    if (delay > 0) this.#timer = clock.setTimeout(begin, delay);
    else begin();
  }

  async #continuousLoop(): Promise<void> {
    while (!this.#closed) {
      const r = await this.runNow();
      if (!r.ok && !this.#closed) {
        await new Promise<void>((resolve) => {
          this.#timer = this.#prober.clock.setTimeout(resolve, this.intervalMs);
        });
      }
    }
  }

  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = null;
  }

  info(): ProbeInfo {
    const last = this.#last;
    let status: ProbeStatus = 'unknown';
    if (this.#running !== null) status = 'running';
    else if (last !== null) status = last.ok ? 'succeeded' : 'failed';
    return {
      name: this.name,
      class: this.pc.class,
      labels: { ...this.pc.labels },
      intervalMs: this.intervalMs,
      continuous: this.pc.continuous === true,
      status,
      start: this.#start,
      end: last?.end ?? null,
      latencyMs: last?.ok === true ? last.latencyMs : null,
      error: last?.error ?? null,
      history: [...this.#history],
      attempts: { ...this.#attempts },
      seconds: { ...this.#seconds },
    };
  }
}

export class Prober {
  readonly clock: Clock;
  readonly spread: boolean;
  readonly once: boolean;
  readonly #onResult: ((name: string, r: ProbeResult) => void) | undefined;
  readonly #probes = new Map<string, Probe>();
  #waiters: Array<() => void> = [];

  constructor(opts: ProberOptions) {
    this.clock = opts.clock;
    this.spread = opts.spread ?? false;
    this.once = opts.once ?? false;
    this.#onResult = opts.onResult;
  }

  /** Registers and starts a probe; a name already in use is an error. */
  run(name: string, intervalMs: number, pc: ProbeClass): Probe {
    if (this.#probes.has(name)) throw new WiremeshError('probe_exists', `probe named ${JSON.stringify(name)} already registered`);
    if (!(intervalMs > 0)) throw new WiremeshError('probe_interval', `probe ${name}: interval must be positive`);
    const p = new Probe(this, name, intervalMs, pc);
    this.#probes.set(name, p);
    p.start();
    return p;
  }

  get(name: string): Probe | undefined {
    return this.#probes.get(name);
  }

  has(name: string): boolean {
    return this.#probes.has(name);
  }

  names(): string[] {
    return [...this.#probes.keys()].sort();
  }

  /** Stops and forgets a probe. */
  remove(name: string): void {
    this.#probes.get(name)?.close();
    this.#probes.delete(name);
    this.checkDone();
  }

  /** Snapshots of every probe, sorted by name. */
  list(): ProbeInfo[] {
    return this.names().map((n) => this.#probes.get(n)!.info());
  }

  /** Runs every non-continuous probe now, concurrently (GET /debug/probe-all). */
  async runAll(exclude: readonly string[] = []): Promise<Map<string, ProbeResult>> {
    const entries = [...this.#probes.values()].filter((p) => p.pc.continuous !== true && !exclude.includes(p.name));
    const results = await Promise.all(entries.map(async (p) => [p.name, await p.runNow()] as const));
    return new Map(results);
  }

  /** Once mode: resolves when every registered probe has finished its run. */
  wait(): Promise<void> {
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.checkDone();
    });
  }

  /** @internal */
  resultRecorded(p: Probe, r: ProbeResult): void {
    this.#onResult?.(p.name, r);
  }

  /** @internal */
  checkDone(): void {
    if (this.#waiters.length === 0) return;
    for (const p of this.#probes.values()) if (!p.done && p.pc.continuous !== true) return;
    const w = this.#waiters;
    this.#waiters = [];
    for (const fn of w) fn();
  }

  close(): void {
    for (const p of this.#probes.values()) p.close();
    this.#probes.clear();
  }
}
