/**
 * `--verify-client-url` admission (spec/derp.md §13): POST `{"NodePublic":"nodekey:<hex>","Source":"<ip>"}` with
 * a 5 s timeout; admit only on status 200 with a body whose first 4 KiB decode to `{"Allow":true}`. When the
 * URL is unreachable (network error or timeout) the client is admitted if fail-open is set (the default).
 * Mesh peers never reach this (the engine skips admission for them).
 */
import type { Logger } from '../log.ts';
import { nodePublicText, shortKey, type NodePublic } from '../types/key.ts';
import { unmapAddress } from './access.ts';
import { VERIFY_CLIENT_MAX_BODY, VERIFY_CLIENT_TIMEOUT_MS } from './constants.ts';

export type Verifier = (r: { key: NodePublic; remoteAddress: string }) => Promise<boolean>;

/** Reads at most `max` bytes of a response body. */
async function readCapped(res: Response, max: number): Promise<string> {
  if (res.body === null) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (total < max) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      total += value.length;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).subarray(0, max).toString('utf8');
}

/** Parses the admission answer: true only for a JSON object whose `Allow` (any case) is exactly true. */
export function parseAdmitResponse(body: string): boolean {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return false;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const entry = Object.entries(v).find(([k]) => k.toLowerCase() === 'allow');
  return entry?.[1] === true;
}

export function urlVerifier(opts: { url: string; failOpen: boolean; logger: Logger; fetch?: typeof fetch }): Verifier {
  const doFetch = opts.fetch ?? fetch;
  return async ({ key, remoteAddress }) => {
    const body = JSON.stringify({ NodePublic: nodePublicText(key), Source: unmapAddress(remoteAddress) });
    let res: Response;
    try {
      res = await doFetch(opts.url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body,
        signal: AbortSignal.timeout(VERIFY_CLIENT_TIMEOUT_MS),
      });
    } catch (e) {
      opts.logger.warn('admission controller unreachable', { key: shortKey(key), failOpen: opts.failOpen, err: e instanceof Error ? e.message : String(e) });
      return opts.failOpen;
    }
    try {
      if (res.status !== 200) {
        opts.logger.info('admission controller refused', { key: shortKey(key), status: res.status });
        await res.body?.cancel().catch(() => {});
        return false;
      }
      return parseAdmitResponse(await readCapped(res, VERIFY_CLIENT_MAX_BODY));
    } catch (e) {
      opts.logger.warn('admission controller: bad response', { key: shortKey(key), err: e instanceof Error ? e.message : String(e) });
      return false;
    }
  };
}
