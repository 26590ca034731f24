/**
 * Backend choice (spec/netfilter.md §3, after Tailscale's detectFirewallMode): an explicit choice or the
 * WIREMESH_FIREWALL_MODE override first; otherwise what the host already uses — count iptables rules
 * (`iptables -S` + `ip6tables -S`) and nftables rules (`nft -j list ruleset`), prefer the one in use, nftables
 * when both or neither are, and a clear error when neither tool exists.
 */
import { WiremeshError } from '../errors.ts';
import { BACKEND_ENV, XTABLES_WAIT_SECONDS } from './constants.ts';
import { IptablesBackend, NftablesBackend, type Backend, type BackendName } from './backend.ts';
import type { Exec } from './exec.ts';

export type BackendChoice = BackendName | 'auto';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'iptables', 'iptables-nft', 'iptables-legacy', 'nftables'];

export function parseBackendChoice(s: string): BackendChoice {
  const c = BACKEND_CHOICES.find((x) => x === s);
  if (c === undefined) {
    throw new WiremeshError('NETFILTER_BAD_CONFIG', `invalid backend ${JSON.stringify(s)} (want ${BACKEND_CHOICES.join(', ')})`);
  }
  return c;
}

export interface Detected {
  backend: Backend;
  /** Why this backend: for the log line. */
  reason: string;
}

export const noTool = (): WiremeshError =>
  new WiremeshError('NETFILTER_NO_TOOL', 'neither iptables nor nft found in PATH: install iptables or nftables, or use --mode off');

const countRules = (out: string): number => out.split('\n').filter((l) => l.startsWith('-A ')).length;

/** The auto heuristic's inputs, exposed for tests. */
export interface Census {
  ipt: { exists: boolean; works: boolean; rules: number };
  nft: { exists: boolean; works: boolean; rules: number };
}

export async function census(exec: Exec): Promise<Census> {
  const w = ['-w', String(XTABLES_WAIT_SECONDS)];
  const i4 = await exec('iptables', [...w, '-S']);
  const i6 = i4.code === 127 ? null : await exec('ip6tables', [...w, '-S']);
  const iptRules = (i4.code === 0 ? countRules(i4.stdout) : 0) + (i6 !== null && i6.code === 0 ? countRules(i6.stdout) : 0);
  const nv = await exec('nft', ['--version']);
  let nftRules = 0;
  let nftWorks = false;
  if (nv.code !== 127) {
    // Like Tailscale's ts-test-nat probe, but as a dry run (-c): proves the kernel takes our transactions.
    nftWorks = (await exec('nft', ['-c', '-f', '-'], 'add table ip wiremesh-probe\n')).code === 0;
    try {
      nftRules = (await new NftablesBackend(exec).readAll()).ruleCount;
    } catch {
      nftRules = 0;
    }
  }
  return {
    ipt: { exists: i4.code !== 127, works: i4.code === 0, rules: iptRules },
    nft: { exists: nv.code !== 127, works: nftWorks, rules: nftRules },
  };
}

/** Tailscale's decision table (§3, step 5). */
export function decide(c: Census): { name: 'iptables' | 'nftables'; reason: string } {
  const counts = `iptables rules=${c.ipt.rules}, nftables rules=${c.nft.rules}`;
  if (!c.ipt.exists && !c.nft.exists) throw noTool();
  if (!c.ipt.exists) return { name: 'nftables', reason: 'no iptables binary' };
  if (!c.nft.exists) return { name: 'iptables', reason: 'no nft binary' };
  if (c.nft.rules > 0 && c.ipt.rules === 0) return { name: 'nftables', reason: `host uses nftables (${counts})` };
  if (c.ipt.rules > 0 && c.nft.rules === 0) return { name: 'iptables', reason: `host uses iptables (${counts})` };
  if (c.nft.works) return { name: 'nftables', reason: `nftables works (${counts})` };
  if (c.ipt.works) return { name: 'iptables', reason: `iptables works (${counts})` };
  throw new WiremeshError('NETFILTER_NO_TOOL', `neither iptables nor nftables works here (${counts})`);
}

export interface DetectOptions {
  choice?: BackendChoice;
  env?: Record<string, string | undefined>;
  ipv6?: boolean;
}

export async function detectBackend(exec: Exec, opts: DetectOptions = {}): Promise<Detected> {
  const fromEnv = opts.env?.[BACKEND_ENV];
  const choice = opts.choice ?? (fromEnv !== undefined && fromEnv !== '' ? parseBackendChoice(fromEnv) : 'auto');
  const v6 = opts.ipv6 ?? true;
  if (choice === 'nftables') return { backend: await NftablesBackend.create(exec, v6), reason: 'chosen' };
  if (choice !== 'auto') return { backend: await IptablesBackend.create(exec, choice, v6), reason: 'chosen' };
  const d = decide(await census(exec));
  const backend = d.name === 'nftables' ? await NftablesBackend.create(exec, v6) : await IptablesBackend.create(exec, 'iptables', v6);
  return { backend, reason: d.reason };
}
