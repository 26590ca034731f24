/**
 * The virtual lab (DESIGN.md "test/vlab"; spec/nat-traversal.md §5, spec/lab.md §1–§3 in memory): segments
 * (broadcast domains), hosts with sockets implementing PacketConn (src/net/packet.ts), and routers that combine a
 * NAT (./nat.ts, RFC 4787) with a firewall (./firewall.ts). Every hop is a timer on a ManualClock and every port
 * choice comes from a seeded PRNG, so an engine run on the vlab is deterministic. Routers nest (double NAT/CGNAT).
 *
 * Packets carry a `proto` of 'udp' or 'tcp'; 'tcp' here is a single request/response datagram (enough for the
 * HTTP seams of netcheck, see ./http.ts), so firewalls and NATs can treat the two protocols differently.
 */
import type { AddrPort, PacketConn, PacketHandler } from '../../src/net/packet.ts';
import { ManualClock } from '../../src/time/clock.ts';
import { Firewall, OPEN_FIREWALL, type FirewallConfig } from './firewall.ts';
import { NatTable, seededRandom, type NatConfig, type Proto } from './nat.ts';

export interface Packet {
  proto: Proto;
  src: AddrPort;
  dst: AddrPort;
  data: Uint8Array;
  ttl: number;
}

/** Initial TTL of packets sent by vlab hosts (Linux default). */
export const DEFAULT_TTL = 64;
/** Per-hop latency when a segment does not say otherwise. */
export const DEFAULT_SEGMENT_LATENCY_MS = 1;
/** First ephemeral port a vlab host hands out (sequential, so runs are reproducible). */
export const EPHEMERAL_PORT_BASE = 40000;

interface Receiver {
  receive(pkt: Packet, from: Segment): void;
}

interface Iface {
  ip: string;
  owner: Receiver;
  /** Extra one-way delay into and out of this interface (models a far-away server). */
  latencyMs: number;
}

export class Segment {
  readonly name: string;
  readonly latencyMs: number;
  /** The router whose LAN this is: destinations not on the segment go to it. Null on the internet. */
  gateway: Router | null = null;
  readonly ifaces = new Map<string, Iface>();
  /** Routed (non-NAT) LANs hanging off this segment: prefix (textual, e.g. `10.3.0.`) → router. */
  readonly routes: { prefix: string; via: Router }[] = [];

  constructor(name: string, latencyMs: number) {
    this.name = name;
    this.latencyMs = latencyMs;
  }
}

/** Counters for tests: what the network did with packets. */
export interface NetStats {
  delivered: number;
  dropped: number;
  dropReasons: Map<string, number>;
}

export class Network {
  readonly clock: ManualClock;
  readonly random: () => number;
  readonly internet: Segment;
  readonly stats: NetStats = { delivered: 0, dropped: 0, dropReasons: new Map() };

  constructor(opts: { clock?: ManualClock; seed?: number; latencyMs?: number } = {}) {
    this.clock = opts.clock ?? new ManualClock(0);
    this.random = seededRandom(opts.seed ?? 1);
    this.internet = new Segment('internet', opts.latencyMs ?? DEFAULT_SEGMENT_LATENCY_MS);
  }

  /** A host with an IPv4 address (and optionally an IPv6 one) on `segment` (the internet by default). */
  addHost(name: string, ip: string, opts: { segment?: Segment; latencyMs?: number; ip6?: string } = {}): Host {
    const seg = opts.segment ?? this.internet;
    const h = new Host(this, name, ip, seg, opts.ip6 ?? null);
    this.#attach(seg, ip, h, opts.latencyMs ?? 0);
    if (opts.ip6 !== undefined) this.#attach(seg, opts.ip6, h, opts.latencyMs ?? 0);
    return h;
  }

  /** A router with `wanIp` on `parent` (internet by default) and a fresh LAN whose router address is `lanIp`. */
  addRouter(name: string, opts: RouterOptions): Router {
    const parent = opts.parent ?? this.internet;
    const lan = new Segment(`${name}-lan`, opts.lanLatencyMs ?? DEFAULT_SEGMENT_LATENCY_MS);
    const r = new Router(this, name, opts, parent, lan);
    lan.gateway = r;
    this.#attach(parent, opts.wanIp, r, 0);
    this.#attach(lan, opts.lanIp, r, 0);
    if (opts.nat === null && opts.lanPrefix !== undefined) parent.routes.push({ prefix: opts.lanPrefix, via: r });
    // IPv6 is routed, never translated (firewall only), like real dual-stack home routers.
    if (opts.ipv6 !== undefined) {
      this.#attach(parent, opts.ipv6.wanIp, r, 0);
      this.#attach(lan, opts.ipv6.lanIp, r, 0);
      parent.routes.push({ prefix: opts.ipv6.lanPrefix, via: r });
    }
    return r;
  }

