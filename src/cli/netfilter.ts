/**
 * `wiremesh netfilter apply|show|clean` (spec/netfilter.md §1, §6, §8): install the rules of a netfilter mode for
 * people integrating with their own firewall, show what is installed and whether it is in place, and run the
 * start-up cleanup. `apply --watch` keeps mode `on` in place with the reconciler until interrupted.
 * Flag parsing and wiring only.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { cliCommand } from './command.ts';
import { hasCode, WiremeshError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { realClock } from '../time/clock.ts';
import { DEFAULT_PORT, DEFAULT_TUN_NAME } from '../netfilter/constants.ts';
import { BACKEND_CHOICES, detectBackend, parseBackendChoice, type BackendChoice } from '../netfilter/detect.ts';
import { hostExec } from '../netfilter/exec.ts';
import { cleanupAll, Netfilter } from '../netfilter/manager.ts';
import { defaultConfig, MODES, parseMode, validateConfig, type NetfilterConfig } from '../netfilter/rules.ts';

interface Flags {
  mode: string;
  iface: string;
  port: string;
  addr: string[];
  backend: string;
  snat: boolean;
  stateful: boolean;
  cgnat: string;
  ipv6: boolean;
  watch?: boolean;
  json?: boolean;
  verbose?: boolean;
}

const port = (s: string): string => {
  if (s !== 'none' && !/^\d+$/.test(s)) throw new InvalidArgumentError('want a port number or "none"');
  return s;
};

function configOf(f: Flags): NetfilterConfig {
  if (f.cgnat !== 'drop' && f.cgnat !== 'return') throw new WiremeshError('NETFILTER_BAD_CONFIG', '--cgnat must be drop or return');
  const c = defaultConfig({
    mode: parseMode(f.mode),
    iface: f.iface,
    port: f.port === 'none' ? null : Number(f.port),
    addrs: f.addr,
    snat: f.snat,
    stateful: f.stateful,
    cgnat: f.cgnat,
  });
  validateConfig(c);
  return c;
}

function common(cmd: Command): Command {
  return cmd
    .addOption(new Option('--mode <mode>', 'netfilter mode').choices([...MODES]).default('on'))
    .option('--iface <name>', 'tunnel interface', DEFAULT_TUN_NAME)
    .option('--port <n>', 'UDP listening port to accept, or "none"', port, String(DEFAULT_PORT))
    .option('--addr <ip>', "the node's own tailnet address (repeatable): -i lo accept", (v: string, prev: string[]) => [...prev, v], [] as string[])
    .addOption(new Option('--backend <name>', 'firewall backend (default: $WIREMESH_FIREWALL_MODE, else auto)').choices([...BACKEND_CHOICES]))
    .option('--no-snat', 'do not MASQUERADE subnet-routed / exit-node traffic')
    .option('--stateful', 'drop NEW connections into the tunnel', false)
    .addOption(new Option('--cgnat <verdict>', 'CGNAT sources off the tunnel').choices(['drop', 'return']).default('drop'))
    .option('--no-ipv6', 'IPv4 only')
    .option('--json', 'JSON output')
    .option('-v, --verbose', 'log every command run');
}

export async function run(argv: string[]): Promise<number> {
  let status = 0;
  const log = (f: Flags) => createLogger({ level: f.verbose === true ? 'debug' : 'info' });
  const open = async (f: Flags): Promise<Netfilter> => {
    const choice: BackendChoice | undefined = f.backend === undefined ? undefined : parseBackendChoice(f.backend);
    const d = await detectBackend(hostExec, { ...(choice === undefined ? {} : { choice }), env: process.env, ipv6: f.ipv6 });
    log(f).debug('netfilter: backend', { backend: d.backend.name, reason: d.reason });
    return new Netfilter(d.backend, log(f));
  };
  const program = cliCommand('wiremesh netfilter').description('netfilter modes on / nodivert / off (like tailscaled --netfilter-mode)');
  common(program.command('apply').description('install the rules of --mode (removing what other modes left)'))
    .option('--watch', 'mode on: keep the rules in place (reconciler) until interrupted')
    .action(async (f: Flags) => {
      const cfg = configOf(f);
      const nf = await open(f);
      const done = await nf.apply(cfg);
      for (const c of done) log(f).debug('netfilter: ran', { command: c });
      process.stdout.write(f.json === true ? JSON.stringify({ backend: nf.backend.name, mode: cfg.mode, commands: done }) + '\n' : `${nf.backend.name}: mode ${cfg.mode} applied (${done.length} changes)\n`);
      if (f.watch !== true) return;
      const rec = nf.reconciler(cfg, realClock);
      if (rec === null) {
        process.stderr.write(`--watch does nothing in mode ${cfg.mode}: nodivert and off never touch the built-in chains\n`);
        return;
      }
      rec.start();
      await new Promise<void>((resolve) => {
        const keep = setInterval(() => {}, 1 << 30);
        const stop = (): void => (clearInterval(keep), rec.stop(), resolve());
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
  common(program.command('show').description('print what is installed and whether --mode is in place (exit 1 if not)')).action(async (f: Flags) => {
    const cfg = configOf(f);
    const nf = await open(f);
    const st = await nf.status(cfg);
    if (f.json === true) process.stdout.write(JSON.stringify({ ...st, mode: cfg.mode, inPlace: st.drift.length === 0 }) + '\n');
    else {
      process.stdout.write(await nf.backend.listing());
      process.stdout.write(`\nbackend: ${st.backend}\ninstalled: ${st.installed}\nmode ${cfg.mode}: ${st.drift.length === 0 ? 'in place' : 'NOT in place'}\n`);
      for (const d of st.drift) process.stdout.write(`  - ${d}\n`);
    }
    if (st.drift.length > 0) status = 1;
  });
  common(program.command('clean').description('start-up cleanup: remove our jumps and ts-* chains (every backend), nothing else')).action(async (f: Flags) => {
    configOf(f);
    const done = await cleanupAll(hostExec, f.iface, log(f));
    process.stdout.write(f.json === true ? JSON.stringify({ commands: done }) + '\n' : `removed ${done.length} rules/chains\n`);
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    const ce = e as { code?: string; exitCode?: number };
    if (typeof ce.code === 'string' && ce.code.startsWith('commander.')) {
      return ce.code === 'commander.helpDisplayed' || ce.code === 'commander.version' || ce.code === 'commander.help' ? 0 : (ce.exitCode ?? 2);
    }
    if (e instanceof WiremeshError) {
      process.stderr.write(`wiremesh netfilter: ${e.message} (${e.code})\n`);
      return hasCode(e, 'NETFILTER_BAD_CONFIG') ? 2 : 1;
    }
    throw e;
  }
  return status;
}
