/**
 * Network namespaces for root lab tests. Every name carries a per-run prefix (`wm<pid36><n>`), so two runs never
 * collide; everything created is recorded and torn down by `cleanup()` (namespaces by name we created, processes
 * by PID), also on process exit. Traffic stays inside these namespaces.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

const RUN_PREFIX = `wm${process.pid.toString(36)}`;
let counter = 0;

export function run(cmd: string, args: string[], opts: { input?: string; allowFail?: boolean } = {}): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input: opts.input ?? '', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    if (opts.allowFail) return '';
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${err.stderr ?? err.message}`);
  }
}

export class Lab {
  readonly prefix: string;
  readonly #namespaces: string[] = [];
  readonly #procs: ChildProcess[] = [];
  #exitHook = (): void => this.cleanup();

  constructor(tag = '') {
    // Linux interface names are ≤ 15 chars: keep the prefix short.
    this.prefix = `${RUN_PREFIX}${(counter++).toString(36)}${tag}`.slice(0, 10);
    process.on('exit', this.#exitHook);
  }

  /** Creates namespace `<prefix>-<name>` with loopback up; returns its full name. */
  netns(name: string): string {
    const full = `${this.prefix}-${name}`;
    run('ip', ['netns', 'add', full]);
    this.#namespaces.push(full);
    run('ip', ['-n', full, 'link', 'set', 'lo', 'up']);
    return full;
  }

  /** Runs a command inside a namespace and returns its stdout. */
  exec(ns: string, cmd: string, args: string[], opts: { input?: string; allowFail?: boolean } = {}): string {
    return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
  }

  /** A veth pair `a`(in nsA) ⇄ `b`(in nsB), each side given an address (CIDR) and brought up. */
  link(nsA: string, ifA: string, addrA: string | null, nsB: string, ifB: string, addrB: string | null): void {
    run('ip', ['link', 'add', ifA, 'netns', nsA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
    for (const [ns, ifc, addr] of [[nsA, ifA, addrA], [nsB, ifB, addrB]] as const) {
      if (addr !== null) run('ip', ['-n', ns, 'addr', 'add', addr, 'dev', ifc]);
      run('ip', ['-n', ns, 'link', 'set', ifc, 'up']);
    }
  }

  /** Starts a long-running process inside a namespace (or the root one when ns is null); killed by cleanup(). */
  spawn(ns: string | null, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const [c, a] = ns === null ? [cmd, args] : ['ip', ['netns', 'exec', ns, cmd, ...args]];
    const p = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.#procs.push(p);
    return p;
  }

  /** Kills one process this lab started (by PID) and waits for it to exit. */
  async kill(p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill(signal);
    const t = setTimeout(() => p.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(t);
  }

  /** Kills every process started here (by PID) and deletes every namespace created here. */
  cleanup(): void {
    for (const p of this.#procs.splice(0)) {
      if (p.exitCode === null && p.signalCode === null && p.pid !== undefined) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    for (const ns of this.#namespaces.splice(0).reverse()) run('ip', ['netns', 'del', ns], { allowFail: true });
    process.off('exit', this.#exitHook);
  }
}
