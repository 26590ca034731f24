/**
 * The `udp` / `udp6` probe class (spec/derp.md §18): one STUN Binding request (Tailscale's `tailnode` form) to a
 * node's IPv4 / IPv6 address at STUNPort (0 → 3478); it needs a parsable success response with the same
 * transaction ID within STUN_ATTEMPT_TIMEOUT_MS, and after an unanswered attempt it pauses STUN_RETRY_DELAY_MS
 * and asks again until the probe's deadline. The socket comes from an injected factory (engine + seam).
 */
import { WiremeshError, hasCode } from '../errors.ts';
import { StunErrorCode } from '../stun/constants.ts';
import type { PacketConn } from '../net/packet.ts';
import { stunQuery, type RandomBytes } from '../stun/client.ts';
import { DEFAULT_STUN_PORT } from '../derpmap/constants.ts';
import { STUN_ATTEMPT_TIMEOUT_MS, STUN_RETRY_DELAY_MS } from './constants.ts';
import type { ProbeClass, ProbeContext } from './prober.ts';
import { delay } from './util.ts';

/** Opens an unconnected UDP socket of the given family. */
export type UdpFactory = (family: 4 | 6) => Promise<PacketConn>;

export interface StunProbeDeps {
  openUdp: UdpFactory;
  random: RandomBytes;
}

/** The STUN probe class for `ip` (an IPv4 or IPv6 literal) and `port` (0 → 3478). */
export function stunProbe(ip: string, port: number, deps: StunProbeDeps): ProbeClass {
  const server = { address: ip, port: port === 0 ? DEFAULT_STUN_PORT : port };
  return {
    class: 'derp_udp',
    probe: async (ctx: ProbeContext) => {
      const conn = await deps.openUdp(ip.includes(':') ? 6 : 4);
      try {
        for (;;) {
          try {
            await stunQuery(conn, server, {
              clock: ctx.clock,
              timeoutMs: STUN_ATTEMPT_TIMEOUT_MS,
              retryMs: STUN_ATTEMPT_TIMEOUT_MS,
              random: deps.random,
              signal: ctx.signal,
            });
            return;
          } catch (e) {
            if (ctx.signal.aborted) throw new WiremeshError('stun_timeout', `timeout reading from ${ip}: ${(e as Error).message}`);
            if (!hasCode(e, StunErrorCode.Timeout)) throw new WiremeshError('stun_error', `STUN to ${ip}: ${(e as Error).message}`);
          }
          await delay(ctx.clock, STUN_RETRY_DELAY_MS, ctx.signal);
        }
      } finally {
        conn.close();
      }
    },
  };
}
