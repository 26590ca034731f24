/**
 * An in-memory iptables for unit tests: a fake Exec that understands the subset the backend uses (-N -A -I -D -F
 * -X -P -S, iptables-save, ip6tables-*), keeping rules as their saved spec text. Every call is recorded.
 */
import type { Exec, ExecResult } from '../../../src/netfilter/exec.ts';

type Tables = Map<string, Map<string, { policy: string | null; rules: string[] }>>;

const BUILTIN: Record<string, string[]> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
};

function fresh(): Tables {
  const t: Tables = new Map();
  for (const [name, chains] of Object.entries(BUILTIN)) t.set(name, new Map(chains.map((c) => [c, { policy: 'ACCEPT', rules: [] }])));
  return t;
}

export class FakeIptables {
  readonly fam = { ip: fresh(), ip6: fresh() };
  readonly calls: string[] = [];
  /** Binaries that "exist"; others return 127. */
  present = new Set(['iptables', 'ip6tables', 'iptables-save', 'ip6tables-save', 'iptables-nft', 'ip6tables-nft', 'iptables-nft-save', 'ip6tables-nft-save']);

  save(f: 'ip' | 'ip6'): string {
    const out: string[] = [];
    for (const [name, chains] of this.fam[f]) {
      out.push(`*${name}`);
      for (const [c, v] of chains) out.push(`:${c} ${v.policy ?? '-'} [0:0]`);
      for (const [c, v] of chains) for (const r of v.rules) out.push(`-A ${c} ${r}`);
      out.push('COMMIT');
    }
    return out.join('\n') + '\n';
  }

  readonly exec: Exec = async (cmd, args): Promise<ExecResult> => {
    this.calls.push([cmd, ...args].join(' '));
    if (!this.present.has(cmd)) return { stdout: '', stderr: 'not found', code: 127 };
    const f = cmd.startsWith('ip6') ? 'ip6' : 'ip';
    if (cmd.endsWith('-save')) return { stdout: this.save(f), stderr: '', code: 0 };
    const a = [...args];
    if (a[0] === '-w') a.splice(0, 2);
    let table = 'filter';
    if (a[0] === '-t') {
      table = a[1]!;
      a.splice(0, 2);
    }
    const t = this.fam[f].get(table)!;
    const [op, chain, ...rest] = a;
    const err = (m: string): ExecResult => ({ stdout: '', stderr: m, code: 1 });
    const ch = chain === undefined ? undefined : t.get(chain);
    switch (op) {
      case '-S':
        return { stdout: [...t].flatMap(([c, v]) => (chain !== undefined && c !== chain ? [] : v.rules.map((r) => `-A ${c} ${r}`))).join('\n'), stderr: '', code: 0 };
      case '-N':
        if (ch !== undefined) return err('Chain already exists.');
        t.set(chain!, { policy: null, rules: [] });
        return { stdout: '', stderr: '', code: 0 };
      case '-X':
        if (ch === undefined) return err('No chain/target/match by that name.');
        if (ch.rules.length > 0) return err('Directory not empty.');
        for (const v of t.values()) if (v.rules.some((r) => r.endsWith(`-j ${chain}`))) return err('Too many links.');
        t.delete(chain!);
        return { stdout: '', stderr: '', code: 0 };
      case '-F':
        if (chain === undefined) for (const v of t.values()) v.rules = [];
        else if (ch === undefined) return err('No chain/target/match by that name.');
        else ch.rules = [];
        return { stdout: '', stderr: '', code: 0 };
      case '-P':
        ch!.policy = rest[0]!;
        return { stdout: '', stderr: '', code: 0 };
      case '-A':
      case '-I':
      case '-D': {
        if (ch === undefined) return err('No chain/target/match by that name.');
        let pos = op === '-I' ? 0 : ch.rules.length;
        if (op === '-I' && /^\d+$/.test(rest[0] ?? '')) pos = Number(rest.shift()) - 1;
        const spec = rest.join(' ');
        const target = /-j (\S+)$/.exec(spec)?.[1];
        if (target !== undefined && /^ts-/.test(target) && !t.has(target)) return err(`Couldn't load target \`${target}'`);
        if (op === '-D') {
          const i = ch.rules.indexOf(spec);
          if (i === -1) return err('Bad rule (does a matching rule exist in that chain?).');
          ch.rules.splice(i, 1);
        } else ch.rules.splice(pos, 0, spec);
        return { stdout: '', stderr: '', code: 0 };
      }
    }
    return err(`fake: unsupported ${args.join(' ')}`);
  };
}
