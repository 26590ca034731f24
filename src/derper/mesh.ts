/**
 * derper's own mesh client, `--mesh-with=a,b,c` (spec/derp.md §11.4): for each peer server of the region, a DERP
 * client connection presenting this server's private key and the mesh key, subscribed with WatchConns. The peer's
 * PeerPresent(K) registers "forward K via this peer" in the local DerpServer, PeerGone(K) (either reason)
 * unregisters it. When the connection breaks every key learned from it is unregistered (the engine then tells
 * local clients that heard from K: PeerGone) and the peer is redialed with capped exponential backoff and jitter
 * (1 s doubling to 30 s, ±20 %; Go redials every 5 s flat). Connecting to ourselves (the peer's server key is our
 * own) stops that peer's loop, so a region can pass the same `--mesh-with` list to every server.
 *
 * Entries are `host[:port]` or `host[:port]/dialhost`: the latter dials `dialhost` on host's port while TLS still
 * verifies `host`. The mesh speaks TLS (`https://host/derp`) unless TS_DEBUG_USE_DERP_HTTP=1 (as Go), then plain
 * HTTP to the same port.
 */
import { readFileSync } from 'node:fs';
import { DerpClient, type DerpClientOptions } from '../derp/client.ts';
import type { TlsOptions } from '../derp/client-http.ts';
import type { PacketForwarder } from '../derp/server/server.ts';
import { WiremeshError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import { realClock, type Clock, type Timer } from '../time/clock.ts';
import { keyId, shortKey, type NodePrivate, type NodePublic } from '../types/key.ts';
import {
  MESH_BACKOFF_FACTOR, MESH_BACKOFF_INITIAL_MS, MESH_BACKOFF_JITTER, MESH_BACKOFF_MAX_MS, MESH_BACKOFF_RESET_AFTER_MS,
  MESH_FORWARD_BACKLOG_BYTES, MESH_MAX_PEERS, MESH_PING_INTERVAL_MS, MESH_PING_TIMEOUT_MS, MESH_PLAIN_HTTP_ENV,
} from './limit-constants.ts';

export interface MeshPeerSpec {
  /** `host[:port]`: the URL host and the TLS name. */
  host: string;
  /** Address dialed instead of host's hostname (same port), or null. */
  dialHost: string | null;
}

/** Parses `--mesh-with`: comma-separated `host[:port]` or `host[:port]/dialhost` entries (blanks ignored). */
export function parseMeshWith(text: string): MeshPeerSpec[] {
  const out: MeshPeerSpec[] = [];
  for (const raw of text.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const slash = entry.indexOf('/');
    const host = slash < 0 ? entry : entry.slice(0, slash);
    const dialHost = slash < 0 ? null : entry.slice(slash + 1);
    const bad = (why: string): WiremeshError => new WiremeshError('derper_usage', `--mesh-with entry ${JSON.stringify(entry)}: ${why}`);
    if (!/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:\d{1,5})?$/.test(host)) throw bad('want host[:port] or host[:port]/dialhost');
    if (dialHost !== null && !/^(\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+|[A-Za-z0-9._-]+)$/.test(dialHost)) throw bad('bad dial host');
    out.push({ host, dialHost: dialHost === null ? null : dialHost.replace(/^\[(.*)\]$/, '$1') });
  }
  if (out.length > MESH_MAX_PEERS) throw new WiremeshError('derper_usage', `--mesh-with: at most ${MESH_MAX_PEERS} peers`);
  return out;
}

/** The URL and TLS name used to reach a peer. */
export function meshTarget(peer: MeshPeerSpec, plainHttp: boolean): { url: string; servername: string | null } {
  const scheme = plainHttp ? 'http' : 'https';
  const u = new URL(`${scheme}://${peer.host}/derp`);
  if (peer.dialHost === null) return { url: u.href, servername: null };
  const hostname = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const dial = peer.dialHost.includes(':') ? `[${peer.dialHost}]` : peer.dialHost;
  return { url: `${scheme}://${dial}${u.port === '' ? '' : `:${u.port}`}/derp`, servername: hostname };
}

/**
 * The mesh transport from the environment, as Go: TS_DEBUG_USE_DERP_HTTP=1 (or true) dials plain HTTP, and
 * SSL_CERT_FILE, when set, is the CA bundle trusted for mesh TLS instead of the system roots.
 */
