/**
 * derper constants (spec/derp.md §3.3, §13, §16): HTTP bounds, timeouts, defaults, each with its reason. The
 * bounds are listed in docs/LIMITS.md, section "derper HTTP".
 */

/** Go's derper http.Server ReadTimeout/WriteTimeout: bounds the TLS and header phases (upgraded DERP
 * connections have their own deadlines in the engine). Node: requestTimeout + headersTimeout. */
export const HTTP_READ_TIMEOUT_MS = 30_000;
/** Idle keep-alive HTTP connections (non-DERP pages) are closed after this; Go's IdleTimeout defaults to
 * ReadTimeout when unset. */
export const HTTP_IDLE_TIMEOUT_MS = 30_000;
/** Largest request header block accepted. Node's default (16 KiB) — Go allows 1 MiB, but every real client
 * (tailscaled, derpprobe, netcheck, browsers) sends well under 1 KiB; a bigger limit only costs memory. */
export const HTTP_MAX_HEADER_SIZE = 16 * 1024;
/** Most header lines per request (Node's default is 2000). */
export const HTTP_MAX_HEADERS_COUNT = 100;
/** A TLS handshake must finish within this (Node tls.Server handshakeTimeout); part of Go's 30 s ReadTimeout. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 30_000;
/**
 * The derper's cipher order, the one Go's crypto/tls picks on a machine with AES instructions (so a client gets
 * what Go's derper would give it): AES-128-GCM first, which is 10 AES rounds per block against AES-256's 14.
 * TLS 1.3 suites, then the TLS 1.2 list (ECDHE only). native/tls_conn.c has the same two lists (TN_CIPHERSUITES,
 * TN_CIPHERS_TLS12); test/unit/derper/derper.test.ts checks both engines pick AES-128-GCM for a client that offers AES-256 first.
 */
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-SHA', 'ECDHE-RSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA', 'ECDHE-RSA-AES256-SHA',
].join(':');

/**
 * Native TLS (docs/tls-native.md): every this often, connections without I/O since the previous pass give their
 * OpenSSL record buffers back (SSL_free_buffers), so an idle connection holds no ~34 KiB of read/write buffers.
 */
export const TLS_BUFFER_TRIM_INTERVAL_MS = 1_000;

/** Meta cert validity: now − 30 days .. now + 30 days (§3.3). */
export const META_CERT_SKEW_MS = 30 * 24 * 3600 * 1000;
/** Self-signed IP cert validity in manual mode: one year (§16.1). */
export const IP_CERT_VALIDITY_MS = 365 * 24 * 3600 * 1000;

/** `/generate_204` echoes a challenge only if ≤ 64 chars of `[A-Za-z0-9._:-]` (§16.3). */
export const CHALLENGE_MAX_LEN = 64;
export const CHALLENGE_HEADER = 'x-tailscale-challenge';
export const RESPONSE_HEADER = 'X-Tailscale-Response';

/** Admission POST timeout and response bound (§13). */
export const VERIFY_CLIENT_TIMEOUT_MS = 5_000;
export const VERIFY_CLIENT_MAX_BODY = 4096;

/** `/bootstrap-dns` answers are refreshed this often (§16.3). */
export const BOOTSTRAP_DNS_REFRESH_MS = 10 * 60 * 1000;
/** Most names `--bootstrap-dns-names` may list: each costs DNS lookups every refresh. */
export const BOOTSTRAP_DNS_MAX_NAMES = 100;

/** Ports (§16.1, §16.2). */
export const DEFAULT_ADDR = ':443';
export const DEV_PORT = 3340;
export const DEV_HOST = '127.0.0.1';
/** The STUN port (3478, RFC 8489 §18.6); one definition shared with the DERP map (§17). */
export { DEFAULT_STUN_PORT } from '../derpmap/constants.ts';
export const DEFAULT_HTTP_PORT = 80;
/** Per-frame write deadline for ordinary DERP clients (`--tcp-write-timeout`, §4). */
export const DEFAULT_TCP_WRITE_TIMEOUT_MS = 2_000;
/** TCP keepalive period on accepted sockets (`--tcp-keepalive-time`). */
export const DEFAULT_TCP_KEEPALIVE_MS = 10 * 60 * 1000;

/** Root's default key file (`-c`) when none is given (§16.1). */
export const ROOT_DEFAULT_KEY_FILE = '/var/lib/derper/derper.key';
/** Mesh PSK files tried when `--mesh-psk-file` is not given (§16.1). */
export const DEFAULT_MESH_PSK_FILES = ['/home/derp/keys/derp-mesh.key'] as const;
/** Env var holding the mesh key in `--dev` mode. */
export const DEV_MESH_KEY_ENV = 'TAILSCALE_DERPER_MESH_KEY';

/** Browser headers on `/`, `/robots.txt`, `/bootstrap-dns` (§16.3). */
export const BROWSER_HEADERS: Readonly<Record<string, string>> = {
  'Strict-Transport-Security': 'max-age=63072000; includeSubDomains',
  'Content-Security-Policy': "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'; block-all-mixed-content; object-src 'none'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
};

export const GENERATE_204_CACHE_CONTROL = 'no-cache, no-store, must-revalidate, no-transform, max-age=0';
