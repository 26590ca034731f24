/**
 * nftables backend, pure part (spec/netfilter.md §5): each rule as the `nft -f` statement we write and as the
 * JSON expressions `nft -j` prints for it (reduced to a canonical key, counters ignored, §5.3), a parser of
 * `nft -j list ruleset`, and the planner that turns steps into one `nft -f` script (applied atomically).
 *
 * Layout as Tailscale's nftables runner: tables `filter`/`nat`/`mangle` in families ip and ip6 (the
 * iptables-nft names), base chains created only if missing, interface matches as prefixes (`"tailscale0*"`).
 * One deliberate difference: the stateful rule is written `ct state invalid,new` (same packets as Tailscale's
 * `ct state & 0xffffffb9 != 0` for every real conntrack state, and readable).
 */
import { WiremeshError } from '../errors.ts';
import { FWMARK_MASK, SUBNET_ROUTE_MARK } from './constants.ts';
import { CONNMARK, HOOKS, OUR_CHAINS, type Desired, type Family, type Rule, type Table } from './rules.ts';
import { chainOf, positions, tableOfChain, type ChainView, type Snapshot, type Step, type TableView } from './state.ts';

const hex8 = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;
/** `meta mark & 0xff00ffff | 0x40000` is stored (and printed) with the OR bits folded into the mask. */
const SET_MARK_AND = ((~FWMARK_MASK >>> 0) | SUBNET_ROUTE_MARK) >>> 0;

/** The `nft -f` statement for a rule. */
export function nftText(rule: Rule, iface: string, family: Family): string {
  const tun = `"${iface}*"`;
  const markMatch = `meta mark & ${hex8(FWMARK_MASK)} == ${hex8(SUBNET_ROUTE_MARK)}`;
  switch (rule.kind) {
    case 'loopback':
      return `iifname "lo*" ${family} saddr ${rule.addr} counter accept`;
    case 'tunAccept':
      return `iifname ${tun} counter accept`;
    case 'udpPort':
      return `udp dport ${rule.port} counter accept`;
    case 'offTunSource':
      return `iifname != ${tun} ip saddr ${rule.prefix} counter ${rule.verdict}`;
    case 'markFromTun':
      return `iifname ${tun} counter meta mark set meta mark & ${hex8((~FWMARK_MASK) >>> 0)} | ${hex8(SUBNET_ROUTE_MARK)}`;
    case 'markedAccept':
      return `${markMatch} counter accept`;
    case 'toTunSourceDrop':
      return `oifname ${tun} ip saddr ${rule.prefix} counter drop`;
    case 'statefulDrop':
      return `oifname ${tun} ct state invalid,new counter drop`;
    case 'toTunAccept':
      return `oifname ${tun} counter accept`;
    case 'masquerade':
      return `${markMatch} counter masquerade`;
    case 'jump':
      return `counter jump ${rule.target}`;
    case 'connmarkRestore':
      return `ct state established,related ct mark & ${hex8(FWMARK_MASK)} != 0x00000000 meta mark set ct mark & ${hex8(FWMARK_MASK)}`;
    case 'connmarkSave':
      return `ct state new meta mark & ${hex8(FWMARK_MASK)} != 0x00000000 ct mark set meta mark & ${hex8(FWMARK_MASK)}`;
  }
}

type J = Record<string, unknown>;
const match = (left: unknown, right: unknown, op = '=='): J => ({ match: { op, left, right } });
const meta = (key: string): J => ({ meta: { key } });
const saddr = (family: Family, right: unknown): J => match({ payload: { protocol: family, field: 'saddr' } }, right);
const prefix = (p: string): J => {
  const [addr, len] = p.split('/');
  return { prefix: { addr, len: Number(len) } };
};
const COUNTER = { counter: { packets: 0, bytes: 0 } };
const markEq = (): J => match({ '&': [meta('mark'), FWMARK_MASK] }, SUBNET_ROUTE_MARK);

