/**
 * `wiremesh derpprobe`: monitors a DERP map like Tailscale's cmd/derpprobe (spec/derp.md §18). Wiring only:
 * flags (named like Go's, one or two dashes, `-spread=false`), then the prober library in src/prober/.
 * `--once` runs every probe once and prints `good: <name>: <latency>` / `bad: <name>: <error>` lines, sorted,
 * good first, on stdout (Go prints the same lines through its logger on stderr), exiting 1 if any failed.
 * Otherwise it serves the status page, /healthz, /debug/probe-run, /debug/probe-all and /debug/varz on
 * --listen and prints `derpprobe: listening on http://HOST:PORT` on stderr.
 */
import { readFile } from 'node:fs/promises';
import { cliCommand, commanderStatus } from './command.ts';
import { WiremeshError } from '../errors.ts';
import { createLogger, silentLogger, type Logger } from '../log.ts';
import { listenUdp } from '../net/udp.ts';
import { normalizeGoFlags, parseGoDuration, parseListenAddr, type FlagNames } from '../derper/flags.ts';
import { parseMeshKey } from '../derper/keyfile.ts';
import { cryptoRandom } from '../stun/client.ts';
import { realClock } from '../time/clock.ts';
import * as C from '../prober/constants.ts';
import { derpClientDialer } from '../prober/derp-conn.ts';
import { DerpProber, type DerpProberOptions } from '../prober/derp-prober.ts';
import { loadDerpMap } from '../derpmap/load.ts';
import { listenProberHttp } from '../prober/http.ts';
import { Prober, type ProbeInfo } from '../prober/prober.ts';
import { formatGoDuration } from '../prober/util.ts';

const BOOLS: Record<string, boolean> = { once: false, spread: true, dev: false, verbose: false };
const VALUES: Record<string, string> = {
  'derp-map': C.DEFAULT_DERP_MAP_URL,
  listen: C.DEFAULT_LISTEN,
  interval: '15s',
  'mesh-interval': '15s',
  'stun-interval': '15s',
  'tls-interval': '15s',
  'bw-interval': '0s',
  'bw-probe-size-bytes': '1000000',
  'bw-tun-ipv4-addr': '',
  'qd-packets-per-second': '0',
  'qd-packet-timeout': '5s',
  'region-code': '',
  'mesh-psk-file': '',
};

export const FLAG_NAMES: FlagNames = { bools: new Set(Object.keys(BOOLS)), values: new Set(Object.keys(VALUES)), shorts: new Map() };

/** The probe settings are DerpProberOptions' own fields; the rest is wiring for this command. */
type ProbeSettings = Pick<DerpProberOptions, 'meshIntervalMs' | 'stunIntervalMs' | 'tlsIntervalMs' | 'bwIntervalMs' | 'bwProbeSizeBytes' | 'qdPacketsPerSecond' | 'qdPacketTimeoutMs' | 'regionCode'>;

export interface DerpprobeFlags extends ProbeSettings {
  derpMap: string;
  listen: { host: string; port: number };
  once: boolean;
  spread: boolean;
  dev: boolean;
  verbose: boolean;
  intervalMs: number;
  meshPskFile: string;
}

const usageError = (msg: string): WiremeshError => new WiremeshError('derpprobe_usage', msg);
const camel = (s: string): string => s.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());

