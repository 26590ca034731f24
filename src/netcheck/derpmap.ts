/**
 * DERP map types and validation (Tailscale `tailcfg.DERPMap` JSON, spec/nat-traversal.md §7.2, spec/derp.md):
 * the regions and nodes netcheck probes. Pure: `parseDerpMap` checks shape and bounds of already-read JSON text;
 * reading a file or URL lives in ./load.ts (adapter).
 */
import { WiremeshError } from '../errors.ts';
import { DEFAULT_STUN_PORT, MAX_DERP_MAP_BYTES, MAX_NODES_PER_REGION, MAX_REGIONS, NetcheckErrorCode } from './constants.ts';

export interface DerpNode {
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
  RegionID: number;
  RegionCode: string;
  RegionName: string;
  Avoid?: boolean;
  NoMeasureNoHome?: boolean;
  Nodes: DerpNode[];
}

export interface DerpMap {
  Regions: Record<string, DerpRegion>;
  OmitDefaultRegions?: boolean;
}

const bad = (msg: string): WiremeshError => new WiremeshError(NetcheckErrorCode.BadDerpMap, `DERP map: ${msg}`);

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

function num(o: Record<string, unknown>, k: string, required: boolean): number | undefined {
  const v = o[k];
  if (v === undefined || v === null) {
    if (required) throw bad(`missing ${k}`);
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) throw bad(`${k} is not an integer`);
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
      if (n > 65535) throw bad(`${k} ${n} out of range`);
      node[k] = n;
    }
  }
  for (const k of ['STUNOnly', 'InsecureForTests', 'CanPort80'] as const) {
    const b = bool(v, k);
    if (b !== undefined) node[k] = b;
  }
  return node;
}

/** Parses and validates DERP map JSON text (bounded by MAX_DERP_MAP_BYTES, MAX_REGIONS, MAX_NODES_PER_REGION). */
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
  for (const [key, r] of entries) {
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
    const avoid = bool(r, 'Avoid');
    if (avoid !== undefined) region.Avoid = avoid;
    const nmnh = bool(r, 'NoMeasureNoHome');
    if (nmnh !== undefined) region.NoMeasureNoHome = nmnh;
    regions[key] = region;
  }
  const out: DerpMap = { Regions: regions };
  const omit = bool(raw, 'OmitDefaultRegions');
  if (omit !== undefined) out.OmitDefaultRegions = omit;
  return out;
}

/** Regions sorted by ID. */
export function sortedRegions(m: DerpMap): DerpRegion[] {
  return Object.values(m.Regions).sort((a, b) => a.RegionID - b.RegionID);
}

/** The node's STUN port, or null when STUN is disabled on it. */
export function stunPort(n: DerpNode): number | null {
  const p = n.STUNPort ?? 0;
  if (p < 0) return null;
  return p === 0 ? DEFAULT_STUN_PORT : p;
}

/** The node's DERP (HTTPS) port. */
export function derpPort(n: DerpNode): number {
  return n.DERPPort !== undefined && n.DERPPort > 0 ? n.DERPPort : 443;
}
