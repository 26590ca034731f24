/**
 * DERP map constants (spec/derp.md §17, `tailcfg.DERPMap`), each with its reason, and the module's error codes.
 * Shared by netcheck (spec/nat-traversal.md §7.2) and the DERP prober (spec/derp.md §18).
 */

/** Port of a node whose STUNPort is 0 (§17). */
export const DEFAULT_STUN_PORT = 3478;

/** Port of a node whose DERPPort is 0 (§17). */
export const DEFAULT_DERP_PORT = 443;

/** Highest port number a node may name. */
export const MAX_PORT = 65535;

/**
 * Largest DERP map document accepted from text, a file or a URL. Tailscale's default map is ~15 KiB; 4 MiB is
 * generous yet bounded (and fits MAX_REGIONS × MAX_NODES_PER_REGION fully spelled-out nodes).
 */
export const MAX_DERP_MAP_BYTES = 4 * 1024 * 1024;

/** Bounds on a map's size, so a hostile map cannot make netcheck or the prober run unbounded probes
 * (Tailscale's map has ~30 regions of ≤ 6 nodes). */
export const MAX_REGIONS = 256;
export const MAX_NODES_PER_REGION = 16;

/** Time allowed to fetch a map when the caller gives no AbortSignal of its own. */
export const DERP_MAP_FETCH_TIMEOUT_MS = 10_000;

/** Error codes (WiremeshError.code). */
export const DerpMapErrorCode = {
  /** The document is not a well-formed, in-bounds DERP map. */
  Invalid: 'derpmap_invalid',
  /** Two nodes share a Name (§17: unique across the map). */
  DuplicateNode: 'derpmap_duplicate_node',
  /** The source is not an http(s):// or file:// URL. */
  Url: 'derpmap_url',
  /** Reading the file or fetching the URL failed. */
  Fetch: 'derpmap_fetch',
  /** The file or response is larger than MAX_DERP_MAP_BYTES. */
  TooLarge: 'derpmap_too_large',
} as const;
