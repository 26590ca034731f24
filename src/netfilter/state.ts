/**
 * A backend-neutral view of what a host has installed, and the comparison with what a mode wants
 * (spec/netfilter.md §8 "the natural check", §10 state assertions). Pure. Each backend parses its tool's output
 * into a Snapshot whose rule keys are comparable with `keyOf(desired rule)`.
 */
import { CONNMARK, HOOKS, Mode, type Desired, type Family, type OurChain, type Rule, type Table } from './rules.ts';

export interface RuleView {
  /** Canonical text of the rule (iptables-save spec, or nft expressions without counters). */
  key: string;
  /** nftables rule handle, for deletion. */
  handle?: number;
}

export interface ChainView {
  name: string;
  /** Base chain (iptables built-in, or nft chain with a hook). */
  base: boolean;
  policy: string | null;
  rules: RuleView[];
}

export type TableView = Map<string, ChainView>;

export interface Snapshot {
  families: Map<Family, Map<Table, TableView>>;
}

/** Renders a desired rule into the same key a backend's parser produces for it. */
export type KeyFn = (rule: Rule, iface: string, family: Family) => string;

export const emptySnapshot = (): Snapshot => ({ families: new Map() });

export function chainOf(s: Snapshot, family: Family, table: Table, chain: string): ChainView | undefined {
  return s.families.get(family)?.get(table)?.get(chain);
}

export const tableOfChain = (chain: OurChain): Table => (chain === 'ts-postrouting' ? 'nat' : 'filter');

/** 0-based positions of rules in `chain` whose key equals `key`. */
export function positions(chain: ChainView | undefined, key: string): number[] {
  const out: number[] = [];
  chain?.rules.forEach((r, i) => {
    if (r.key === key) out.push(i);
  });
  return out;
}

/** Every way the host differs from `want`; empty means "in place". Each entry is one log-ready sentence. */
export function diff(want: Desired, snap: Snapshot, keyOf: KeyFn): string[] {
  const drift: string[] = [];
  for (const fs of want.families) {
    const f = fs.family;
    for (const [chain, rules] of fs.chains) {
      const table = tableOfChain(chain);
      const have = chainOf(snap, f, table, chain);
      const where = `${f} ${table} ${chain}`;
      const wantKeys = rules.map((r) => keyOf(r, want.iface, f));
      if (have === undefined) {
        drift.push(`${where}: chain missing`);
        continue;
      }
      const haveKeys = have.rules.map((r) => r.key);
      if (haveKeys.length === 0 && wantKeys.length > 0) {
        drift.push(`${where}: flushed (0 of ${wantKeys.length} rules)`);
      } else {
        const i = firstMismatch(haveKeys, wantKeys);
        if (i !== -1) {
          drift.push(`${where}: rule ${i + 1} is ${quote(haveKeys[i])}, want ${quote(wantKeys[i])}`);
        }
      }
      if (!want.hooks) continue;
      const hook = HOOKS.find((h) => h.chain === chain);
      if (hook === undefined) continue;
      const parent = chainOf(snap, f, table, hook.parent);
      const at = positions(parent, keyOf({ kind: 'jump', target: chain }, want.iface, f));
      const pwhere = `${f} ${table} ${hook.parent}`;
      if (at.length === 0) drift.push(`${pwhere}: jump to ${chain} missing`);
      else if (at[0] !== 0) {
        drift.push(`${pwhere}: jump to ${chain} moved to position ${(at[0] ?? 0) + 1}, rule 1 is ${quote(parent?.rules[0]?.key)}`);
      } else if (at.length > 1) drift.push(`${pwhere}: ${at.length} jumps to ${chain}`);
    }
    if (want.connmark) {
      for (const c of CONNMARK) {
        const key = keyOf(c.rule, want.iface, f);
        if (positions(chainOf(snap, f, 'mangle', c.parent), key).length === 0) {
          drift.push(`${f} mangle ${c.parent}: ${c.rule.kind} rule missing`);
        }
      }
    }
  }
  if (want.mode === Mode.Off) drift.push(...leftovers(snap));
  return drift;
}

/** Our chains still present anywhere (what `off` and the start-up cleanup must remove). */
export function leftovers(snap: Snapshot): string[] {
  const out: string[] = [];
  for (const [f, tables] of snap.families) {
    for (const h of HOOKS) {
      if (tables.get(h.table)?.has(h.chain)) out.push(`${f} ${h.table} ${h.chain}: chain present`);
    }
  }
  return out;
}

/** Which mode the host looks like it is in: jumps and connmark → on; our chains only → nodivert; else off. */
export function classify(snap: Snapshot, iface: string, keyOf: KeyFn): Mode {
  const v4 = snap.families.get('ip');
  if (v4?.get('filter')?.has('ts-input') !== true) return Mode.Off;
  const jump = positions(v4.get('filter')?.get('INPUT'), keyOf({ kind: 'jump', target: 'ts-input' }, iface, 'ip'));
  const cm = positions(v4.get('mangle')?.get('PREROUTING'), keyOf({ kind: 'connmarkRestore' }, iface, 'ip'));
  return jump.length > 0 && cm.length > 0 ? Mode.On : Mode.NoDivert;
}

function firstMismatch(a: readonly string[], b: readonly string[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}

const quote = (s: string | undefined): string => (s === undefined ? '(nothing)' : JSON.stringify(s));

/**
 * Reversible, idempotent steps (Tailscale's runner methods, §4.3/§6). Each backend plans a step from a snapshot;
 * a step that finds the host already right plans nothing.
 * - addChains: create our chains (and, for nftables, the base chains) if missing; never flush.
 * - addBase: make each chain's contents exactly the desired rules (flush + refill only when they differ).
 * - addHooks: make `-j ts-*` rule 1 of its parent, exactly once. delHooks: remove those jumps.
 * - addConnmark / delConnmark: the mangle CONNMARK rules of mode `on`.
 * - delChains: remove every rule that jumps to our chains, then flush and delete the chains.
 */
export type Step = 'addChains' | 'addBase' | 'addHooks' | 'delHooks' | 'addConnmark' | 'delConnmark' | 'delChains';

/** The steps that take a host from `from` (null: unknown/fresh) to `to` (§6, made declarative). */
export function transitionSteps(from: Mode | null, to: Mode): Step[] {
  switch (to) {
    case Mode.On:
      return ['addChains', 'addBase', 'addHooks', 'addConnmark'];
    case Mode.NoDivert:
      // Built-in chains are touched only to undo what `on` put there; an admin's own jumps stay.
      return from === Mode.On ? ['delHooks', 'delConnmark', 'addChains', 'addBase'] : ['addChains', 'addBase'];
    case Mode.Off:
      return ['delConnmark', 'delChains'];
  }
}

/** Start-up cleanup (§6 Lifecycle): our jumps and chains go; the connmark rules stay, as in Tailscale. */
export const CLEANUP_STEPS: readonly Step[] = ['delChains'];
