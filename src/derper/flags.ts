/**
 * Pure helpers for derper's Go-style flags (spec/derp.md §16.1): argument normalisation (Go accepts `-flag`,
 * `--flag`, `-flag=v`, `-bool=false`; commander wants `--flag`, `--no-flag`), Go durations (`2s`, `10m`,
 * `1h30m`), and `-a` listen addresses (`:443`, `127.0.0.1:0`, `[::1]:8443`, `:https`).
 */
import { WiremeshError } from '../errors.ts';

const TRUE_VALUES = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const FALSE_VALUES = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

export interface FlagNames {
  /** Boolean flags (Go `-x`, `-x=true`, `-x=false`). */
  bools: ReadonlySet<string>;
  /** Long flags taking a value. */
  values: ReadonlySet<string>;
  /** Single-letter flags taking a value, mapped to the long alias commander knows (`a` → `addr`). */
  shorts: ReadonlyMap<string, string>;
}

/**
 * Rewrites Go-style arguments into commander's: known long names get `--`, `-bool=false` becomes `--no-bool`,
 * `-a v` / `-a=v` become `--addr=v`. Unknown arguments are left alone (commander reports them). Stops at `--`.
 */
export function normalizeGoFlags(argv: readonly string[], names: FlagNames): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const m = /^--?([A-Za-z][A-Za-z0-9_-]*)(?:=([\s\S]*))?$/.exec(arg);
    if (m === null) {
      out.push(arg);
      continue;
    }
    const name = m[1]!;
    const value = m[2];
    if (names.bools.has(name)) {
      if (value === undefined || TRUE_VALUES.has(value)) out.push(`--${name}`);
      else if (FALSE_VALUES.has(value)) out.push(`--no-${name}`);
      else throw new WiremeshError('flag_bad_bool', `invalid boolean value ${JSON.stringify(value)} for -${name}`);
    } else if (names.values.has(name) || names.shorts.has(name)) {
      // Always `--long=value`, so values starting with '-' (`-http-port -1`) are never taken for flags.
      const long = names.shorts.get(name) ?? name;
      if (value !== undefined) out.push(`--${long}=${value}`);
      else if (i + 1 < argv.length) out.push(`--${long}=${argv[++i]!}`);
      else out.push(`--${long}`);
    } else {
      out.push(arg);
    }
  }
  return out;
}

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Go duration (`300ms`, `2s`, `1h30m`, `-1.5h`, `0`) into milliseconds. */
export function parseGoDuration(text: string): number {
  const bad = (): WiremeshError => new WiremeshError('flag_bad_duration', `invalid duration ${JSON.stringify(text)}`);
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw bad();
  let total = 0;
  const re = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (s.length > 0) {
    const m = re.exec(s);
    if (m === null) throw bad();
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    s = s.slice(m[0].length);
  }
  return sign * total;
}

export interface ListenAddr {
  /** '' = all interfaces. */
  host: string;
  port: number;
  /** True when the port was written `443` or `https` (derper then serves TLS). */
  isHttps: boolean;
}

const SERVICE_PORTS: Record<string, number> = { http: 80, https: 443 };

/** Parses `-a`: `host:port` with an optional bracketed IPv6 host; the port may be a number or http/https. */
export function parseListenAddr(text: string): ListenAddr {
  const bad = (why: string): WiremeshError => new WiremeshError('flag_bad_addr', `-a ${JSON.stringify(text)}: ${why}`);
  const colon = text.lastIndexOf(':');
  if (colon < 0) throw bad('missing port in address');
  let host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (host.startsWith('[')) {
    if (!host.endsWith(']')) throw bad('bad brackets');
    host = host.slice(1, -1);
  } else if (host.includes(':')) {
    throw bad('too many colons in address');
  }
  let port: number;
  if (/^\d+$/.test(portText)) port = Number(portText);
  else if (portText in SERVICE_PORTS) port = SERVICE_PORTS[portText]!;
  else throw bad('bad port');
  if (port > 65535) throw bad('port out of range');
  return { host, port, isHttps: port === 443 };
}
