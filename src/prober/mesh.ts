/**
 * The `mesh` probe class (spec/derp.md §18): for an ordered pair of nodes in one region (from == to included,
 * labelled derp_path="single"), two TLS prober clients with fresh keys (and the mesh key when given) exchange
 * MESH_PACKET_SIZE random bytes, which must arrive intact with Source = from's key.
 */
import type { DerpNode } from '../derpmap/derpmap.ts';
import type { RandomBytes } from '../stun/client.ts';
import { MESH_PACKET_SIZE } from './constants.ts';
import type { DerpDialer } from './derp-conn.ts';
import type { ProbeClass } from './prober.ts';
import { transferPackets } from './transfer.ts';

export interface PairProbeDeps {
  dial: DerpDialer;
  random: RandomBytes;
  meshKey?: Uint8Array;
}

export const derpPath = (from: DerpNode, to: DerpNode): string => (from.Name === to.Name ? 'single' : 'mesh');

/** `lookup` resolves the nodes at run time (the map may have changed since the probe was created). */
export function meshProbe(lookup: () => [DerpNode, DerpNode], deps: PairProbeDeps, labels: { derp_path: string }): ProbeClass {
  return {
    class: 'derp_mesh',
    labels,
    probe: async (ctx) => {
      const [from, to] = lookup();
      await transferPackets(from, to, [deps.random(MESH_PACKET_SIZE)], 1, {
        dial: deps.dial,
        isProber: true,
        signal: ctx.signal,
        clock: ctx.clock,
        ...(deps.meshKey !== undefined ? { meshKey: deps.meshKey } : {}),
      });
    },
  };
}
