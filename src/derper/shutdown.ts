/**
 * Graceful shutdown of `wiremesh derper` (issue #6 item 6): on SIGTERM/SIGINT the CLI stops accepting, closes
 * every client connection cleanly (the engine ends each socket with a FIN after flushing) and exits 0, but never
 * waits longer than a bound (ops-constants.ts SHUTDOWN_TIMEOUT_MS), so systemd/Docker never escalate to SIGKILL.
 */

/** Resolves true when `closable.close()` finished within `ms`, false on timeout (the caller exits anyway). */
export async function closeWithin(closable: { close(): Promise<void> }, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  try {
    return await Promise.race([closable.close().then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
