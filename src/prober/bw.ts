/**
 * The `bw` probe class (spec/derp.md §18, only when --bw-interval > 0): like `mesh` but with IsProber=false and
 * no TLS requirement, it moves `size` bytes as packets of at most BW_MAX_PACKET_SIZE with at most
 * BW_MAX_IN_FLIGHT in flight, verifying each packet; it exports the payload size and the total transfer time.
 */
import type { DerpNode } from '../derpmap/derpmap.ts';
import { BW_MAX_IN_FLIGHT, BW_MAX_PACKET_SIZE } from './constants.ts';
import type { PairProbeDeps } from './mesh.ts';
import type { ProbeClass } from './prober.ts';
import { transferPackets } from './transfer.ts';

/** Splits `size` random bytes into packets of at most BW_MAX_PACKET_SIZE. */
export function bwPackets(size: number, random: (n: number) => Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let remaining = size; remaining > 0; remaining -= BW_MAX_PACKET_SIZE) out.push(random(Math.min(remaining, BW_MAX_PACKET_SIZE)));
  return out;
}

/** The bw probe class for a node pair; `size` is --bw-probe-size-bytes. */
export function bwProbe(lookup: () => [DerpNode, DerpNode], size: number, deps: PairProbeDeps, labels: { derp_path: string }): ProbeClass {
  let transferSeconds = 0;
  return {
    class: 'derp_bw',
    labels: { ...labels, tcp_in_tcp: 'false' },
    probe: async (ctx) => {
      const [from, to] = lookup();
      const packets = bwPackets(size, deps.random);
      const start = ctx.clock.now();
      try {
        await transferPackets(from, to, packets, BW_MAX_IN_FLIGHT, {
          dial: deps.dial,
          isProber: false,
          signal: ctx.signal,
          clock: ctx.clock,
          ...(deps.meshKey !== undefined ? { meshKey: deps.meshKey } : {}),
        });
      } finally {
        transferSeconds += (ctx.clock.now() - start) / 1000;
      }
    },
    metrics: () => [
      { name: 'derp_bw_probe_size_bytes', help: 'Payload size of the bandwidth prober', type: 'gauge', value: size },
      { name: 'derp_bw_transfer_time_seconds_total', help: 'Time it took to transfer data', type: 'counter', value: transferSeconds },
    ],
  };
}
