/**
 * The DERP map prober (spec/derp.md §18): a `derpmap-probe` that (re)loads the map every --interval and keeps
 * one probe per (node, class) in step with it — `derp/<RegionCode>/<Name>/tls`, `…/udp`, `…/udp6`, and per
 * ordered node pair of a region (a node with itself included) `derp/<RegionCode>/<From>/<To>/mesh`, `…/bw`,
 * `…/qd`. An interval of 0 disables a class. Duplicate node names are an error; a failed refresh keeps the last
 * good map for MAP_CACHE_GRACE_MS. Engine: the loader, dialers and sockets are injected.
 */
import { WiremeshError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import { derpPort, sortedRegions, type DerpMap, type DerpNode, type DerpRegion } from '../derpmap/derpmap.ts';
import type { RandomBytes } from '../stun/client.ts';
import { bwProbe } from './bw.ts';
import { MAP_CACHE_GRACE_MS, QD_WINDOW_MS } from './constants.ts';
import type { DerpDialer } from './derp-conn.ts';
import { derpPath, meshProbe, type PairProbeDeps } from './mesh.ts';
import type { ProbeClass, Prober } from './prober.ts';
import { qdProbe } from './qd.ts';
import { stunProbe, type UdpFactory } from './stun.ts';
import { tlsProbe } from './tls.ts';

export interface DerpProberOptions {
  derpMapUrl: string;
  loadMap: (url: string, signal: AbortSignal) => Promise<DerpMap>;
  meshIntervalMs: number;
  stunIntervalMs: number;
  tlsIntervalMs: number;
  bwIntervalMs: number;
  bwProbeSizeBytes: number;
  qdPacketsPerSecond: number;
  qdPacketTimeoutMs: number;
  /** A RegionCode or a numeric RegionID; '' for all. */
  regionCode: string;
  meshKey?: Uint8Array;
  dial: DerpDialer;
  openUdp: UdpFactory;
  random: RandomBytes;
  /** Wall clock (ms since the epoch) for certificate expiry. */
  wallNow: () => number;
  log?: Logger;
}

/** True when `filter` (a code or numeric ID) selects `region`; '' selects all. */
export function regionSelected(region: DerpRegion, filter: string): boolean {
  return filter === '' || region.RegionCode === filter || String(region.RegionID) === filter;
}

interface Wanted {
  name: string;
  intervalMs: number;
  labels: Record<string, string>;
  make: () => ProbeClass;
}

export class DerpProber {
  readonly #p: Prober;
  readonly #o: DerpProberOptions;
  readonly #log: Logger;
  #map: DerpMap | null = null;
  #mapAt = 0;
  #nodes = new Map<string, DerpNode>();
  readonly #owned = new Set<string>();

  constructor(prober: Prober, opts: DerpProberOptions) {
    this.#p = prober;
    this.#o = opts;
    this.#log = opts.log ?? silentLogger;
  }

  /** The map probe class (run it as `derpmap-probe` every --interval). */
  mapProbe(): ProbeClass {
    return { class: 'derp_map', probe: async (ctx) => { await this.#refresh(ctx.signal); } };
  }

  /** The node called `name` in the current map. */
  node(name: string): DerpNode {
    const n = this.#nodes.get(name);
    if (n === undefined) throw new WiremeshError('probe_no_node', `could not find derp node ${name}`);
    return n;
  }

  async #refresh(signal: AbortSignal): Promise<void> {
    let map: DerpMap;
    try {
      map = await this.#o.loadMap(this.#o.derpMapUrl, signal);
    } catch (e) {
      if (this.#map !== null && this.#p.clock.now() - this.#mapAt < MAP_CACHE_GRACE_MS) {
        this.#log.warn('error while fetching DERP map, using cached one', { err: (e as Error).message });
        return;
      }
      throw e;
    }
    const nodes = new Map<string, DerpNode>();
    for (const region of sortedRegions(map)) {
      if (!regionSelected(region, this.#o.regionCode)) continue;
      for (const n of region.Nodes) {
        nodes.set(n.Name, { ...n, STUNOnly: false });
      }
    }
    this.#map = map;
    this.#mapAt = this.#p.clock.now();
    this.#nodes = nodes;
    this.#reconcile(this.#wanted(map));
  }

  #wanted(map: DerpMap): Wanted[] {
    const o = this.#o;
    const out: Wanted[] = [];
    const pair = (a: string, b: string) => (): [DerpNode, DerpNode] => [this.node(a), this.node(b)];
    const deps: PairProbeDeps = { dial: o.dial, random: o.random, ...(o.meshKey !== undefined ? { meshKey: o.meshKey } : {}) };
    for (const region of sortedRegions(map)) {
      if (!regionSelected(region, o.regionCode)) continue;
      for (const server of region.Nodes) {
        const labels = { region: region.RegionCode, region_id: String(region.RegionID), hostname: server.HostName };
        const base = `derp/${region.RegionCode}/${server.Name}`;
        if (o.tlsIntervalMs > 0) {
          const port = derpPort(server);
          out.push({ name: `${base}/tls`, intervalMs: o.tlsIntervalMs, labels, make: () => tlsProbe(server.HostName, port, o.wallNow) });
        }
        if (o.stunIntervalMs > 0) {
          for (const [suffix, ip] of [['udp6', server.IPv6], ['udp', server.IPv4]] as const) {
            if (ip === undefined || ip === '' || server.STUNPort === -1) continue;
            out.push({ name: `${base}/${suffix}`, intervalMs: o.stunIntervalMs, labels, make: () => stunProbe(ip, server.STUNPort ?? 0, { openUdp: o.openUdp, random: o.random }) });
          }
        }
        for (const to of region.Nodes) {
          const pairBase = `${base}/${to.Name}`;
          const path = { derp_path: derpPath(server, to) };
          if (o.meshIntervalMs > 0) {
            out.push({ name: `${pairBase}/mesh`, intervalMs: o.meshIntervalMs, labels, make: () => meshProbe(pair(server.Name, to.Name), deps, path) });
          }
          if (o.bwIntervalMs > 0 && o.bwProbeSizeBytes > 0) {
            out.push({ name: `${pairBase}/bw`, intervalMs: o.bwIntervalMs, labels, make: () => bwProbe(pair(server.Name, to.Name), o.bwProbeSizeBytes, deps, path) });
          }
          if (o.qdPacketsPerSecond > 0 && !this.#p.once) {
            const qd = { packetsPerSecond: o.qdPacketsPerSecond, packetTimeoutMs: o.qdPacketTimeoutMs };
            out.push({ name: `${pairBase}/qd`, intervalMs: QD_WINDOW_MS, labels, make: () => qdProbe(pair(server.Name, to.Name), qd, deps, path) });
          }
        }
      }
    }
    return out;
  }

  #reconcile(wanted: Wanted[]): void {
    const names = new Set(wanted.map((w) => w.name));
    for (const w of wanted) {
      if (this.#p.has(w.name)) continue;
      const pc = w.make();
      this.#log.info('adding probe', { name: w.name, every_ms: w.intervalMs });
      this.#p.run(w.name, w.intervalMs, { ...pc, labels: { ...w.labels, ...pc.labels } });
      this.#owned.add(w.name);
    }
    for (const n of [...this.#owned]) {
      if (names.has(n)) continue;
      this.#log.info('removing probe', { name: n });
      this.#p.remove(n);
      this.#owned.delete(n);
    }
  }
}
