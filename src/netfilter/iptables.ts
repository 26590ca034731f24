/**
 * iptables backend, pure part (spec/netfilter.md §4): rule specs in the exact form `iptables-save` prints them
 * (so the same text is both the arguments we pass and the key we read back), an `iptables-save` parser, and the
 * planner that turns a step into `iptables` argument lists. No I/O.
 */
import { CONNMARK, HOOKS, OUR_CHAINS, type Desired, type Family, type Rule, type Table } from './rules.ts';
import { chainOf, positions, type ChainView, type Snapshot, type Step, type TableView } from './state.ts';
import { FWMARK_MASK, SUBNET_ROUTE_MARK } from './constants.ts';
import { WiremeshError } from '../errors.ts';

const hex = (n: number): string => `0x${n.toString(16)}`;
const MARK = `${hex(SUBNET_ROUTE_MARK)}/${hex(FWMARK_MASK)}`;
const MASK = hex(FWMARK_MASK);

const hostPrefix = (addr: string): string => (addr.includes(':') ? `${addr}/128` : `${addr}/32`);

/** The rule's match and target, exactly as `iptables-save` prints them after `-A CHAIN`. */
export function iptSpec(rule: Rule, iface: string): string {
  switch (rule.kind) {
    case 'loopback':
      return `-s ${hostPrefix(rule.addr)} -i lo -j ACCEPT`;
    case 'tunAccept':
      return `-i ${iface} -j ACCEPT`;
    case 'udpPort':
      return `-p udp -m udp --dport ${rule.port} -j ACCEPT`;
    case 'offTunSource':
      return `-s ${rule.prefix} ! -i ${iface} -j ${rule.verdict.toUpperCase()}`;
    case 'markFromTun':
      return `-i ${iface} -j MARK --set-xmark ${MARK}`;
    case 'markedAccept':
      return `-m mark --mark ${MARK} -j ACCEPT`;
    case 'toTunSourceDrop':
      return `-s ${rule.prefix} -o ${iface} -j DROP`;
    case 'statefulDrop':
      return `-o ${iface} -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP`;
    case 'toTunAccept':
      return `-o ${iface} -j ACCEPT`;
    case 'masquerade':
      return `-m mark --mark ${MARK} -j MASQUERADE`;
    case 'jump':
      return `-j ${rule.target}`;
    case 'connmarkRestore':
      return `-m conntrack --ctstate RELATED,ESTABLISHED -m connmark ! --mark 0x0/${MASK} -j CONNMARK --restore-mark --nfmask ${MASK} --ctmask ${MASK}`;
    case 'connmarkSave':
      return `-m conntrack --ctstate NEW -m mark ! --mark 0x0/${MASK} -j CONNMARK --save-mark --nfmask ${MASK} --ctmask ${MASK}`;
  }
}

export const iptKey = (rule: Rule, iface: string, _family: Family): string => iptSpec(rule, iface);

const TABLES: readonly Table[] = ['filter', 'nat', 'mangle'];
const isTable = (t: string): t is Table => (TABLES as readonly string[]).includes(t);

const badSave = (msg: string): WiremeshError => new WiremeshError('NETFILTER_BAD_SAVE', `iptables-save: ${msg}`);

/**
 * Parses `iptables-save` output: `*table`, `:CHAIN POLICY [p:b]`, `-A CHAIN spec`, `COMMIT`, `#` comments.
 * Tables other than filter/nat/mangle (raw, security) are read and dropped: we never write there.
 */
export function parseIptablesSave(text: string): Map<Table, TableView> {
  const out = new Map<Table, TableView>();
  let cur: TableView | null = null;
  let lineNo = 0;
  for (const raw of text.split('\n')) {
    lineNo++;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      const name = line.slice(1);
      cur = new Map();
      if (isTable(name)) out.set(name, cur);
    } else if (line === 'COMMIT') {
      cur = null;
    } else if (cur === null) {
      throw badSave(`line ${lineNo}: outside a table`);
    } else if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(/\s+/);
      if (name === undefined || name === '' || policy === undefined) throw badSave(`line ${lineNo}: bad chain line`);
      cur.set(name, { name, base: policy !== '-', policy: policy === '-' ? null : policy, rules: [] });
    } else if (line.startsWith('-A ')) {
      const m = /^-A (\S+)(?: (.*))?$/.exec(line);
      const name = m?.[1];
      if (name === undefined) throw badSave(`line ${lineNo}: bad rule line`);
      const chain = cur.get(name);
      if (chain === undefined) throw badSave(`line ${lineNo}: rule for undeclared chain ${name}`);
      chain.rules.push({ key: (m?.[2] ?? '').replace(/\s+/g, ' ').trim() });
    } else {
      throw badSave(`line ${lineNo}: unexpected ${JSON.stringify(line.slice(0, 40))}`);
    }
  }
  return out;
}

