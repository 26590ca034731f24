/**
 * The command seam of the netfilter module (adapter layer): the only code here that starts processes. Backends
 * take an `Exec`, so unit tests pass a fake and lab tests run everything inside a network namespace. Runs the
 * iptables / nft commands of spec/netfilter.md §4–§6.
 */
import { spawn } from 'node:child_process';

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit status; 127 when the program does not exist. */
  code: number;
}

export type Exec = (cmd: string, args: readonly string[], input?: string) => Promise<ExecResult>;

/** Upper bound on one tool run; iptables waits at most XTABLES_WAIT_SECONDS for its lock. */
const EXEC_TIMEOUT_MS = 30_000;

/** Runs programs on this host (PATH plus /usr/sbin and /sbin, where the firewall tools live). */
export const hostExec: Exec = (cmd, args, input) =>
  new Promise((resolve) => {
    const env = { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin`, LC_ALL: 'C' };
    const p = spawn(cmd, [...args], { stdio: ['pipe', 'pipe', 'pipe'], env, timeout: EXEC_TIMEOUT_MS });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('error', (e: NodeJS.ErrnoException) => resolve({ stdout, stderr: stderr + e.message, code: e.code === 'ENOENT' ? 127 : 126 }));
    p.on('close', (code, signal) => resolve({ stdout, stderr, code: code ?? (signal !== null ? 128 : 1) }));
    p.stdin.on('error', () => {});
    p.stdin.end(input ?? '');
  });

/** Runs every command inside network namespace `ns` (`ip netns exec ns cmd …`); for tests and labs. */
export function netnsExec(ns: string, base: Exec = hostExec): Exec {
  return async (cmd, args, input) => {
    const r = await base('ip', ['netns', 'exec', ns, cmd, ...args], input);
    // `ip netns exec` reports a missing program as exit 255 with "No such file or directory".
    if (r.code === 255 && /exec of ".*" failed: No such file/.test(r.stderr)) return { ...r, code: 127 };
    return r;
  };
}

/** Wraps an Exec to record every call (tests, `--dry-run` accounting, the reconciler's "no writes" check). */
export function recordingExec(base: Exec): { exec: Exec; calls: { cmd: string; args: readonly string[]; input?: string }[] } {
  const calls: { cmd: string; args: readonly string[]; input?: string }[] = [];
  return {
    calls,
    exec: (cmd, args, input) => {
      calls.push(input === undefined ? { cmd, args } : { cmd, args, input });
      return base(cmd, args, input);
    },
  };
}
