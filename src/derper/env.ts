/**
 * Environment → flags for `wiremesh derper` in containers and systemd units (issue #6 item 6). Every derper flag
 * `--foo-bar` can be given as `DERP_FOO_BAR` (`DERP_ADDR`, `DERP_CERTMODE`, `DERP_STUN_PORT`,
 * `DERP_VERIFY_CLIENTS`, `DERP_HOSTNAME`, …), the convention of the widely used derper container images, which
 * also spell a few names differently (`DERP_DOMAIN`, `DERP_CERT_MODE`, `DERP_CERT_DIR`; see ENV_ALIASES).
 * The bare container-image names of issue #6 (`ADDR`, `CERTMODE`, `STUN_PORT`, `VERIFY_CLIENTS`, `HOSTNAME`, …; the
 * list is BARE_ENV_FLAGS) are read too, with the lowest precedence. `HOSTNAME` is special: Docker and shells set it
 * to the machine's own name, so it is taken only when it differs from that name (pass `machineHostname`); a
 * container run with `-e HOSTNAME=derp.example.com` therefore works, a plain container does not pick up its ID.
 *
 * The result is a list of `--flag=value` arguments placed BEFORE the command line, so an explicit flag always
 * wins over the environment (commander keeps the last value). Pure: no I/O (logEnvFlags writes to a given Logger).
 */
import type { Logger } from '../log.ts';
import type { FlagNames } from './flags.ts';

export const ENV_PREFIX = 'DERP_';

/** Spellings used by popular derper images, mapped to our flag names (the canonical `DERP_<FLAG>` wins). */
export const ENV_ALIASES: Readonly<Record<string, string>> = {
  DERP_DOMAIN: 'hostname',
  DERP_HOST: 'hostname',
  DERP_CERT_MODE: 'certmode',
  DERP_CERT_DIR: 'certdir',
  DERP_CERTS: 'certdir',
  DERP_CONFIG_FILE: 'config',
};

/** Bare variable names read as flags (lowest precedence), as container images of derper spell them. */
export const BARE_ENV_FLAGS: Readonly<Record<string, string>> = {
  ADDR: 'addr',
  CERTMODE: 'certmode',
  CERTDIR: 'certdir',
  HOSTNAME: 'hostname',
  STUN: 'stun',
  STUN_PORT: 'stun-port',
  HTTP_PORT: 'http-port',
  VERIFY_CLIENTS: 'verify-clients',
  VERIFY_CLIENT_URL: 'verify-client-url',
  VERIFY_CLIENT_URL_FAIL_OPEN: 'verify-client-url-fail-open',
  MESH_PSK_FILE: 'mesh-psk-file',
  MESH_WITH: 'mesh-with',
  BOOTSTRAP_DNS_NAMES: 'bootstrap-dns-names',
};

/** Flags never taken from the environment (`DERP_VERSION` is a common image build argument). */
export const ENV_IGNORED_FLAGS: ReadonlySet<string> = new Set(['version', 'help']);

/** DERP_* variables that are Go derper runtime knobs, not flags (never reported as unknown). */
export const ENV_KNOBS: ReadonlySet<string> = new Set(['DERP_DEBUG_LOGS', 'DERP_PROBER_DEBUG_LOGS']);

/** `stun-port` → `DERP_STUN_PORT`. */
export function envNameForFlag(flag: string): string {
  return ENV_PREFIX + flag.toUpperCase().replace(/-/g, '_');
}

export interface EnvFlags {
  /** `--flag=value` arguments, to be placed before the command-line arguments. */
  args: string[];
  /** Which variable set which flag (for the start-up log). */
  used: Array<{ env: string; flag: string }>;
  /** DERP_* variables that name no flag (typos); the caller logs a warning. */
  unknown: string[];
}

/** Maps the environment onto derper flags (see the module comment). Empty values are ignored. */
export function flagsFromEnv(env: Readonly<Record<string, string | undefined>>, names: FlagNames, machineHostname?: string): EnvFlags {
  const all = [...names.bools, ...names.values].filter((f) => !ENV_IGNORED_FLAGS.has(f)).sort();
  const known = (flag: string): boolean => names.values.has(flag) || names.bools.has(flag);
  const byEnv = new Map<string, string>();
  const bare = new Map<string, string>();
  for (const [name, flag] of Object.entries(BARE_ENV_FLAGS)) {
    if (!known(flag) || (name === 'HOSTNAME' && (machineHostname === undefined || env[name] === machineHostname))) continue;
    bare.set(name, flag);
  }
  for (const [alias, flag] of Object.entries(ENV_ALIASES)) if (names.values.has(flag) || names.bools.has(flag)) byEnv.set(alias, flag);
  for (const flag of all) byEnv.set(envNameForFlag(flag), flag);
  const chosen = new Map<string, { env: string; value: string }>();
  // Bare names first, then aliases, then canonical names: the canonical DERP_ spelling wins over the others.
  const order = [...bare.keys(), ...Object.keys(ENV_ALIASES), ...all.map(envNameForFlag)];
  for (const name of order) {
    const flag = bare.get(name) ?? byEnv.get(name);
    const value = env[name];
    if (flag === undefined || value === undefined || value === '') continue;
    chosen.set(flag, { env: name, value });
  }
  const args: string[] = [];
  const used: Array<{ env: string; flag: string }> = [];
  for (const flag of all) {
    const c = chosen.get(flag);
    if (c === undefined) continue;
    args.push(`--${flag}=${c.value}`);
    used.push({ env: c.env, flag });
  }
  const unknown = Object.keys(env)
    .filter((k) => k.startsWith(ENV_PREFIX) && env[k] !== undefined && !byEnv.has(k) && !ENV_KNOBS.has(k))
    .filter((k) => ![...ENV_IGNORED_FLAGS].some((f) => envNameForFlag(f) === k))
    .sort();
  return { args, used, unknown };
}

/** Logs which flags came from the environment (names only: values may be secrets) and warns about typos. */
export function logEnvFlags(env: Readonly<Record<string, string | undefined>>, names: FlagNames, logger: Logger, machineHostname?: string): void {
  const r = flagsFromEnv(env, names, machineHostname);
  if (r.used.length > 0) logger.info('flags from the environment', { vars: r.used.map((u) => `${u.env}→--${u.flag}`) });
  if (r.unknown.length > 0) logger.warn('ignoring DERP_* variables that name no flag', { vars: r.unknown });
}