/** Parses argv (Go-style or commander-style); throws WiremeshError('derpprobe_usage') or CommanderError. */
export function parseDerpprobeFlags(argv: readonly string[]): DerpprobeFlags {
  const cmd = cliCommand('wiremesh derpprobe')
    .description('monitor a DERP map (like Tailscale cmd/derpprobe); flags accept one or two dashes')
    .allowExcessArguments(false);
  for (const [name, def] of Object.entries(BOOLS)) {
    cmd.option(`--${name}`, `(default ${def})`);
    cmd.option(`--no-${name}`);
  }
  for (const [name, def] of Object.entries(VALUES)) cmd.option(`--${name} <value>`, def === '' ? '' : `(default ${JSON.stringify(def)})`);
  cmd.parse(normalizeGoFlags(argv, FLAG_NAMES), { from: 'user' });
  const o = cmd.opts<Record<string, string | boolean | undefined>>();
  const b = (n: string): boolean => (typeof o[camel(n)] === 'boolean' ? (o[camel(n)] as boolean) : BOOLS[n]!);
  const s = (n: string): string => (typeof o[camel(n)] === 'string' ? (o[camel(n)] as string) : VALUES[n]!);
  const dur = (n: string, allowZero: boolean): number => {
    const ms = parseGoDuration(s(n));
    if (ms < 0 || (!allowZero && ms === 0)) throw usageError(`--${n}: want a ${allowZero ? 'non-negative' : 'positive'} duration, got ${JSON.stringify(s(n))}`);
    return ms;
  };
  const int = (n: string): number => {
    const v = s(n);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw usageError(`--${n}: want a non-negative integer, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  if (s('bw-tun-ipv4-addr') !== '') throw usageError('--bw-tun-ipv4-addr (TCP-in-TCP over a TUN device) is not supported by wiremesh derpprobe');
  const listen = parseListenAddr(s('listen'));
  return {
    derpMap: s('derp-map'),
    listen: { host: listen.host, port: listen.port },
    once: b('once'),
    spread: b('spread'),
    dev: b('dev'),
    verbose: b('verbose'),
    intervalMs: dur('interval', false),
    meshIntervalMs: dur('mesh-interval', true),
    stunIntervalMs: dur('stun-interval', true),
    tlsIntervalMs: dur('tls-interval', true),
    bwIntervalMs: dur('bw-interval', true),
    bwProbeSizeBytes: int('bw-probe-size-bytes'),
    qdPacketsPerSecond: int('qd-packets-per-second'),
    qdPacketTimeoutMs: dur('qd-packet-timeout', false),
    regionCode: s('region-code'),
    meshPskFile: s('mesh-psk-file'),
  };
}

/** The `--once` report: sorted `good:` lines, then sorted `bad:` lines, for probes that finished. */
export function onceReport(probes: readonly ProbeInfo[]): { lines: string[]; failed: number } {
  const good: string[] = [];
  const bad: string[] = [];
  for (const p of probes) {
    const last = p.history[p.history.length - 1];
    if (last === undefined) continue;
    if (last.ok) good.push(`good: ${p.name}: ${formatGoDuration(last.latencyMs)}`);
    else bad.push(`bad: ${p.name}: ${last.error ?? 'failed'}`);
  }
  good.sort();
  bad.sort();
  return { lines: [...good, ...bad], failed: bad.length };
}

async function meshKeyFor(f: DerpprobeFlags): Promise<Uint8Array | undefined> {
  if (f.meshPskFile !== '') return parseMeshKey(await readFile(f.meshPskFile, 'utf8'));
  const env = process.env.TAILSCALE_DERPER_MESH_KEY;
  if (f.dev && env !== undefined && env !== '') return parseMeshKey(env);
  return undefined;
}

export async function run(argv: string[]): Promise<number> {
  let f: DerpprobeFlags;
  try {
    f = parseDerpprobeFlags(argv);
  } catch (e) {
    const usage = commanderStatus(e);
    if (usage !== null) return usage;
    process.stderr.write(`wiremesh derpprobe: ${(e as Error).message}\n`);
    return 2;
  }
  const log: Logger = f.once && !f.verbose ? silentLogger : createLogger({ level: f.verbose ? 'debug' : 'info' });
  let meshKey: Uint8Array | undefined;
  try {
    meshKey = await meshKeyFor(f);
  } catch (e) {
    process.stderr.write(`wiremesh derpprobe: --mesh-psk-file: ${(e as Error).message}\n`);
    return 2;
  }
  const prober = new Prober({
    clock: realClock,
    spread: f.spread,
    once: f.once,
    onResult: (name, r) => { if (!r.ok) log.warn('probe failed', { name, err: r.error }); },
  });
  const derp = new DerpProber(prober, {
    derpMapUrl: f.derpMap,
    loadMap: loadDerpMap,
    meshIntervalMs: f.meshIntervalMs,
    stunIntervalMs: f.stunIntervalMs,
    tlsIntervalMs: f.tlsIntervalMs,
    bwIntervalMs: f.bwIntervalMs,
    bwProbeSizeBytes: f.bwProbeSizeBytes,
    qdPacketsPerSecond: f.qdPacketsPerSecond,
    qdPacketTimeoutMs: f.qdPacketTimeoutMs,
    regionCode: f.regionCode,
    ...(meshKey !== undefined ? { meshKey } : {}),
    dial: derpClientDialer(),
    openUdp: (family) => listenUdp({ family }),
    random: cryptoRandom,
    wallNow: () => Date.now(),
    log,
  });
  prober.run(C.MAP_PROBE_NAME, f.intervalMs, derp.mapProbe());

  if (f.once) {
    await prober.wait();
    const { lines, failed } = onceReport(prober.list());
    prober.close();
    process.stdout.write(lines.map((l) => l + '\n').join(''));
    return failed > 0 ? 1 : 0;
  }

  const { server, port } = await listenProberHttp(prober, f.listen.host, f.listen.port, {
    source: f.derpMap,
    toEpochSecs: (clockMs) => (Date.now() - (realClock.now() - clockMs)) / 1000,
  });
  const shownHost = f.listen.host === '' ? '0.0.0.0' : f.listen.host.includes(':') ? `[${f.listen.host}]` : f.listen.host;
  process.stderr.write(`derpprobe: listening on http://${shownHost}:${port}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  prober.close();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
  return 0;
}
