/**
 * Constants of derper's mesh client, accept limiter and rate config (spec/derp.md §11.4, §12; issue #6 items 1
 * and 4), each with its reason. Listed in docs/LIMITS.md, section "derper mesh and connection limits".
 */

/** First mesh redial delay. Go redials a lost mesh peer every 5 s flat; we start at 1 s ... */
export const MESH_BACKOFF_INITIAL_MS = 1_000;
/** ... double on each failed attempt ... */
export const MESH_BACKOFF_FACTOR = 2;
/** ... up to this cap (a peer down for long is retried twice a minute, not hammered) ... */
export const MESH_BACKOFF_MAX_MS = 30_000;
/** ... each delay multiplied by a random factor in [1 − j, 1 + j] so a region's servers don't redial in lockstep. */
export const MESH_BACKOFF_JITTER = 0.2;
/** A mesh connection that stayed up this long resets the backoff to its initial delay. */
export const MESH_BACKOFF_RESET_AFTER_MS = 10_000;
/**
 * A mesh connection is pinged this often; no Pong within MESH_PING_TIMEOUT_MS closes and redials it. Without it a
 * silently partitioned peer (no FIN/RST) would keep its keys registered and black-hole their packets until TCP
 * gave up (minutes); the server's own KeepAlive (60 s) is too slow to rely on.
 */
export const MESH_PING_INTERVAL_MS = 15_000;
/** The Go client's Ping budget (spec §14). */
export const MESH_PING_TIMEOUT_MS = 5_000;
/** Most `--mesh-with` entries: each is a permanent connection and a full copy of that peer's client list. */
export const MESH_MAX_PEERS = 64;
/**
 * Forwarded packets accepted for a peer connection beyond its transport's high-water mark, until it drains; more
 * are dropped (counted in Mesh.forwardDrops). Go blocks the sender instead; we cannot block, and without a bound
 * a stalled peer would buffer without limit.
 */
export const MESH_FORWARD_BACKLOG_BYTES = 1024 * 1024;
/** Env var that makes the mesh dial plain HTTP instead of TLS (Go's name; also honoured by Go's derper). */
export const MESH_PLAIN_HTTP_ENV = 'TS_DEBUG_USE_DERP_HTTP';

/** Env var overriding the per-connection send queue depth (Go's name; default 32 in the engine). */
export const QUEUE_DEPTH_ENV = 'TS_DEBUG_DERP_PER_CLIENT_SEND_QUEUE_DEPTH';
/** Largest accepted queue depth: 2 queues × this × 64 KiB is the worst-case queued memory per connection. */
export const MAX_QUEUE_DEPTH = 4096;
/** Largest `--rate-config` file read: it holds two numbers. */
export const RATE_CONFIG_MAX_BYTES = 64 * 1024;

/** `--accept-connection-limit` default: no rate limit (Go: +Inf). */
export const DEFAULT_ACCEPT_LIMIT_PER_SEC = Infinity;
/** `--accept-connection-burst` default: Go's MaxInt, i.e. no limit. */
export const DEFAULT_ACCEPT_BURST = Number.MAX_SAFE_INTEGER;
/**
 * `--max-conns-per-ip` default: 0 = no cap, as Go (which has no such limit). A whole office or carrier-grade NAT
 * can sit behind one address, so any default cap would refuse legitimate clients; operators set one to taste.
 */
export const DEFAULT_MAX_CONNS_PER_IP = 0;
