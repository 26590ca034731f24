/**
 * Builds the Go interop DERP client (test/interop/go/derpclient, real tailscale.com/derp/derphttp v1.102.3) once
 * with `go build` (GOFLAGS=-mod=mod, GOTOOLCHAIN=auto), cached under os.tmpdir() keyed by the SHA-256 of its
 * source, and runs it, parsing its JSON-lines output.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { which } from '../support/gobin.ts';

const srcDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'go', 'derpclient');

/** Path of the built binary, or null when Go is not installed. Throws if the build fails. */
export async function buildGoDerpClient(): Promise<string | null> {
  const go = which('go');
  if (go === null) return null;
  const h = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go']) {
    const p = path.join(srcDir, f);
    if (existsSync(p)) h.update(f).update(readFileSync(p));
  }
  const dir = path.join(os.tmpdir(), `wiremesh-go-derpclient-${h.digest('hex').slice(0, 16)}`);
  const bin = path.join(dir, 'derpclient');
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const tmpBin = `${bin}.${process.pid}`;
  await new Promise<void>((resolve, reject) => {
    execFile(go, ['build', '-o', tmpBin, '.'], {
      cwd: srcDir, env: { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'auto' }, timeout: 600_000,
    }, (err, _stdout, stderr) => (err ? reject(new Error(`go build derpclient: ${err.message}\n${stderr}`)) : resolve()));
  });
  renameSync(tmpBin, bin);
  return bin;
}

export interface GoEvent {
  event: string;
  [k: string]: unknown;
}

export interface GoClientRun {
  child: ChildProcess;
  events: GoEvent[];
  /** Resolves with the first event of this kind (rejects if the process exits first). */
  waitEvent(kind: string, timeoutMs?: number): Promise<GoEvent>;
  exited: Promise<{ code: number | null; stderr: string }>;
  kill(): void;
}

export function runGoDerpClient(bin: string, args: string[]): GoClientRun {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: GoEvent[] = [];
  let stderr = '';
  let pending = '';
  const listeners = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => {
    pending += d.toString();
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      if (line.trim() !== '') events.push(JSON.parse(line) as GoEvent);
    }
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.once('exit', (code) => {
    for (const l of listeners) l();
    resolve({ code, stderr });
  }));
  return {
    child,
    events,
    exited,
    waitEvent(kind, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const e = events.find((x) => x.event === kind);
          if (e !== undefined) { done(); resolve(e); return; }
          const err = events.find((x) => x.event === 'error');
          if (err !== undefined || child.exitCode !== null) {
            done();
            reject(new Error(`Go derpclient ended before "${kind}": ${JSON.stringify(err ?? null)} ${stderr.slice(-2000)}`));
          }
        };
        const timer = setTimeout(() => { done(); reject(new Error(`Go derpclient: no "${kind}" within ${timeoutMs} ms; stderr:\n${stderr.slice(-2000)}`)); }, timeoutMs);
        const done = (): void => { clearTimeout(timer); listeners.delete(check); };
        listeners.add(check);
        check();
      });
    },
    kill: () => { if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL'); },
  };
}
