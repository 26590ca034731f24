/**
 * Constants of the DERP prober (spec/derp.md §18), each with its reason. Values follow Tailscale's
 * `cmd/derpprobe` / `prober` package so that our verdicts match theirs.
 */

/** A probe's timeout is this fraction of its interval, so a run ends before the next is due (§18). */
export const TIMEOUT_FRACTION = 0.8;

/** Recent results kept per probe for the status page and /debug/probe-run statistics (as Go's prober). */
export const HISTORY_SIZE = 10;

/** The `tls` probe fails when a non-self-signed certificate expires within this window (§18: 7 days). */
export const EXPIRES_SOON_MS = 7 * 24 * 60 * 60 * 1000;

/** Per-attempt wait for a STUN answer (§18: 2 s). */
export const STUN_ATTEMPT_TIMEOUT_MS = 2000;

/** Pause before retrying a STUN query whose attempt timed out (§18: 100 ms). */
export const STUN_RETRY_DELAY_MS = 100;

/** Size of the random payload of a mesh probe (§18: 8 bytes). */
export const MESH_PACKET_SIZE = 8;

/** Pause between connecting both clients and sending, when from ≠ to, so the mesh learns the peer (§18). */
export const MESH_SETTLE_MS = 100;

/** Largest bandwidth-probe packet: the DERP MAX_PACKET_SIZE, 64 KiB (§4, §18). */
export const BW_MAX_PACKET_SIZE = 64 * 1024;

/** Bandwidth-probe packets in flight at most (§18: 30, below the server's per-client queue depth of 32). */
export const BW_MAX_IN_FLIGHT = 30;

/** Queuing-delay probe packet size: about a disco CallMeMaybe (§18: 260 bytes). */
export const QD_PACKET_SIZE = 260;

/** A qd probe measures in windows of this length and reports one result per window; also its retry pause. */
export const QD_WINDOW_MS = 10_000;

/** Name of the probe that (re)loads the DERP map and reconciles the per-node probes (as Go's). */
export const MAP_PROBE_NAME = 'derpmap-probe';

/** Default HTTP listen address of the server mode (derpprobe --listen). */
export const DEFAULT_LISTEN = ':8030';

/** Default DERP map URL (derpprobe --derp-map). */
export const DEFAULT_DERP_MAP_URL = 'https://login.tailscale.com/derpmap/default';

/** Keep using the last good map this long when a refresh fails (Go's prober: 10 minutes). */
export const MAP_CACHE_GRACE_MS = 10 * 60 * 1000;
