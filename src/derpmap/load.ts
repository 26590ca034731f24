/**
 * Loads a DERP map (spec/derp.md §17; the `--derp-map` flag of netcheck, spec/nat-traversal.md §7.7, and of the
 * prober, spec/derp.md §18) from a `file:///abs/path.json` or http(s) URL. Adapter layer: the only code reading a
 * DERP map from disk or the network. Bounded by MAX_DERP_MAP_BYTES; a fetch without the caller's AbortSignal
 * gives up after DERP_MAP_FETCH_TIMEOUT_MS.
 */
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { WiremeshError } from '../errors.ts';
import { DERP_MAP_FETCH_TIMEOUT_MS, DerpMapErrorCode, MAX_DERP_MAP_BYTES } from './constants.ts';
import { parseDerpMap, type DerpMap } from './derpmap.ts';

/** Reads and parses the map at `url` (file:// or http(s)://). */
export async function loadDerpMap(url: string, signal: AbortSignal = AbortSignal.timeout(DERP_MAP_FETCH_TIMEOUT_MS)): Promise<DerpMap> {
  return parseDerpMap(await loadText(url, signal));
}

/** `source` as a URL for loadDerpMap: URLs unchanged, a plain file path (for CLIs that accept one) as file://. */
export function derpMapSourceUrl(source: string): string {
  return /^[a-z][a-z0-9+.-]*:/i.test(source) && !isAbsolute(source) ? source : pathToFileURL(source).href;
}

const badUrl = (url: string): WiremeshError =>
  new WiremeshError(DerpMapErrorCode.Url, `--derp-map ${JSON.stringify(url)}: want an https:// or file:// URL`);

const fetchFailed = (url: string, why: string, cause?: unknown): WiremeshError =>
  new WiremeshError(DerpMapErrorCode.Fetch, `fetching ${url}: ${why}`, cause === undefined ? undefined : { cause });

const tooLarge = (url: string): WiremeshError =>
  new WiremeshError(DerpMapErrorCode.TooLarge, `fetching ${url}: DERP map larger than ${MAX_DERP_MAP_BYTES} bytes`);

async function loadText(url: string, signal: AbortSignal): Promise<string> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw badUrl(url);
  }
  if (u.protocol === 'file:') return readFileText(url, u, signal);
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw badUrl(url);
  let res: Response;
  try {
    res = await fetch(u, { signal });
  } catch (e) {
    throw fetchFailed(url, (e as Error).message, e);
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    throw fetchFailed(url, `${res.status} ${res.statusText}`);
  }
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > MAX_DERP_MAP_BYTES) {
    await res.body?.cancel();
    throw tooLarge(url);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (res.body !== null) {
    for await (const chunk of res.body) {
      total += chunk.byteLength;
      if (total > MAX_DERP_MAP_BYTES) throw tooLarge(url);
      chunks.push(chunk);
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readFileText(url: string, u: URL, signal: AbortSignal): Promise<string> {
  let text: string;
  try {
    const path = fileURLToPath(u);
    if ((await stat(path)).size > MAX_DERP_MAP_BYTES) throw tooLarge(url);
    text = await readFile(path, { encoding: 'utf8', signal });
  } catch (e) {
    if (e instanceof WiremeshError) throw e;
    throw fetchFailed(url, (e as Error).message, e);
  }
  if (text.length > MAX_DERP_MAP_BYTES) throw tooLarge(url);
  return text;
}
