/**
 * DERP map types and validation (spec/derp.md §17, Tailscale's `tailcfg.DERPMap` JSON): the regions and nodes that
 * netcheck (spec/nat-traversal.md §7.2) measures and the DERP prober (spec/derp.md §18) probes. Pure codec:
 * `parseDerpMap` checks the shape and bounds of already-read JSON text, including that node names are unique
 * across the map; reading a file or URL lives in ./load.ts (adapter).
 */
import { WiremeshError } from '../errors.ts';
import {
  DEFAULT_DERP_PORT, DEFAULT_STUN_PORT, DerpMapErrorCode, MAX_DERP_MAP_BYTES, MAX_NODES_PER_REGION, MAX_PORT, MAX_REGIONS,
} from './constants.ts';

export interface DerpNode {
  /** Unique across the map (§17). */
  Name: string;
  RegionID: number;
  HostName: string;
  CertName?: string;
  /** IPv4 literal; "none" disables IPv4 for this node; absent = resolve HostName. */
  IPv4?: string;
  IPv6?: string;
  /** 0 = 3478; negative = no STUN on this node. */
  STUNPort?: number;
  STUNOnly?: boolean;
  /** 0 = 443. */
  DERPPort?: number;
  /** Skip TLS verification (test/lab servers with self-signed certificates). */
  InsecureForTests?: boolean;
  /** Send STUN here instead of IPv4 (tests). */
  STUNTestIP?: string;
  /** The node answers plain HTTP on port 80 (captive-portal checks use it). */
  CanPort80?: boolean;
}

export interface DerpRegion {
  /** > 0 and ≤ 2^53−1; 900–999 are reserved for users. */
  RegionID: number;
  RegionCode: string;
  RegionName: string;
  Latitude?: number;
  Longitude?: number;
  /** Deprecated in Tailscale; kept so a map round-trips. */
  Avoid?: boolean;
  NoMeasureNoHome?: boolean;
  /** In priority order. */
  Nodes: DerpNode[];
}

export interface DerpHomeParams {
  /** Region ID (decimal string) → score multiplier applied to that region's latency when choosing home. */
  RegionScore?: Record<string, number>;
}

export interface DerpMap {
  /** Keyed by the region ID as a decimal string. */
  Regions: Record<string, DerpRegion>;
  /** JSON field name as in tailcfg (lowercase o). */
  omitDefaultRegions?: boolean;
  HomeParams?: DerpHomeParams;
}

const bad = (msg: string): WiremeshError => new WiremeshError(DerpMapErrorCode.Invalid, `DERP map: ${msg}`);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Record<string, unknown>, k: string, required: boolean): string | undefined {
  const v = o[k];
  if (v === undefined || v === null) {
    if (required) throw bad(`missing ${k}`);
    return undefined;
  }
  if (typeof v !== 'string') throw bad(`${k} is not a string`);
  return v;
}

function num(o: Record<string, unknown>, k: string, required: boolean, integer = true): number | undefined {
  const v = o[k];
  if (v === undefined || v === null) {
    if (required) throw bad(`missing ${k}`);
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(`${k} is not a number`);
  if (integer && !Number.isSafeInteger(v)) throw bad(`${k} is not an integer`);
  return v;
}

function bool(o: Record<string, unknown>, k: string): boolean | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw bad(`${k} is not a boolean`);
  return v;
}

function parseNode(v: unknown, regionID: number): DerpNode {
  if (!isObject(v)) throw bad('node is not an object');
  const node: DerpNode = { Name: str(v, 'Name', true)!, RegionID: num(v, 'RegionID', false) ?? regionID, HostName: str(v, 'HostName', true)! };
  for (const k of ['CertName', 'IPv4', 'IPv6', 'STUNTestIP'] as const) {
    const s = str(v, k, false);
    if (s !== undefined && s !== '') node[k] = s;
  }
  for (const k of ['STUNPort', 'DERPPort'] as const) {
    const n = num(v, k, false);
    if (n !== undefined) {
      if (n > MAX_PORT) throw bad(`${k} ${n} out of range`);
      node[k] = n;
    }
  }
  for (const k of ['STUNOnly', 'InsecureForTests', 'CanPort80'] as const) {
    const b = bool(v, k);
    if (b !== undefined) node[k] = b;
  }
  return node;
}

