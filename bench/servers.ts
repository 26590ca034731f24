/**
 * Starts and stops the servers under test for the benchmark drivers: the Go derper (~/go/bin/derper), the
 * wiremesh derper (bin/wiremesh.js derper), our StunServer (bench/stun-server.ts), coturn (`turnserver -S`) and
 * the floor relay (bench/floor-relay.c).
 * Each runs pinned to one CPU with `taskset` and a raised open-files limit (`ulimit -n` in a `bash -c … exec`
 * wrapper, so the PID we hold is the server's own PID, as /proc readings need). Everything is bound to
 * 127.0.0.1 on ephemeral ports and killed by PID.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { goBinary, which } from '../test/support/gobin.ts';

export const NOFILE = 20000;
export const ROOT = path.resolve(import.meta.dirname, '..');
export const NODE = path.join(ROOT, 'node_modules/.bin/node');
const READY_TIMEOUT_MS = 60_000;

export interface Running {
  name: string;
  pid: number;
  host: string;
  /** DERP port (TCP) or STUN port (UDP) for a STUN-only server. */
  port: number;
  stunPort: number;
  tls: boolean;
  stop(): Promise<void>;
}

/** Spawns `argv` pinned to `cpu` with the open-files limit raised. */
export function spawnPinned(cpu: number, argv: string[], cwd = ROOT): ChildProcess {
  return spawn('bash', ['-c', `ulimit -n ${NOFILE} && exec taskset -c ${cpu} "$@"`, 'bash', ...argv], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** A free TCP port on 127.0.0.1 (bind :0, read, close; the Go derper cannot report a :0 listener's port). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves with the first match of `re` on the child's stdout+stderr; on exit/timeout kills the child and rejects. */
async function waitFor(child: ChildProcess, re: RegExp, what: string): Promise<RegExpExecArray> {
  try {
    return await matchOutput(child, re, what);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
}

function matchOutput(child: ChildProcess, re: RegExp, what: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => done(new Error(`${what}: not ready in ${READY_TIMEOUT_MS} ms:\n${seen}`)), READY_TIMEOUT_MS);
    const onData = (d: Buffer): void => {
      seen += d.toString('utf8');
      const m = re.exec(seen);
      if (m !== null) done(null, m);
    };
    const onExit = (code: number | null): void => done(new Error(`${what} exited (${code}) before ready:\n${seen}`));
    const done = (e: Error | null, m?: RegExpExecArray): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      // Keep draining output so a chatty server never blocks on a full pipe.
      child.stdout?.resume();
      child.stderr?.resume();
      if (e !== null) reject(e);
      else resolve(m!);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

function stopper(child: ChildProcess, dir: string | null): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      const fin = (): void => {
        if (dir !== null) rmSync(dir, { recursive: true, force: true });
        resolve();
      };
      if (child.exitCode !== null || child.signalCode !== null) return fin();
      const hard = setTimeout(() => child.kill('SIGKILL'), 3000);
      child.once('exit', () => {
        clearTimeout(hard);
        fin();
      });
      child.kill('SIGTERM');
    });
}

/** The Go derper; TLS uses `-certmode manual` with its self-signed IP certificate. */
export async function startGoDerper(cpu: number, tls: boolean): Promise<Running> {
  const bin = goBinary('derper');
  if (bin === null) throw new Error('Go derper not found (~/go/bin/derper)');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-bench-go-'));
  const port = await freePort();
  const argv = [bin, '-a', `127.0.0.1:${port}`, '-c', path.join(dir, 'derper.key'), '-stun-port', '0', '-hostname', '127.0.0.1'];
  if (tls) argv.push('-certmode', 'manual', '-certdir', dir, '-http-port', '-1');
  const child = spawnPinned(cpu, argv);
  const m = await waitFor(child, /^(?=[\s\S]*derper: serving on)[\s\S]*STUN server listening on [^:]+:(\d+)/, 'go derper');
  await waitTcp(port).catch((e: unknown) => {
    child.kill('SIGKILL');
    throw e;
  });
  return { name: 'go', pid: child.pid!, host: '127.0.0.1', port, stunPort: Number(m[1]), tls, stop: stopper(child, dir) };
}

/** The wiremesh derper; it prints `derper: listening http(s)=HOST:PORT stun=PORT`. */
export async function startWiremeshDerper(cpu: number, tls: boolean, nodeFlags: string[] = [], checkout = ROOT): Promise<Running> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-bench-wm-'));
  const argv = [NODE, ...nodeFlags, 'bin/wiremesh.js', 'derper', '-a', '127.0.0.1:0', '--stun-port', '0', '-c', path.join(dir, 'derper.key')];
  if (tls) argv.push('--certmode', 'manual', '--hostname', '127.0.0.1', '--certdir', dir, '--http-port', '-1');
  const child = spawnPinned(cpu, argv, checkout);
  const m = await waitFor(child, /derper: listening https?=[^\s]*:(\d+) stun=(\d+)/, 'wiremesh derper');
  return { name: 'wiremesh', pid: child.pid!, host: '127.0.0.1', port: Number(m[1]), stunPort: Number(m[2]), tls, stop: stopper(child, dir) };
}