  #attach(seg: Segment, ip: string, owner: Receiver, latencyMs: number): void {
    if (seg.ifaces.has(ip)) throw new Error(`vlab: ${ip} already on ${seg.name}`);
    seg.ifaces.set(ip, { ip, owner, latencyMs });
  }

  drop(reason: string): void {
    this.stats.dropped++;
    this.stats.dropReasons.set(reason, (this.stats.dropReasons.get(reason) ?? 0) + 1);
  }

  /** Puts `pkt` on `seg`, sent by `sender`; it arrives after the segment's latency (plus both ends' extra delay). */
  transmit(seg: Segment, pkt: Packet, sender: Receiver): void {
    let target: Receiver | null = null;
    let extra = 0;
    const direct = seg.ifaces.get(pkt.dst.address);
    if (direct !== undefined && direct.owner !== sender) {
      target = direct.owner;
      extra = direct.latencyMs;
    } else {
      const route = seg.routes.find((r) => pkt.dst.address.startsWith(r.prefix));
      if (route !== undefined && route.via !== sender) target = route.via;
      else if (seg.gateway !== null && seg.gateway !== sender) target = seg.gateway;
    }
    if (target === null) {
      this.drop(`no route on ${seg.name} to ${pkt.dst.address}`);
      return;
    }
    for (const i of seg.ifaces.values()) if (i.owner === sender && i.ip === pkt.src.address) extra += i.latencyMs;
    const copy: Packet = { ...pkt, src: { ...pkt.src }, dst: { ...pkt.dst }, data: Uint8Array.from(pkt.data) };
    const t = target;
    this.clock.setTimeout(() => {
      this.stats.delivered++;
      t.receive(copy, seg);
    }, seg.latencyMs + extra);
  }
}

type StreamHandler = (data: Uint8Array, from: AddrPort) => Uint8Array | null;

export class Host implements Receiver {
  readonly network: Network;
  readonly name: string;
  readonly ip: string;
  /** IPv6 address, or null for an IPv4-only host. */
  readonly ip6: string | null;
  readonly segment: Segment;
  /** UDP sockets by `4/<port>` or `6/<port>`. */
  readonly #udp = new Map<string, Set<PacketHandler>>();
  readonly #tcp = new Map<number, StreamHandler>();
  readonly #pendingTcp = new Map<number, (data: Uint8Array) => void>();
  #nextPort = EPHEMERAL_PORT_BASE;

  constructor(network: Network, name: string, ip: string, segment: Segment, ip6: string | null = null) {
    this.network = network;
    this.name = name;
    this.ip = ip;
    this.ip6 = ip6;
    this.segment = segment;
  }

  #ephemeral(inUse: (p: number) => boolean): number {
    while (inUse(this.#nextPort)) this.#nextPort++;
    return this.#nextPort++;
  }

  /** Binds a UDP socket of the family (port 0 = next ephemeral port). Sends to the other family are dropped. */
  udp(port = 0, family: 4 | 6 = 4): PacketConn {
    const addr = family === 4 ? this.ip : this.ip6;
    if (addr === null) throw new Error(`vlab ${this.name}: no IPv6 address`);
    const p = port === 0 ? this.#ephemeral((x) => this.#udp.has(`${family}/${x}`)) : port;
    const key = `${family}/${p}`;
    if (this.#udp.has(key)) throw new Error(`vlab ${this.name}: udp port ${p} in use`);
    const handlers = new Set<PacketHandler>();
    this.#udp.set(key, handlers);
    let closed = false;
    return {
      send: (data, to) => {
        if (closed) return;
        if (to.address.includes(':') !== (family === 6)) return this.network.drop(`${this.name}: address family mismatch`);
        this.send({ proto: 'udp', src: { address: addr, port: p }, dst: { ...to }, data, ttl: DEFAULT_TTL });
      },
      onMessage: (h) => {
        handlers.add(h);
        return () => handlers.delete(h);
      },
      localAddr: () => ({ address: addr, port: p }),
      close: () => {
        if (closed) return;
        closed = true;
        this.#udp.delete(key);
      },
    };
  }

  /** Serves one-shot "tcp" requests on `port`: the handler's return value is sent back (null = no answer). */
  serveTcp(port: number, handler: StreamHandler): void {
    this.#tcp.set(port, handler);
  }

  /** Sends one "tcp" request and resolves with the answer, or null after `timeoutMs` on the network clock. */
  requestTcp(to: AddrPort, data: Uint8Array, timeoutMs: number): Promise<Uint8Array | null> {
    const port = this.#ephemeral((x) => this.#tcp.has(x) || this.#pendingTcp.has(x));
    return new Promise((resolve) => {
      const timer = this.network.clock.setTimeout(() => {
        this.#pendingTcp.delete(port);
        resolve(null);
      }, timeoutMs);
      this.#pendingTcp.set(port, (d) => {
        timer.cancel();
        this.#pendingTcp.delete(port);
        resolve(d);
      });
      const src = to.address.includes(':') && this.ip6 !== null ? this.ip6 : this.ip;
      this.send({ proto: 'tcp', src: { address: src, port }, dst: { ...to }, data, ttl: DEFAULT_TTL });
    });
  }

