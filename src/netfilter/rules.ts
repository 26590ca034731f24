/**
 * The desired netfilter state per mode, as backend-neutral data (spec/netfilter.md §1, §4.1–4.4, §6). Pure: no
 * I/O. The iptables and nftables modules render these rules; the state module compares them with what a host has.
 *
 * Order inside ts-input is the ≥1.98 order (§4.3): loopback, tunnel accept, UDP port, ChromeOS RETURN, CGNAT
 * DROP — so UDP to our port from a CGNAT source on another interface is accepted (test T9).
 */
import { WiremeshError } from '../errors.ts';
import {
  CGNAT_RANGE,
  CHAIN_FORWARD,
  CHAIN_INPUT,
  CHAIN_POSTROUTING,
  CHROMEOS_VM_RANGE,
  MAX_IFACE_NAME_LEN,
} from './constants.ts';

export const Mode = { On: 'on', NoDivert: 'nodivert', Off: 'off' } as const;
export type Mode = (typeof Mode)[keyof typeof Mode];
export const MODES: readonly Mode[] = [Mode.On, Mode.NoDivert, Mode.Off];

export type Family = 'ip' | 'ip6';
export type Table = 'filter' | 'nat' | 'mangle';
export type OurChain = typeof CHAIN_INPUT | typeof CHAIN_FORWARD | typeof CHAIN_POSTROUTING;

/** One rule, named by what it does; `iface` is the tunnel. */
export type Rule =
  | { kind: 'loopback'; addr: string } // -i lo -s <own addr> ACCEPT (the host reaching its own tailnet IP)
  | { kind: 'tunAccept' } // -i tun ACCEPT
  | { kind: 'udpPort'; port: number } // -p udp --dport N ACCEPT
  | { kind: 'offTunSource'; prefix: string; verdict: 'return' | 'drop' } // ! -i tun -s prefix RETURN|DROP
  | { kind: 'markFromTun' } // -i tun MARK 0x40000/0xff0000
  | { kind: 'markedAccept' } // -m mark 0x40000/0xff0000 ACCEPT
  | { kind: 'toTunSourceDrop'; prefix: string } // -o tun -s prefix DROP
  | { kind: 'statefulDrop' } // -o tun, not ESTABLISHED/RELATED: DROP
  | { kind: 'toTunAccept' } // -o tun ACCEPT
  | { kind: 'masquerade' } // marked: MASQUERADE
  | { kind: 'jump'; target: OurChain }
  | { kind: 'connmarkRestore' }
  | { kind: 'connmarkSave' };

/** Where a hook jump lives: `table parent → chain`. */
export interface Hook {
  table: Table;
  parent: string;
  chain: OurChain;
}
export const HOOKS: readonly Hook[] = [
  { table: 'filter', parent: 'INPUT', chain: CHAIN_INPUT },
  { table: 'filter', parent: 'FORWARD', chain: CHAIN_FORWARD },
  { table: 'nat', parent: 'POSTROUTING', chain: CHAIN_POSTROUTING },
];
export const OUR_CHAINS: readonly { table: Table; chain: OurChain }[] = HOOKS.map((h) => ({ table: h.table, chain: h.chain }));
/** The connmark rules of mode `on` (§4.2, since v1.96): mangle PREROUTING / OUTPUT, inserted first. */
export const CONNMARK: readonly { parent: string; rule: Rule }[] = [
  { parent: 'PREROUTING', rule: { kind: 'connmarkRestore' } },
  { parent: 'OUTPUT', rule: { kind: 'connmarkSave' } },
];

export interface NetfilterConfig {
  mode: Mode;
  /** Tunnel interface name (`tailscale0`). */
  iface: string;
  /** UDP listening port to accept (magicsock), or null when not known yet. */
  port: number | null;
  /** The node's own tailnet addresses: each gets an `-i lo -s addr ACCEPT` rule. */
  addrs: readonly string[];
  /** MASQUERADE subnet-routed / exit-node traffic (`--snat-subnet-routes`, default true). */
  snat: boolean;
  /** Drop NEW connections into the tunnel (`--stateful-filtering`, default false). */
  stateful: boolean;
  /** CGNAT sources off the tunnel: DROP (default) or RETURN (node attribute `disable-linux-cgnat-drop-rule`). */
  cgnat: 'drop' | 'return';
}

/** What the host supports: IPv6 filtering, and IPv6 NAT (needed for the v6 hook and MASQUERADE, §3). */
export interface Capabilities {
  ipv6: boolean;
  ipv6Nat: boolean;
}