/** Renders tables back to `iptables-save` text (policy lines, rules, COMMIT); the parser's inverse. */
export function renderIptablesSave(tables: Map<Table, TableView>): string {
  const lines: string[] = [];
  for (const [name, t] of tables) {
    lines.push(`*${name}`);
    for (const c of t.values()) lines.push(`:${c.name} ${c.base ? (c.policy ?? 'ACCEPT') : '-'} [0:0]`);
    for (const c of t.values()) for (const r of c.rules) lines.push(r.key === '' ? `-A ${c.name}` : `-A ${c.name} ${r.key}`);
    lines.push('COMMIT');
  }
  return lines.join('\n') + '\n';
}

export function snapshotFromSave(v4: string, v6: string | null): Snapshot {
  const families = new Map<Family, Map<Table, TableView>>([['ip', parseIptablesSave(v4)]]);
  if (v6 !== null) families.set('ip6', parseIptablesSave(v6));
  return { families };
}

/** One `iptables`/`ip6tables` invocation (without the binary and `-w`). */
export interface IptCommand {
  family: Family;
  args: string[];
}

/** Splits a saved spec into argv, keeping `"quoted words"` (comments) together as iptables-save quotes them. */
export function splitSpec(spec: string): string[] {
  const out: string[] = [];
  for (const m of spec.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)) out.push(m[2] ?? (m[1] ?? '').replace(/\\(.)/g, '$1'));
  return out;
}
const refersTo = (key: string, chain: string): boolean => key === `-j ${chain}` || key.endsWith(` -j ${chain}`) || key.endsWith(` -g ${chain}`) || key === `-g ${chain}`;

/** Plans `steps` against `snap` for `want`; the commands run in order. Pure. */
export function planIptables(steps: readonly Step[], want: Desired, snap: Snapshot): IptCommand[] {
  const cmds: IptCommand[] = [];
  const c = (family: Family, table: Table, ...args: string[]): void => {
    cmds.push({ family, args: ['-t', table, ...args] });
  };
  for (const step of steps) {
    switch (step) {
      case 'addChains':
        for (const fs of want.families) {
          for (const { table, chain } of OUR_CHAINS) {
            if (fs.chains.has(chain) && chainOf(snap, fs.family, table, chain) === undefined) c(fs.family, table, '-N', chain);
          }
        }
        break;
      case 'addBase':
        for (const fs of want.families) {
          for (const [chain, rules] of fs.chains) {
            const table: Table = chain === 'ts-postrouting' ? 'nat' : 'filter';
            const specs = rules.map((r) => iptSpec(r, want.iface));
            const have = chainOf(snap, fs.family, table, chain)?.rules.map((r) => r.key) ?? [];
            if (have.length === specs.length && have.every((k, i) => k === specs[i])) continue;
            if (have.length > 0) c(fs.family, table, '-F', chain);
            for (const s of specs) c(fs.family, table, '-A', chain, ...splitSpec(s));
          }
        }
        break;
      case 'addHooks':
        for (const fs of want.families) {
          for (const h of HOOKS) {
            if (!fs.chains.has(h.chain)) continue;
            const spec = iptSpec({ kind: 'jump', target: h.chain }, want.iface);
            const at = positions(chainOf(snap, fs.family, h.table, h.parent), spec);
            if (at.length === 1 && at[0] === 0) continue;
            for (let i = 0; i < at.length; i++) c(fs.family, h.table, '-D', h.parent, ...splitSpec(spec));
            c(fs.family, h.table, '-I', h.parent, '1', ...splitSpec(spec));
          }
        }
        break;
      case 'delHooks':
        for (const [family] of snap.families) {
          for (const h of HOOKS) {
            const spec = iptSpec({ kind: 'jump', target: h.chain }, want.iface);
            for (const _ of positions(chainOf(snap, family, h.table, h.parent), spec)) c(family, h.table, '-D', h.parent, ...splitSpec(spec));
          }
        }
        break;
      case 'addConnmark':
        for (const fs of want.families) {
          for (const cm of CONNMARK) {
            const spec = iptSpec(cm.rule, want.iface);
            if (positions(chainOf(snap, fs.family, 'mangle', cm.parent), spec).length === 0) {
              c(fs.family, 'mangle', '-I', cm.parent, '1', ...splitSpec(spec));
            }
          }
        }
        break;
      case 'delConnmark':
        for (const [family] of snap.families) {
          for (const cm of CONNMARK) {
            const spec = iptSpec(cm.rule, want.iface);
            for (const _ of positions(chainOf(snap, family, 'mangle', cm.parent), spec)) c(family, 'mangle', '-D', cm.parent, ...splitSpec(spec));
          }
        }
        break;
      case 'delChains':
        for (const [family, tables] of snap.families) {
          for (const { table, chain } of OUR_CHAINS) {
            const t = tables.get(table);
            if (t?.get(chain) === undefined) continue;
            for (const other of t.values()) for (const r of refs(other, chain)) c(family, table, '-D', other.name, ...splitSpec(r));
            c(family, table, '-F', chain);
            c(family, table, '-X', chain);
          }
        }
        break;
    }
  }
  return cmds;
}

function refs(chain: ChainView, target: string): string[] {
  return chain.rules.filter((r) => refersTo(r.key, target)).map((r) => r.key);
}