function parseRegion(key: string, r: unknown): DerpRegion {
  if (!isObject(r)) throw bad(`region ${key} is not an object`);
  const id = num(r, 'RegionID', true)!;
  if (String(id) !== key || id <= 0) throw bad(`region key ${key} does not match RegionID ${id}`);
  const nodes = r.Nodes;
  if (!Array.isArray(nodes)) throw bad(`region ${id} has no Nodes array`);
  if (nodes.length > MAX_NODES_PER_REGION) throw bad(`region ${id} has more than ${MAX_NODES_PER_REGION} nodes`);
  const region: DerpRegion = {
    RegionID: id,
    RegionCode: str(r, 'RegionCode', false) ?? '',
    RegionName: str(r, 'RegionName', false) ?? '',
    Nodes: nodes.map((n) => parseNode(n, id)),
  };
  for (const k of ['Latitude', 'Longitude'] as const) {
    const x = num(r, k, false, false);
    if (x !== undefined) region[k] = x;
  }
  for (const k of ['Avoid', 'NoMeasureNoHome'] as const) {
    const b = bool(r, k);
    if (b !== undefined) region[k] = b;
  }
  return region;
}

function parseHomeParams(v: unknown): DerpHomeParams {
  if (!isObject(v)) throw bad('HomeParams is not an object');
  const out: DerpHomeParams = {};
  if (v.RegionScore !== undefined && v.RegionScore !== null) {
    if (!isObject(v.RegionScore)) throw bad('HomeParams.RegionScore is not an object');
    const scores: Record<string, number> = {};
    for (const [id, s] of Object.entries(v.RegionScore)) {
      if (typeof s !== 'number' || !Number.isFinite(s)) throw bad(`RegionScore[${id}] is not a number`);
      scores[id] = s;
    }
    out.RegionScore = scores;
  }
  return out;
}

/** Throws derpmap_duplicate_node when two nodes anywhere in the map share a Name (§17). */
function checkUniqueNames(regions: Iterable<DerpRegion>): void {
  const seen = new Set<string>();
  for (const r of regions) {
    for (const n of r.Nodes) {
      if (seen.has(n.Name)) throw new WiremeshError(DerpMapErrorCode.DuplicateNode, `derpmap has duplicate nodes: ${JSON.stringify(n.Name)}`);
      seen.add(n.Name);
    }
  }
}

/**
 * Parses and validates DERP map JSON text (bounded by MAX_DERP_MAP_BYTES, MAX_REGIONS, MAX_NODES_PER_REGION).
 * Throws derpmap_invalid for a bad shape and derpmap_duplicate_node for a repeated node name.
 */
export function parseDerpMap(text: string): DerpMap {
  if (text.length > MAX_DERP_MAP_BYTES) throw bad(`larger than ${MAX_DERP_MAP_BYTES} bytes`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw bad(`not JSON (${(e as Error).message})`);
  }
  if (!isObject(raw) || !isObject(raw.Regions)) throw bad('no Regions object');
  const entries = Object.entries(raw.Regions);
  if (entries.length > MAX_REGIONS) throw bad(`more than ${MAX_REGIONS} regions`);
  const regions: Record<string, DerpRegion> = {};
  for (const [key, r] of entries) regions[key] = parseRegion(key, r);
  const out: DerpMap = { Regions: regions };
  checkUniqueNames(sortedRegions(out));
  // Go's encoding/json matches field names case-insensitively, so `OmitDefaultRegions` is read too.
  const omit = bool(raw, 'omitDefaultRegions') ?? bool(raw, 'OmitDefaultRegions');
  if (omit !== undefined) out.omitDefaultRegions = omit;
  if (raw.HomeParams !== undefined && raw.HomeParams !== null) out.HomeParams = parseHomeParams(raw.HomeParams);
  return out;
}

/** Regions sorted by ID. */
export function sortedRegions(m: DerpMap): DerpRegion[] {
  return Object.values(m.Regions).sort((a, b) => a.RegionID - b.RegionID);
}

/** The node's STUN port, or null when STUN is disabled on it (§17: 0 → 3478, negative disables). */
export function stunPort(n: DerpNode): number | null {
  const p = n.STUNPort ?? 0;
  if (p < 0) return null;
  return p === 0 ? DEFAULT_STUN_PORT : p;
}

/** The node's DERP (HTTPS) port (§17: 0 → 443). */
export function derpPort(n: DerpNode): number {
  return n.DERPPort !== undefined && n.DERPPort > 0 ? n.DERPPort : DEFAULT_DERP_PORT;
}