export interface FamilyState {
  family: Family;
  /** Contents of our chains, in order; a chain absent here is not created (v6 nat without v6 NAT support). */
  chains: Map<OurChain, Rule[]>;
}

/** Everything a mode wants: chains (empty list in `off`), whether hooks and connmark rules exist. */
export interface Desired {
  mode: Mode;
  iface: string;
  families: FamilyState[];
  hooks: boolean;
  connmark: boolean;
}

export const defaultConfig = (over: Partial<NetfilterConfig> = {}): NetfilterConfig => ({
  mode: Mode.On,
  iface: 'tailscale0',
  port: null,
  addrs: [],
  snat: true,
  stateful: false,
  cgnat: 'drop',
  ...over,
});

const IFACE_RE = /^[A-Za-z0-9_.-]+$/;
const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6_RE = /^[0-9a-fA-F:]+$/;

export const invalidConfig = (message: string): WiremeshError => new WiremeshError('NETFILTER_BAD_CONFIG', message);

export function parseMode(s: string): Mode {
  const m = MODES.find((x) => x === s);
  if (m === undefined) throw invalidConfig(`invalid value --mode=${JSON.stringify(s)} (want on, nodivert or off)`);
  return m;
}

/** Rejects anything that could not be passed safely as one iptables/nft token. */
export function validateConfig(c: NetfilterConfig): void {
  if (c.iface.length === 0 || c.iface.length > MAX_IFACE_NAME_LEN || !IFACE_RE.test(c.iface)) {
    throw invalidConfig(`bad interface name ${JSON.stringify(c.iface)}`);
  }
  if (c.iface === 'lo') throw invalidConfig('the tunnel cannot be lo');
  if (c.port !== null && (!Number.isInteger(c.port) || c.port < 1 || c.port > 65535)) {
    throw invalidConfig(`bad UDP port ${c.port}`);
  }
  for (const a of c.addrs) {
    if (!IPV4_RE.test(a) && !(a.includes(':') && IPV6_RE.test(a))) throw invalidConfig(`bad address ${JSON.stringify(a)}`);
  }
}

export const isV6 = (addr: string): boolean => addr.includes(':');

/** The contents of ts-input / ts-forward / ts-postrouting for one family (§4.1, §4.2). */
export function chainRules(c: NetfilterConfig, family: Family): Map<OurChain, Rule[]> {
  const v4 = family === 'ip';
  const input: Rule[] = c.addrs.filter((a) => isV6(a) !== v4).map((addr) => ({ kind: 'loopback', addr }) as const);
  input.push({ kind: 'tunAccept' });
  if (c.port !== null) input.push({ kind: 'udpPort', port: c.port });
  if (v4 && c.cgnat === 'drop') {
    input.push({ kind: 'offTunSource', prefix: CHROMEOS_VM_RANGE, verdict: 'return' });
    input.push({ kind: 'offTunSource', prefix: CGNAT_RANGE, verdict: 'drop' });
  } else if (v4) {
    input.push({ kind: 'offTunSource', prefix: CGNAT_RANGE, verdict: 'return' });
  }
  const forward: Rule[] = [{ kind: 'markFromTun' }, { kind: 'markedAccept' }];
  if (v4) forward.push({ kind: 'toTunSourceDrop', prefix: CGNAT_RANGE });
  if (c.stateful) forward.push({ kind: 'statefulDrop' });
  forward.push({ kind: 'toTunAccept' });
  const post: Rule[] = c.snat ? [{ kind: 'masquerade' }] : [];
  return new Map<OurChain, Rule[]>([
    [CHAIN_INPUT, input],
    [CHAIN_FORWARD, forward],
    [CHAIN_POSTROUTING, post],
  ]);
}

/** The whole desired state for a config on a host with the given capabilities. */
export function desiredState(c: NetfilterConfig, caps: Capabilities): Desired {
  validateConfig(c);
  const families: FamilyState[] = [];
  if (c.mode !== Mode.Off) {
    for (const family of caps.ipv6 ? (['ip', 'ip6'] as const) : (['ip'] as const)) {
      const chains = chainRules(c, family);
      if (family === 'ip6' && !caps.ipv6Nat) chains.delete(CHAIN_POSTROUTING);
      families.push({ family, chains });
    }
  }
  return { mode: c.mode, iface: c.iface, families, hooks: c.mode === Mode.On, connmark: c.mode === Mode.On };
}
