/**
 * The spec/netfilter.md §10 topology in per-run namespaces (test/support/netns.ts): `r` is the node under test
 * (eth0 192.168.50.1, tailscale0 — a veth — 100.101.102.104/10), `l` the LAN (192.168.50.2 plus sources
 * 100.64.1.2 and 100.115.92.5), `p` the "tailnet" peer 100.64.9.9. Probe counters on the far ends record which
 * source actually arrived; an nft counter at input priority 100 in `r` (after every filter chain) records UDP that
 * got through. `probe()` runs T1–T13 concurrently and returns PASS/DROP per test.
 */
import { Lab } from '../../support/netns.ts';
import { hostExec, netnsExec, type Exec } from '../../../src/netfilter/exec.ts';
import { chainOf, type KeyFn, type Snapshot } from '../../../src/netfilter/state.ts';
import { CONNMARK, HOOKS, type Desired } from '../../../src/netfilter/rules.ts';

export const ADDR4 = '100.101.102.104';
export const ADDR6 = 'fd7a:115c:a1e0::1234';
export const PORT = 41641;
export type Result = 'PASS' | 'DROP';
export const TESTS = ['T1', 'T2', 'T3', 'T4', 'T5', 'T6', 'T7', 'T8', 'T9', 'T10', 'T11', 'T12', 'T13'] as const;
export type TestId = (typeof TESTS)[number];
export interface Probe {
  results: Record<TestId, Result>;
  /** T6: the source the LAN saw (router = masqueraded, peer = not). */
  t6src: 'router' | 'peer' | 'none';
}

export class Topo {
  readonly lab: Lab;
  readonly r: string;
  readonly l: string;
  readonly p: string;
  readonly exec: Exec;

  constructor(tag: string) {
    this.lab = new Lab(tag);
    const { lab } = this;
    this.r = lab.netns('r');
    this.l = lab.netns('l');
    this.p = lab.netns('p');
    const { r, l, p } = this;
    lab.link(r, 'eth0', null, l, 'eth0', null);
    lab.link(r, 'tailscale0', null, p, 'tsp0', null);
    const x = (ns: string, ...a: string[]): string => lab.exec(ns, a[0]!, a.slice(1));
    x(r, 'ip', 'addr', 'add', '192.168.50.1/24', 'dev', 'eth0');
    x(r, 'ip', 'addr', 'add', `${ADDR4}/10`, 'dev', 'tailscale0');
    x(r, 'ip', '-6', 'addr', 'add', `${ADDR6}/48`, 'dev', 'tailscale0', 'nodad');
    x(r, 'ip', '-6', 'addr', 'add', 'fd00:50::1/64', 'dev', 'eth0', 'nodad');
    x(r, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1');
    x(r, 'ip', 'route', 'add', '100.64.1.2/32', 'via', '192.168.50.2', 'dev', 'eth0');
    x(r, 'ip', 'route', 'add', '100.115.92.5/32', 'via', '192.168.50.2', 'dev', 'eth0');
    x(l, 'ip', 'addr', 'add', '192.168.50.2/24', 'dev', 'eth0');
    x(l, 'ip', 'addr', 'add', '100.64.1.2/32', 'dev', 'eth0');
    x(l, 'ip', 'addr', 'add', '100.115.92.5/32', 'dev', 'eth0');
    x(l, 'ip', '-6', 'addr', 'add', 'fd00:50::2/64', 'dev', 'eth0', 'nodad');
    x(l, 'ip', 'route', 'add', 'default', 'via', '192.168.50.1');
    x(l, 'ip', '-6', 'route', 'add', 'default', 'via', 'fd00:50::1');
    x(p, 'ip', 'addr', 'add', '100.64.9.9/10', 'dev', 'tsp0');
    x(p, 'ip', '-6', 'addr', 'add', 'fd7a:115c:a1e0::9/48', 'dev', 'tsp0', 'nodad');
    x(p, 'ip', 'route', 'add', '192.168.50.0/24', 'via', ADDR4);
    x(p, 'ip', '-6', 'route', 'add', 'fd00:50::/64', 'via', ADDR6);
    const probeTable = (rules: string[], prio: number): string =>
      `table inet probe {\n chain in {\n  type filter hook input priority ${prio}; policy accept;\n${rules.map((s) => `  ${s}\n`).join('')} }\n}\n`;
    lab.exec(l, 'nft', ['-f', '-'], {
      input: probeTable(['ip saddr 192.168.50.1 icmp type echo-request counter comment "lan_from_router"', 'ip saddr 100.64.9.9 icmp type echo-request counter comment "lan_from_peer"'], -300),
    });
    lab.exec(p, 'nft', ['-f', '-'], { input: probeTable(['ip saddr 100.64.1.2 icmp type echo-request counter comment "peer_from_spoofed_cgnat"'], -300) });
    lab.exec(r, 'nft', ['-f', '-'], {
      input: probeTable([`ip saddr 100.64.1.2 udp dport ${PORT} counter comment "udp_from_cgnat"`, `ip saddr 192.168.50.2 udp dport ${PORT} counter comment "udp_from_lan"`], 100),
    });
    this.exec = netnsExec(r);
  }

  async counters(ns: string): Promise<Map<string, number>> {
    const r = await netnsExec(ns)('nft', ['-j', 'list', 'table', 'inet', 'probe']);
    const out = new Map<string, number>();
    for (const item of (JSON.parse(r.stdout) as { nftables: { rule?: { comment?: string; expr: { counter?: { packets: number } }[] } }[] }).nftables) {
      const c = item.rule?.expr.find((e) => e.counter !== undefined)?.counter;
      if (item.rule?.comment !== undefined && c !== undefined) out.set(item.rule.comment, c.packets);
    }
    return out;
  }

  async #ping(ns: string, ...args: string[]): Promise<Result> {
    const r = await hostExec('ip', ['netns', 'exec', ns, 'ping', '-n', '-c1', '-W1', ...args]);
    return r.code === 0 ? 'PASS' : 'DROP';
  }