/** The expressions `nft -j` prints for a rule we wrote (nft 1.0.x). */
export function nftExpr(rule: Rule, iface: string, family: Family): unknown[] {
  const tun = `${iface}*`;
  switch (rule.kind) {
    case 'loopback':
      return [match(meta('iifname'), 'lo*'), saddr(family, rule.addr), COUNTER, { accept: null }];
    case 'tunAccept':
      return [match(meta('iifname'), tun), COUNTER, { accept: null }];
    case 'udpPort':
      return [match({ payload: { protocol: 'udp', field: 'dport' } }, rule.port), COUNTER, { accept: null }];
    case 'offTunSource':
      return [match(meta('iifname'), tun, '!='), saddr('ip', prefix(rule.prefix)), COUNTER, { [rule.verdict]: null }];
    case 'markFromTun':
      return [match(meta('iifname'), tun), COUNTER, { mangle: { key: meta('mark'), value: { '|': [{ '&': [meta('mark'), SET_MARK_AND] }, SUBNET_ROUTE_MARK] } } }];
    case 'markedAccept':
      return [markEq(), COUNTER, { accept: null }];
    case 'toTunSourceDrop':
      return [match(meta('oifname'), tun), saddr('ip', prefix(rule.prefix)), COUNTER, { drop: null }];
    case 'statefulDrop':
      return [match(meta('oifname'), tun), match({ ct: { key: 'state' } }, ['invalid', 'new'], 'in'), COUNTER, { drop: null }];
    case 'toTunAccept':
      return [match(meta('oifname'), tun), COUNTER, { accept: null }];
    case 'masquerade':
      return [markEq(), COUNTER, { masquerade: null }];
    case 'jump':
      return [COUNTER, { jump: { target: rule.target } }];
    case 'connmarkRestore':
      return [
        match({ ct: { key: 'state' } }, ['established', 'related'], 'in'),
        match({ '&': [{ ct: { key: 'mark' } }, FWMARK_MASK] }, 0, '!='),
        { mangle: { key: meta('mark'), value: { '&': [{ ct: { key: 'mark' } }, FWMARK_MASK] } } },
      ];
    case 'connmarkSave':
      return [
        match({ ct: { key: 'state' } }, 'new', 'in'),
        match({ '&': [meta('mark'), FWMARK_MASK] }, 0, '!='),
        { mangle: { key: { ct: { key: 'mark' } }, value: { '&': [meta('mark'), FWMARK_MASK] } } },
      ];
  }
}

const isObj = (v: unknown): v is J => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A canonical, counter-free text for a JSON value (expression operand). */
function val(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (Array.isArray(v)) return `{${v.map(val).join(',')}}`;
  if (isObj(v)) {
    const keys = Object.keys(v);
    const k = keys[0];
    const x = k === undefined ? undefined : v[k];
    if (keys.length === 1 && k !== undefined) {
      if ((k === 'meta' || k === 'ct') && isObj(x)) return `${k} ${String(x.key)}`;
      if (k === 'payload' && isObj(x)) return `${String(x.protocol)} ${String(x.field)}`;
      if (k === 'prefix' && isObj(x)) return `${String(x.addr)}/${String(x.len)}`;
      if ((k === '&' || k === '|' || k === '^') && Array.isArray(x)) return `(${x.map(val).join(` ${k} `)})`;
      if (k === 'set' && Array.isArray(x)) return `{${x.map(val).join(',')}}`;
    }
  }
  return JSON.stringify(v);
}

function stmt(s: unknown): string | null {
  if (!isObj(s)) return JSON.stringify(s);
  const [k] = Object.keys(s);
  const x = k === undefined ? undefined : s[k];
  if (k === 'counter') return null;
  if (k === 'match' && isObj(x)) return `${val(x.left)} ${String(x.op)} ${val(x.right)}`;
  if ((k === 'jump' || k === 'goto') && isObj(x)) return `${k} ${String(x.target)}`;
  if (k === 'mangle' && isObj(x)) return `${val(x.key)} set ${val(x.value)}`;
  if (k !== undefined && x === null) return k;
  return JSON.stringify(s);
}

/** Canonical key of a rule's expression list: one clause per statement, counters dropped. */
export function exprKey(expr: readonly unknown[]): string {
  return expr
    .map(stmt)
    .filter((s): s is string => s !== null)
    .join('; ');
}

export const nftKey = (rule: Rule, iface: string, family: Family): string => exprKey(nftExpr(rule, iface, family));

const badJson = (msg: string): WiremeshError => new WiremeshError('NETFILTER_BAD_NFT_JSON', `nft -j: ${msg}`);
const FAMILIES: readonly Family[] = ['ip', 'ip6'];
const TABLES: readonly Table[] = ['filter', 'nat', 'mangle'];

export interface NftRuleset {
  snapshot: Snapshot;
  /** Every rule in every table and family (the backend-detection heuristic, §3). */
  ruleCount: number;
}

/** Parses `nft -j list ruleset`; only ip/ip6 tables filter/nat/mangle enter the snapshot. */
export function parseNftJson(text: string): NftRuleset {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw badJson(`not JSON (${(e as Error).message})`);
  }
  if (!isObj(doc) || !Array.isArray(doc.nftables)) throw badJson('no "nftables" array');
  const families = new Map<Family, Map<Table, TableView>>();
  const tableOf = (f: unknown, t: unknown): TableView | undefined => {
    if (!FAMILIES.includes(f as Family) || !TABLES.includes(t as Table)) return undefined;
    let m = families.get(f as Family);
    if (m === undefined) families.set(f as Family, (m = new Map()));
    let tv = m.get(t as Table);
    if (tv === undefined) m.set(t as Table, (tv = new Map()));
    return tv;
  };
  let ruleCount = 0;
  for (const item of doc.nftables) {
    if (!isObj(item)) throw badJson('array item is not an object');
    if (isObj(item.table)) tableOf(item.table.family, item.table.name);
    else if (isObj(item.chain)) {
      const c = item.chain;
      if (typeof c.name !== 'string') throw badJson('chain without a name');
      const tv = tableOf(c.family, c.table);
      const base = typeof c.hook === 'string';
      tv?.set(c.name, { name: c.name, base, policy: base && typeof c.policy === 'string' ? c.policy : null, rules: [] });
    } else if (isObj(item.rule)) {
      const r = item.rule;
      ruleCount++;
      if (!Array.isArray(r.expr) || typeof r.handle !== 'number') throw badJson('rule without expr or handle');
      const chain = tableOf(r.family, r.table)?.get(String(r.chain));
      chain?.rules.push({ key: exprKey(r.expr), handle: r.handle });
    }
  }
  return { snapshot: { families }, ruleCount };
}

