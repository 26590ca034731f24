/**
 * The netcheck engine (spec/nat-traversal.md §7.2–§7.6): runs the probe plan (./plan.ts) over injected UDP
 * sockets with the STUN client (src/stun/client.ts), and in parallel the port-mapping probe, the captive-portal
 * check and the double-NAT hop check; when no STUN answer arrives it fills region latency over HTTPS
 * (`/derp/latency-check`) and ICMPv4 echo. Everything external is a seam in `NetcheckDeps`, so the engine runs
 * unchanged on real sockets (src/netcheck/adapters.ts) and in the virtual lab (test/vlab), on a real or a manual
 * clock.
 */
import { isIP } from 'node:net';
import { formatAddrPort, type AddrPort, type PacketConn } from '../net/packet.ts';
import { StunTransactions, type RandomBytes, type StunResult } from '../stun/client.ts';
import type { Clock, Timer } from '../time/clock.ts';
import {
  CAPTIVE_PORTAL_DELAY_MS, DOUBLE_NAT_MAX_HOPS, ENOUGH_REGIONS, ICMP_TIMEOUT_MS, MIN_STRAGGLER_WAIT_MS, REPORT_TIMEOUT_MS,
  STRAGGLER_WAIT_FACTOR, STUN_PHASE_MS,
} from './constants.ts';
import { sortedRegions, stunPort, type DerpMap, type DerpNode, type DerpRegion } from '../derpmap/derpmap.ts';
import { makeProbePlan, type Family, type PreviousReport, type Probe } from './plan.ts';
import { emptyReport, type Report } from './report.ts';

export interface PortMapResult {
  upnp: boolean;
  pmp: boolean;
  pcp: boolean;
}

export interface NetcheckDeps {
  clock: Clock;
  random: RandomBytes;
  /** Wall-clock time for the report's `Now` (ms since the epoch); defaults to clock.now(). */
  wallNow?: () => number;
  /** Opens a UDP socket of the family, or resolves null when the family is unavailable. */
  listenUdp(family: Family): Promise<PacketConn | null>;
  /** Resolves a DERP node host name (only used when the map carries no address literal). */
  resolve?(host: string, family: Family): Promise<string | null>;
  /** HTTPS GET /derp/latency-check on the node; resolves with the request's duration in ms, rejects on failure. */
  httpsLatency?(node: DerpNode, signal: AbortSignal): Promise<number>;
  /** One ICMPv4 echo to each of `ips` at once; resolves with the round trip (ms) of those that answered. */
  icmpLatency?(ips: string[], signal: AbortSignal): Promise<Map<string, number>>;
  /** Fetches /generate_204 from these nodes; true when a captive portal answered instead. */
  captivePortal?(nodes: DerpNode[], signal: AbortSignal): Promise<boolean>;
  /** UPnP / NAT-PMP / PCP availability (the port-mapping client's probe). */
  portMapProbe?(): Promise<PortMapResult>;
  /**
   * TTL-limited packets toward `target` with TTL 1..maxHops at once: per hop, the router address that answered
   * "time exceeded", or null (target reached, or no answer). Rejects when the check cannot run at all.
   */
  hopProbe?(target: string, maxHops: number, signal: AbortSignal): Promise<(string | null)[]>;
  /** Whether the OS has IPv6 at all; default: an IPv6 socket could be opened. */
  osHasIPv6?: boolean;
}

export interface NetcheckOptions {
  /** The previous report, for an incremental plan and home-region hysteresis (null = full report). */
  last?: (PreviousReport & { report?: Report }) | null;
  stunPhaseMs?: number;
  reportTimeoutMs?: number;
  /** Log hook for verbose output. */
  log?: (line: string) => void;
}

export interface NetcheckResult {
  report: Report;
  /** How long the report took on the engine's clock. */
  durationMs: number;
}

/** True for RFC 1918, RFC 6598 (CGNAT 100.64/10) and link-local IPv4 addresses. */
export function isPrivateV4(ip: string): boolean {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x))) return false;
  const [a, b] = p as [number, number, number, number];
  return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127) || (a === 169 && b === 254);
}