  send(pkt: Packet): void {
    this.network.transmit(this.segment, pkt, this);
  }

  receive(pkt: Packet): void {
    if (pkt.proto === 'udp') {
      const hs = this.#udp.get(`${pkt.dst.address.includes(':') ? 6 : 4}/${pkt.dst.port}`);
      if (hs === undefined || hs.size === 0) return this.network.drop(`${this.name}: no udp socket on ${pkt.dst.port}`);
      for (const h of hs) h(pkt.data, { ...pkt.src });
      return;
    }
    const pending = this.#pendingTcp.get(pkt.dst.port);
    if (pending !== undefined) return pending(pkt.data);
    const handler = this.#tcp.get(pkt.dst.port);
    if (handler === undefined) return this.network.drop(`${this.name}: no tcp listener on ${pkt.dst.port}`);
    const reply = handler(pkt.data, { ...pkt.src });
    if (reply !== null) this.send({ proto: 'tcp', src: { ...pkt.dst }, dst: { ...pkt.src }, data: reply, ttl: DEFAULT_TTL });
  }

  /** Router addresses a TTL-limited packet from this host would expire at: hop 1 = nearest router's LAN address. */
  routerHops(): string[] {
    const hops: string[] = [];
    let seg: Segment | null = this.segment;
    while (seg !== null && seg.gateway !== null) {
      hops.push(seg.gateway.lanIp);
      seg = seg.gateway.parent;
    }
    return hops;
  }
}

export interface RouterOptions {
  wanIp: string;
  lanIp: string;
  /** Textual prefix of the LAN (e.g. `10.1.0.`), needed for routed (nat: null) LANs. */
  lanPrefix?: string;
  parent?: Segment;
  /** null = no NAT: the LAN is routed (then `lanPrefix` is required). */
  nat: NatConfig | null;
  firewall?: FirewallConfig;
  /** Routed IPv6 (no NAT, same firewall): WAN and LAN addresses, and the LAN prefix as text (`2001:db8:1::`). */
  ipv6?: { wanIp: string; lanIp: string; lanPrefix: string };
  lanLatencyMs?: number;
}

/** HTTP answer a captive portal gives to every port-80 request (see ./http.ts for the encoding). */
export type PortalResponder = (request: Uint8Array) => Uint8Array;

export class Router implements Receiver {
  readonly network: Network;
  readonly name: string;
  readonly wanIp: string;
  readonly lanIp: string;
  readonly parent: Segment;
  readonly lan: Segment;
  readonly nat: NatTable | null;
  readonly firewall: Firewall;
  readonly ipv6: { wanIp: string; lanIp: string; lanPrefix: string } | null;
  captivePortal: PortalResponder | null = null;

  constructor(network: Network, name: string, opts: RouterOptions, parent: Segment, lan: Segment) {
    this.network = network;
    this.name = name;
    this.wanIp = opts.wanIp;
    this.lanIp = opts.lanIp;
    this.parent = parent;
    this.lan = lan;
    this.nat = opts.nat === null ? null : new NatTable(opts.nat, network.random);
    this.firewall = new Firewall(opts.firewall ?? OPEN_FIREWALL);
    this.ipv6 = opts.ipv6 ?? null;
  }