/** Our StunServer alone (bench/stun-server.ts prints `stun: listening port=P`). */
export async function startWiremeshStun(cpu: number): Promise<Running> {
  const child = spawnPinned(cpu, [NODE, 'bench/stun-server.ts']);
  const m = await waitFor(child, /stun: listening port=(\d+)/, 'wiremesh stun');
  const port = Number(m[1]);
  return { name: 'wiremesh', pid: child.pid!, host: '127.0.0.1', port, stunPort: port, tls: false, stop: stopper(child, null) };
}

/**
 * bench/floor-relay.c, the least a DERP relay can do (plain TCP only): a yardstick for what the kernel and this
 * machine cost a relay, built into build/floor-relay with the system C compiler when missing or older than its source.
 */
export async function startFloorRelay(cpu: number): Promise<Running> {
  const src = path.join(ROOT, 'bench/floor-relay.c');
  const bin = path.join(ROOT, 'build/floor-relay');
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(path.dirname(bin), { recursive: true });
    execFileSync('cc', ['-O2', '-o', bin, src], { stdio: 'inherit' });
  }
  const child = spawnPinned(cpu, [bin]);
  const m = await waitFor(child, /floor: listening port=(\d+)/, 'floor relay');
  return { name: 'floor', pid: child.pid!, host: '127.0.0.1', port: Number(m[1]), stunPort: 0, tls: false, stop: stopper(child, null) };
}

/** coturn as a plain STUN server (`-S`), no TLS/DTLS/CLI, logging to stdout. */
export async function startCoturn(cpu: number): Promise<Running> {
  const bin = which('turnserver');
  if (bin === null) throw new Error('coturn (turnserver) not found');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-bench-coturn-'));
  const port = await freePort();
  const argv = [bin, '-n', '-S', '-L', '127.0.0.1', '-p', String(port), '--no-tls', '--no-dtls', '--no-cli', '--log-file', 'stdout',
    '--simple-log', '--pidfile', path.join(dir, 'turn.pid'), '--userdb', path.join(dir, 'turn.db')];
  const child = spawnPinned(cpu, argv);
  await waitFor(child, /(listener opened on|Total General servers|IPv4\. UDP listener)/i, 'coturn');
  return { name: 'coturn', pid: child.pid!, host: '127.0.0.1', port, stunPort: port, tls: false, stop: stopper(child, dir) };
}

/** Resolves once 127.0.0.1:port accepts a TCP connection. */
async function waitTcp(port: number): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} never accepted`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs a child to completion (pinned), returns the last JSON line it printed. */
export async function runJson(cpu: number, argv: string[]): Promise<Record<string, number>> {
  const child = spawnPinned(cpu, argv);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (code !== 0 || line === undefined) throw new Error(`${argv.slice(0, 3).join(' ')} failed (${code}): ${err.slice(-2000)}`);
  return JSON.parse(line) as Record<string, number>;
}
