/**
 * Loads a DERP map (spec/derp.md §17, §18 `--derp-map`) from `file:///abs/path.json` (resolved from `/`) or an
 * http(s) URL. Adapter layer: the only prober module reading files or fetching URLs for the map. Bounded by
 * MAX_DERP_MAP_BYTES.
 */
import { readFile, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { WiremeshError } from '../errors.ts';
import { MAX_DERP_MAP_BYTES } from './constants.ts';
import { parseDerpMap, type DerpMap } from '../netcheck/derpmap.ts';

export const DerpMapLoadErrorCode = {
  Url: 'derpmap_url',
  Fetch: 'derpmap_fetch',
  TooLarge: 'derpmap_too_large',
} as const;

/** Reads and parses the map at `url`. */
export async function loadDerpMap(url: string, signal?: AbortSignal): Promise<DerpMap> {
  return parseDerpMap(await loadText(url, signal));
}

async function loadText(url: string, signal?: AbortSignal): Promise<string> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new WiremeshError(DerpMapLoadErrorCode.Url, `--derp-map ${JSON.stringify(url)}: want an https:// or file:// URL`);
  }
  if (u.protocol === 'file:') {
    const path = fileURLToPath(u);
    const st = await stat(path).catch((e: unknown) => {
      throw new WiremeshError(DerpMapLoadErrorCode.Fetch, `fetching ${url}: ${(e as Error).message}`);
    });
    if (st.size > MAX_DERP_MAP_BYTES) throw tooLarge(url);
    return readFile(path, { encoding: 'utf8', ...(signal ? { signal } : {}) });
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw new WiremeshError(DerpMapLoadErrorCode.Url, `--derp-map ${JSON.stringify(url)}: want an https:// or file:// URL`);
  }
  let res: Response;
  try {
    res = await fetch(u, signal ? { signal } : {});
  } catch (e) {
    throw new WiremeshError(DerpMapLoadErrorCode.Fetch, `fetching ${url}: ${(e as Error).message}`, { cause: e });
  }
  if (res.status !== 200) throw new WiremeshError(DerpMapLoadErrorCode.Fetch, `fetching ${url}: ${res.status} ${res.statusText}`);
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > MAX_DERP_MAP_BYTES) throw tooLarge(url);
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

const tooLarge = (url: string): WiremeshError =>
  new WiremeshError(DerpMapLoadErrorCode.TooLarge, `fetching ${url}: DERP map larger than ${MAX_DERP_MAP_BYTES} bytes`);