  async #udp(src: string): Promise<void> {
    await hostExec('ip', ['netns', 'exec', this.l, 'socat', '-u', '-', `UDP4-SENDTO:192.168.50.1:${PORT},bind=${src}`], 'probe\n');
  }

  /** Runs the probes in `only` (default all) concurrently. */
  async probe(only: readonly TestId[] = TESTS): Promise<Probe> {
    const [cl0, cp0, cr0] = await Promise.all([this.counters(this.l), this.counters(this.p), this.counters(this.r)]);
    const { r, l, p } = this;
    const want = new Set(only);
    const res: Partial<Record<TestId, Result>> = {};
    const run = async (id: TestId, f: () => Promise<Result | void>): Promise<void> => {
      if (!want.has(id)) return;
      const v = await f();
      if (v !== undefined) res[id] = v;
    };
    await Promise.all([
      run('T1', () => this.#ping(l, '-I', '100.64.1.2', '192.168.50.1')),
      run('T2', () => this.#ping(l, '-I', '100.115.92.5', '192.168.50.1')),
      run('T3', () => this.#ping(l, '192.168.50.1')),
      run('T4', () => this.#ping(p, ADDR4)),
      run('T5', () => this.#ping(r, ADDR4)),
      run('T6', () => this.#ping(p, '192.168.50.2')),
      run('T7', async () => void (await this.#ping(l, '-I', '100.64.1.2', '100.64.9.9'))),
      run('T8', () => this.#ping(l, '100.64.9.9')),
      run('T9', () => this.#udp('100.64.1.2')),
      run('T10', () => this.#udp('192.168.50.2')),
      run('T11', () => this.#ping(p, '-6', ADDR6)),
      run('T12', () => this.#ping(r, '-6', ADDR6)),
      run('T13', () => this.#ping(l, '-6', 'fd7a:115c:a1e0::9')),
    ]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const [cl1, cp1, cr1] = await Promise.all([this.counters(l), this.counters(p), this.counters(r)]);
    const delta = (a: Map<string, number>, b: Map<string, number>, k: string): number => (b.get(k) ?? 0) - (a.get(k) ?? 0);
    if (want.has('T7')) res.T7 = delta(cp0, cp1, 'peer_from_spoofed_cgnat') > 0 ? 'PASS' : 'DROP';
    if (want.has('T9')) res.T9 = delta(cr0, cr1, 'udp_from_cgnat') > 0 ? 'PASS' : 'DROP';
    if (want.has('T10')) res.T10 = delta(cr0, cr1, 'udp_from_lan') > 0 ? 'PASS' : 'DROP';
    const fromRouter = delta(cl0, cl1, 'lan_from_router');
    const fromPeer = delta(cl0, cl1, 'lan_from_peer');
    return { results: res as Record<TestId, Result>, t6src: fromRouter > 0 ? 'router' : fromPeer > 0 ? 'peer' : 'none' };
  }

  cleanup(): void {
    this.lab.cleanup();
  }
}

/** Chains worth listing: ours, and any base chain with rules or a non-accept policy. Sorted headers, rule order kept. */
export function listing(snap: Snapshot): string[] {
  const out: string[][] = [];
  for (const [f, tables] of snap.families) {
    for (const [t, chains] of tables) {
      for (const c of chains.values()) {
        if (c.base && c.rules.length === 0 && (c.policy ?? 'accept').toLowerCase() === 'accept') continue;
        out.push([`${f} ${t} ${c.name}`, ...c.rules.map((r) => `  ${r.key}`)]);
      }
    }
  }
  return out.sort((a, b) => (a[0]! < b[0]! ? -1 : 1)).flat();
}

/** The listing a host with nothing else on it must show for `want` (§10 state assertions). */
export function expectedListing(want: Desired, keyOf: KeyFn): string[] {
  const out: string[][] = [];
  for (const fs of want.families) {
    const f = fs.family;
    for (const [chain, rules] of fs.chains) {
      const table = chain === 'ts-postrouting' ? 'nat' : 'filter';
      out.push([`${f} ${table} ${chain}`, ...rules.map((r) => `  ${keyOf(r, want.iface, f)}`)]);
      const h = HOOKS.find((x) => x.chain === chain)!;
      if (want.hooks) out.push([`${f} ${table} ${h.parent}`, `  ${keyOf({ kind: 'jump', target: chain }, want.iface, f)}`]);
    }
    if (want.connmark) for (const c of CONNMARK) out.push([`${f} mangle ${c.parent}`, `  ${keyOf(c.rule, want.iface, f)}`]);
  }
  return out.sort((a, b) => (a[0]! < b[0]! ? -1 : 1)).flat();
}

export { chainOf };
