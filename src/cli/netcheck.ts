/**
 * `wiremesh netcheck [--derp-map URL|file] [--format=json|json-line] [--explain] [--verbose]` (spec/nat-traversal.md
 * §7.7, issue #3): runs one full netcheck report with its own sockets and prints it like `tailscale netcheck`,
 * as Tailscale's JSON, and/or as plain guidance. Flag parsing and wiring only.
 */
import { Option } from 'commander';
import { cliCommand, commanderStatus } from './command.ts';
import { WiremeshError } from '../errors.ts';
import { derpMapSourceUrl, loadDerpMap } from '../derpmap/load.ts';
import { DEFAULT_DERP_MAP_URL, realNetcheckDeps } from '../netcheck/adapters.ts';
import { runNetcheck, type PortMapResult } from '../netcheck/client.ts';
import { explain, formatExplanation } from '../netcheck/explain.ts';
import { formatJSON, formatText, reportToJSON } from '../netcheck/report.ts';

interface Flags {
  derpMap: string;
  format: string;
  explain: boolean;
  verbose: boolean;
  bindAddress?: string;
  bindPort?: string;
  portmap: boolean;
}

/** The port-mapping client's probe, when that module is present and loads. */
async function loadPortMapProbe(): Promise<(() => Promise<PortMapResult>) | undefined> {
  try {
    const mod = (await import('../portmap/index.ts')) as { probePortMapping?: () => Promise<PortMapResult> };
    return mod.probePortMapping;
  } catch {
    return undefined;
  }
}

export async function run(argv: string[]): Promise<number> {
  const cmd = cliCommand('wiremesh netcheck')
    .description('Print an analysis of local network conditions (like tailscale netcheck)')
    .option('--derp-map <url|file>', 'DERP map: https:// URL, file:// URL or path', DEFAULT_DERP_MAP_URL)
    .addOption(new Option('--format <format>', 'output format').choices(['', 'json', 'json-line']).default(''))
    .option('--explain', 'explain the report in plain language and say what to try', false)
    .option('--verbose', 'log probes to stderr and show region numbers', false)
    .option('--bind-address <ip>', 'local address to send probes from')
    .option('--bind-port <port>', 'local UDP port to send probes from (0 = random)')
    .option('--no-portmap', 'skip the UPnP / NAT-PMP / PCP probe');
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (e) {
    return commanderStatus(e) ?? 2;
  }
  const f = cmd.opts<Flags>();
  const log = f.verbose ? (l: string): void => void process.stderr.write(`${l}\n`) : undefined;
  try {
    const dm = await loadDerpMap(derpMapSourceUrl(f.derpMap));
    const portMapProbe = f.portmap ? await loadPortMapProbe() : undefined;
    const deps = realNetcheckDeps({
      ...(f.bindAddress === undefined ? {} : { bindAddress: f.bindAddress }),
      ...(f.bindPort === undefined ? {} : { bindPort: Number(f.bindPort) }),
      ...(portMapProbe === undefined ? {} : { portMapProbe }),
    });
    const { report, durationMs } = await runNetcheck(dm, deps, log === undefined ? {} : { log });
    log?.(`netcheck: report in ${durationMs.toFixed(1)} ms`);
    if (f.format === 'json') {
      process.stderr.write('# Warning: this JSON format is not yet considered a stable interface\n');
      process.stdout.write(formatJSON(report));
    } else if (f.format === 'json-line') {
      process.stderr.write('# Warning: this JSON format is not yet considered a stable interface\n');
      process.stdout.write(JSON.stringify(reportToJSON(report)) + '\n');
    } else {
      process.stdout.write(formatText(report, dm, { verbose: f.verbose }));
    }
    if (f.explain) process.stdout.write(formatExplanation(explain(report, dm)));
    return 0;
  } catch (e) {
    const msg = e instanceof WiremeshError ? `${e.message} (${e.code})` : (e as Error).message;
    process.stderr.write(`wiremesh netcheck: ${msg}\n`);
    return 1;
  }
}
