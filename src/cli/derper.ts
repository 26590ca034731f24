/**
 * `wiremesh derper`: the DERP relay + STUN server command (spec/derp.md §16.1, §16.2). Flags are named like Go's
 * cmd/derper and accept one or two dashes; flags for features not built yet are parsed and refused with a clear
 * error. `--dev` serves plain HTTP on 127.0.0.1:3340 (loopback only, unlike Go's all-interfaces) with STUN on
 * 3478 and a random key. Prints one line `derper: listening http=HOST:PORT stun=PORT` (TLS:
 * `https=HOST:PORT stun=PORT port80=HOST:PORT|off`) on stdout once listening; SIGINT/SIGTERM close gracefully.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { cliCommand, commanderStatus } from './command.ts';
import { createLogger, type Logger } from '../log.ts';
import { WiremeshError } from '../errors.ts';
import { generatePrivate, type NodePrivate } from '../types/key.ts';
import { emptyDebugPolicy, parseTrustedCidrs, type DebugAccessPolicy } from '../derper/access.ts';
import * as C from '../derper/constants.ts';
import { startDerper, type DerperConfig } from '../derper/derper.ts';
import { normalizeGoFlags, parseGoDuration, parseListenAddr, type FlagNames } from '../derper/flags.ts';
import { flagsFromEnv, logEnvFlags } from '../derper/env.ts';
import { LETSENCRYPT_DIRECTORY_URL, SHUTDOWN_TIMEOUT_MS } from '../derper/ops-constants.ts';
import { closeWithin } from '../derper/shutdown.ts';
import { DEFAULT_ACCEPT_BURST, DEFAULT_MAX_CONNS_PER_IP } from '../derper/limit-constants.ts';
import { parseAcceptLimitFlags, queueDepthFromEnv, type AcceptLimits } from '../derper/limits.ts';
import { meshTransportFromEnv, parseMeshWith, type MeshPeerSpec } from '../derper/mesh.ts';
import { defaultMeshPskFile, loadOrCreateKeyFile, parseMeshKey, readMeshKeyFile } from '../derper/keyfile.ts';

const VERSION = '0.1.0';

/** Boolean flags we implement, with their defaults. */
const BOOLS: Record<string, boolean> = { dev: false, stun: true, derp: true, 'verify-client-url-fail-open': false, version: false, verbose: false };
/** Value flags we implement, with their defaults ('' = unset). */
const VALUES: Record<string, string> = {
  addr: C.DEFAULT_ADDR,
  config: '',
  hostname: 'derp.tailscale.com',
  certmode: 'letsencrypt',
  certdir: '',
  'stun-port': String(C.DEFAULT_STUN_PORT),
  'http-port': String(C.DEFAULT_HTTP_PORT),
  home: '',
  'mesh-psk-file': '',
  'bootstrap-dns-names': '',
  'verify-client-url': '',
  'tcp-write-timeout': '2s',
  'tcp-keepalive-time': '10m',
  // mesh and connection limits (src/derper/mesh.ts, limits.ts; docs/derper.md)
  'mesh-with': '',
  'rate-config': '',
  'accept-connection-limit': '+Inf',
  'accept-connection-burst': String(DEFAULT_ACCEPT_BURST),
  'max-conns-per-ip': String(DEFAULT_MAX_CONNS_PER_IP),
  // wiremesh additions (docs/DEPLOY.md): ACME server, log format
  'acme-directory-url': LETSENCRYPT_DIRECTORY_URL,
  'acme-ca-file': '',
  'acme-email': '',
  'log-format': 'text',
};
/** Go derper flags for features that land later: refused when given. */
const UNSUPPORTED_BOOLS = ['verify-clients', 'acme-ip-certs', 'ace'] as const;
const UNSUPPORTED_VALUES = [
  'unpublished-bootstrap-dns-names',
  'secrets-url',
  'secrets-path-prefix',
  'secrets-cache-dir',
  'acme-eab-kid',
  'acme-eab-key',
  'socket',
  'tcp-user-timeout',
] as const;

