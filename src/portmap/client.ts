/**
 * Port-mapping client engine (spec/nat-traversal.md §8; issue #4): probes PCP, NAT-PMP and UPnP IGD in parallel,
 * maps one local UDP port with the best protocol found (PCP > NAT-PMP > UPnP), renews at half the granted lifetime,
 * notices a router reboot (PMP/PCP epoch going back, or the UPnP rule gone) and maps again, and releases every
 * mapping on close. Given a Clock, a random source, a PacketConn and an HTTP seam; accepts answers only from the
 * gateway. The single NAT-PMP / PCP operations live in ./gateway-ops.ts, UPnP IGD control in ./upnp/igd.ts.
 */
import { WiremeshError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { PacketConn } from '../net/packet.ts';
import type { Clock, Timer } from '../time/clock.ts';
import {
  CHECK_INTERVAL_MS, DEFAULT_LIFETIME_SECONDS, EPOCH_SLACK_SECONDS, PROBE_REUSE_MS, RENEW_RETRY_MS, PortmapErrorCode, UpnpError,
} from './constants.ts';
import { grantPcp, grantPmp, releaseGrant, serverEpoch, type GatewayContext, type Grant } from './gateway-ops.ts';
import { probe, type PortmapProtocol, type ProbeReport } from './probe.ts';
import { IgdClient, loadIgd, type HttpClient } from './upnp/igd.ts';
import { UpnpSoapError } from './upnp/soap.ts';

export interface Mapping {
  protocol: PortmapProtocol;
  gateway: string;
  internalAddress: string;
  internalPort: number;
  externalIp: string;
  externalPort: number;
  /** Granted lifetime in seconds; 0 = permanent (UPnP routers that only allow permanent leases). */
  lifetimeSeconds: number;
  /** Clock times (ms) of the last grant and of the planned renewal. */
  grantedAt: number;
  renewAt: number;
  /** PMP/PCP server epoch at the last grant. */
  epoch?: number;
  /** PCP nonce (hex): a PCP mapping can only be deleted with the nonce that created it. */
  nonce?: string;
  /** UPnP control URL and service type used. */
  upnpControlUrl?: string;
  upnpServiceType?: string;
}

export interface PortMapperOptions {
  clock: Clock;
  random: (n: number) => Uint8Array;
  conn: PacketConn;
  http: HttpClient;
  gateway: string;
  localAddress: string;
  /** Protocols allowed, in order of preference (default pcp, pmp, upnp). */
  protocols?: readonly PortmapProtocol[];
  lifetimeSeconds?: number;
  /** Reboot-detection interval; 0 disables the periodic check (check() can still be called). */
  checkIntervalMs?: number;
  probeTimeoutMs?: number;
  /** Wait before retrying a failed renewal / remap (default RENEW_RETRY_MS). */
  retryMs?: number;
  logger?: Logger;
  /** Called after every grant ("granted"), renewal ("renewed"), remap after a reboot ("remapped") and release (null). */
  onChange?: (m: Mapping | null, why: string) => void;
}

/** RFC 6886 §3.6: the epoch went back if it is below prev + 7/8 of the elapsed client time, minus 2 s. */
export function epochWentBack(prevEpoch: number, prevAtMs: number, epoch: number, nowMs: number): boolean {
  const elapsed = Math.max(0, nowMs - prevAtMs) / 1000;
  return epoch < prevEpoch || epoch + EPOCH_SLACK_SECONDS < prevEpoch + (elapsed * 7) / 8;
}

export class PortMapper {
  readonly stats = { granted: 0, renewed: 0, reboots: 0, lost: 0, released: 0, rejected: 0, failures: 0 };
  readonly #o: PortMapperOptions;
  readonly #log: Logger;
  readonly #order: readonly PortmapProtocol[];
  readonly #gw: GatewayContext;
  #mapping: Mapping | null = null;
  #igd: IgdClient | null = null;
  #lastProbe: ProbeReport | null = null;
  #lastProbeAt = 0;
  #renewTimer: Timer | null = null;
  #checkTimer: Timer | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  /** Set while check() remaps after it already counted the reboot, so #finish does not count it twice. */
  #rebootNoted = false;

  constructor(o: PortMapperOptions) {
    this.#o = o;
    this.#log = o.logger ?? silentLogger;
    this.#order = o.protocols ?? ['pcp', 'pmp', 'upnp'];
    this.#gw = {
      conn: o.conn, clock: o.clock, gateway: o.gateway, localAddress: o.localAddress, random: o.random,
      onReject: (e) => {
        this.stats.rejected++;
        this.#log.warn('portmap reply rejected', { code: e.code, error: e.message });
      },
    };
  }

  get mapping(): Mapping | null {
    return this.#mapping === null ? null : { ...this.#mapping };
  }

  get lastProbe(): ProbeReport | null {
    return this.#lastProbe;
  }

  /** Probes all allowed protocols in parallel (one socket, 250 ms budget). */
  async probe(): Promise<ProbeReport> {
    const r = await probe({
      conn: this.#o.conn, clock: this.#o.clock, gateway: this.#o.gateway, localAddress: this.#o.localAddress,
      protocols: this.#order, ...(this.#o.probeTimeoutMs === undefined ? {} : { timeoutMs: this.#o.probeTimeoutMs }),
    });
    this.stats.rejected += r.rejections.length;
    this.#lastProbe = r;
    this.#lastProbeAt = this.#o.clock.now();
    return r;
  }

  /** Maps `localPort` (UDP) with the best protocol found; reuses a live mapping of the same port. */
  map(localPort: number): Promise<Mapping> {
    return this.#serial(async () => {
      if (this.#closed) throw new WiremeshError(PortmapErrorCode.Closed, 'port mapper is closed');
      const m = this.#mapping;
      if (m !== null && m.internalPort === localPort) return { ...m };
      if (m !== null) await this.#release(m);
      return this.#create(localPort, null);
    });
  }

  /**
   * Renews the current mapping now (the renewal timer calls this at half-life), asking for the same external port
   * (and, for PCP, with the same nonce). If the protocol fails, maps again with any protocol; if that fails too,
   * keeps the mapping (the router may still hold it) and retries after `retryMs`.
   */
  renew(): Promise<Mapping | null> {
    return this.#serial(async () => {
      const m = this.#mapping;
      if (m === null || this.#closed) return null;
      try {
        const next = await this.#grant(m.protocol, m.internalPort, m);
        this.stats.renewed++;
        return this.#install(next, 'renewed');
      } catch (e) {
        this.#log.warn('portmap renewal failed; mapping again', { protocol: m.protocol, error: String(e) });
      }
      try {
        return await this.#create(m.internalPort, m);
      } catch (e) {
        this.stats.failures++;
        this.#log.warn('portmap remap failed; will retry', { error: String(e) });
        this.#mapping = m;
        this.#schedule(this.#o.retryMs ?? RENEW_RETRY_MS);
        return null;
      }
    });
  }

  /**
   * Reboot detection: asks the server for its epoch (PMP external address / PCP ANNOUNCE) or whether the UPnP rule
   * still exists; maps again when the epoch went back or the rule is gone. Returns what it found.
   */
  check(): Promise<'ok' | 'remapped' | 'none' | 'unreachable'> {
    return this.#serial(async () => {
      const m = this.#mapping;
      if (m === null || this.#closed) return 'none';
      let gone: boolean;
      try {
        if (m.protocol === 'upnp') {
          gone = !(await this.#igdFor(m).hasMapping(m.externalPort, m.internalAddress, m.internalPort));
          if (gone) this.stats.lost++;
        } else {
          const epoch = await serverEpoch(this.#gw, m.protocol);
          gone = m.epoch !== undefined && epochWentBack(m.epoch, m.grantedAt, epoch, this.#o.clock.now());
          if (gone) this.stats.reboots++;
        }
      } catch (e) {
        this.#log.warn('portmap check failed', { protocol: m.protocol, error: String(e) });
        return 'unreachable';
      }
      if (!gone) return 'ok';
      this.#log.info('portmap: router lost our mapping; mapping again', { protocol: m.protocol });
      this.#rebootNoted = true;
      try {
        await this.#create(m.internalPort, m);
      } catch (e) {
        this.stats.failures++;
        this.#log.warn('portmap remap after reboot failed; will retry', { error: String(e) });
        this.#schedule(this.#o.retryMs ?? RENEW_RETRY_MS);
        return 'unreachable';
      } finally {
        this.#rebootNoted = false;
      }
      return 'remapped';
    });
  }

  /** Deletes the current mapping at the router (if any). */
  release(): Promise<void> {
    return this.#serial(async () => {
      const m = this.#mapping;
      if (m !== null) await this.#release(m);
    });
  }

  /** Deletes a mapping described by `m` (e.g. one made by an earlier process: `wiremesh portmap unmap`). */
  releaseMapping(m: Mapping): Promise<void> {
    return this.#serial(() => this.#release(m));
  }

  /** Releases every mapping and stops all timers. The PacketConn stays open (its owner closes it). */
  async close(): Promise<void> {
    await this.release();
    this.#closed = true;
    this.#stopTimers();
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(fn, fn);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  async #create(localPort: number, prev: Mapping | null): Promise<Mapping> {
    const fresh = this.#lastProbe !== null && prev === null && this.#o.clock.now() - this.#lastProbeAt < PROBE_REUSE_MS;
    const r = fresh && this.#lastProbe !== null ? this.#lastProbe : await this.probe();
    const found = this.#order.filter((p) => r[p]);
    const errors: string[] = [];
    for (const proto of found) {
      try {
        const keep = prev !== null && prev.protocol === proto ? prev : null;
        const m = await this.#grant(proto, localPort, keep);
        this.stats.granted++;
        return this.#install(m, prev === null ? 'granted' : 'remapped');
      } catch (e) {
        errors.push(`${proto}: ${e instanceof Error ? e.message : String(e)}`);
        this.#log.debug('portmap protocol failed', { protocol: proto, error: String(e) });
      }
    }
    throw new WiremeshError(PortmapErrorCode.Unavailable,
      found.length === 0 ? `no port-mapping service answered on gateway ${this.#o.gateway}` : errors.join('; '));
  }

  #install(m: Mapping, why: string): Mapping {
    this.#mapping = m;
    this.#schedule(m.renewAt - this.#o.clock.now());
    this.#o.onChange?.({ ...m }, why);
    return { ...m };
  }

  /** (Re)arms the renewal timer after `renewInMs` and the periodic reboot check. */
  #schedule(renewInMs: number): void {
    this.#stopTimers();
    const clock = this.#o.clock;
    this.#renewTimer = clock.setTimeout(() => void this.renew().catch(() => undefined), renewInMs);
    const every = this.#o.checkIntervalMs ?? CHECK_INTERVAL_MS;
    if (every > 0) this.#checkTimer = clock.setInterval(() => void this.check().catch(() => undefined), every);
  }

  #stopTimers(): void {
    this.#renewTimer?.cancel();
    this.#checkTimer?.cancel();
    this.#renewTimer = this.#checkTimer = null;
  }

  #finish(base: Grant, prevEpoch?: Mapping): Mapping {
    const now = this.#o.clock.now();
    const life = base.lifetimeSeconds === 0 ? DEFAULT_LIFETIME_SECONDS : base.lifetimeSeconds;
    if (!this.#rebootNoted && prevEpoch?.epoch !== undefined && base.epoch !== undefined &&
        epochWentBack(prevEpoch.epoch, prevEpoch.grantedAt, base.epoch, now)) {
      this.stats.reboots++;
    }
    return { ...base, gateway: this.#o.gateway, internalAddress: this.#o.localAddress, grantedAt: now, renewAt: now + (life * 1000) / 2 };
  }

  async #grant(proto: PortmapProtocol, localPort: number, prev: Mapping | null): Promise<Mapping> {
    const lifetime = this.#o.lifetimeSeconds ?? DEFAULT_LIFETIME_SECONDS;
    if (proto === 'upnp') return this.#finish(await this.#grantUpnp(localPort, prev, lifetime));
    const grant = proto === 'pcp' ? grantPcp : grantPmp;
    return this.#finish(await grant(this.#gw, localPort, prev, lifetime), prev ?? undefined);
  }

  #igdFor(m: Mapping): IgdClient {
    if (this.#igd !== null && this.#igd.service.controlUrl === m.upnpControlUrl) return this.#igd;
    if (m.upnpControlUrl === undefined || m.upnpServiceType === undefined) {
      throw new WiremeshError(PortmapErrorCode.NoService, 'UPnP mapping without a control URL');
    }
    this.#igd = new IgdClient(this.#o.http, { controlUrl: m.upnpControlUrl, serviceType: m.upnpServiceType });
    return this.#igd;
  }

  /** The IGD from the last probe (probing first if there is none). */
  async #discoverIgd(): Promise<IgdClient> {
    if (this.#lastProbe === null) await this.probe();
    const loc = this.#lastProbe?.upnpResponses[0]?.location;
    if (loc === undefined) throw new WiremeshError(PortmapErrorCode.NoService, 'no UPnP IGD location from the probe');
    this.#igd = await loadIgd(this.#o.http, loc, this.#o.gateway);
    return this.#igd;
  }

  async #grantUpnp(localPort: number, prev: Mapping | null, lifetime: number): Promise<Grant> {
    let igd = prev?.upnpControlUrl !== undefined ? this.#igdFor(prev) : null;
    igd ??= await this.#discoverIgd();
    let want = prev?.externalPort ?? localPort;
    if (want < 1024) want = this.#randomPort();
    const args = { externalPort: want, internalPort: localPort, internalClient: this.#o.localAddress, leaseSeconds: lifetime };
    let grant;
    try {
      grant = await igd.addMapping(args);
    } catch (e) {
      if (!(e instanceof UpnpSoapError) || e.upnpCode !== UpnpError.ConflictInMappingEntry) throw e;
      grant = await igd.addMapping({ ...args, externalPort: this.#randomPort() });
    }
    const externalIp = await igd.externalIp();
    return {
      protocol: 'upnp', internalPort: localPort, externalIp, externalPort: grant.externalPort,
      lifetimeSeconds: grant.leaseSeconds, upnpControlUrl: igd.service.controlUrl, upnpServiceType: igd.service.serviceType,
    };
  }

  #randomPort(): number {
    const b = this.#o.random(2);
    return 1024 + ((((b[0] ?? 0) << 8) | (b[1] ?? 0)) % (65535 - 1024));
  }

  async #release(m: Mapping): Promise<void> {
    try {
      if (m.protocol === 'pcp' || m.protocol === 'pmp') {
        await releaseGrant(this.#gw, m);
      } else {
        const igd = m.upnpControlUrl !== undefined ? this.#igdFor(m) : await this.#discoverIgd();
        await igd.deleteMapping(m.externalPort);
      }
      this.stats.released++;
    } finally {
      if (this.#mapping !== null && this.#mapping.internalPort === m.internalPort && this.#mapping.protocol === m.protocol) {
        this.#mapping = null;
        this.#stopTimers();
        this.#o.onChange?.(null, 'released');
      }
    }
  }
}
