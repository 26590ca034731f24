/**
 * The `qd` probe class (spec/derp.md §18, only when --qd-packets-per-second > 0): a continuous probe that sends
 * QD_PACKET_SIZE-byte packets (an 8-byte big-endian sequence number, then random bytes) from→to at a fixed
 * rate and records each packet's queuing delay in a histogram (Go's buckets); a packet not back within the
 * packet timeout counts as dropped. We report one result per QD_WINDOW_MS window: its median delay as the
 * latency, and a failure when the connection breaks, a packet comes from the wrong source, or nothing at all
 * came back in the window.
 */
import type { DerpNode } from '../derpmap/derpmap.ts';
import { shortKey } from '../types/key.ts';
import { WiremeshError } from '../errors.ts';
import { MESH_SETTLE_MS, QD_PACKET_SIZE, QD_WINDOW_MS } from './constants.ts';
import type { PairProbeDeps } from './mesh.ts';
import type { ClassMetric, ProbeClass } from './prober.ts';
import { bytesEqual, connectPair } from './transfer.ts';
import { abortable, delay } from './util.ts';

/** Delay histogram buckets in seconds, as Go's prober. */
export const QD_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] as const;

export class DelayHistogram {
  readonly counts: number[] = QD_BUCKETS.map(() => 0);
  sum = 0;
  count = 0;
  add(seconds: number): void {
    this.sum += seconds;
    this.count++;
    QD_BUCKETS.forEach((b, i) => {
      if (seconds <= b) this.counts[i]!++;
    });
  }
}

export interface QdOptions {
  packetsPerSecond: number;
  packetTimeoutMs: number;
  windowMs?: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};

export function qdProbe(lookup: () => [DerpNode, DerpNode], qd: QdOptions, deps: PairProbeDeps, labels: { derp_path: string }): ProbeClass {
  const hist = new DelayHistogram();
  let dropped = 0;
  const windowMs = qd.windowMs ?? QD_WINDOW_MS;
  return {
    class: 'derp_qd',
    labels,
    continuous: true,
    probe: async (ctx) => {
      const [from, to] = lookup();
      const { clock, signal } = ctx;
      const [fromc, toc] = await connectPair(from, to, { dial: deps.dial, isProber: false, signal, clock, ...(deps.meshKey !== undefined ? { meshKey: deps.meshKey } : {}) });
      const tag = `${shortKey(fromc.publicKey)} -> ${shortKey(toc.publicKey)}`;
      const sentAt = new Map<number, number>();
      const delays: number[] = [];
      let seq = 0;
      const pkt = deps.random(QD_PACKET_SIZE);
      const view = new DataView(pkt.buffer, pkt.byteOffset, pkt.byteLength);
      let sendError: Error | null = null;
      const expire = (now: number): void => {
        for (const [s, at] of sentAt) {
          if (now - at <= qd.packetTimeoutMs) break;
          sentAt.delete(s);
          dropped++;
        }
      };
      try {
        if (from.Name !== to.Name) await delay(clock, MESH_SETTLE_MS, signal);
        const ticker = clock.setInterval(() => {
          expire(clock.now());
          view.setBigUint64(0, BigInt(seq));
          sentAt.set(seq, clock.now());
          seq++;
          try {
            fromc.send(toc.publicKey, pkt);
          } catch (e) {
            sendError = e as Error;
          }
        }, 1000 / qd.packetsPerSecond);
        const windowEnd = delay(clock, windowMs, signal).then(() => 'end' as const);
        windowEnd.catch(() => {}); // defensive: never leave an abort rejection unobserved
        try {
          for (;;) {
            const m = await abortable(Promise.race([toc.next(), windowEnd]), signal);
            if (sendError !== null) throw new Error(`error sending via ${JSON.stringify(from.Name)}: ${(sendError as Error).message}`);
            if (m === 'end') break;
            if (m.type !== 'recvPacket') continue;
            if (!bytesEqual(m.source, fromc.publicKey) || m.data.length < 8) {
              throw new Error(`got data packet from unexpected source, ${shortKey(m.source)}`);
            }
            const s = Number(new DataView(m.data.buffer, m.data.byteOffset, m.data.byteLength).getBigUint64(0));
            const at = sentAt.get(s);
            if (at === undefined) continue; // late: already counted as dropped
            sentAt.delete(s);
            const d = clock.now() - at;
            delays.push(d);
            hist.add(d / 1000);
          }
        } finally {
          ticker.cancel();
        }
        expire(clock.now());
        if (delays.length === 0) throw new Error(`no packets came back in ${windowMs}ms (${seq} sent)`);
        return { latencyMs: median(delays) };
      } catch (e) {
        throw new WiremeshError('probe_qd', `${tag}: ${(e as Error).message}`);
      } finally {
        fromc.close();
        toc.close();
      }
    },
    metrics: (): ClassMetric[] => [
      { name: 'derp_qd_probe_dropped_packets', help: 'Total packets dropped', type: 'counter', value: dropped },
      {
        name: 'derp_qd_probe_delays_seconds', help: 'Distribution of queuing delays', type: 'gauge', value: 0,
        histogram: { buckets: QD_BUCKETS.map((b, i) => [b, hist.counts[i]!] as const), sum: hist.sum, count: hist.count },
      },
    ],
  };
}
