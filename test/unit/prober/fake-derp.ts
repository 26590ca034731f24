/**
 * A tiny in-memory stand-in for DERP servers behind the prober's DerpDialer seam: every node of one FakeRegion
 * relays to every other (a perfect mesh), and nodes can be taken down or made to corrupt/drop packets.
 */
import type { DerpMessage } from '../../../src/derp/client.ts';
import type { DerpNode } from '../../../src/derpmap/derpmap.ts';
import type { DerpDialer, ProbeConn } from '../../../src/prober/derp-conn.ts';
import { generatePrivate, keyId, publicFromPrivate, type NodePublic } from '../../../src/types/key.ts';

class FakeConn implements ProbeConn {
  readonly publicKey: NodePublic = publicFromPrivate(generatePrivate());
  readonly tls: { serverName: string } | null;
  readonly node: string;
  readonly #region: FakeRegion;
  #queue: DerpMessage[] = [];
  #waiters: Array<{ resolve: (m: DerpMessage) => void; reject: (e: Error) => void }> = [];
  closed = false;

  constructor(region: FakeRegion, node: string, tls: { serverName: string } | null) {
    this.#region = region;
    this.node = node;
    this.tls = tls;
  }
  send(dst: NodePublic, data: Uint8Array): void {
    if (this.closed) throw new Error('closed');
    this.#region.route(this, dst, data);
  }
  deliver(m: DerpMessage): void {
    const w = this.#waiters.shift();
    if (w !== undefined) w.resolve(m);
    else this.#queue.push(m);
  }
  next(): Promise<DerpMessage> {
    const m = this.#queue.shift();
    if (m !== undefined) return Promise.resolve(m);
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }
  close(): void {
    this.closed = true;
    for (const w of this.#waiters.splice(0)) w.reject(new Error('connection closed'));
    this.#region.conns.delete(keyId(this.publicKey));
  }
}

export class FakeRegion {
  readonly conns = new Map<string, FakeConn>();
  readonly down = new Set<string>();
  readonly corrupt = new Set<string>();
  readonly blackhole = new Set<string>();
  /** When false, connections report no TLS state (a plain-HTTP server). */
  tls = true;
  dials = 0;
  opened: FakeConn[] = [];

  route(from: FakeConn, dst: NodePublic, data: Uint8Array): void {
    const to = this.conns.get(keyId(dst));
    if (to === undefined || this.blackhole.has(from.node) || this.blackhole.has(to.node)) return;
    const copy = Uint8Array.from(data);
    if (this.corrupt.has(to.node) && copy.length > 0) copy[0] = copy[0]! ^ 0xff;
    queueMicrotask(() => to.deliver({ type: 'keepAlive' }));
    queueMicrotask(() => to.deliver({ type: 'recvPacket', source: from.publicKey, data: copy }));
  }

  dialer(): DerpDialer {
    return async (node: DerpNode) => {
      this.dials++;
      await Promise.resolve();
      if (this.down.has(node.Name)) throw new Error(`dial tcp ${node.IPv4 ?? node.HostName}: connect: connection refused`);
      const serverName = /^[\d.]+$|:/.test(node.HostName) ? '' : node.HostName;
      const c = new FakeConn(this, node.Name, this.tls ? { serverName } : null);
      this.conns.set(keyId(c.publicKey), c);
      this.opened.push(c);
      return c;
    };
  }
}

/** Flushes pending promise callbacks (several turns of the microtask queue). */
export async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await Promise.resolve();
}
