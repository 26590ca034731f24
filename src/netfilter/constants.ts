/**
 * Netfilter constants (spec/netfilter.md §2, §4, §5, §8), each with its reason. Names and values are those
 * Tailscale's Linux router uses, so a host firewall written for tailscaled works unchanged with wiremesh.
 */

/** Our own chains: filter INPUT → ts-input, filter FORWARD → ts-forward, nat POSTROUTING → ts-postrouting. */
export const CHAIN_INPUT = 'ts-input';
export const CHAIN_FORWARD = 'ts-forward';
export const CHAIN_POSTROUTING = 'ts-postrouting';

/** Bits 16–23 of the fwmark: the low 16 bits are left to admins and Kubernetes (§2). */
export const FWMARK_MASK = 0xff0000;
/** Mark set in ts-forward on packets that entered on the tunnel; ts-postrouting MASQUERADEs them (§2). */
export const SUBNET_ROUTE_MARK = 0x40000;

/** IPv4 tailnet range: the CGNAT block (§2). */
export const CGNAT_RANGE = '100.64.0.0/10';
/** ChromeOS VM range: RETURN before the CGNAT drop so those VMs keep working (§2). */
export const CHROMEOS_VM_RANGE = '100.115.92.0/23';
/** IPv6 tailnet range (Tailscale ULA); no IPv6 counterpart of the CGNAT rules exists (§2). */
export const TAILNET_ULA_RANGE = 'fd7a:115c:a1e0::/48';

/** Default tunnel name and magicsock port, as tailscaled's defaults (§2). */
export const DEFAULT_TUN_NAME = 'tailscale0';
export const DEFAULT_PORT = 41641;

/** Linux IFNAMSIZ − 1: an interface name longer than this cannot exist. */
export const MAX_IFACE_NAME_LEN = 15;

/** `iptables -w`: wait this many seconds for the xtables lock instead of failing while another tool holds it. */
export const XTABLES_WAIT_SECONDS = 5;

/**
 * Reconciler (§8, going beyond Tailscale): poll this often for moved/flushed rules. Each poll is one
 * `iptables-save` per family or one `nft -j list ruleset`, a few milliseconds of work.
 */
export const RECONCILE_INTERVAL_MS = 2000;
/** At most this many restores inside `RECONCILE_FIGHT_WINDOW_MS` … */
export const RECONCILE_MAX_RESTORES = 5;
export const RECONCILE_FIGHT_WINDOW_MS = 60_000;
/** … after which the reconciler stops fighting for this long (another manager keeps moving our rules). */
export const RECONCILE_FIGHT_PAUSE_MS = 300_000;

/** Environment override of the backend, like Tailscale's TS_DEBUG_FIREWALL_MODE (§3). */
export const BACKEND_ENV = 'WIREMESH_FIREWALL_MODE';
