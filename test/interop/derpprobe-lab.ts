/**
 * Helpers for the derpprobe interop tests (spec/derp.md §18, §19): a `localhost` TLS certificate (openssl),
 * Go and wiremesh derpers in TLS manual mode on free loopback ports, and runners for both probers that reduce
 * their `--once` output to verdicts.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { goBinary, which } from '../support/gobin.ts';
import { freeTcpPort, freeUdpPort, spawnUntil, type Spawned } from '../conformance/spawn.ts';

export const GO_DERPER = goBinary('derper');
export const GO_DERPPROBE = goBinary('derpprobe');
export const OPENSSL = which('openssl');
const NODE = path.resolve('node_modules/.bin/node');
const BIN = path.resolve('bin/wiremesh.js');

export interface Lab {
  dir: string;
  certFile: string;
  meshKeyFile: string;
  remove(): void;
}

/** A temp dir with `localhost.crt`/`localhost.key` (self-signed, SAN DNS:localhost + IP:127.0.0.1) and a mesh PSK. */
export function makeLab(): Lab {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-derpprobe-'));
  execFileSync(OPENSSL!, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', path.join(dir, 'localhost.key'), '-out', path.join(dir, 'localhost.crt'), '-days', '30', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  const meshKeyFile = path.join(dir, 'mesh.key');
  writeFileSync(meshKeyFile, Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex') + '\n', { mode: 0o600 });
  return { dir, certFile: path.join(dir, 'localhost.crt'), meshKeyFile, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface DerperHandle {
  kind: 'go' | 'wiremesh';
  port: number;
  stunPort: number;
  proc: Spawned;
  stop(): Promise<void>;
}

/** The Go derper in TLS manual mode for `localhost`; with `meshWith`, meshed (TLS mesh, cert trusted via SSL_CERT_FILE). */
export async function startGoDerper(lab: Lab, name: string, o: { port?: number; meshWith?: string[] } = {}): Promise<DerperHandle> {
  const port = o.port ?? await freeTcpPort();
  const stunPort = await freeUdpPort();
  const args = ['-a', `127.0.0.1:${port}`, '-http-port', '-1', '-certmode', 'manual', '-hostname', 'localhost', '-certdir', lab.dir,
    '-c', path.join(lab.dir, `${name}.key.json`), '-stun-port', String(stunPort), '-mesh-psk-file', lab.meshKeyFile];
  if (o.meshWith !== undefined) args.push('-mesh-with', o.meshWith.join(','));
  const proc = await spawnUntil(GO_DERPER!, args, /derper: serving on /, { env: { ...process.env, SSL_CERT_FILE: lab.certFile } });
  return { kind: 'go', port, stunPort, proc, stop: () => proc.stop() };
}

/** `wiremesh derper` in TLS manual mode for `localhost` (ephemeral ports, read back from its first line). */
export async function startWmDerper(lab: Lab, name: string, o: { meshWith?: string[]; port?: number } = {}): Promise<DerperHandle> {
  const args = [BIN, 'derper', '-a', `127.0.0.1:${o.port ?? 0}`, '--certmode', 'manual', '--hostname', 'localhost', '--certdir', lab.dir,
    '--http-port', '-1', '--stun-port', '0', '-c', path.join(lab.dir, `${name}.key.json`), '--mesh-psk-file', lab.meshKeyFile];
  if (o.meshWith !== undefined) args.push('--mesh-with', o.meshWith.join(','));
  const proc = await spawnUntil(NODE, args, /derper: listening https=127\.0\.0\.1:(\d+) stun=(\d+)/, { env: { ...process.env, SSL_CERT_FILE: lab.certFile } });
  return { kind: 'wiremesh', port: Number(proc.match[1]), stunPort: Number(proc.match[2]), proc, stop: () => proc.stop() };
}

export interface MapNode {
  name: string;
  /** Default `localhost` (the certificate's name); an IP here reproduces derpprobe's no-SNI verdict. */
  hostName?: string;
  derper: Pick<DerperHandle, 'port' | 'stunPort'>;
}

/** Writes a DERP map of `regions` (code → nodes) and returns its file:// URL. */
export function writeMap(lab: Lab, file: string, regions: Array<{ id: number; code: string; nodes: MapNode[] }>): string {
  const json = {
    Regions: Object.fromEntries(regions.map((r) => [String(r.id), {
      RegionID: r.id, RegionCode: r.code, RegionName: r.code,
      Nodes: r.nodes.map((n) => ({
        Name: n.name, RegionID: r.id, HostName: n.hostName ?? 'localhost', IPv4: '127.0.0.1', STUNPort: n.derper.stunPort, DERPPort: n.derper.port, InsecureForTests: true,
      })),
    }])),
  };
  const p = path.join(lab.dir, file);
  writeFileSync(p, JSON.stringify(json));
  return `file://${p}`;
}

export type Verdicts = Map<string, { good: boolean; detail: string }>;

/** Parses `good: name: latency` / `bad: name: error` lines (Go's may carry a log timestamp prefix). */
export function parseVerdicts(text: string): Verdicts {
  const out: Verdicts = new Map();
  for (const line of text.split('\n')) {
    const m = /(?:^|\s)(good|bad): (\S+): (.*)$/.exec(line);
    if (m !== null) out.set(m[2]!, { good: m[1] === 'good', detail: m[3]! });
  }
  return out;
}

function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: 60_000, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, out: stdout + stderr, stderr });
    });
  });
}

export interface ProbeRun {
  code: number;
  verdicts: Verdicts;
  raw: string;
}

const onceArgs = (mapUrl: string, extra: string[]): string[] => [`--derp-map=${mapUrl}`, '--once', '--spread=false', ...extra];

export async function runOurs(lab: Lab, mapUrl: string, extra: string[] = []): Promise<ProbeRun> {
  const r = await exec(NODE, [BIN, 'derpprobe', ...onceArgs(mapUrl, extra), `--mesh-psk-file=${lab.meshKeyFile}`], { ...process.env, SSL_CERT_FILE: lab.certFile });
  return { code: r.code, verdicts: parseVerdicts(r.out), raw: r.out };
}

export async function runGo(lab: Lab, mapUrl: string, extra: string[] = []): Promise<ProbeRun> {
  const r = await exec(GO_DERPPROBE!, [...onceArgs(mapUrl, extra), `--mesh-psk-file=${lab.meshKeyFile}`], { ...process.env, SSL_CERT_FILE: lab.certFile });
  return { code: r.code, verdicts: parseVerdicts(r.out), raw: r.out };
}

/** A markdown table of both probers' verdicts, one row per probe name. */
export function verdictTable(title: string, ours: Verdicts, go: Verdicts): string {
  const names = [...new Set([...ours.keys(), ...go.keys()])].sort();
  const cell = (v: { good: boolean; detail: string } | undefined): string => (v === undefined ? '—' : v.good ? 'good' : 'bad');
  const rows = names.map((n) => `| \`${n}\` | ${cell(ours.get(n))} | ${cell(go.get(n))} | ${ours.get(n)?.good === go.get(n)?.good ? 'same' : '**differs**'} |`);
  return [`**${title}**`, '', '| probe | wiremesh derpprobe | Go derpprobe | |', '|---|---|---|---|', ...rows].join('\n');
}

/** Names whose verdict is bad. */
export const badNames = (v: Verdicts): string[] => [...v].filter(([, x]) => !x.good).map(([n]) => n).sort();