export function meshTransportFromEnv(env: NodeJS.ProcessEnv): { meshPlainHttp: boolean; meshTls?: { ca: Buffer } } {
  const v = (env[MESH_PLAIN_HTTP_ENV] ?? '').toLowerCase();
  const meshPlainHttp = v === '1' || v === 'true' || v === 't';
  const caFile = env.SSL_CERT_FILE ?? '';
  return caFile === '' ? { meshPlainHttp } : { meshPlainHttp, meshTls: { ca: readFileSync(caFile) } };
}

/** The delay before redial number `attempt` (0-based): capped exponential with ±jitter; `rand` ∈ [0, 1). */
export function meshBackoffMs(attempt: number, rand: number): number {
  const base = Math.min(MESH_BACKOFF_MAX_MS, MESH_BACKOFF_INITIAL_MS * MESH_BACKOFF_FACTOR ** Math.min(attempt, 30));
  return Math.round(base * (1 - MESH_BACKOFF_JITTER + 2 * MESH_BACKOFF_JITTER * rand));
}

/** What the mesh needs of the local DERP server. */
export interface MeshLocalServer {
  readonly publicKey: NodePublic;
  addPacketForwarder(key: NodePublic, fwd: PacketForwarder): void;
  removePacketForwarder(key: NodePublic, fwd: PacketForwarder): void;
}

export interface MeshOptions {
  server: MeshLocalServer;
  privateKey: NodePrivate;
  meshKey: Uint8Array;
  peers: readonly MeshPeerSpec[];
  /** Dial `http://` instead of `https://` (TS_DEBUG_USE_DERP_HTTP=1). */
  plainHttp?: boolean;
  /** Extra TLS trust (`ca`) or `insecure` for labs; servername comes from the entry. */
  tls?: Omit<TlsOptions, 'servername'>;
  clock?: Clock;
  logger?: Logger;
  /** Uniform [0, 1) for backoff jitter; default Math.random. */
  random?: () => number;
  /** Liveness ping period and Pong budget (defaults MESH_PING_INTERVAL_MS / MESH_PING_TIMEOUT_MS). */
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /** Test seam: how a peer is dialed (default DerpClient.connect). */
  connect?: (url: string, opts: DerpClientOptions) => Promise<DerpClient>;
}

export interface MeshPeerStatus {
  host: string;
  state: 'connecting' | 'connected' | 'backoff' | 'self' | 'stopped';
  /** Keys currently forwarded via this peer. */
  keys: number;
  /** Completed connections so far. */
  connects: number;
  lastError: string | null;
}

interface PeerRun {
  spec: MeshPeerSpec;
  status: MeshPeerStatus;
  client: DerpClient | null;
  wake: (() => void) | null;
  timer: Timer | null;
}

/** The running mesh: one reconnecting client per peer. */
export class Mesh {
  readonly #o: MeshOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #runs: PeerRun[];
  readonly #done: Promise<void>;
  #closed = false;
  /** Packets not forwarded because the peer connection was down or backed up. */
  forwardDrops = 0;