/** The node's IPv4 address when the map gives it literally (IPv4 field or an IPv4 host name), else null. */
function nodeIPv4Literal(n: DerpNode): string | null {
  if (n.IPv4 !== undefined && isIP(n.IPv4) === 4) return n.IPv4;
  return isIP(n.HostName) === 4 ? n.HostName : null;
}

/** Races `p` against `ms` on the clock; resolves `fallback` on timeout. */
function withDeadline<T>(clock: Clock, p: Promise<T>, ms: number, fallback: T): Promise<T> {
  return new Promise((resolve) => {
    const t = clock.setTimeout(() => resolve(fallback), Math.max(0, ms));
    p.then(
      (v) => {
        t.cancel();
        resolve(v);
      },
      () => {
        t.cancel();
        resolve(fallback);
      },
    );
  });
}

/**
 * Picks the home region: lowest latency, skipping Avoid/NoMeasureNoHome regions and regions whose nodes are all
 * STUN-only (they cannot relay), keeping the old home unless the new one is ≥10 ms and ≥33 % faster (spec §7.6).
 */
export function choosePreferred(dm: DerpMap, latency: ReadonlyMap<number, number>, oldHome: number, oldHomeLatency: number | undefined): number {
  let best = 0;
  let bestLat = Infinity;
  for (const r of sortedRegions(dm)) {
    const l = latency.get(r.RegionID);
    if (l === undefined || r.Avoid || r.NoMeasureNoHome || r.Nodes.every((n) => n.STUNOnly === true)) continue;
    if (l < bestLat) {
      best = r.RegionID;
      bestLat = l;
    }
  }
  if (best !== 0 && oldHome !== 0 && oldHome !== best) {
    const cur = latency.get(oldHome) ?? oldHomeLatency;
    if (cur !== undefined && (cur - bestLat < 10 || bestLat > (cur * 2) / 3)) return oldHome;
  }
  return best;
}

/** Runs one netcheck report. */
export function runNetcheck(dm: DerpMap, deps: NetcheckDeps, opts: NetcheckOptions = {}): Promise<NetcheckResult> {
  return new ReportRun(dm, deps, opts).run();
}

/** The state of one report while it runs (one instance per report). */
class ReportRun {
  readonly #dm: DerpMap;
  readonly #deps: NetcheckDeps;
  readonly #opts: NetcheckOptions;
  readonly #clock: Clock;
  readonly #t0: number;
  readonly #deadline: number;
  readonly #log: (line: string) => void;
  readonly report: Report;
  readonly #timers: Timer[] = [];
  /** Aborts STUN queries when the STUN phase ends. */
  readonly #stunAbort = new AbortController();
  /** Aborts everything else (side probes, fallbacks) when the report is done. */
  readonly #sideAbort = new AbortController();
  readonly #captiveAbort = new AbortController();
  #captive: Promise<boolean | null> = Promise.resolve(null);
  #captiveStarted = false;
  readonly #tx: Partial<Record<Family, StunTransactions>> = {};
  readonly #nodeByName = new Map<string, DerpNode>();
  readonly #addrCache = new Map<string, Promise<string | null>>();
  // STUN phase bookkeeping.
  readonly #setDone = new Set<string>();
  #setsPlanned = new Set<string>();
  readonly #answeredRegions = new Set<number>();
  #firstV4: string | null = null;
  #firstV4Server: string | null = null;
  #canJudgeMapping = false;
  #maxLatency = 0;
  #stragglerTimer: Timer | null = null;
  #finishStun: () => void = () => {};

