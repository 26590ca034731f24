/**
 * Mode transitions, status and start-up cleanup over one backend (spec/netfilter.md §6, §10). Transitions are
 * declarative: whatever the host has, applying a mode plans only the steps whose result is missing, so applying
 * twice changes nothing and every transition ends in the state §10 lists. Unlike Tailscale (§6 "gaps"),
 * nodivert→on keeps the UDP-port and stateful rules.
 */
import type { Clock } from '../time/clock.ts';
import type { Logger } from '../log.ts';
import { IptablesBackend, NftablesBackend, type Backend } from './backend.ts';
import type { Exec } from './exec.ts';
import { Reconciler, type ReconcilerBounds } from './reconciler.ts';
import { desiredState, Mode, type NetfilterConfig } from './rules.ts';
import { classify, CLEANUP_STEPS, diff, leftovers, transitionSteps } from './state.ts';

export interface Status {
  backend: string;
  /** What the host looks like: on (jumps + connmark), nodivert (our chains only) or off. */
  installed: Mode;
  /** Differences from the config's mode; empty: in place. */
  drift: string[];
}

export class Netfilter {
  readonly backend: Backend;
  readonly #log: Logger;

  constructor(backend: Backend, log: Logger) {
    this.backend = backend;
    this.#log = log;
  }

  /** Brings the host to `cfg.mode`. `from` defaults to what the host looks like (so admin jumps survive nodivert). */
  async apply(cfg: NetfilterConfig, from?: Mode): Promise<string[]> {
    const want = desiredState(cfg, this.backend.caps);
    const start = from ?? classify(await this.backend.read(), cfg.iface, this.backend.keyOf);
    const done = await this.backend.run(transitionSteps(start, cfg.mode), want);
    this.#log.info('netfilter: mode applied', { backend: this.backend.name, from: start, to: cfg.mode, changes: done.length });
    return done;
  }

  async status(cfg: NetfilterConfig): Promise<Status> {
    const snap = await this.backend.read();
    const want = desiredState(cfg, this.backend.caps);
    return { backend: this.backend.name, installed: classify(snap, cfg.iface, this.backend.keyOf), drift: diff(want, snap, this.backend.keyOf) };
  }

  /** Start-up cleanup with this backend only: our jumps and chains go, nothing else. */
  async cleanup(iface: string): Promise<string[]> {
    return this.backend.run(CLEANUP_STEPS, desiredState({ ...offConfig(iface) }, this.backend.caps));
  }

  /** A reconciler keeping `cfg` (mode `on` only) in place; null for nodivert/off, which never touch built-ins. */
  reconciler(cfg: NetfilterConfig, clock: Clock, bounds: Partial<ReconcilerBounds> = {}): Reconciler | null {
    if (cfg.mode !== Mode.On) return null;
    const want = desiredState(cfg, this.backend.caps);
    return new Reconciler({
      clock,
      log: this.#log,
      ...bounds,
      check: async () => diff(want, await this.backend.read(), this.backend.keyOf),
      restore: () => this.backend.run(transitionSteps(Mode.On, Mode.On), want),
    });
  }
}

const offConfig = (iface: string): NetfilterConfig => ({
  mode: Mode.Off,
  iface,
  port: null,
  addrs: [],
  snat: false,
  stateful: false,
  cgnat: 'drop',
});

/**
 * Start-up cleanup across every backend present (§6 Lifecycle): leftovers of an earlier run may have been written
 * with another backend. nftables first (it also sees iptables-nft rules), then iptables-legacy, then iptables-nft
 * when nft is absent. A backend that cannot read the host is skipped with a log line.
 */
export async function cleanupAll(exec: Exec, iface: string, log: Logger): Promise<string[]> {
  const done: string[] = [];
  // Legacy tables are only read when iptables-legacy-save already shows one of our chains: probing with
  // `iptables-legacy -S` would load the legacy tables on an nftables host.
  const legacyHasOurs = async (): Promise<boolean> => {
    const r = await exec('iptables-legacy-save', []);
    const r6 = await exec('ip6tables-legacy-save', []);
    return /^:ts-/m.test(r.stdout) || /^:ts-/m.test(r6.stdout);
  };
  const makers: (() => Promise<Backend | null>)[] = [
    () => NftablesBackend.create(exec),
    async () => ((await legacyHasOurs()) ? IptablesBackend.create(exec, 'iptables-legacy') : null),
    async () => ((await exec('nft', ['--version'])).code === 127 ? IptablesBackend.create(exec, 'iptables-nft') : null),
  ];
  for (const make of makers) {
    let b: Backend | null;
    try {
      b = await make();
      if (b === null || leftovers(await b.read()).length === 0) continue;
    } catch (e) {
      log.debug('netfilter: cleanup skips a backend', { error: (e as Error).message });
      continue;
    }
    const cmds = await new Netfilter(b, log).cleanup(iface);
    if (cmds.length > 0) log.info('netfilter: removed leftovers of an earlier run', { backend: b.name, changes: cmds.length });
    done.push(...cmds);
  }
  return done;
}