  /** Adds a host on this router's LAN (with an IPv6 address too when given). */
  addHost(name: string, ip: string, ip6?: string): Host {
    return this.network.addHost(name, ip, ip6 === undefined ? { segment: this.lan } : { segment: this.lan, ip6 });
  }

  receive(pkt: Packet, from: Segment): void {
    const now = this.network.clock.now();
    const drop = (why: string): void => this.network.drop(`${this.name}: ${why}`);
    if (--pkt.ttl <= 0) return drop('ttl expired');
    if (pkt.dst.address.includes(':')) return this.#routeV6(pkt, from === this.lan, now);
    if (from === this.lan) {
      if (pkt.dst.address === this.lanIp) return drop('no service on router');
      if (this.captivePortal !== null && pkt.proto === 'tcp' && pkt.dst.port === 80) {
        const reply = this.captivePortal(pkt.data);
        this.network.transmit(this.lan, { proto: 'tcp', src: pkt.dst, dst: pkt.src, data: reply, ttl: pkt.ttl }, this);
        return;
      }
      if (pkt.dst.address === this.wanIp) return this.#hairpin(pkt, now);
      if (!this.firewall.outbound(pkt.proto, pkt.src, pkt.dst, now)) return drop(`firewall blocked outbound ${pkt.proto}`);
      const src = this.nat === null ? pkt.src : { address: this.wanIp, port: this.nat.outbound(pkt.proto, pkt.src, pkt.dst, now) };
      this.network.transmit(this.parent, { ...pkt, src }, this);
      return;
    }
    // From the WAN side.
    let inside = pkt.dst;
    if (this.nat !== null) {
      if (pkt.dst.address !== this.wanIp) return drop('not for our WAN address');
      const internal = this.nat.inbound(pkt.proto, pkt.dst.port, pkt.src, now);
      if (internal === null) return drop('no NAT mapping admits inbound');
      inside = internal;
    } else if (pkt.dst.address === this.wanIp) {
      return drop('no service on router WAN');
    }
    if (!this.firewall.inbound(pkt.proto, pkt.src, inside, now)) return drop('firewall dropped unsolicited inbound');
    this.network.transmit(this.lan, { ...pkt, dst: inside }, this);
  }

  /** IPv6: routed through the firewall, never translated. */
  #routeV6(pkt: Packet, fromLan: boolean, now: number): void {
    const drop = (why: string): void => this.network.drop(`${this.name}: ${why}`);
    if (this.ipv6 === null) return drop('no IPv6');
    if (pkt.dst.address === this.ipv6.lanIp || pkt.dst.address === this.ipv6.wanIp) return drop('no service on router');
    if (fromLan) {
      if (!this.firewall.outbound(pkt.proto, pkt.src, pkt.dst, now)) return drop(`firewall blocked outbound ${pkt.proto}`);
      this.network.transmit(this.parent, pkt, this);
    } else {
      if (!this.firewall.inbound(pkt.proto, pkt.src, pkt.dst, now)) return drop('firewall dropped unsolicited inbound');
      this.network.transmit(this.lan, pkt, this);
    }
  }

  #hairpin(pkt: Packet, now: number): void {
    if (this.nat === null || !this.nat.config.hairpinning) return this.network.drop(`${this.name}: no hairpinning`);
    const extPort = this.nat.outbound(pkt.proto, pkt.src, pkt.dst, now);
    const src = { address: this.wanIp, port: extPort };
    const internal = this.nat.inbound(pkt.proto, pkt.dst.port, src, now);
    if (internal === null) return this.network.drop(`${this.name}: hairpin filtered`);
    this.network.transmit(this.lan, { ...pkt, src, dst: internal }, this);
  }
}

/**
 * Runs the clock forward in `stepMs` steps, letting promises settle between steps, until `p` settles or `maxMs`
 * of virtual time pass. Deterministic: the same program always sees the same interleaving.
 */
export async function drive<T>(clock: ManualClock, p: Promise<T>, opts: { stepMs?: number; maxMs?: number } = {}): Promise<T> {
  let done = false;
  const out = p.finally(() => {
    done = true;
  });
  out.catch(() => {});
  const step = opts.stepMs ?? 1;
  const max = opts.maxMs ?? 30_000;
  for (let t = 0; !done && t <= max; t += step) {
    await new Promise<void>((r) => setImmediate(r));
    if (done) break;
    clock.advance(step);
  }
  await new Promise<void>((r) => setImmediate(r));
  if (!done) throw new Error(`vlab drive: not settled after ${max} ms of virtual time`);
  return out;
}