  constructor(o: MeshOptions) {
    if (o.meshKey.length !== 32) throw new WiremeshError('invalid_mesh_key', 'mesh needs a 32-byte mesh key');
    this.#o = o;
    this.#clock = o.clock ?? realClock;
    this.#log = o.logger ?? silentLogger;
    this.#runs = o.peers.map((spec) => ({
      spec,
      status: { host: spec.host, state: 'connecting', keys: 0, connects: 0, lastError: null },
      client: null,
      wake: null,
      timer: null,
    }));
    this.#done = Promise.all(this.#runs.map((r) => this.#loop(r))).then(() => {});
  }

  status(): MeshPeerStatus[] {
    return this.#runs.map((r) => ({ ...r.status }));
  }

  /** Stops every loop, closes the connections and unregisters every learned key. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const r of this.#runs) {
      r.client?.close();
      r.timer?.cancel();
      r.wake?.();
    }
    await this.#done;
  }

  async #loop(r: PeerRun): Promise<void> {
    const { url, servername } = meshTarget(r.spec, this.#o.plainHttp === true);
    const log = this.#log.child({ mesh: r.spec.host });
    const connect = this.#o.connect ?? DerpClient.connect;
    let attempt = 0;
    while (!this.#closed) {
      r.status.state = 'connecting';
      let upSince = -1;
      try {
        const client = await connect(url, {
          privateKey: this.#o.privateKey,
          meshKey: this.#o.meshKey,
          clock: this.#clock,
          tls: { ...this.#o.tls, ...(servername === null ? {} : { servername }) },
        });
        if (this.#closed) {
          client.close();
          break;
        }
        if (keyId(client.serverKey) === keyId(this.#o.server.publicKey)) {
          client.close();
          r.status.state = 'self';
          log.info('mesh peer is this server; not meshing with itself');
          return;
        }
        upSince = this.#clock.now();
        r.status.connects++;
        r.status.lastError = null;
        log.info('mesh connected', { peer: shortKey(client.serverKey) });
        await this.#serve(r, client, log);
      } catch (e) {
        r.status.lastError = e instanceof Error ? e.message : String(e);
        log.warn('mesh connection failed', { err: r.status.lastError });
      }
      if (this.#closed) break;
      if (upSince >= 0 && this.#clock.now() - upSince >= MESH_BACKOFF_RESET_AFTER_MS) attempt = 0;
      const delay = meshBackoffMs(attempt++, (this.#o.random ?? Math.random)());
      r.status.state = 'backoff';
      log.info('mesh redial scheduled', { inMs: delay });
      await new Promise<void>((resolve) => {
        r.wake = resolve;
        r.timer = this.#clock.setTimeout(resolve, delay);
      });
      r.wake = null;
      r.timer = null;
    }
    r.status.state = 'stopped';
  }

  /** Runs one connection: WatchConns, then PeerPresent/PeerGone → forwarders, until it ends. */
  async #serve(r: PeerRun, client: DerpClient, log: Logger): Promise<void> {
    const server = this.#o.server;
    const learned = new Map<string, NodePublic>();
    const selfId = keyId(server.publicKey);
    // Past the transport's high-water mark, up to MESH_FORWARD_BACKLOG_BYTES more are accepted until it drains.
    let backlog = 0;
    let waiting = false;
    const fwd: PacketForwarder = {
      name: r.spec.host,
      forwardPacket: (src, dst, packet) => {
        if (!client.writable) {
          if (backlog + packet.length > MESH_FORWARD_BACKLOG_BYTES) {
            this.forwardDrops++;
            return;
          }
          backlog += packet.length;
          if (!waiting) {
            waiting = true;
            void client.drained().then(() => {
              backlog = 0;
              waiting = false;
            });
          }
        }
        try {
          client.forwardPacket(src, dst, packet);
        } catch {
          this.forwardDrops++;
        }
      },
    };
    r.client = client;
    r.status.state = 'connected';
    let deadPeer: Error | null = null;
    const pinger = this.#clock.setInterval(() => {
      client.ping(undefined, this.#o.pingTimeoutMs ?? MESH_PING_TIMEOUT_MS).catch((e: unknown) => {
        if (!(e instanceof WiremeshError && e.code === 'ping_timeout')) return; // closed meanwhile
        deadPeer ??= new WiremeshError('mesh_peer_unresponsive', `mesh peer did not answer a ping: ${e.message}`);
        client.close();
      });
    }, this.#o.pingIntervalMs ?? MESH_PING_INTERVAL_MS);
    try {
      client.watchConns();
      for await (const m of client.recv()) {
        if (m.type === 'peerPresent') {
          const id = keyId(m.key);
          if (id === selfId || learned.has(id)) continue;
          learned.set(id, m.key);
          server.addPacketForwarder(m.key, fwd);
        } else if (m.type === 'peerGone') {
          const id = keyId(m.key);
          if (!learned.delete(id)) continue;
          server.removePacketForwarder(m.key, fwd);
        }
        r.status.keys = learned.size;
      }
      const err = await client.closed;
      if (deadPeer !== null) throw deadPeer;
      if (err !== null) throw err;
    } finally {
      pinger.cancel();
      r.client = null;
      client.close();
      for (const key of learned.values()) server.removePacketForwarder(key, fwd);
      r.status.keys = 0;
      if (learned.size > 0) log.info('mesh connection lost; unregistered its keys', { keys: learned.size });
    }
  }
}

/** The mesh's `/debug/vars` set (ours; Go exports none): peers connected, forwarded-key count, drops, per peer. */
export function meshVars(mesh: Mesh): Record<string, unknown> {
  const st = mesh.status();
  return {
    gauge_peers: st.length,
    gauge_peers_connected: st.filter((p) => p.state === 'connected').length,
    gauge_remote_keys: st.reduce((n, p) => n + p.keys, 0),
    counter_forward_drops: mesh.forwardDrops,
    counter_connects: st.reduce((n, p) => n + p.connects, 0),
    peers: Object.fromEntries(st.map((p) => [p.host, { state: p.state, keys: p.keys, connects: p.connects, last_error: p.lastError ?? '' }])),
  };
}
