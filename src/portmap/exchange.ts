/**
 * One NAT-PMP / PCP request–response exchange over a PacketConn (engine; RFC 6886 §3.1 retransmission, RFC 6887
 * §8.1.1): sends to gateway:5351, retransmits with doubling timeouts on the injected Clock, and accepts replies
 * only from the gateway's address and port 5351 (anything else is rejected with PORTMAP_OFF_GATEWAY).
 */
import { WiremeshError, hasCode } from '../errors.ts';
import type { AddrPort, PacketConn } from '../net/packet.ts';
import type { Clock, Timer } from '../time/clock.ts';
import { PMP_PCP_SERVER_PORT, PortmapErrorCode } from './constants.ts';

/** Throws PORTMAP_OFF_GATEWAY unless `from` is exactly the gateway's address and `port`. */
export function checkFromGateway(gateway: string, from: AddrPort, port = PMP_PCP_SERVER_PORT): void {
  if (from.address !== gateway || from.port !== port) {
    throw new WiremeshError(PortmapErrorCode.OffGateway, `reply from ${from.address}:${from.port}, expected gateway ${gateway}:${port}`);
  }
}

export interface ExchangeOptions<T> {
  conn: PacketConn;
  clock: Clock;
  gateway: string;
  request: Uint8Array;
  /**
   * Interprets one datagram from the gateway: a value ends the exchange, null means "not for this exchange".
   * A thrown PORTMAP_RESULT_CODE ends it with that error (the server said no); any other thrown error is
   * recorded (onReject) and the exchange keeps waiting: a bad or spoofed reply must not cancel a good one.
   */
  accept: (data: Uint8Array) => T | null;
  /** First wait; doubled after each retransmission. */
  timeoutMs: number;
  attempts: number;
  onReject?: (e: WiremeshError) => void;
}

/** Runs the exchange. Rejects with the last recorded rejection, or PORTMAP_TIMEOUT if nothing came back. */
export function exchange<T>(o: ExchangeOptions<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let lastRejection: WiremeshError | null = null;
    let timer: Timer | null = null;
    let attempt = 0;
    let wait = o.timeoutMs;
    let finished = false;
    const finish = (): void => {
      finished = true;
      off();
      timer?.cancel();
    };
    const off = o.conn.onMessage((data, from) => {
      try {
        checkFromGateway(o.gateway, from);
        const v = o.accept(data);
        if (v === null) return;
        finish();
        resolve(v);
      } catch (e) {
        const err = e instanceof WiremeshError ? e : new WiremeshError(PortmapErrorCode.Malformed, String(e), { cause: e });
        if (hasCode(err, PortmapErrorCode.ResultCode)) {
          finish();
          reject(err);
          return;
        }
        lastRejection = err;
        o.onReject?.(err);
      }
    });
    const send = (): void => {
      if (finished) return;
      if (attempt >= o.attempts) {
        finish();
        reject(lastRejection ?? new WiremeshError(PortmapErrorCode.Timeout, `no reply from ${o.gateway}:${PMP_PCP_SERVER_PORT}`));
        return;
      }
      attempt++;
      o.conn.send(o.request, { address: o.gateway, port: PMP_PCP_SERVER_PORT });
      // An in-memory conn may answer inside send(): then there is nothing left to wait for.
      if (finished) return;
      timer = o.clock.setTimeout(send, wait);
      wait *= 2;
    };
    send();
  });
}
