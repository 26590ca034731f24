/**
 * Helpers for the tailscaled interop test (spec/derp.md §19.4, checklist items 43–44): one private network
 * namespace (loopback plus a dummy interface, so tailscaled sees "a network" yet nothing can leave), and inside it
 * the wiremesh derper, a toy control server (test/interop/go/testcontrol, the real
 * tailscale.com/tstest/integration/testcontrol v1.102.3 used as a library) and real tailscaled nodes driven with
 * the real `tailscale` CLI. Every process is started through test/support/netns.ts and killed by PID; the temp
 * dir is removed by `close()`.
 */
import { execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { goBinary, isRoot, which } from '../support/gobin.ts';
import { Lab, run } from '../support/netns.ts';

export const TAILSCALED = goBinary('tailscaled');
export const TAILSCALE = goBinary('tailscale');
const NODE = path.resolve('node_modules/.bin/node');
const BIN = path.resolve('bin/wiremesh.js');
const CONTROL_SRC = path.join(path.dirname(fileURLToPath(import.meta.url)), 'go', 'testcontrol');

/** Why the test cannot run here, or false. */
export function skipReason(): string | false {
  if (!isRoot()) return 'needs root (network namespace)';
  if (TAILSCALED === null || TAILSCALE === null) {
    return 'tailscaled/tailscale not installed (GOTOOLCHAIN=auto go install tailscale.com/cmd/tailscale@v1.102.3 tailscale.com/cmd/tailscaled@v1.102.3)';
  }
  if (which('go') === null) return 'go not installed (needed to build test/interop/go/testcontrol)';
  return false;
}

/** Builds test/interop/go/testcontrol once (cached in os.tmpdir() by the SHA-256 of its source). */
export async function buildTestControl(): Promise<string> {
  const h = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go']) h.update(f).update(readFileSync(path.join(CONTROL_SRC, f)));
  const dir = path.join(os.tmpdir(), `wiremesh-go-testcontrol-${h.digest('hex').slice(0, 16)}`);
  const bin = path.join(dir, 'testcontrol');
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const tmp = `${bin}.${process.pid}`;
  await new Promise<void>((resolve, reject) => {
    execFile('go', ['build', '-o', tmp, '.'], {
      cwd: CONTROL_SRC, env: { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'auto' }, timeout: 900_000,
    }, (err, _o, stderr) => (err ? reject(new Error(`go build testcontrol: ${err.message}\n${stderr}`)) : resolve()));
  });
  renameSync(tmp, bin);
  return bin;
}

/** SHA-256 (hex) of the DER of the derper's self-signed leaf cert, as in a DERP map `CertName: "sha256-raw:…"`. */
function leafCertSha256(d: Pick<Derper, 'certDir'>): string {
  if (d.certDir === null) throw new Error('derper has no TLS cert');
  const pem = readFileSync(path.join(d.certDir, '127.0.0.1.crt'), 'utf8');
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

/** Collects a child's stdout/stderr and waits for a line on stdout. */
export class Watched {
  readonly child: ChildProcess;
  out = '';
  err = '';
  constructor(child: ChildProcess) {
    this.child = child;
    child.stdout?.on('data', (d: Buffer) => { this.out += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { this.err = (this.err + d.toString()).slice(-20_000); });
  }

  waitStdout(re: RegExp, what: string, timeoutMs: number): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const done = (e: Error | null, m?: RegExpMatchArray): void => {
        clearTimeout(timer);
        this.child.stdout?.off('data', check);
        this.child.off('exit', onExit);
        if (e !== null) reject(e);
        else resolve(m!);
      };
      const check = (): void => {
        const m = this.out.match(re);
        if (m !== null) done(null, m);
      };
      const onExit = (code: number | null): void => done(new Error(`${what} exited (${code}) before ${re}: ${this.err.slice(-3000)}`));
      const timer = setTimeout(() => done(new Error(`${what}: no ${re} within ${timeoutMs} ms: ${this.err.slice(-3000)}`)), timeoutMs);
      this.child.stdout?.on('data', check);
      this.child.once('exit', onExit);
      check();
    });
  }
}

export interface CliResult { code: number; stdout: string; stderr: string }

export interface TsNode {
  name: string;
  daemon: Watched;
  cli(args: string[], timeoutMs?: number): Promise<CliResult>;
}

export interface Derper { port: number; stunPort: number; certDir: string | null; proc: Watched }

