/**
 * derper's connection-level limits (spec/derp.md §12 and issue #6 item 4):
 * - the accept limiter: a token bucket (`--accept-connection-limit` per second, `--accept-connection-burst`) plus a
 *   cap on concurrent connections per source IP (`--max-conns-per-ip`, ours). Over either, the TCP connection is
 *   accepted and closed at once, like Go's rate-limited listener; counters `accepted_connections` and
 *   `rejected_connections` as Go's `tls_listener` expvar set (we apply it to the main listener, TLS or not);
 * - `--rate-config`: the JSON file of the per-client receive limit, re-read on SIGHUP by the CLI and handed to
 *   DerpServer.setReceiveRateLimit (the engine stops reading an over-budget client and announces the bucket in
 *   ServerInfo).
 * The limiter is pure (time from an injected Clock); guardListener and readRateConfigFile are the thin adapters.
 */
import { readFile } from 'node:fs/promises';
import type { Server, Socket } from 'node:net';
import { WiremeshError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Clock } from '../time/clock.ts';
import { unmapAddress } from './access.ts';
import { MAX_QUEUE_DEPTH, QUEUE_DEPTH_ENV, RATE_CONFIG_MAX_BYTES } from './limit-constants.ts';

export interface AcceptLimits {
  /** New connections per second; Infinity = no rate limit (Go's default +Inf). */
  perSecond: number;
  /** Bucket size; Go's default is MaxInt (effectively no limit). */
  burst: number;
  /** Concurrent connections per source IP; 0 = no cap (Go has none). */
  maxPerIp: number;
}

export interface AcceptCounters {
  accepted_connections: number;
  rejected_connections: number;
  /** Of the rejected, those refused by the per-IP cap (ours). */
  rejected_connections_per_ip: number;
}

/** Decides, per accepted TCP connection, whether to keep it; `release` must be called when a kept one closes. */
export class AcceptLimiter {
  readonly #clock: Clock;
  readonly #limits: AcceptLimits;
  readonly #perIp = new Map<string, number>();
  #tokens: number;
  #last: number;
  readonly counters: AcceptCounters = { accepted_connections: 0, rejected_connections: 0, rejected_connections_per_ip: 0 };

  constructor(clock: Clock, limits: AcceptLimits) {
    if (!(limits.perSecond > 0)) throw new WiremeshError('derper_usage', '--accept-connection-limit must be > 0');
    if (!(limits.burst >= 1)) throw new WiremeshError('derper_usage', '--accept-connection-burst must be >= 1');
    if (!(limits.maxPerIp >= 0)) throw new WiremeshError('derper_usage', '--max-conns-per-ip must be >= 0');
    this.#clock = clock;
    this.#limits = limits;
    this.#tokens = limits.burst;
    this.#last = clock.now();
  }

  /** True if the limits are all off (the listener then needs no guard). */
  get unlimited(): boolean {
    return this.#limits.perSecond === Infinity && this.#limits.maxPerIp === 0;
  }

  /** Connections currently counted for `ip`. */
  connectionsFrom(ip: string): number {
    return this.#perIp.get(unmapAddress(ip)) ?? 0;
  }

  /** One new connection from `ip`: true = keep it (counted until release), false = close it now. */
  admit(ip: string): boolean {
    const key = unmapAddress(ip);
    const cur = this.#perIp.get(key) ?? 0;
    if (this.#limits.maxPerIp > 0 && cur >= this.#limits.maxPerIp) {
      this.counters.rejected_connections++;
      this.counters.rejected_connections_per_ip++;
      return false;
    }
    if (this.#limits.perSecond !== Infinity) {
      const now = this.#clock.now();
      this.#tokens = Math.min(this.#limits.burst, this.#tokens + ((now - this.#last) * this.#limits.perSecond) / 1000);
      this.#last = now;
      if (this.#tokens < 1) {
        this.counters.rejected_connections++;
        return false;
      }
      this.#tokens -= 1;
    }
    this.#perIp.set(key, cur + 1);
    this.counters.accepted_connections++;
    return true;
  }

  release(ip: string): void {
    const key = unmapAddress(ip);
    const cur = this.#perIp.get(key) ?? 0;
    if (cur <= 1) this.#perIp.delete(key);
    else this.#perIp.set(key, cur - 1);
  }
}

