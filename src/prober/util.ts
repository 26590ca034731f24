/**
 * Small helpers shared by the probe classes (spec/derp.md §18): abort-aware waiting on an injected Clock, and
 * Go's `time.Duration` text form, which derpprobe prints as the latency of `good:` lines.
 */
import type { Clock } from '../time/clock.ts';
import { WiremeshError } from '../errors.ts';

/** The reason a signal was aborted, as an Error. */
export function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new WiremeshError('probe_aborted', 'probe aborted');
}

/** Settles like `p`, or rejects with the abort reason when `signal` aborts first. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e instanceof Error ? e : new Error(String(e))); },
    );
  });
}

/** Waits `ms` on `clock`; rejects with the abort reason if `signal` aborts first. */
export function delay(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return abortable(new Promise<void>((resolve) => clock.setTimeout(resolve, ms)), signal);
}

function trimFraction(int: bigint, frac: bigint, digits: number): string {
  if (frac === 0n) return int.toString();
  const s = frac.toString().padStart(digits, '0').replace(/0+$/, '');
  return `${int}.${s}`;
}

/**
 * Formats milliseconds like Go's Duration.String: `251.098µs`, `28.009797ms`, `1.5s`, `2m3.000000001s`, `0s`.
 * Precision is whole nanoseconds.
 */
export function formatGoDuration(ms: number): string {
  let ns = BigInt(Math.round(ms * 1e6));
  const neg = ns < 0n;
  if (neg) ns = -ns;
  let out: string;
  if (ns === 0n) out = '0s';
  else if (ns < 1000n) out = `${ns}ns`;
  else if (ns < 1_000_000n) out = `${trimFraction(ns / 1000n, ns % 1000n, 3)}µs`;
  else if (ns < 1_000_000_000n) out = `${trimFraction(ns / 1_000_000n, ns % 1_000_000n, 6)}ms`;
  else {
    const h = ns / 3_600_000_000_000n;
    const m = (ns / 60_000_000_000n) % 60n;
    const sNs = ns % 60_000_000_000n;
    const sec = `${trimFraction(sNs / 1_000_000_000n, sNs % 1_000_000_000n, 9)}s`;
    out = h > 0n ? `${h}h${m}m${sec}` : m > 0n ? `${m}m${sec}` : sec;
  }
  return neg ? `-${out}` : out;
}
