/**
 * The netcheck report (spec/nat-traversal.md §7.1) and its two renderings (§7.7): Tailscale's JSON field names
 * (`--format=json`: opt-bools as true/false/null, latencies in integer nanoseconds) and the text of
 * `tailscale netcheck`. Pure: no I/O, the caller supplies the time. One wiremesh extension, `DoubleNAT`, is
 * documented in docs/netcheck.md.
 */
import { sortedRegions, type DerpMap } from '../derpmap/derpmap.ts';

/** Tailscale's opt.Bool: unknown/not checked is null. */
export type OptBool = boolean | null;

/** The engine's view of a report (latencies in milliseconds, maps keyed by region ID). */
export interface Report {
  /** Report time, ms since the Unix epoch. */
  now: number;
  udp: boolean;
  ipv4: boolean;
  ipv6: boolean;
  ipv4CanSend: boolean;
  ipv6CanSend: boolean;
  osHasIPv6: boolean;
  icmpv4: boolean;
  mappingVariesByDestIP: OptBool;
  upnp: OptBool;
  pmp: OptBool;
  pcp: OptBool;
  preferredDERP: number;
  regionLatencyMs: Map<number, number>;
  regionV4LatencyMs: Map<number, number>;
  regionV6LatencyMs: Map<number, number>;
  globalV4Counters: Map<string, number>;
  globalV6Counters: Map<string, number>;
  globalV4: string;
  globalV6: string;
  captivePortal: OptBool;
  /** wiremesh extension: two private-address routers before the internet (double NAT / CGNAT); null = unchecked. */
  doubleNAT: OptBool;
  /** wiremesh extension (not in JSON): the private router addresses seen by the double-NAT check. */
  routerHops: string[];
}

export function emptyReport(now: number): Report {
  return {
    now,
    udp: false,
    ipv4: false,
    ipv6: false,
    ipv4CanSend: false,
    ipv6CanSend: false,
    osHasIPv6: false,
    icmpv4: false,
    mappingVariesByDestIP: null,
    upnp: null,
    pmp: null,
    pcp: null,
    preferredDERP: 0,
    regionLatencyMs: new Map(),
    regionV4LatencyMs: new Map(),
    regionV6LatencyMs: new Map(),
    globalV4Counters: new Map(),
    globalV6Counters: new Map(),
    globalV4: '',
    globalV6: '',
    captivePortal: null,
    doubleNAT: null,
    routerHops: [],
  };
}

/** `tailscale netcheck --format=json`'s object (Go field names). */
export interface ReportJSON {
  Now: string;
  UDP: boolean;
  IPv4: boolean;
  IPv6: boolean;
  IPv4CanSend: boolean;
  IPv6CanSend: boolean;
  OSHasIPv6: boolean;
  ICMPv4: boolean;
  MappingVariesByDestIP: OptBool;
  UPnP: OptBool;
  PMP: OptBool;
  PCP: OptBool;
  PreferredDERP: number;
  RegionLatency: Record<string, number> | null;
  RegionV4Latency: Record<string, number> | null;
  RegionV6Latency: Record<string, number> | null;
  GlobalV4Counters: Record<string, number> | null;
  GlobalV6Counters: Record<string, number> | null;
  GlobalV4: string;
  GlobalV6: string;
  CaptivePortal: OptBool;
  DoubleNAT: OptBool;
}

const nsMap = (m: Map<number, number>): Record<string, number> | null =>
  m.size === 0 ? null : Object.fromEntries([...m].sort((a, b) => a[0] - b[0]).map(([k, ms]) => [String(k), Math.round(ms * 1e6)]));
const countMap = (m: Map<string, number>): Record<string, number> | null => (m.size === 0 ? null : Object.fromEntries(m));

export function reportToJSON(r: Report): ReportJSON {
  return {
    Now: new Date(r.now).toISOString(),
    UDP: r.udp,
    IPv4: r.ipv4,
    IPv6: r.ipv6,
    IPv4CanSend: r.ipv4CanSend,
    IPv6CanSend: r.ipv6CanSend,
    OSHasIPv6: r.osHasIPv6,
    ICMPv4: r.icmpv4,
    MappingVariesByDestIP: r.mappingVariesByDestIP,
    UPnP: r.upnp,
    PMP: r.pmp,
    PCP: r.pcp,
    PreferredDERP: r.preferredDERP,
    RegionLatency: nsMap(r.regionLatencyMs),
    RegionV4Latency: nsMap(r.regionV4LatencyMs),
    RegionV6Latency: nsMap(r.regionV6LatencyMs),
    GlobalV4Counters: countMap(r.globalV4Counters),
    GlobalV6Counters: countMap(r.globalV6Counters),
    GlobalV4: r.globalV4,
    GlobalV6: r.globalV6,
    CaptivePortal: r.captivePortal,
    DoubleNAT: r.doubleNAT,
  };
}