  constructor(dm: DerpMap, deps: NetcheckDeps, opts: NetcheckOptions) {
    this.#dm = dm;
    this.#deps = deps;
    this.#opts = opts;
    this.#clock = deps.clock;
    this.#t0 = this.#clock.now();
    this.#deadline = this.#t0 + (opts.reportTimeoutMs ?? REPORT_TIMEOUT_MS);
    this.#log = opts.log ?? ((): void => {});
    this.report = emptyReport(deps.wallNow?.() ?? this.#t0);
    for (const r of sortedRegions(dm)) for (const n of r.Nodes) this.#nodeByName.set(n.Name, n);
  }

  #remaining(): number {
    return Math.max(0, this.#deadline - this.#clock.now());
  }

  async run(): Promise<NetcheckResult> {
    const [conn4, conn6] = await Promise.all([this.#deps.listenUdp(4).catch(() => null), this.#deps.listenUdp(6).catch(() => null)]);
    this.report.osHasIPv6 = this.#deps.osHasIPv6 ?? conn6 !== null;
    if (conn4 !== null) this.#tx[4] = new StunTransactions(conn4);
    if (conn6 !== null) this.#tx[6] = new StunTransactions(conn6);
    const portMap = this.#portMapProbe();
    this.#timers.push(this.#clock.setTimeout(() => this.#startCaptive(), CAPTIVE_PORTAL_DELAY_MS));
    try {
      await this.#stunPhase(conn4 !== null, conn6 !== null);
    } finally {
      this.#stunAbort.abort();
      for (const t of Object.values(this.#tx)) t.close();
      conn4?.close();
      conn6?.close();
    }
    this.#log(`netcheck: STUN phase done after ${(this.#clock.now() - this.#t0).toFixed(1)} ms, udp=${this.report.udp}`);
    // The hop check starts only now: spawning its helper would otherwise stall STUN round-trip measurements.
    const hops = this.#hopProbes();
    if (!this.report.udp) {
      this.#startCaptive();
      await this.#fallbackLatency();
    }
    const [pm, cp, hopList] = await Promise.all([portMap, withDeadline(this.#clock, this.#captive, this.#remaining(), null), hops]);
    this.#captiveAbort.abort();
    this.#sideAbort.abort();
    for (const t of this.#timers) t.cancel();
    this.#finish(pm, cp, hopList);
    return { report: this.report, durationMs: this.#clock.now() - this.#t0 };
  }

  #portMapProbe(): Promise<PortMapResult | null> {
    const probe = this.#deps.portMapProbe;
    return probe === undefined ? Promise.resolve(null) : withDeadline(this.#clock, probe(), this.#remaining(), null);
  }

  /** TTL 1..N toward the first DERP node with an IPv4 literal; any probe failing to run leaves DoubleNAT null. */
  #hopProbes(): Promise<(string | null)[] | null> {
    const hopProbe = this.#deps.hopProbe;
    const target = sortedRegions(this.#dm).flatMap((r) => r.Nodes).map(nodeIPv4Literal).find((ip) => ip !== null) ?? null;
    if (hopProbe === undefined || target === null) return Promise.resolve(null);
    return withDeadline(this.#clock, hopProbe(target, DOUBLE_NAT_MAX_HOPS, this.#sideAbort.signal), this.#remaining(), null);
  }

  #startCaptive(): void {
    const check = this.#deps.captivePortal;
    if (this.#captiveStarted || check === undefined || this.report.udp) return;
    const nodes = sortedRegions(this.#dm).flatMap((r) => r.Nodes).filter((n) => n.CanPort80 === true);
    if (nodes.length === 0) return;
    this.#captiveStarted = true;
    this.#log(`netcheck: captive-portal check against ${nodes.map((n) => n.Name).join(', ')}`);
    this.#captive = withDeadline(this.#clock, check(nodes, this.#captiveAbort.signal), this.#remaining(), null);
  }

  /** Sends the plan's probes on schedule; resolves when the STUN phase is over (spec §7.2 stop rules). */
  async #stunPhase(haveV4: boolean, haveV6: boolean): Promise<void> {
    const plan = makeProbePlan({ derpMap: this.#dm, haveV4, haveV6, last: this.#opts.last ?? null });
    this.#setsPlanned = new Set(plan.map((p) => `${p.regionID}/${p.family}`));
    // Mapping variance needs answers from two different IPv4 servers; with fewer regions it stays unknown.
    this.#canJudgeMapping = new Set(plan.filter((p) => p.family === 4).map((p) => p.regionID)).size >= 2;
    const done = new Promise<void>((resolve) => (this.#finishStun = resolve));
    for (const p of plan) this.#timers.push(this.#clock.setTimeout(() => this.#sendProbe(p), p.delayMs));
    if (plan.length === 0) this.#finishStun();
    this.#timers.push(this.#clock.setTimeout(() => this.#finishStun(), this.#opts.stunPhaseMs ?? STUN_PHASE_MS));
    await done;
  }

  #nodeAddr(n: DerpNode, family: Family): Promise<string | null> {
    const key = `${n.Name}/${family}`;
    let p = this.#addrCache.get(key);
    if (p === undefined) {
      const field = family === 4 ? (n.STUNTestIP ?? n.IPv4) : n.IPv6;
      const resolve = this.#deps.resolve;
      if (field !== undefined && isIP(field) === family) p = Promise.resolve(field);
      else if (isIP(n.HostName) === family) p = Promise.resolve(n.HostName);
      else if (isIP(n.HostName) !== 0 || resolve === undefined) p = Promise.resolve(null);
      else p = resolve(n.HostName, family).catch(() => null);
      this.#addrCache.set(key, p);
    }
    return p;
  }

  #sendProbe(p: Probe): void {
    // Later tries are skipped once the set answered, unless mapping variance is still unknown (more information).
    if (this.#setDone.has(`${p.regionID}/${p.family}`) && !(p.family === 4 && this.report.mappingVariesByDestIP === null)) return;
    const t = this.#tx[p.family];
    const node = this.#nodeByName.get(p.node);
    if (t === undefined || node === undefined) return;
    void (async () => {
      const ip = await this.#nodeAddr(node, p.family);
      const port = stunPort(node);
      if (ip === null || port === null) return;
      if (p.family === 4) this.report.ipv4CanSend = true;
      else this.report.ipv6CanSend = true;
      const left = this.#t0 + (this.#opts.stunPhaseMs ?? STUN_PHASE_MS) - this.#clock.now();
      if (left <= 0 || this.#stunAbort.signal.aborted) return;
      try {
        const server: AddrPort = { address: ip, port };
        const res = await t.query(server, { clock: this.#clock, random: this.#deps.random, timeoutMs: left, retryMs: left + 1, signal: this.#stunAbort.signal });
        this.#onAnswer(p, res);
      } catch {
        /* lost, timed out or aborted: the absence of an answer is the measurement */
      }
    })();
  }

  #onAnswer(p: Probe, res: StunResult): void {
    const r = this.report;
    const ipp = formatAddrPort(res.address);
    const rtt = res.rttMs;
    r.udp = true;
    this.#captiveAbort.abort();
    const setMin = (m: Map<number, number>): void => {
      const old = m.get(p.regionID);
      if (old === undefined || rtt < old) m.set(p.regionID, rtt);
    };
    setMin(r.regionLatencyMs);
    this.#maxLatency = Math.max(this.#maxLatency, rtt);
    if (p.family === 4) {
      r.ipv4 = true;
      setMin(r.regionV4LatencyMs);
      r.globalV4Counters.set(ipp, (r.globalV4Counters.get(ipp) ?? 0) + 1);
      if (this.#firstV4 === null) {
        this.#firstV4 = ipp;
        this.#firstV4Server = res.server.address;
        r.globalV4 = ipp;
      } else if (ipp !== this.#firstV4) {
        r.mappingVariesByDestIP = true;
      } else if (r.mappingVariesByDestIP === null && res.server.address !== this.#firstV4Server) {
        r.mappingVariesByDestIP = false;
      }
    } else {
      r.ipv6 = true;
      setMin(r.regionV6LatencyMs);
      r.globalV6Counters.set(ipp, (r.globalV6Counters.get(ipp) ?? 0) + 1);
      r.globalV6 = ipp;
    }
    this.#setDone.add(`${p.regionID}/${p.family}`);
    this.#answeredRegions.add(p.regionID);
    this.#log(`netcheck: STUN ${p.node} (region ${p.regionID}, v${p.family}) → ${ipp} in ${rtt.toFixed(2)} ms`);
    const allDone = [...this.#setsPlanned].every((s) => this.#setDone.has(s)) && (r.mappingVariesByDestIP !== null || !this.#canJudgeMapping);
    if ((allDone || this.#answeredRegions.size >= ENOUGH_REGIONS) && this.#stragglerTimer === null) {
      const wait = allDone ? 0 : Math.max(MIN_STRAGGLER_WAIT_MS, STRAGGLER_WAIT_FACTOR * this.#maxLatency);
      this.#stragglerTimer = this.#clock.setTimeout(() => this.#finishStun(), wait);
      this.#timers.push(this.#stragglerTimer);
    }
  }

  #noteLatency(regionID: number, ms: number): void {
    const old = this.report.regionLatencyMs.get(regionID);
    if (old === undefined || ms < old) this.report.regionLatencyMs.set(regionID, ms);
  }

  /** No UDP: HTTPS `/derp/latency-check` and, in parallel, one ICMPv4 echo per region without data (spec §7.2). */
  async #fallbackLatency(): Promise<void> {
    const { httpsLatency, icmpLatency } = this.#deps;
    const signal = this.#sideAbort.signal;
    const regions = sortedRegions(this.#dm).filter((r: DerpRegion) => !r.NoMeasureNoHome && !this.report.regionLatencyMs.has(r.RegionID));
    const jobs: Promise<void>[] = [];
    for (const r of regions) {
      const node = r.Nodes.find((n) => n.STUNOnly !== true);
      if (node !== undefined && httpsLatency !== undefined) {
        jobs.push((async () => {
          const ms = await withDeadline(this.#clock, httpsLatency(node, signal), this.#remaining(), null);
          if (ms === null) return;
          this.#log(`netcheck: HTTPS latency ${node.Name} (region ${r.RegionID}) ${ms.toFixed(2)} ms`);
          this.#noteLatency(r.RegionID, ms);
          // Like Tailscale, an HTTPS answer over IPv4 proves IPv4 connectivity (but not UDP).
          if (isIP(node.IPv4 ?? node.HostName) === 4) this.report.ipv4 = true;
        })());
      }
    }
    // One ICMPv4 echo to each region's first node, all at once.
    const icmpTargets = new Map<string, number>();
    for (const r of regions) {
      const ip = r.Nodes[0] === undefined ? null : nodeIPv4Literal(r.Nodes[0]);
      if (ip !== null && !icmpTargets.has(ip)) icmpTargets.set(ip, r.RegionID);
    }
    if (icmpTargets.size > 0 && icmpLatency !== undefined) {
      jobs.push((async () => {
        const got = await withDeadline(this.#clock, icmpLatency([...icmpTargets.keys()], signal), Math.min(ICMP_TIMEOUT_MS + 500, this.#remaining()), null);
        for (const [ip, ms] of got ?? []) {
          const regionID = icmpTargets.get(ip);
          if (regionID === undefined) continue;
          this.#log(`netcheck: ICMP latency ${ip} (region ${regionID}) ${ms.toFixed(2)} ms`);
          this.#noteLatency(regionID, ms);
          this.report.icmpv4 = true;
          this.report.ipv4 = true;
        }
      })());
    }
    await Promise.all(jobs);
  }

  #finish(pm: PortMapResult | null, captive: boolean | null, hopList: (string | null)[] | null): void {
    const r = this.report;
    if (pm !== null) {
      r.upnp = pm.upnp;
      r.pmp = pm.pmp;
      r.pcp = pm.pcp;
    }
    r.captivePortal = captive;
    if (hopList !== null) {
      const leading: string[] = [];
      for (const h of hopList) {
        if (h === null || !isPrivateV4(h)) break;
        leading.push(h);
      }
      r.routerHops = leading;
      r.doubleNAT = leading.length >= 2;
    }
    const last = this.#opts.last ?? null;
    r.preferredDERP = choosePreferred(this.#dm, r.regionLatencyMs, last?.preferredDERP ?? 0, last === null ? undefined : last.regionLatencyMs.get(last.preferredDERP));
  }
}
