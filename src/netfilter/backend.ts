/**
 * The two netfilter backends behind one interface (spec/netfilter.md §3–§5): each reads the host into a
 * neutral Snapshot and runs reversible, idempotent steps planned by its pure module. The iptables backend runs
 * one `iptables`/`ip6tables -w` per change (legacy or nft variant, chosen by binary name); the nftables backend
 * applies each plan as a single `nft -f` transaction, so a transition is atomic.
 */
import { WiremeshError } from '../errors.ts';
import { XTABLES_WAIT_SECONDS } from './constants.ts';
import type { Exec } from './exec.ts';
import { iptKey, planIptables, snapshotFromSave } from './iptables.ts';
import { nftKey, parseNftJson, planNft } from './nftables.ts';
import type { Capabilities, Desired } from './rules.ts';
import type { KeyFn, Snapshot, Step } from './state.ts';

export type BackendName = 'iptables' | 'iptables-nft' | 'iptables-legacy' | 'nftables';

export interface Backend {
  readonly name: BackendName;
  readonly caps: Capabilities;
  readonly keyOf: KeyFn;
  /** Reads what the host has now. */
  read(): Promise<Snapshot>;
  /** Plans `steps` against a fresh read and runs them; returns the commands run (empty: already in place). */
  run(steps: readonly Step[], want: Desired): Promise<string[]>;
  /** What the tool itself prints (`iptables-save` v4+v6, or `nft list ruleset`). */
  listing(): Promise<string>;
}

export const commandFailed = (what: string, stderr: string): WiremeshError =>
  new WiremeshError('NETFILTER_COMMAND_FAILED', `${what}: ${stderr.trim() || 'failed'}`);

/** Binary names for an iptables variant: `iptables` (whatever PATH has), `iptables-nft`, `iptables-legacy`. */
function binaries(name: Exclude<BackendName, 'nftables'>): { v4: string; v6: string; save4: string; save6: string } {
  const sfx = name === 'iptables' ? '' : name.slice('iptables'.length);
  return { v4: `iptables${sfx}`, v6: `ip6tables${sfx}`, save4: `iptables${sfx}-save`, save6: `ip6tables${sfx}-save` };
}

export class IptablesBackend implements Backend {
  readonly name: Exclude<BackendName, 'nftables'>;
  readonly caps: Capabilities;
  readonly keyOf: KeyFn = iptKey;
  readonly #exec: Exec;
  readonly #bin: ReturnType<typeof binaries>;

  private constructor(exec: Exec, name: Exclude<BackendName, 'nftables'>, caps: Capabilities) {
    this.#exec = exec;
    this.name = name;
    this.caps = caps;
    this.#bin = binaries(name);
  }

  /** Probes IPv6 support the way Tailscale does (§3): the v6 filter table must list; v6 nat separately. */
  static async create(exec: Exec, name: Exclude<BackendName, 'nftables'>, wantV6 = true): Promise<IptablesBackend> {
    const b = binaries(name);
    const w = ['-w', String(XTABLES_WAIT_SECONDS)];
    const v4 = await exec(b.v4, [...w, '-t', 'filter', '-S', 'INPUT']);
    if (v4.code === 127) throw new WiremeshError('NETFILTER_NO_TOOL', `${b.v4} not found in PATH`);
    if (v4.code !== 0) throw commandFailed(`${b.v4} -S`, v4.stderr);
    const ipv6 = wantV6 && (await exec(b.v6, [...w, '-t', 'filter', '-S', 'INPUT'])).code === 0;
    const ipv6Nat = ipv6 && (await exec(b.v6, [...w, '-t', 'nat', '-S', 'POSTROUTING'])).code === 0;
    return new IptablesBackend(exec, name, { ipv6, ipv6Nat });
  }

  async #save(bin: string): Promise<string> {
    const r = await this.#exec(bin, []);
    if (r.code !== 0) throw commandFailed(bin, r.stderr);
    return r.stdout;
  }

  async read(): Promise<Snapshot> {
    const v4 = await this.#save(this.#bin.save4);
    return snapshotFromSave(v4, this.caps.ipv6 ? await this.#save(this.#bin.save6) : null);
  }

  async run(steps: readonly Step[], want: Desired): Promise<string[]> {
    const cmds = planIptables(steps, want, await this.read());
    const done: string[] = [];
    for (const c of cmds) {
      const bin = c.family === 'ip' ? this.#bin.v4 : this.#bin.v6;
      const r = await this.#exec(bin, ['-w', String(XTABLES_WAIT_SECONDS), ...c.args]);
      const line = `${bin} ${c.args.join(' ')}`;
      if (r.code !== 0) throw commandFailed(line, r.stderr);
      done.push(line);
    }
    return done;
  }

  async listing(): Promise<string> {
    const v4 = await this.#save(this.#bin.save4);
    return this.caps.ipv6 ? `${v4}${await this.#save(this.#bin.save6)}` : v4;
  }
}

export class NftablesBackend implements Backend {
  readonly name = 'nftables' as const;
  readonly caps: Capabilities;
  readonly keyOf: KeyFn = nftKey;
  readonly #exec: Exec;

  constructor(exec: Exec, wantV6 = true) {
    this.#exec = exec;
    // nftables needs no separate v6 probe: the ip6 family exists wherever IPv6 does (§3).
    this.caps = { ipv6: wantV6, ipv6Nat: wantV6 };
  }

  static async create(exec: Exec, wantV6 = true): Promise<NftablesBackend> {
    const r = await exec('nft', ['--version']);
    if (r.code === 127) throw new WiremeshError('NETFILTER_NO_TOOL', 'nft not found in PATH');
    return new NftablesBackend(exec, wantV6);
  }

  /** Reads the ruleset and counts every rule (the detection heuristic's nft count). */
  async readAll(): Promise<{ snapshot: Snapshot; ruleCount: number }> {
    const r = await this.#exec('nft', ['-j', 'list', 'ruleset']);
    if (r.code !== 0) throw commandFailed('nft -j list ruleset', r.stderr);
    return parseNftJson(r.stdout);
  }

  async read(): Promise<Snapshot> {
    return (await this.readAll()).snapshot;
  }

  async run(steps: readonly Step[], want: Desired): Promise<string[]> {
    const lines = planNft(steps, want, await this.read());
    if (lines.length === 0) return [];
    const r = await this.#exec('nft', ['-f', '-'], lines.join('\n') + '\n');
    if (r.code !== 0) throw commandFailed('nft -f', r.stderr);
    return lines.map((l) => `nft ${l}`);
  }

  async listing(): Promise<string> {
    const r = await this.#exec('nft', ['list', 'ruleset']);
    if (r.code !== 0) throw commandFailed('nft list ruleset', r.stderr);
    return r.stdout;
  }
}