/** JSON text like Go's json.MarshalIndent(report, "", "\t"). */
export function formatJSON(r: Report): string {
  return JSON.stringify(reportToJSON(r), null, '\t') + '\n';
}

const optText = (b: OptBool): string => (b === null ? '' : String(b));

/** Go's time.Duration.String() for a value in nanoseconds (e.g. `400µs`, `12.3ms`, `1.5s`, `0s`). */
export function goDuration(ns: number): string {
  ns = Math.round(ns);
  if (ns === 0) return '0s';
  const sign = ns < 0 ? '-' : '';
  const a = Math.abs(ns);
  const frac = (v: number, unit: number, digits: number): string => {
    const whole = Math.floor(v / unit);
    const rest = v % unit;
    if (rest === 0) return String(whole);
    return `${whole}.${String(rest).padStart(digits, '0').replace(/0+$/, '')}`;
  };
  if (a < 1e3) return `${sign}${a}ns`;
  if (a < 1e6) return `${sign}${frac(a, 1e3, 3)}µs`;
  if (a < 1e9) return `${sign}${frac(a, 1e6, 6)}ms`;
  const h = Math.floor(a / 3.6e12);
  const m = Math.floor((a % 3.6e12) / 6e10);
  const s = frac(a % 6e10, 1e9, 9);
  return `${sign}${h > 0 ? `${h}h` : ''}${h > 0 || m > 0 ? `${m}m` : ''}${s}s`;
}

/** Latency as `tailscale netcheck` prints it: rounded to 0.1 ms, in Go duration syntax. */
export function formatLatency(ms: number): string {
  return goDuration(Math.round(ms * 10) * 1e5);
}

/** Go's "2006-01-02 15:04:05.999999999Z07:00" in UTC. */
export function formatTime(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2026-11-22T03:12:00.123Z
  const [date, rest] = iso.split('T') as [string, string];
  const [hms, fracZ] = rest.split('.') as [string, string];
  const frac = fracZ.replace('Z', '').replace(/0+$/, '');
  return `${date} ${hms}${frac === '' ? '' : `.${frac}`}Z`;
}

function portMappingText(r: Report): string {
  if (r.upnp === null && r.pmp === null && r.pcp === null) return 'not checked';
  const got: string[] = [];
  if (r.upnp === true) got.push('UPnP');
  if (r.pmp === true) got.push('NAT-PMP');
  if (r.pcp === true) got.push('PCP');
  return got.join(', ');
}

/** The text `tailscale netcheck` prints (spec §7.7), plus `DoubleNAT` when the wiremesh check ran. */
export function formatText(r: Report, dm: DerpMap, opts: { verbose?: boolean } = {}): string {
  const lines = ['', 'Report:', `\t* Time: ${formatTime(r.now)}`, `\t* UDP: ${r.udp}`];
  if (r.globalV4 !== '') lines.push(`\t* IPv4: yes, ${r.globalV4}`);
  else lines.push('\t* IPv4: (no addr found)');
  if (r.globalV6 !== '') lines.push(`\t* IPv6: yes, ${r.globalV6}`);
  else if (r.ipv6) lines.push('\t* IPv6: (no addr found)');
  else if (r.osHasIPv6) lines.push('\t* IPv6: no, but OS has support');
  else lines.push('\t* IPv6: no, unavailable in OS');
  lines.push(`\t* MappingVariesByDestIP: ${optText(r.mappingVariesByDestIP)}`);
  lines.push(`\t* PortMapping: ${portMappingText(r)}`);
  if (r.captivePortal !== null) lines.push(`\t* CaptivePortal: ${r.captivePortal}`);
  if (r.doubleNAT !== null) lines.push(`\t* DoubleNAT: ${r.doubleNAT}`);
  if (r.regionLatencyMs.size === 0) {
    lines.push('\t* Nearest DERP: unknown (no response to latency probes)');
  } else {
    const pref = dm.Regions[String(r.preferredDERP)];
    lines.push(`\t* Nearest DERP: ${pref === undefined ? '[none]' : pref.RegionName}`);
    lines.push('\t* DERP latency:');
    const regions = sortedRegions(dm).sort((a, b) => {
      const la = r.regionLatencyMs.get(a.RegionID);
      const lb = r.regionLatencyMs.get(b.RegionID);
      if ((la === undefined) !== (lb === undefined)) return la === undefined ? 1 : -1;
      if (la === undefined || lb === undefined) return a.RegionID - b.RegionID;
      return la - lb || a.RegionID - b.RegionID;
    });
    for (const reg of regions) {
      const l = r.regionLatencyMs.get(reg.RegionID);
      const lat = l === undefined ? '' : formatLatency(l);
      const num = opts.verbose ? `derp${reg.RegionID}, ` : '';
      lines.push(`\t\t- ${reg.RegionCode.padStart(3)}: ${lat.padEnd(7)} (${num}${reg.RegionName})`);
    }
  }
  return lines.join('\n') + '\n';
}
