/**
 * Virtual-lab router firewall (spec/lab.md §3: "UDP blocked" networks and stateful firewalls that drop
 * unsolicited inbound; spec/nat-traversal.md §10 "stateful firewalls are traversed by simultaneous sending").
 * Pure state: the caller passes the time. A session is keyed by inside ip:port ⇄ outside ip:port (5-tuple),
 * so inbound is admitted only as a reply to something sent out (address-and-port-dependent filtering).
 */
import type { Proto } from './nat.ts';

export interface FirewallConfig {
  /** Drop every outbound UDP packet (Cisco Umbrella style, spec/field-notes.md): TCP still passes. */
  udpBlocked: boolean;
  /** Drop inbound packets that are not replies to an outbound session. */
  stateful: boolean;
  /** Idle time after which a session is forgotten (Linux nf_conntrack_udp_timeout = 30 s). */
  sessionTimeoutMs: number;
}

/** Linux conntrack's unreplied-UDP timeout (spec/lab.md §2 gotchas). */
export const DEFAULT_SESSION_TIMEOUT_MS = 30_000;

export const OPEN_FIREWALL: FirewallConfig = { udpBlocked: false, stateful: false, sessionTimeoutMs: DEFAULT_SESSION_TIMEOUT_MS };

interface Endpoint {
  address: string;
  port: number;
}

const key = (proto: Proto, inside: Endpoint, outside: Endpoint): string =>
  `${proto}|${inside.address}:${inside.port}|${outside.address}:${outside.port}`;

export class Firewall {
  readonly config: FirewallConfig;
  readonly #sessions = new Map<string, number>();

  constructor(config: FirewallConfig) {
    this.config = config;
  }

  /** Outbound packet inside→outside: false means drop; true records/refreshes the session. */
  outbound(proto: Proto, inside: Endpoint, outside: Endpoint, now: number): boolean {
    if (proto === 'udp' && this.config.udpBlocked) return false;
    this.#sessions.set(key(proto, inside, outside), now);
    return true;
  }

  /** Inbound packet outside→inside: admitted when the firewall is not stateful or it answers a live session. */
  inbound(proto: Proto, outside: Endpoint, inside: Endpoint, now: number): boolean {
    if (proto === 'udp' && this.config.udpBlocked) return false;
    if (!this.config.stateful) return true;
    const k = key(proto, inside, outside);
    const seen = this.#sessions.get(k);
    if (seen === undefined) return false;
    if (now - seen >= this.config.sessionTimeoutMs) {
      this.#sessions.delete(k);
      return false;
    }
    return true;
  }
}
