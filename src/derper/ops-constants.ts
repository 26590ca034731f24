/**
 * Constants of derper's operational features (issue #6 items 3, 5, 6): ACME issuance and renewal, manual-cert
 * reload, the /debug/pprof endpoints and graceful shutdown. Each value says why it is what it is; the limits are
 * listed in docs/LIMITS.md ("derper operations").
 */

/** Let's Encrypt's production directory: the default of `--acme-directory-url` (as Go's autocert). */
export const LETSENCRYPT_DIRECTORY_URL = 'https://acme-v02.api.letsencrypt.org/directory';

/** Renew when this fraction of the lifetime has passed: 60 of 90 days for Let's Encrypt (autocert's 30 days before). */
export const ACME_RENEW_FRACTION = 2 / 3;

/** First retry after a failed issuance/renewal; doubled per failure up to ACME_RETRY_MAX_MS. */
export const ACME_RETRY_MIN_MS = 60_000;

/** Cap of the retry backoff: one attempt an hour keeps us well inside Let's Encrypt's failed-validation limit (5/h). */
export const ACME_RETRY_MAX_MS = 3_600_000;

/** Node timers overflow above 2^31−1 ms (~24.8 days); longer waits are chained in steps of at most this. */
export const MAX_TIMER_MS = 2_147_483_647;

/** Longest time one ACME issuance may take (order, HTTP-01, finalize) before it is abandoned and retried. */
export const ACME_ISSUE_TIMEOUT_MS = 5 * 60_000;

/** Most HTTP-01 tokens kept at once: one pending authorization per name; bounds memory against misuse. */
export const ACME_MAX_PENDING_TOKENS = 16;

/** Placeholder certificate lifetime while the first ACME certificate is being issued. */
export const ACME_PLACEHOLDER_VALIDITY_MS = 24 * 3_600_000;

/** Quiet time after a change in the cert directory before reloading (an editor or certbot writes two files). */
export const CERT_RELOAD_DEBOUNCE_MS = 250;

/** Poll period of the cert files, the fallback when fs.watch misses events (NFS, some bind mounts). */
export const CERT_RELOAD_POLL_MS = 30_000;

/** Default and maximum `seconds` of /debug/pprof/profile (Go: default 30, no cap; a cap bounds a stuck request). */
export const PPROF_DEFAULT_SECONDS = 30;
export const PPROF_MAX_SECONDS = 120;

/** Bound on graceful shutdown: after SIGTERM, clients get this long to be closed cleanly before exit. */
export const SHUTDOWN_TIMEOUT_MS = 10_000;