export const FLAG_NAMES: FlagNames = {
  bools: new Set([...Object.keys(BOOLS), ...UNSUPPORTED_BOOLS]),
  values: new Set([...Object.keys(VALUES), ...UNSUPPORTED_VALUES]),
  shorts: new Map([
    ['a', 'addr'],
    ['c', 'config'],
  ]),
};

export interface DerperFlags {
  dev: boolean;
  stun: boolean;
  derp: boolean;
  verifyClientUrlFailOpen: boolean;
  version: boolean;
  addr: string;
  config: string;
  hostname: string;
  certmode: string;
  certdir: string;
  stunPort: number;
  httpPort: number;
  home: string;
  meshPskFile: string;
  bootstrapDnsNames: string[];
  verifyClientUrl: string;
  tcpWriteTimeoutMs: number;
  tcpKeepAliveMs: number;
  meshWith: MeshPeerSpec[];
  rateConfig: string;
  acceptLimits: AcceptLimits;
  verbose: boolean;
  logFormat: 'text' | 'json';
  acmeDirectoryUrl: string;
  acmeCaFile: string;
  acmeEmail: string;
}

const usageError = (msg: string): WiremeshError => new WiremeshError('derper_usage', msg);

function intFlag(name: string, v: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(v) || Number(v) < min || Number(v) > max) throw usageError(`--${name}: want an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  return Number(v);
}

function buildCommand(): Command {
  const cmd = cliCommand('wiremesh derper')
    .description('DERP relay + STUN server (like Tailscale cmd/derper); flags accept one or two dashes')
    .allowExcessArguments(false);
  for (const [name, def] of Object.entries(BOOLS)) {
    cmd.option(`--${name}`, `(default ${def})`);
    cmd.option(`--no-${name}`);
  }
  for (const [name, def] of Object.entries(VALUES)) {
    const flags = name === 'addr' ? '-a, --addr <value>' : name === 'config' ? '-c, --config <value>' : `--${name} <value>`;
    cmd.option(flags, def === '' ? '' : `(default ${JSON.stringify(def)})`);
  }
  for (const name of UNSUPPORTED_BOOLS) {
    cmd.option(`--${name}`, 'not supported yet');
    cmd.option(`--no-${name}`);
  }
  for (const name of UNSUPPORTED_VALUES) cmd.option(`--${name} <value>`, 'not supported yet');
  return cmd;
}

const camel = (s: string): string => s.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());

/** Parses derper's argv (Go-style or commander-style) into typed flags; throws WiremeshError on bad usage. */
export function parseDerperFlags(argv: readonly string[]): DerperFlags {
  const cmd = buildCommand();
  cmd.parse(normalizeGoFlags(argv, FLAG_NAMES), { from: 'user' });
  const o = cmd.opts<Record<string, string | boolean | undefined>>();
  for (const name of UNSUPPORTED_BOOLS) if (o[camel(name)] === true) throw usageError(`--${name} is not supported yet by wiremesh derper`);
  for (const name of UNSUPPORTED_VALUES) if (o[camel(name)] !== undefined) throw usageError(`--${name} is not supported yet by wiremesh derper`);
  const b = (name: string): boolean => {
    const v = o[camel(name)];
    return typeof v === 'boolean' ? v : BOOLS[name]!;
  };
  const s = (name: string): string => {
    const v = o[camel(name)];
    return typeof v === 'string' ? v : VALUES[name]!;
  };
  const names = s('bootstrap-dns-names').split(',').map((n) => n.trim()).filter((n) => n !== '');
  if (names.length > C.BOOTSTRAP_DNS_MAX_NAMES) throw usageError(`--bootstrap-dns-names: at most ${C.BOOTSTRAP_DNS_MAX_NAMES} names`);
  const home = s('home');
  if (home !== '' && home !== 'blank' && !/^https?:\/\//.test(home)) throw usageError(`unsupported --home value ${JSON.stringify(home)}: want "", "blank" or an http(s) URL`);
  const dur = (name: string): number => {
    const ms = parseGoDuration(s(name));
    if (ms < 0) throw usageError(`--${name}: negative duration`);
    return ms;
  };
  return {
    dev: b('dev'),
    stun: b('stun'),
    derp: b('derp'),
    verifyClientUrlFailOpen: b('verify-client-url-fail-open'),
    version: b('version'),
    addr: s('addr'),
    config: s('config'),
    hostname: s('hostname'),
    certmode: s('certmode'),
    certdir: s('certdir'),
    stunPort: intFlag('stun-port', s('stun-port'), 0, 65535),
    httpPort: intFlag('http-port', s('http-port'), -1, 65535),
    home,
    meshPskFile: s('mesh-psk-file'),
    bootstrapDnsNames: names,
    verifyClientUrl: s('verify-client-url'),
    tcpWriteTimeoutMs: dur('tcp-write-timeout'),
    tcpKeepAliveMs: dur('tcp-keepalive-time'),
    meshWith: parseMeshWith(s('mesh-with')),
    rateConfig: s('rate-config'),
    acceptLimits: parseAcceptLimitFlags(s('accept-connection-limit'), s('accept-connection-burst'), s('max-conns-per-ip')),
    verbose: b('verbose'),
    logFormat: logFormat(s('log-format')),
    acmeDirectoryUrl: s('acme-directory-url'),
    acmeCaFile: s('acme-ca-file'),
    acmeEmail: s('acme-email'),
  };
}

function logFormat(v: string): 'text' | 'json' {
  if (v !== 'text' && v !== 'json') throw usageError(`--log-format: want "text" or "json", got ${JSON.stringify(v)}`);
  return v;
}

/** The default `--certdir`: `$XDG_CACHE_HOME` or `~/.cache`, then `tailscale/derper-certs` (Go's os.UserCacheDir). */
export function defaultCertDir(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.XDG_CACHE_HOME !== undefined && env.XDG_CACHE_HOME !== '' ? env.XDG_CACHE_HOME : path.join(env.HOME ?? os.homedir(), '.cache');
  return path.join(cache, 'tailscale', 'derper-certs');
}

function debugPolicyFromEnv(env: NodeJS.ProcessEnv, logger: Logger): DebugAccessPolicy {
  const policy = emptyDebugPolicy();
  policy.allowIp = env.TS_ALLOW_DEBUG_IP ?? null;
  if (env.TS_DEBUG_TRUSTED_CIDRS !== undefined) {
    const { trusted, bad } = parseTrustedCidrs(env.TS_DEBUG_TRUSTED_CIDRS);
    if (bad.length > 0) logger.warn('TS_DEBUG_TRUSTED_CIDRS: ignoring bad entries', { bad });
    policy.trusted = trusted;
  }
  if (env.TS_DEBUG_KEY_PATH !== undefined && env.TS_DEBUG_KEY_PATH !== '') {
    try {
      policy.debugKey = readFileSync(env.TS_DEBUG_KEY_PATH, 'utf8').trim();
    } catch (e) {
      logger.warn('TS_DEBUG_KEY_PATH unreadable', { err: e instanceof Error ? e.message : String(e) });
    }
  }
  return policy;
}

/** Turns flags into a DerperConfig: the key, mesh key, TLS mode and ports (§16.1, §16.2). */
export async function configFromFlags(f: DerperFlags, env: NodeJS.ProcessEnv, logger: Logger): Promise<DerperConfig> {
  const listen = f.dev ? { host: C.DEV_HOST, port: C.DEV_PORT, isHttps: false } : parseListenAddr(f.addr);
  const serveTls = listen.isHttps || f.certmode === 'manual';
  if (serveTls && f.certmode !== 'manual' && f.certmode !== 'letsencrypt') {
    if (f.certmode === 'gcp') throw usageError(`--certmode ${f.certmode} is not supported yet by wiremesh derper; use --certmode manual`);
    throw usageError(`unsupported --certmode ${JSON.stringify(f.certmode)}`);
  }
  let privateKey: NodePrivate;
  let meshKey: Uint8Array | null = null;
  if (f.dev) {
    privateKey = generatePrivate();
    const envKey = env[C.DEV_MESH_KEY_ENV];
    if (envKey !== undefined && envKey !== '') meshKey = parseMeshKey(envKey);
  } else {
    let file = f.config;
    if (file === '') {
      if (process.getuid?.() !== 0) throw usageError('derper: -c <config path> not specified');
      file = C.ROOT_DEFAULT_KEY_FILE;
    }
    const { key, created } = await loadOrCreateKeyFile(file);
    if (created) logger.info('wrote new key file', { path: file });
    privateKey = key;
  }
  if (!f.dev || meshKey === null) {
    const pskFile = f.meshPskFile !== '' ? f.meshPskFile : defaultMeshPskFile(C.DEFAULT_MESH_PSK_FILES, env.HOME);
    if (pskFile !== '') meshKey = await readMeshKeyFile(pskFile);
  }
  return {
    host: listen.host,
    port: listen.port,
    tls: serveTls ? { hostname: f.hostname, certDir: f.certdir !== '' ? f.certdir : defaultCertDir(env) } : null,
    acme: serveTls && f.certmode === 'letsencrypt' ? { directoryUrl: f.acmeDirectoryUrl, caFile: f.acmeCaFile === '' ? null : f.acmeCaFile, email: f.acmeEmail === '' ? null : f.acmeEmail } : null,
    httpPort: f.httpPort,
    stunPort: f.stun ? f.stunPort : null,
    derp: f.derp,
    privateKey,
    meshKey,
    home: f.home,
    hostname: f.hostname,
    bootstrapDnsNames: f.bootstrapDnsNames,
    verifyClientUrl: f.verifyClientUrl,
    verifyClientUrlFailOpen: f.verifyClientUrlFailOpen,
    tcpWriteTimeoutMs: f.tcpWriteTimeoutMs,
    tcpKeepAliveMs: f.tcpKeepAliveMs,
    meshWith: f.meshWith,
    ...meshTransportFromEnv(env),
    acceptLimits: f.acceptLimits,
    rateConfigPath: f.rateConfig,
    ...queueDepthFromEnv(env, logger),
    debugPolicy: debugPolicyFromEnv(env, logger),
    logger,
  };
}

export async function run(argv: string[]): Promise<number> {
  let flags: DerperFlags;
  try {
    flags = parseDerperFlags([...flagsFromEnv(process.env, FLAG_NAMES, os.hostname()).args, ...argv]); // env first: argv wins
  } catch (e) {
    const status = commanderStatus(e); // help/version output or usage, already printed
    if (status !== null) return status;
    process.stderr.write(`wiremesh derper: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  if (flags.version) {
    process.stdout.write(`wiremesh derper ${VERSION}\n`);
    return 0;
  }
  const debugEnv = process.env.DERP_DEBUG_LOGS === 'true' || process.env.DERP_DEBUG_LOGS === '1';
  const logger = createLogger({ level: flags.verbose || debugEnv ? 'debug' : 'info', json: flags.logFormat === 'json' });
  logEnvFlags(process.env, FLAG_NAMES, logger, os.hostname());
  // Handlers go in before anything listens, so a signal right after the listening line is never lost.
  const signal = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  let running;
  try {
    const cfg = await configFromFlags(flags, process.env, logger);
    if (flags.dev) logger.info('running in dev mode (plain HTTP on 127.0.0.1 only)');
    running = await startDerper(cfg);
  } catch (e) {
    process.stderr.write(`wiremesh derper: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  process.stdout.write(running.listeningLine() + '\n');
  if (flags.rateConfig !== '') {
    const r = running;
    process.on('SIGHUP', () => {
      r.reloadRateConfig().catch((e: unknown) => logger.warn('rate config reload failed; keeping the old limit', { err: e instanceof Error ? e.message : String(e) }));
    });
  }
  logger.info('shutting down', { signal: await signal });
  if (!(await closeWithin(running, SHUTDOWN_TIMEOUT_MS))) logger.warn('graceful shutdown timed out', { timeoutMs: SHUTDOWN_TIMEOUT_MS });
  return 0;
}
