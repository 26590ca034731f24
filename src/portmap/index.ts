/**
 * Port mapping, wired to real sockets (spec/nat-traversal.md §8): `probePortMapping()` for netcheck's UPnP / PMP /
 * PCP fields and `openPortMapper()` for the node and the CLI. Wiring only; the logic is in probe.ts and client.ts.
 */
import { listenUdp } from '../net/udp.ts';
import type { PacketConn } from '../net/packet.ts';
import { realClock, type Clock } from '../time/clock.ts';
import type { Logger } from '../log.ts';
import { cryptoRandom, discoverGateway, nodeHttp, type GatewayInfo } from './adapters.ts';
import { PortMapper, type PortMapperOptions } from './client.ts';
import { probe, type PortMappingProbe, type PortmapProtocol, type ProbeReport } from './probe.ts';

export type { Mapping } from './client.ts';
export type { PortMappingProbe, PortmapProtocol, ProbeReport } from './probe.ts';
export { PortMapper } from './client.ts';

export interface ProbePortMappingOptions {
  /** Default: the IPv4 default route of this network namespace. */
  gateway?: { gateway: string; localAddress: string };
  clock?: Clock;
  /** Default 250 ms. */
  timeoutMs?: number;
}

/** Full probe report (used by `wiremesh portmap probe`). */
export async function probePortMappingReport(opts: ProbePortMappingOptions = {}): Promise<ProbeReport> {
  const gw = opts.gateway ?? discoverGateway();
  const conn = await listenUdp({ host: gw.localAddress });
  try {
    return await probe({
      conn, clock: opts.clock ?? realClock, gateway: gw.gateway, localAddress: gw.localAddress,
      ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
    });
  } finally {
    conn.close();
  }
}

/**
 * Which port-mapping services the default gateway answers within the budget: netcheck's UPnP / PMP / PCP fields.
 * Never throws for "no gateway": that is reported as all false.
 */
export async function probePortMapping(opts: ProbePortMappingOptions = {}): Promise<PortMappingProbe> {
  try {
    const r = await probePortMappingReport(opts);
    return { upnp: r.upnp, pmp: r.pmp, pcp: r.pcp };
  } catch {
    return { upnp: false, pmp: false, pcp: false };
  }
}

export interface OpenPortMapperOptions {
  gateway?: GatewayInfo | { gateway: string; localAddress: string };
  protocols?: readonly PortmapProtocol[];
  lifetimeSeconds?: number;
  checkIntervalMs?: number;
  retryMs?: number;
  probeTimeoutMs?: number;
  logger?: Logger;
  onChange?: PortMapperOptions['onChange'];
}

/** A PortMapper on real sockets; `close()` releases the mapping and closes its socket. */
export async function openPortMapper(o: OpenPortMapperOptions = {}): Promise<{ mapper: PortMapper; conn: PacketConn; close: () => Promise<void> }> {
  const gw = o.gateway ?? discoverGateway();
  const conn = await listenUdp({ host: gw.localAddress });
  const mapper = new PortMapper({
    clock: realClock, random: cryptoRandom, conn, http: nodeHttp, gateway: gw.gateway, localAddress: gw.localAddress,
    ...(o.protocols === undefined ? {} : { protocols: o.protocols }),
    ...(o.lifetimeSeconds === undefined ? {} : { lifetimeSeconds: o.lifetimeSeconds }),
    ...(o.checkIntervalMs === undefined ? {} : { checkIntervalMs: o.checkIntervalMs }),
    ...(o.retryMs === undefined ? {} : { retryMs: o.retryMs }),
    ...(o.probeTimeoutMs === undefined ? {} : { probeTimeoutMs: o.probeTimeoutMs }),
    ...(o.logger === undefined ? {} : { logger: o.logger }),
    ...(o.onChange === undefined ? {} : { onChange: o.onChange }),
  });
  return {
    mapper,
    conn,
    close: async () => {
      try {
        await mapper.close();
      } finally {
        conn.close();
      }
    },
  };
}