/**
 * Applies the limiter to a listening server (net/http/https/tls): runs before the server's own connection
 * handler, destroying refused sockets at once (the HTTP/TLS layer then sees an already-closed socket).
 */
export function guardListener(server: Server, limiter: AcceptLimiter, logger: Logger): void {
  server.prependListener('connection', (socket: Socket) => {
    const ip = socket.remoteAddress ?? '';
    if (!limiter.admit(ip)) {
      logger.debug('connection refused by accept limits', { remote: ip });
      socket.destroy();
      return;
    }
    socket.once('close', () => limiter.release(ip));
  });
}

export interface RateConfig {
  /** 0 = no per-client limit. */
  bytesPerSecond: number;
  burstBytes: number;
}

/**
 * Parses a `--rate-config` file: `{"PerClientRateLimitBytesPerSec": N, "PerClientRateBurstBytes": M}` (Go field
 * names, matched case-insensitively as encoding/json does; unknown keys ignored; missing = 0).
 */
export function parseRateConfig(text: string): RateConfig {
  const bad = (why: string): WiremeshError => new WiremeshError('bad_rate_config', `rate config: ${why}`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw bad(e instanceof Error ? e.message : String(e));
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad('want a JSON object');
  const num = (name: string): number => {
    const e = Object.entries(v).find(([k]) => k.toLowerCase() === name.toLowerCase());
    if (e === undefined || e[1] === null) return 0;
    const n = e[1];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw bad(`${name} must be a non-negative integer`);
    return n;
  };
  return { bytesPerSecond: num('PerClientRateLimitBytesPerSec'), burstBytes: num('PerClientRateBurstBytes') };
}

/** Reads and parses a `--rate-config` file (at most RATE_CONFIG_MAX_BYTES). */
export async function readRateConfigFile(path: string): Promise<RateConfig> {
  const buf = await readFile(path);
  if (buf.length > RATE_CONFIG_MAX_BYTES) throw new WiremeshError('bad_rate_config', `rate config ${path}: larger than ${RATE_CONFIG_MAX_BYTES} bytes`);
  return parseRateConfig(buf.toString('utf8'));
}

/**
 * Parses the accept-limit flags: `--accept-connection-limit` (a float per second; `+Inf`/`inf` = none, Go's
 * default), `--accept-connection-burst` (integer ≥ 1) and `--max-conns-per-ip` (integer ≥ 0; 0 = no cap).
 */
export function parseAcceptLimitFlags(limit: string, burst: string, perIp: string): AcceptLimits {
  const bad = (flag: string, v: string, want: string): WiremeshError => new WiremeshError('derper_usage', `--${flag}: want ${want}, got ${JSON.stringify(v)}`);
  const l = limit.trim().toLowerCase();
  const perSecond = l === '+inf' || l === 'inf' ? Infinity : /^\+?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/.test(l) ? Number(l) : NaN;
  if (!(perSecond > 0)) throw bad('accept-connection-limit', limit, 'a number > 0 or +Inf');
  if (!/^\d+$/.test(burst) || Number(burst) < 1 || !Number.isSafeInteger(Number(burst))) throw bad('accept-connection-burst', burst, 'an integer >= 1');
  if (!/^\d+$/.test(perIp) || !Number.isSafeInteger(Number(perIp))) throw bad('max-conns-per-ip', perIp, 'an integer >= 0');
  return { perSecond, burst: Number(burst), maxPerIp: Number(perIp) };
}

/**
 * Go's TS_DEBUG_DERP_PER_CLIENT_SEND_QUEUE_DEPTH: the depth of each per-connection send queue (default 32, §9.3).
 * Out-of-range or non-integer values are ignored with a warning rather than failing start-up (Go ignores them too).
 */
export function queueDepthFromEnv(env: NodeJS.ProcessEnv, logger: Logger): { queueDepth?: number } {
  const v = env[QUEUE_DEPTH_ENV];
  if (v === undefined || v === '') return {};
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > MAX_QUEUE_DEPTH) {
    logger.warn(`${QUEUE_DEPTH_ENV} ignored`, { value: v, want: `1..${MAX_QUEUE_DEPTH}` });
    return {};
  }
  return { queueDepth: n };
}
