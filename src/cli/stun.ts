/**
 * `wiremesh stun <host>[:port]`: one STUN query, printing the reflexive address the server saw (like Tailscale's
 * `cmd/stunc`; spec/derp.md §15). Sends Tailscale's `tailnode` request by default, a plain RFC 5389 Binding
 * request with `--generic`. Flag parsing and wiring only; the work is in src/stun/client.ts.
 */
import { InvalidArgumentError, Option } from 'commander';
import { cliCommand, commanderStatus } from './command.ts';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { formatAddrPort, type AddrPort } from '../net/packet.ts';
import { listenUdp } from '../net/udp.ts';
import { cryptoRandom, stunQuery } from '../stun/client.ts';
import { realClock } from '../time/clock.ts';
import { WiremeshError } from '../errors.ts';

/** Default STUN port (RFC 5389 §9; derper's `-stun-port`). */
const DEFAULT_PORT = 3478;

/** `host`, `host:port`, `v4:port`, `[v6]:port` or a bare IPv6 literal. */
export function parseTarget(s: string): { host: string; port: number } {
  const bracket = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
  let host: string;
  let port: string | undefined;
  if (bracket !== null) [, host, port] = bracket as unknown as [string, string, string | undefined];
  else if (isIP(s) === 6) host = s;
  else {
    const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(s);
    if (m === null) throw new Error(`bad target ${JSON.stringify(s)}: want host[:port]`);
    [, host, port] = m as unknown as [string, string, string | undefined];
  }
  const p = port === undefined ? DEFAULT_PORT : Number(port);
  if (!(p >= 1 && p <= 65535) || host === '') throw new Error(`bad target ${JSON.stringify(s)}`);
  return { host, port: p };
}

export async function run(argv: string[]): Promise<number> {
  const program = cliCommand('wiremesh stun')
    .description("query a STUN server and print this host's reflexive address")
    .argument('<target>', 'server as host[:port] (default port 3478); IPv6 as [addr]:port')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .option('--generic', 'send a plain RFC 5389 Binding request instead of Tailscale\'s "tailnode" one', false)
    .option('--timeout <ms>', 'give up after this many milliseconds', (v) => positiveInt(v, '--timeout'), 3000)
    .option('--retry <ms>', 'retransmit interval in milliseconds', (v) => positiveInt(v, '--retry'), 500)
    .addOption(new Option('-4, --ipv4', 'resolve the host to IPv4 only').conflicts('ipv6'))
    .option('-6, --ipv6', 'resolve the host to IPv6 only');
  try {
    program.parse(argv, { from: 'user' });
  } catch (e) {
    const usage = commanderStatus(e);
    if (usage !== null) return usage;
    throw e;
  }
  const opts = program.opts<{ format: 'text' | 'json'; generic: boolean; timeout: number; retry: number; ipv4?: boolean; ipv6?: boolean }>();
  let target: { host: string; port: number };
  try {
    target = parseTarget(program.args[0]!);
  } catch (e) {
    process.stderr.write(`wiremesh stun: ${(e as Error).message}\n`);
    return 2;
  }
  let server: AddrPort;
  try {
    const family = opts.ipv4 ? 4 : opts.ipv6 ? 6 : 0;
    const ip = isIP(target.host) !== 0 ? target.host : (await lookup(target.host, { family })).address;
    server = { address: ip, port: target.port };
  } catch (e) {
    process.stderr.write(`wiremesh stun: cannot resolve ${target.host}: ${(e as Error).message}\n`);
    return 1;
  }
  const conn = await listenUdp({ family: server.address.includes(':') ? 6 : 4 });
  try {
    const r = await stunQuery(conn, server, {
      clock: realClock,
      timeoutMs: opts.timeout,
      retryMs: opts.retry,
      random: cryptoRandom,
      generic: opts.generic,
    });
    const local = conn.localAddr();
    if (opts.format === 'json') {
      process.stdout.write(JSON.stringify({
        server: formatAddrPort(server),
        address: formatAddrPort(r.address),
        ip: r.address.address,
        port: r.address.port,
        localPort: local.port,
        rttMs: Math.round(r.rttMs * 1000) / 1000,
        requests: r.sends,
        request: opts.generic ? 'rfc5389' : 'tailnode',
      }) + '\n');
    } else {
      process.stdout.write(`${formatAddrPort(r.address)}\n`);
    }
    return 0;
  } catch (e) {
    const msg = e instanceof WiremeshError ? `${e.code}: ${e.message}` : String(e);
    if (opts.format === 'json') process.stdout.write(JSON.stringify({ server: formatAddrPort(server), error: msg }) + '\n');
    process.stderr.write(`wiremesh stun: ${msg}\n`);
    return 1;
  } finally {
    conn.close();
  }
}

function positiveInt(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${flag} must be a positive integer`);
  return n;
}
