/**
 * The NAT-PMP (RFC 6886 §3.2–§3.4) and PCP (RFC 6887 §11 MAP, §14 ANNOUNCE) operations the port mapper performs
 * against the gateway (spec/nat-traversal.md §8.2–§8.3): grant or renew a mapping, read the server epoch for
 * reboot detection, and delete a mapping. Each is one request/response exchange with retransmission (./exchange.ts)
 * on the engine's Clock and PacketConn; the mapper's lifecycle (timers, renewal, remap) lives in ./client.ts.
 */
import { WiremeshError } from '../errors.ts';
import type { PacketConn } from '../net/packet.ts';
import type { Clock } from '../time/clock.ts';
import type { Mapping } from './client.ts';
import { MAP_ATTEMPTS, MAP_REPLY_TIMEOUT_MS, PCP_NONCE_LEN, PcpOpcode, PortmapErrorCode } from './constants.ts';
import { exchange } from './exchange.ts';
import { encodePmpExternalAddressRequest, encodePmpMapRequest, parsePmpResponse } from './natpmp.ts';
import { encodePcpAnnounceRequest, encodePcpMapRequest, parsePcpResponse, verifyPcpMapResponse } from './pcp.ts';

/** What every operation needs: the socket, clock and addresses, and where rejected replies are reported. */
export interface GatewayContext {
  conn: PacketConn;
  clock: Clock;
  gateway: string;
  localAddress: string;
  random: (n: number) => Uint8Array;
  onReject: (e: WiremeshError) => void;
}

/** A grant as the server described it; the mapper adds the times, gateway and internal address. */
export type Grant = Omit<Mapping, 'grantedAt' | 'renewAt' | 'gateway' | 'internalAddress'>;

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));

function send<T>(ctx: GatewayContext, request: Uint8Array, accept: (d: Uint8Array) => T | null): Promise<T> {
  return exchange({
    conn: ctx.conn, clock: ctx.clock, gateway: ctx.gateway, request, accept, attempts: MAP_ATTEMPTS,
    timeoutMs: MAP_REPLY_TIMEOUT_MS, onReject: ctx.onReject,
  });
}

/** PCP MAP for `localPort`; a renewal (`prev`) reuses the nonce and asks for the same external port. */
export async function grantPcp(ctx: GatewayContext, localPort: number, prev: Mapping | null, lifetime: number): Promise<Grant> {
  const nonce = prev?.nonce !== undefined ? unhex(prev.nonce) : ctx.random(PCP_NONCE_LEN);
  const req = { clientIp: ctx.localAddress, lifetime, nonce, internalPort: localPort, externalPort: prev?.externalPort ?? 0 };
  const { resp, map } = await send(ctx, encodePcpMapRequest(req), (d) => {
    const r = parsePcpResponse(d);
    if (r === null || r.opcode !== PcpOpcode.Map) return null;
    return { resp: r, map: verifyPcpMapResponse(r, req) };
  });
  return {
    protocol: 'pcp', internalPort: localPort, externalIp: map.externalIp, externalPort: map.externalPort,
    lifetimeSeconds: resp.lifetime, epoch: resp.epoch, nonce: hex(nonce),
  };
}

function pmpExternal(ctx: GatewayContext): Promise<{ epoch: number; externalIp: string }> {
  return send(ctx, encodePmpExternalAddressRequest(), (d) => {
    const r = parsePmpResponse(d);
    return r?.kind === 'externalAddress' ? r : null;
  });
}

/** NAT-PMP UDP mapping for `localPort` (the external address is asked for every time: a reboot may change it). */
export async function grantPmp(ctx: GatewayContext, localPort: number, prev: Mapping | null, lifetime: number): Promise<Grant> {
  const externalIp = (await pmpExternal(ctx)).externalIp;
  const req = { protocol: 'udp' as const, internalPort: localPort, externalPort: prev?.externalPort ?? 0, lifetime };
  const r = await send(ctx, encodePmpMapRequest(req), (d) => {
    const p = parsePmpResponse(d);
    if (p?.kind !== 'map' || p.protocol !== 'udp' || p.internalPort !== localPort) return null;
    if (p.lifetime === 0 || p.externalPort === 0) {
      throw new WiremeshError(PortmapErrorCode.Malformed, 'NAT-PMP granted lifetime 0 or external port 0');
    }
    return p;
  });
  return { protocol: 'pmp', internalPort: localPort, externalIp, externalPort: r.externalPort, lifetimeSeconds: r.lifetime, epoch: r.epoch };
}

/** The server's current epoch: NAT-PMP external-address answer, or a PCP ANNOUNCE. */
export async function serverEpoch(ctx: GatewayContext, protocol: 'pmp' | 'pcp'): Promise<number> {
  if (protocol === 'pmp') return (await pmpExternal(ctx)).epoch;
  const r = await send(ctx, encodePcpAnnounceRequest(ctx.localAddress), (d) => {
    const p = parsePcpResponse(d);
    return p !== null && p.opcode === PcpOpcode.Announce ? p : null;
  });
  return r.epoch;
}

/** Deletes a PCP or NAT-PMP mapping (lifetime 0; PCP needs the nonce that created it). */
export async function releaseGrant(ctx: GatewayContext, m: Mapping): Promise<void> {
  if (m.protocol === 'pcp') {
    if (m.nonce === undefined) throw new WiremeshError(PortmapErrorCode.Malformed, 'PCP release needs the nonce');
    const req = { clientIp: m.internalAddress, lifetime: 0, nonce: unhex(m.nonce), internalPort: m.internalPort, externalPort: m.externalPort };
    await send(ctx, encodePcpMapRequest(req), (d) => {
      const r = parsePcpResponse(d);
      if (r === null || r.opcode !== PcpOpcode.Map) return null;
      verifyPcpMapResponse(r, req);
      return r;
    });
    return;
  }
  await send(ctx, encodePmpMapRequest({ protocol: 'udp', internalPort: m.internalPort, externalPort: 0, lifetime: 0 }), (d) => {
    const p = parsePmpResponse(d);
    return p?.kind === 'map' && p.internalPort === m.internalPort ? p : null;
  });
}
