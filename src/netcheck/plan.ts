/**
 * The STUN probe plan (spec/nat-traversal.md §7.2, Tailscale's makeProbePlan): a pure function from a DERP map,
 * the address families this host can use and the previous report to the list of STUN probes to send and when.
 * Full reports probe every measurable region 3 times per family (0/100/200 ms, rotating over the region's nodes);
 * incremental ones only the previous 3 fastest regions plus home, with retries spaced by the known latency.
 */
import { isIP } from 'node:net';
import { sortedRegions, stunPort, type DerpMap, type DerpNode, type DerpRegion } from '../derpmap/derpmap.ts';
import { FULL_REPORT_TRY_DELAYS_MS, INCREMENTAL_DEFAULT_RETRY_MS, INCREMENTAL_FASTEST_REGIONS } from './constants.ts';

export type Family = 4 | 6;

export interface Probe {
  regionID: number;
  /** DERP node name (DerpNode.Name). */
  node: string;
  family: Family;
  /** When to send, relative to the start of the report. */
  delayMs: number;
  /** 0-based try number within its region+family set. */
  try: number;
}

export interface PreviousReport {
  /** Best latency per region, milliseconds. */
  regionLatencyMs: ReadonlyMap<number, number>;
  preferredDERP: number;
}

export interface PlanInput {
  derpMap: DerpMap;
  haveV4: boolean;
  haveV6: boolean;
  /** Null (or absent) makes a full plan. */
  last?: PreviousReport | null;
}

/** Whether a node may be STUN-probed over `family` (an explicit literal, or a name to resolve; "none" disables). */
export function nodeMightDo(n: DerpNode, family: Family): boolean {
  if (stunPort(n) === null) return false;
  const field = family === 4 ? n.IPv4 : n.IPv6;
  if (field === 'none') return false;
  if (field !== undefined) return isIP(field) === family;
  if (family === 4 && n.STUNTestIP !== undefined) return isIP(n.STUNTestIP) === 4;
  const lit = isIP(n.HostName);
  return lit === 0 || lit === family;
}

function regionProbes(r: DerpRegion, family: Family, delays: readonly number[]): Probe[] {
  const nodes = r.Nodes.filter((n) => nodeMightDo(n, family));
  if (nodes.length === 0) return [];
  return delays.map((delayMs, i) => ({ regionID: r.RegionID, node: nodes[i % nodes.length]!.Name, family, delayMs, try: i }));
}

/** The probes of one report, in send order (ties: region ID, then family 4 before 6, then try). */
export function makeProbePlan(input: PlanInput): Probe[] {
  const families: Family[] = [];
  if (input.haveV4) families.push(4);
  if (input.haveV6) families.push(6);
  const regions = sortedRegions(input.derpMap).filter((r) => !r.NoMeasureNoHome);
  const out: Probe[] = [];
  const last = input.last ?? null;
  if (last === null || last.regionLatencyMs.size === 0) {
    for (const r of regions) for (const f of families) out.push(...regionProbes(r, f, FULL_REPORT_TRY_DELAYS_MS));
  } else {
    const ranked = regions
      .filter((r) => last.regionLatencyMs.has(r.RegionID) && (!r.Avoid || r.RegionID === last.preferredDERP))
      .sort((a, b) => last.regionLatencyMs.get(a.RegionID)! - last.regionLatencyMs.get(b.RegionID)! || a.RegionID - b.RegionID);
    const chosen = ranked.slice(0, INCREMENTAL_FASTEST_REGIONS);
    const home = regions.find((r) => r.RegionID === last.preferredDERP);
    if (home !== undefined && !chosen.includes(home)) chosen.push(home);
    chosen.forEach((r, rank) => {
      const tries = r.RegionID === last.preferredDERP ? 4 : rank < 2 ? 2 : 1;
      const lat = last.regionLatencyMs.get(r.RegionID);
      const spacing = lat === undefined ? INCREMENTAL_DEFAULT_RETRY_MS : 1.2 * lat;
      const delays = Array.from({ length: tries }, (_, t) => Math.round(t * spacing + (t >= 2 ? t * 50 : 0)));
      // On dual-stack hosts the 3rd and later regions alternate families to halve the probes.
      const fams = families.length === 2 && rank >= 2 ? [families[rank % 2]!] : families;
      for (const f of fams) out.push(...regionProbes(r, f, delays));
    });
  }
  return out.sort((a, b) => a.delayMs - b.delayMs || a.regionID - b.regionID || a.family - b.family || a.try - b.try);
}