const BASE: Record<string, string> = {
  'filter INPUT': 'type filter hook input priority filter; policy accept;',
  'filter FORWARD': 'type filter hook forward priority filter; policy accept;',
  'nat POSTROUTING': 'type nat hook postrouting priority srcnat; policy accept;',
  'mangle PREROUTING': 'type filter hook prerouting priority mangle; policy accept;',
  'mangle OUTPUT': 'type filter hook output priority mangle; policy accept;',
};

/** Plans `steps` as the lines of one `nft -f` script (empty when nothing needs to change). Pure. */
export function planNft(steps: readonly Step[], want: Desired, snap: Snapshot): string[] {
  const lines: string[] = [];
  const push = (l: string): void => {
    if (!lines.includes(l) || l.startsWith('add rule') || l.startsWith('insert rule')) lines.push(l);
  };
  const ensure = (f: Family, t: Table, chain: string): void => {
    if (chainOf(snap, f, t, chain) !== undefined) return;
    push(`add table ${f} ${t}`);
    const spec = BASE[`${t} ${chain}`];
    push(spec === undefined ? `add chain ${f} ${t} ${chain}` : `add chain ${f} ${t} ${chain} { ${spec} }`);
  };
  const delHandles = (f: Family, t: Table, chain: ChainView | undefined, key: string): void => {
    for (const i of positions(chain, key)) {
      const h = chain?.rules[i]?.handle;
      if (h !== undefined && chain !== undefined) push(`delete rule ${f} ${t} ${chain.name} handle ${h}`);
    }
  };
  for (const step of steps) {
    for (const fs of want.families) {
      const f = fs.family;
      if (step === 'addChains') {
        for (const h of HOOKS) {
          if (!fs.chains.has(h.chain)) continue;
          ensure(f, h.table, h.parent);
          ensure(f, h.table, h.chain);
        }
      } else if (step === 'addBase') {
        for (const [chain, rules] of fs.chains) {
          const t = tableOfChain(chain);
          const have = chainOf(snap, f, t, chain)?.rules.map((r) => r.key) ?? [];
          const keys = rules.map((r) => nftKey(r, want.iface, f));
          if (have.length === keys.length && have.every((k, i) => k === keys[i])) continue;
          if (have.length > 0) push(`flush chain ${f} ${t} ${chain}`);
          for (const r of rules) push(`add rule ${f} ${t} ${chain} ${nftText(r, want.iface, f)}`);
        }
      } else if (step === 'addHooks') {
        for (const h of HOOKS) {
          if (!fs.chains.has(h.chain)) continue;
          const parent = chainOf(snap, f, h.table, h.parent);
          const jump: Rule = { kind: 'jump', target: h.chain };
          const at = positions(parent, nftKey(jump, want.iface, f));
          if (at.length === 1 && at[0] === 0) continue;
          delHandles(f, h.table, parent, nftKey(jump, want.iface, f));
          push(`insert rule ${f} ${h.table} ${h.parent} ${nftText(jump, want.iface, f)}`);
        }
      } else if (step === 'addConnmark') {
        for (const cm of CONNMARK) {
          if (positions(chainOf(snap, f, 'mangle', cm.parent), nftKey(cm.rule, want.iface, f)).length > 0) continue;
          ensure(f, 'mangle', cm.parent);
          push(`insert rule ${f} mangle ${cm.parent} ${nftText(cm.rule, want.iface, f)}`);
        }
      }
    }
    for (const [f, tables] of snap.families) {
      if (step === 'delHooks') {
        for (const h of HOOKS) delHandles(f, h.table, tables.get(h.table)?.get(h.parent), nftKey({ kind: 'jump', target: h.chain }, want.iface, f));
      } else if (step === 'delConnmark') {
        for (const cm of CONNMARK) delHandles(f, 'mangle', tables.get('mangle')?.get(cm.parent), nftKey(cm.rule, want.iface, f));
      } else if (step === 'delChains') {
        for (const { table, chain } of OUR_CHAINS) {
          const t = tables.get(table);
          if (t?.get(chain) === undefined) continue;
          for (const other of t.values()) {
            for (const r of other.rules) {
              if (r.handle !== undefined && (r.key.endsWith(`jump ${chain}`) || r.key.endsWith(`goto ${chain}`))) {
                push(`delete rule ${f} ${table} ${other.name} handle ${r.handle}`);
              }
            }
          }
        }
        for (const { table, chain } of OUR_CHAINS) {
          if (tables.get(table)?.get(chain) === undefined) continue;
          push(`flush chain ${f} ${table} ${chain}`);
          push(`delete chain ${f} ${table} ${chain}`);
        }
      }
    }
  }
  return lines;
}
