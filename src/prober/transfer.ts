/**
 * Shared engine of the mesh and bw probes (spec/derp.md §18): connect a "from" and a "to" client (fresh keys),
 * pause MESH_SETTLE_MS when they are on different nodes so the region's mesh learns the receiver, then send
 * packets from→to with at most `maxInFlight` unacknowledged and check that each arrives in order, intact, with
 * Source = from's key. KeepAlive and other frames are ignored. Both clients are closed whatever happens.
 */
import { WiremeshError } from '../errors.ts';
import type { DerpNode } from '../derpmap/derpmap.ts';
import type { Clock } from '../time/clock.ts';
import { shortKey } from '../types/key.ts';
import { MESH_SETTLE_MS } from './constants.ts';
import { connectNode, type DerpDialer, type ProbeConn } from './derp-conn.ts';
import { abortable, delay } from './util.ts';

export interface PairOptions {
  dial: DerpDialer;
  isProber: boolean;
  meshKey?: Uint8Array;
  signal: AbortSignal;
  clock: Clock;
}

/** Connects both ends (from first, as Go does); closes `from` if `to` fails. */
export async function connectPair(from: DerpNode, to: DerpNode, o: PairOptions): Promise<[ProbeConn, ProbeConn]> {
  const co = { isProber: o.isProber, signal: o.signal, ...(o.meshKey !== undefined ? { meshKey: o.meshKey } : {}) };
  const fromc = await connectNode(o.dial, from, co);
  let toc: ProbeConn;
  try {
    toc = await connectNode(o.dial, to, co);
  } catch (e) {
    fromc.close();
    throw e;
  }
  return [fromc, toc];
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Sends `packets` from→to through the region and verifies them; errors name both keys (as Go's). */
export async function transferPackets(from: DerpNode, to: DerpNode, packets: readonly Uint8Array[], maxInFlight: number, o: PairOptions): Promise<void> {
  const [fromc, toc] = await connectPair(from, to, o);
  try {
    if (from.Name !== to.Name) await delay(o.clock, MESH_SETTLE_MS, o.signal);
    await abortable(runTransfer(from, to, fromc, toc, packets, maxInFlight), o.signal);
  } catch (e) {
    if (o.signal.aborted && e === o.signal.reason) {
      throw new WiremeshError('probe_timeout', `${shortKey(fromc.publicKey)} -> ${shortKey(toc.publicKey)}: timeout: ${(e as Error).message}`);
    }
    throw new WiremeshError('probe_transfer', `${shortKey(fromc.publicKey)} -> ${shortKey(toc.publicKey)}: ${(e as Error).message}`);
  } finally {
    fromc.close();
    toc.close();
  }
}

async function runTransfer(from: DerpNode, to: DerpNode, fromc: ProbeConn, toc: ProbeConn, packets: readonly Uint8Array[], maxInFlight: number): Promise<void> {
  let sent = 0;
  let received = 0;
  const pump = (): void => {
    while (sent < packets.length && sent - received < maxInFlight) {
      try {
        fromc.send(toc.publicKey, packets[sent]!);
      } catch (e) {
        throw new Error(`error sending via ${JSON.stringify(from.Name)}: sending packet ${sent}: ${(e as Error).message}`);
      }
      sent++;
    }
  };
  pump();
  while (received < packets.length) {
    let m;
    try {
      m = await toc.next();
    } catch (e) {
      throw new Error(`error receiving from ${JSON.stringify(to.Name)}: after ${received} data packets: ${(e as Error).message}`);
    }
    if (m.type !== 'recvPacket') continue;
    if (!bytesEqual(m.source, fromc.publicKey)) {
      throw new Error(`error receiving from ${JSON.stringify(to.Name)}: got data packet ${received} from unexpected source, ${shortKey(m.source)}`);
    }
    if (!bytesEqual(m.data, packets[received]!)) {
      throw new Error(`error receiving from ${JSON.stringify(to.Name)}: unexpected data packet ${received} (out of ${packets.length})`);
    }
    received++;
    pump();
  }
}
