/**
 * netcheck constants (spec/nat-traversal.md §7.2–§7.3), each with its reason, and the module's error codes.
 * Where wiremesh is stricter than Tailscale (a 2 s full report instead of 5 s) the reason says so.
 */

/** Tries per region and address family in a full report, and the delay of each (spec §7.2: 0, 100, 200 ms). */
export const FULL_REPORT_TRY_DELAYS_MS = [0, 100, 200] as const;
/** Incremental reports probe only this many of the previous report's fastest regions plus home (spec §7.2). */
export const INCREMENTAL_FASTEST_REGIONS = 3;
/** Retry spacing for a region with no known latency in an incremental report (spec §7.2). */
export const INCREMENTAL_DEFAULT_RETRY_MS = 200;

/**
 * The STUN phase ends at the latest this long after the report starts. Tailscale allows 3 s; wiremesh's target is a
 * whole report in ≤ 2 s (issue #3), so STUN gets 1 s: real round trips to DERP regions are < 400 ms, so three tries
 * at 0/100/200 ms all have time to come back.
 */
export const STUN_PHASE_MS = 1000;
/** Whole-report budget (Tailscale: 5 s). Port mapping, HTTPS fallback and captive portal stop here. */
export const REPORT_TIMEOUT_MS = 2000;
/** Once this many regions answered, the STUN phase waits a little longer and stops (spec §7.2). */
export const ENOUGH_REGIONS = 3;
/** After enough answers, wait this multiple of the slowest latency seen for stragglers (×2 for full reports). */
export const STRAGGLER_WAIT_FACTOR = 2;
/**
 * Lower bound of that straggler wait: on a LAN-speed lab the slowest latency is < 1 ms, and a busy machine can
 * delay the other family's answers by tens of ms (an IPv6 answer missed at 20 ms made the lab flaky).
 */
export const MIN_STRAGGLER_WAIT_MS = 60;

/** Captive-portal detection starts this long after the report begins, unless STUN already succeeded (spec §7.3). */
export const CAPTIVE_PORTAL_DELAY_MS = 200;
/** Captive-portal HTTP requests give up after this long (Tailscale: 3 s; bounded by the report budget here). */
export const CAPTIVE_PORTAL_TIMEOUT_MS = 1500;
/** Most DERP nodes tried for captive-portal detection at once (spec §7.3: up to 5 endpoints in parallel). */
export const CAPTIVE_PORTAL_MAX_ENDPOINTS = 5;
/** Challenge header sent to a DERP node's /generate_204 and the expected answer header (spec §7.3). */
export const CAPTIVE_CHALLENGE_HEADER = 'X-Tailscale-Challenge';
export const CAPTIVE_RESPONSE_HEADER = 'X-Tailscale-Response';

/** HTTPS latency fallback path and the most response bytes read from it (spec §7.2: 8 KiB). */
export const LATENCY_CHECK_PATH = '/derp/latency-check';
export const LATENCY_CHECK_MAX_BYTES = 8192;

/** Budget of the ICMPv4 echo fallback when UDP is blocked (spec §7.2: 1 s). */
export const ICMP_TIMEOUT_MS = 1000;

/** Router hops examined by the double-NAT check (TTL 1..N toward the first DERP node). */
export const DOUBLE_NAT_MAX_HOPS = 3;
/** Per-hop wait for the ICMP time-exceeded answer. */
export const HOP_PROBE_TIMEOUT_MS = 1000;

/** Error codes (WiremeshError.code). */
export const NetcheckErrorCode = {
  NoRegions: 'netcheck_no_regions',
  LatencyCheckFailed: 'netcheck_latency_check_failed',
} as const;
