/**
 * `wiremesh portmap probe|map|unmap` (issue #4; spec/nat-traversal.md §8): for people debugging their router.
 * Text by default, `--format=json` for scripts. Flag parsing and wiring only; the work is in src/portmap/.
 */
import { Option, type Command } from 'commander';
import { cliCommand, commanderStatus } from './command.ts';
import { hasCode, WiremeshError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { openPortMapper, probePortMappingReport, type Mapping, type PortmapProtocol, type ProbeReport } from '../portmap/index.ts';

const PROTOCOLS: readonly PortmapProtocol[] = ['pcp', 'pmp', 'upnp'];

interface Common {
  format: 'text' | 'json';
  gateway?: string;
  local?: string;
  verbose?: boolean;
}

function gatewayOpt(o: Common): { gateway: { gateway: string; localAddress: string } } | Record<string, never> {
  if (o.gateway === undefined && o.local === undefined) return {};
  if (o.gateway === undefined || o.local === undefined) {
    throw new WiremeshError('CLI_USAGE', '--gateway and --local go together');
  }
  return { gateway: { gateway: o.gateway, localAddress: o.local } };
}

function parseProtocols(s: string | undefined): readonly PortmapProtocol[] | undefined {
  if (s === undefined) return undefined;
  const list = s.split(',').map((p) => p.trim().toLowerCase());
  for (const p of list) {
    if (!(PROTOCOLS as readonly string[]).includes(p)) throw new WiremeshError('CLI_USAGE', `unknown protocol ${JSON.stringify(p)} (pcp, pmp, upnp)`);
  }
  return list as PortmapProtocol[];
}

function parsePort(s: string | undefined, name: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new WiremeshError('CLI_USAGE', `${name} must be a port number 1-65535`);
  return n;
}

export function formatProbe(r: ProbeReport): string {
  const yn = (b: boolean): string => (b ? 'yes' : 'no');
  const lines = [
    `gateway ${r.gateway} (local ${r.localAddress}), ${Math.round(r.durationMs)} ms`,
    `  PCP:     ${yn(r.pcp)}${r.pcpEpoch !== undefined ? ` (epoch ${r.pcpEpoch})` : ''}`,
    `  NAT-PMP: ${yn(r.pmp)}${r.pmpExternalIp !== undefined ? ` (external ${r.pmpExternalIp}, epoch ${r.pmpEpoch})` : ''}`,
    `  UPnP:    ${yn(r.upnp)}`,
    ...r.upnpResponses.map((u) => `    IGD:${u.igdVersion} ${u.location} ${u.server}`),
    ...r.rejections.map((x) => `  rejected: ${x.code} ${x.message}`),
  ];
  return lines.join('\n') + '\n';
}

export function formatMapping(m: Mapping): string {
  const life = m.lifetimeSeconds === 0 ? 'permanent' : `${m.lifetimeSeconds}s`;
  let s = `${m.protocol}: ${m.externalIp}:${m.externalPort} -> ${m.internalAddress}:${m.internalPort} udp (lifetime ${life})`;
  if (m.nonce !== undefined) s += ` nonce ${m.nonce}`;
  return s + '\n';
}

function emit(format: Common['format'], json: unknown, text: string): void {
  process.stdout.write(format === 'json' ? JSON.stringify(json) + '\n' : text);
}

function build(setStatus: (n: number) => void): Command {
  const program = cliCommand('wiremesh portmap')
    .description('UPnP IGD / NAT-PMP / PCP port mapping on the default gateway');
  const common = (c: Command): Command =>
    c.addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
      .option('--gateway <ip>', 'gateway address (default: the IPv4 default route)')
      .option('--local <ip>', 'our address towards the gateway (with --gateway)')
      .option('-v, --verbose', 'log protocol details to stderr');

  common(program.command('probe').description('which of PCP, NAT-PMP and UPnP the gateway answers (250 ms)'))
    .option('--timeout <ms>', 'probe budget in milliseconds', '250')
    .action(async (o: Common & { timeout: string }) => {
      const r = await probePortMappingReport({ ...gatewayOpt(o), timeoutMs: Number(o.timeout) });
      emit(o.format, r, formatProbe(r));
      setStatus(r.pcp || r.pmp || r.upnp ? 0 : 1);
    });

  common(program.command('map').description('map a local UDP port; with --hold keep it renewed until interrupted'))
    .requiredOption('--port <port>', 'local UDP port to map')
    .option('--protocol <list>', 'protocols allowed, in preference order (default pcp,pmp,upnp)')
    .option('--lifetime <seconds>', 'requested lifetime', '7200')
    .option('--hold', 'keep renewing, release on SIGINT/SIGTERM')
    .option('--timeout <ms>', 'probe budget in milliseconds', '250')
    .action(async (o: Common & { port: string; protocol?: string; lifetime: string; hold?: boolean; timeout: string }) => {
      const protocols = parseProtocols(o.protocol);
      const { mapper, close, conn } = await openPortMapper({
        ...gatewayOpt(o), lifetimeSeconds: Number(o.lifetime), probeTimeoutMs: Number(o.timeout),
        ...(protocols === undefined ? {} : { protocols }),
        ...(o.verbose ? { logger: createLogger({ level: 'debug' }) } : {}),
        onChange: (m, why) => {
          if (o.hold) emit(o.format, { event: why, mapping: m }, m === null ? `${why}\n` : `${why} ${formatMapping(m)}`);
        },
      });
      try {
        const m = await mapper.map(parsePort(o.port, '--port'));
        if (!o.hold) {
          emit(o.format, m, formatMapping(m));
          conn.close();
          return;
        }
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        await close();
      } catch (e) {
        conn.close();
        throw e;
      }
    });

  common(program.command('unmap').description('delete a mapping made earlier (PCP needs the nonce it was made with)'))
    .requiredOption('--port <port>', 'local UDP port that was mapped')
    .addOption(new Option('--protocol <protocol>', 'protocol that made it').choices([...PROTOCOLS]).makeOptionMandatory())
    .option('--external-port <port>', 'external port (PCP, UPnP; default: same as --port)')
    .option('--nonce <hex>', 'PCP nonce printed by `portmap map`')
    .option('--timeout <ms>', 'probe budget in milliseconds (UPnP)', '250')
    .action(async (o: Common & { port: string; protocol: PortmapProtocol; externalPort?: string; nonce?: string; timeout: string }) => {
      const internalPort = parsePort(o.port, '--port');
      const externalPort = o.externalPort === undefined ? internalPort : parsePort(o.externalPort, '--external-port');
      if (o.protocol === 'pcp' && (o.nonce === undefined || !/^[0-9a-fA-F]{24}$/.test(o.nonce))) {
        throw new WiremeshError('CLI_USAGE', 'PCP unmap needs --nonce (24 hex digits) from the map that created it');
      }
      const { mapper, close } = await openPortMapper({ ...gatewayOpt(o), protocols: [o.protocol], probeTimeoutMs: Number(o.timeout) });
      try {
        const m: Mapping = {
          protocol: o.protocol, gateway: '', internalAddress: '', internalPort, externalIp: '', externalPort,
          lifetimeSeconds: 0, grantedAt: 0, renewAt: 0, ...(o.nonce === undefined ? {} : { nonce: o.nonce.toLowerCase() }),
        };
        await mapper.releaseMapping({ ...m, internalAddress: (await gatewayLocal(o)) ?? '' });
        emit(o.format, { released: true, protocol: o.protocol, internalPort, externalPort }, `released ${o.protocol} mapping of port ${internalPort}\n`);
      } finally {
        await close();
      }
    });
  return program;
}

async function gatewayLocal(o: Common): Promise<string | null> {
  if (o.local !== undefined) return o.local;
  const { discoverGateway } = await import('../portmap/adapters.ts');
  return discoverGateway().localAddress;
}

export async function run(argv: string[]): Promise<number> {
  let status = 0;
  const program = build((n) => { status = n; });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return status;
  } catch (e) {
    const usage = commanderStatus(e);
    if (usage !== null) return usage;
    if (hasCode(e, 'CLI_USAGE')) {
      process.stderr.write(`wiremesh portmap: ${(e as Error).message}\n`);
      return 2;
    }
    const code = e instanceof WiremeshError ? `${e.code}: ` : '';
    process.stderr.write(`wiremesh portmap: ${code}${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
