/**
 * Port-mapping probe engine (spec/nat-traversal.md §8.1): from one socket, sends a NAT-PMP external-address
 * request and a PCP ANNOUNCE to gateway:5351 and SSDP M-SEARCHes (unicast to the gateway, then multicast), and
 * reports which services answered within the budget (250 ms). Replies count only from the gateway address.
 */
import { WiremeshError } from '../errors.ts';
import type { PacketConn } from '../net/packet.ts';
import type { Clock, Timer } from '../time/clock.ts';
import {
  PMP_PCP_SERVER_PORT, PROBE_TIMEOUT_MS, PROBE_UPNP_EXTRA_WAIT_MS, PcpResult, PortmapErrorCode, SSDP_MAX_KEPT_RESPONSES,
  SSDP_MULTICAST_V4, SSDP_PORT,
} from './constants.ts';
import { encodePmpExternalAddressRequest, parsePmpResponse } from './natpmp.ts';
import { encodePcpAnnounceRequest, parsePcpResponse } from './pcp.ts';
import { SearchTarget, encodeMSearch, parseSsdpResponse, type SsdpResponse } from './upnp/ssdp.ts';

export type PortmapProtocol = 'pcp' | 'pmp' | 'upnp';

/** What netcheck reports (its UPnP / PMP / PCP fields). */
export interface PortMappingProbe {
  upnp: boolean;
  pmp: boolean;
  pcp: boolean;
}

export interface ProbeReport extends PortMappingProbe {
  gateway: string;
  localAddress: string;
  /** From the NAT-PMP external-address reply. */
  pmpExternalIp?: string;
  pmpEpoch?: number;
  pcpEpoch?: number;
  /** IGD replies, IGD:2 first, de-duplicated by Location + Server, at most 10. */
  upnpResponses: SsdpResponse[];
  /** Replies that were dropped, with their error codes (off-gateway, malformed…). */
  rejections: Array<{ code: string; message: string }>;
  durationMs: number;
}

export interface ProbeOptions {
  conn: PacketConn;
  clock: Clock;
  gateway: string;
  localAddress: string;
  timeoutMs?: number;
  /** Protocols to probe (default all three). */
  protocols?: readonly PortmapProtocol[];
}

export function probe(o: ProbeOptions): Promise<ProbeReport> {
  const want = new Set(o.protocols ?? ['pcp', 'pmp', 'upnp']);
  const start = o.clock.now();
  const report: ProbeReport = {
    upnp: false, pmp: false, pcp: false, gateway: o.gateway, localAddress: o.localAddress, upnpResponses: [],
    rejections: [], durationMs: 0,
  };
  let pmpKnown = !want.has('pmp');
  let pcpKnown = !want.has('pcp');
  let firstUpnpAt: number | null = null;
  return new Promise<ProbeReport>((resolve) => {
    let done = false;
    let early: Timer | null = null;
    const finish = (): void => {
      if (done) return;
      done = true;
      off();
      deadline.cancel();
      early?.cancel();
      report.upnpResponses.sort((a, b) => b.igdVersion - a.igdVersion);
      report.durationMs = o.clock.now() - start;
      resolve(report);
    };
    const maybeEarlyExit = (): void => {
      const upnpKnown = !want.has('upnp') || firstUpnpAt !== null;
      if (pmpKnown && pcpKnown && upnpKnown) {
        const wait = firstUpnpAt === null ? 0 : firstUpnpAt + PROBE_UPNP_EXTRA_WAIT_MS - o.clock.now();
        if (wait <= 0) finish();
        else early ??= o.clock.setTimeout(finish, wait);
      }
    };
    const reject = (e: unknown): void => {
      const err = e instanceof WiremeshError ? e : new WiremeshError(PortmapErrorCode.Malformed, String(e));
      report.rejections.push({ code: err.code, message: err.message });
    };
    const off = o.conn.onMessage((data, from) => {
      if (done) return;
      try {
        if (from.address !== o.gateway) {
          throw new WiremeshError(PortmapErrorCode.OffGateway, `probe reply from ${from.address}:${from.port}, gateway is ${o.gateway}`);
        }
        if (from.port === PMP_PCP_SERVER_PORT) {
          const pcp = parsePcpResponse(data);
          if (pcp !== null) {
            pcpKnown = true;
            report.pcp = pcp.result === PcpResult.Success ||
              (pcp.result !== PcpResult.NotAuthorized && pcp.result !== PcpResult.AddressMismatch && pcp.result !== PcpResult.UnsuppVersion);
            if (report.pcp) report.pcpEpoch = pcp.epoch;
          } else {
            const pmp = parsePmpResponse(data);
            if (pmp?.kind === 'externalAddress') {
              pmpKnown = true;
              report.pmp = true;
              report.pmpEpoch = pmp.epoch;
              report.pmpExternalIp = pmp.externalIp;
            }
          }
        } else {
          const ssdp = parseSsdpResponse(data);
          if (ssdp !== null && want.has('upnp')) {
            report.upnp = true;
            firstUpnpAt ??= o.clock.now();
            const dup = report.upnpResponses.some((r) => r.location === ssdp.location && r.server === ssdp.server);
            if (!dup && report.upnpResponses.length < SSDP_MAX_KEPT_RESPONSES) report.upnpResponses.push(ssdp);
          }
        }
      } catch (e) {
        // A PMP-only server answers the PCP ANNOUNCE with "unsupported version": that says PCP = false.
        if (e instanceof WiremeshError && e.code === PortmapErrorCode.ResultCode && from.port === PMP_PCP_SERVER_PORT) {
          pcpKnown = true;
          return;
        }
        reject(e);
      }
      maybeEarlyExit();
    });
    // At the deadline, give the loop one more turn before finishing: on a busy host the timer can fire before the
    // poll phase has read replies that arrived in time.
    const deadline = o.clock.setTimeout(() => o.clock.setTimeout(finish, 0), o.timeoutMs ?? PROBE_TIMEOUT_MS);
    const gw = { address: o.gateway, port: PMP_PCP_SERVER_PORT };
    if (want.has('pmp')) o.conn.send(encodePmpExternalAddressRequest(), gw);
    if (want.has('pcp')) o.conn.send(encodePcpAnnounceRequest(o.localAddress), gw);
    if (want.has('upnp')) {
      o.conn.send(encodeMSearch(SearchTarget.All, `${o.gateway}:${SSDP_PORT}`), { address: o.gateway, port: SSDP_PORT });
      const mc = { address: SSDP_MULTICAST_V4, port: SSDP_PORT };
      o.conn.send(encodeMSearch(SearchTarget.All), mc);
      o.conn.send(encodeMSearch(SearchTarget.Igd1), mc);
    }
  });
}
