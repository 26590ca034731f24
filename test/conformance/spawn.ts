/**
 * Process helpers for conformance targets: free loopback ports, a 0600 mesh-key file in a temp dir, and spawning
 * a server child that is ready when a log line matches (killed by PID on stop).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** An ephemeral TCP port that was free a moment ago (the child binds it right after). */
export async function freeTcpPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface TempDir {
  dir: string;
  meshKey: Uint8Array;
  meshKeyFile: string;
  remove(): void;
}

export function tempDirWithMeshKey(prefix: string): TempDir {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  const meshKey = crypto.getRandomValues(new Uint8Array(32));
  const meshKeyFile = path.join(dir, 'mesh.key');
  writeFileSync(meshKeyFile, Buffer.from(meshKey).toString('hex') + '\n', { mode: 0o600 });
  return { dir, meshKey, meshKeyFile, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Spawned {
  child: ChildProcess;
  match: RegExpExecArray;
  /** Everything the child wrote so far (stdout + stderr), for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

/** Spawns `cmd args` and resolves when a line of its output matches `ready`; rejects on exit or timeout. */
export function spawnUntil(cmd: string, args: string[], ready: RegExp, o: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Spawned> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: o.env ?? process.env, ...(o.cwd ? { cwd: o.cwd } : {}) });
  let out = '';
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, 'SIGTERM');
      const t = setTimeout(() => { if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL'); }, 3000);
      await exited;
      clearTimeout(t);
    }
  };
  return new Promise((resolve, reject) => {
    let done = false;
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (done) return;
      const m = ready.exec(out);
      if (m !== null) {
        done = true;
        clearTimeout(timer);
        resolve({ child, match: m, output: () => out, stop });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', (e) => { if (!done) { done = true; reject(e); } });
    child.once('exit', (code, sig) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        reject(new Error(`${path.basename(cmd)} ${args.join(' ')} exited (${code ?? sig}) before ready:\n${out}`));
      }
    });
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      void stop();
      reject(new Error(`${path.basename(cmd)} not ready within ${o.timeoutMs ?? 15000} ms:\n${out}`));
    }, o.timeoutMs ?? 15000);
  });
}

/** Polls until a TCP connect to host:port succeeds (a server may log "listening" just before it accepts). */
export async function waitForTcp(host: string, port: number, timeoutMs = 5000): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port });
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (performance.now() > end) throw new Error(`${host}:${port} not accepting connections after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