/** One namespace with everything in it. */
export class TailnetLab {
  readonly lab = new Lab('ts');
  readonly ns: string;
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'wm-tailscaled-'));
  readonly #procs: Watched[] = [];

  constructor() {
    try {
      this.ns = this.lab.netns('t');
      // tailscaled pauses its control client while no non-loopback IPv4/IPv6 address exists ("network down").
      // A veth pair with both ends in the namespace gives it one (the container has no `dummy` driver); nothing
      // routes off it, so no packet leaves the namespace.
      run('ip', ['-n', this.ns, 'link', 'add', 'wmv0', 'type', 'veth', 'peer', 'name', 'wmv1']);
      run('ip', ['-n', this.ns, 'addr', 'add', '10.253.0.1/24', 'dev', 'wmv0']);
      for (const ifc of ['wmv0', 'wmv1']) run('ip', ['-n', this.ns, 'link', 'set', ifc, 'up']);
    } catch (e) {
      this.lab.cleanup();
      rmSync(this.dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** `wiremesh derper` inside the namespace: plain HTTP on `127.0.0.1:port`, or TLS manual mode with a self-signed IP cert. */
  async startDerper(o: { port: number; tls: boolean }): Promise<Derper> {
    const certDir = o.tls ? path.join(this.dir, 'certs') : null;
    const args = [BIN, 'derper', '-a', `127.0.0.1:${o.port}`, '--stun-port', '0', '-c', path.join(this.dir, 'derper.key')];
    if (certDir !== null) args.push('--certmode', 'manual', '--hostname', '127.0.0.1', '--certdir', certDir, '--http-port', '-1');
    const proc = this.#watch(this.lab.spawn(this.ns, NODE, args));
    const m = await proc.waitStdout(/derper: listening https?=127\.0\.0\.1:(\d+) stun=(\d+)/, 'wiremesh derper', 60_000)
      .catch((e: Error) => {
        if (/EADDRINUSE|in use/i.test(e.message)) throw new Error(`port ${o.port} is taken inside the test namespace ${this.ns}: ${e.message}`);
        throw e;
      });
    return { port: Number(m[1]), stunPort: Number(m[2]), certDir, proc };
  }

  /** The Go testcontrol helper; its DERP map names `d` (region 900, code "wiremesh"). Returns its URL. */
  async startControl(bin: string, d: Pick<Derper, 'port' | 'stunPort' | 'certDir'>, tls: 'none' | 'insecure' | 'pin'): Promise<string> {
    const args = ['-derp-port', String(d.port), '-stun-port', String(d.stunPort)];
    if (tls === 'insecure') args.push('-insecure-tls');
    if (tls === 'pin') args.push('-cert-name', `sha256-raw:${leafCertSha256(d)}`);
    const proc = this.#watch(this.lab.spawn(this.ns, bin, args));
    const m = await proc.waitStdout(/control: listening (http:\/\/127\.0\.0\.1:\d+)/, 'testcontrol', 30_000);
    return m[1]!;
  }

  /** Starts tailscaled (userspace networking, own state dir and socket, ephemeral UDP port, no log upload). */
  async startNode(name: string, env: Record<string, string>): Promise<TsNode> {
    const state = path.join(this.dir, name);
    mkdirSync(state);
    const sock = path.join(state, 'tailscaled.sock');
    const fullEnv = { ...process.env, TS_DISABLE_PORTMAPPER: '1', TS_NO_LOGS_NO_SUPPORT: '1', ...env };
    const daemon = this.#watch(this.lab.spawn(this.ns, TAILSCALED!, [
      '--tun=userspace-networking', `--statedir=${state}`, `--socket=${sock}`, '--port=0', '--no-logs-no-support',
    ], { env: fullEnv }));
    const cli = (args: string[], timeoutMs = 30_000): Promise<CliResult> => new Promise((resolve) => {
      execFile('ip', ['netns', 'exec', this.ns, TAILSCALE!, `--socket=${sock}`, ...args], { timeout: timeoutMs, env: fullEnv },
        (err, stdout, stderr) => {
          const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
          resolve({ code, stdout, stderr });
        });
    });
    const deadline = Date.now() + 30_000;
    while (!existsSync(sock)) {
      if (daemon.child.exitCode !== null) throw new Error(`tailscaled ${name} exited: ${daemon.err.slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`tailscaled ${name}: no socket after 30 s: ${daemon.err.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    return { name, daemon, cli };
  }

  #watch(child: ChildProcess): Watched {
    const w = new Watched(child);
    this.#procs.push(w);
    return w;
  }

  /** GET `url` from inside the namespace (self-signed TLS accepted); returns the body. */
  fetchText(url: string): string {
    const script = 'fetch(process.argv[1]).then(async (r) => { if (!r.ok) throw new Error(String(r.status)); process.stdout.write(await r.text()); })';
    return execFileSync('ip', ['netns', 'exec', this.ns, NODE, '-e', script, url], {
      encoding: 'utf8', timeout: 30_000, env: { ...process.env, NODE_TLS_REJECT_UNAUTHORIZED: '0', NODE_NO_WARNINGS: '1' },
    });
  }

  /** Kills everything by PID (SIGTERM, then SIGKILL), deletes the namespace and the temp dir. */
  async close(): Promise<void> {
    for (const p of this.#procs.splice(0).reverse()) await this.lab.kill(p.child).catch(() => undefined);
    this.lab.cleanup();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

