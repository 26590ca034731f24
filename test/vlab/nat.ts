/**
 * Virtual-lab NAT table (RFC 4787 §4 mapping, §5 filtering, §4.1 port assignment, §4.3 refresh, §6 hairpinning;
 * spec/nat-traversal.md §5 taxonomy). Pure state: the caller hands in the time and a seeded random source, so the
 * same inputs always give the same ports. Covers what Linux conntrack cannot express, e.g. EIM + EIF (full cone).
 */

/** How an external port is chosen for an internal endpoint (RFC 4787 §4.1). */
export const Mapping = {
  /** Endpoint-independent: one external port per internal ip:port, whatever the destination ("easy NAT"). */
  EndpointIndependent: 'EIM',
  /** Address-dependent: a new external port per destination IP. */
  AddressDependent: 'ADM',
  /** Address-and-port-dependent: a new external port per destination ip:port ("hard NAT", symmetric). */
  AddressAndPortDependent: 'APDM',
} as const;
export type Mapping = (typeof Mapping)[keyof typeof Mapping];

/** Which unsolicited inbound packets a mapping admits (RFC 4787 §5). */
export const Filtering = {
  /** Anyone may send to the external port (full cone when combined with EIM). */
  EndpointIndependent: 'EIF',
  /** Only IPs the internal endpoint has sent to (restricted cone). */
  AddressDependent: 'ADF',
  /** Only ip:ports the internal endpoint has sent to (port-restricted cone / symmetric). */
  AddressAndPortDependent: 'APDF',
} as const;
export type Filtering = (typeof Filtering)[keyof typeof Filtering];

/** External port choice (RFC 4787 §4.2.1 port preservation). */
export const PortAssignment = {
  /** Keep the internal port when it is free on the external address (Linux MASQUERADE). */
  Preserve: 'preserve',
  /** Always a random port (Linux `--random-fully`). */
  Random: 'random',
} as const;
export type PortAssignment = (typeof PortAssignment)[keyof typeof PortAssignment];

export interface NatConfig {
  mapping: Mapping;
  filtering: Filtering;
  portAssignment: PortAssignment;
  /** Translate LAN→own-WAN-address packets back into the LAN (RFC 4787 REQ-9). */
  hairpinning: boolean;
  /** Idle time after which a mapping is removed; refreshed by outbound traffic (RFC 4787 REQ-5/REQ-6). */
  mappingTimeoutMs: number;
  /** Whether inbound traffic also refreshes a mapping (RFC 4787 §4.3 "inbound refresh": MAY). */
  inboundRefresh: boolean;
}

/** RFC 4787 REQ-5: a UDP mapping must not expire in less than two minutes (Linux uses 30 s unreplied, 120 s stream). */
export const DEFAULT_MAPPING_TIMEOUT_MS = 120_000;
/** Lowest external port a NAT hands out at random (ephemeral range, RFC 6335 §6). */
export const RANDOM_PORT_MIN = 1024;
export const RANDOM_PORT_MAX = 65535;

/** Convenient full configs by classic name (spec/nat-traversal.md §10). */
export function natConfig(mapping: Mapping, filtering: Filtering, extra: Partial<NatConfig> = {}): NatConfig {
  return {
    mapping,
    filtering,
    portAssignment: mapping === Mapping.EndpointIndependent ? PortAssignment.Preserve : PortAssignment.Random,
    hairpinning: false,
    mappingTimeoutMs: DEFAULT_MAPPING_TIMEOUT_MS,
    inboundRefresh: false,
    ...extra,
  };
}

export type Proto = 'udp' | 'tcp';

interface Endpoint {
  address: string;
  port: number;
}

export interface NatMapping {
  proto: Proto;
  internal: Endpoint;
  externalPort: number;
  /** The mapping key's destination part ('' for EIM, ip for ADM, ip:port for APDM). */
  destKey: string;
  /** Remote IPs and ip:ports this mapping has sent to (filtering state). */
  sentToAddrs: Set<string>;
  sentToEndpoints: Set<string>;
  lastActive: number;
}

const ep = (e: Endpoint): string => `${e.address}:${e.port}`;

/** A seeded PRNG (mulberry32): deterministic, good enough to pick ports. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One NAT's translation table for one external address. */
export class NatTable {
  readonly config: NatConfig;
  readonly #random: () => number;
  /** key = proto|internal|destKey */
  readonly #byKey = new Map<string, NatMapping>();
  /** key = proto|externalPort */
  readonly #byExternal = new Map<string, NatMapping>();

  constructor(config: NatConfig, random: () => number) {
    this.config = config;
    this.#random = random;
  }

  #destKey(dst: Endpoint): string {
    switch (this.config.mapping) {
      case Mapping.EndpointIndependent:
        return '';
      case Mapping.AddressDependent:
        return dst.address;
      case Mapping.AddressAndPortDependent:
        return ep(dst);
    }
  }

  /** Drops mappings idle for longer than the timeout. */
  expire(now: number): void {
    for (const [k, m] of this.#byKey) {
      if (now - m.lastActive >= this.config.mappingTimeoutMs) {
        this.#byKey.delete(k);
        this.#byExternal.delete(`${m.proto}|${m.externalPort}`);
      }
    }
  }

  /** Outbound: returns the external port for internal→dst, creating or refreshing the mapping. */
  outbound(proto: Proto, internal: Endpoint, dst: Endpoint, now: number): number {
    this.expire(now);
    const destKey = this.#destKey(dst);
    const key = `${proto}|${ep(internal)}|${destKey}`;
    let m = this.#byKey.get(key);
    if (m === undefined) {
      const externalPort = this.#allocate(proto, internal.port);
      m = { proto, internal: { ...internal }, externalPort, destKey, sentToAddrs: new Set(), sentToEndpoints: new Set(), lastActive: now };
      this.#byKey.set(key, m);
      this.#byExternal.set(`${proto}|${externalPort}`, m);
    }
    m.sentToAddrs.add(dst.address);
    m.sentToEndpoints.add(ep(dst));
    m.lastActive = now;
    return m.externalPort;
  }

  /** Inbound to externalPort from `from`: the internal endpoint if the mapping exists and filtering admits it. */
  inbound(proto: Proto, externalPort: number, from: Endpoint, now: number): Endpoint | null {
    this.expire(now);
    const m = this.#byExternal.get(`${proto}|${externalPort}`);
    if (m === undefined) return null;
    const ok =
      this.config.filtering === Filtering.EndpointIndependent ||
      (this.config.filtering === Filtering.AddressDependent && m.sentToAddrs.has(from.address)) ||
      (this.config.filtering === Filtering.AddressAndPortDependent && m.sentToEndpoints.has(ep(from)));
    if (!ok) return null;
    if (this.config.inboundRefresh) m.lastActive = now;
    return { ...m.internal };
  }

  /** Live mappings (for tests and debugging). */
  mappings(): NatMapping[] {
    return [...this.#byKey.values()];
  }

  #allocate(proto: Proto, internalPort: number): number {
    const free = (p: number): boolean => !this.#byExternal.has(`${proto}|${p}`);
    if (this.config.portAssignment === PortAssignment.Preserve && free(internalPort)) return internalPort;
    const span = RANDOM_PORT_MAX - RANDOM_PORT_MIN + 1;
    for (let i = 0; i < 64; i++) {
      const p = RANDOM_PORT_MIN + Math.floor(this.#random() * span);
      if (free(p)) return p;
    }
    for (let p = RANDOM_PORT_MIN; p <= RANDOM_PORT_MAX; p++) if (free(p)) return p;
    throw new Error('vlab NAT: external ports exhausted');
  }
}
