/**
 * `/debug/pprof/…` for derper (spec/derp.md §16.3 lists Go's `pprof/`; issue #6 item 5), the Node equivalents:
 * - `/debug/pprof/profile?seconds=N`: a CPU profile from node:inspector, returned as a `.cpuprofile` JSON file
 *   (open it in Chrome DevTools → Performance, or speedscope). One profile at a time (409 while busy).
 * - `/debug/pprof/heap`: a V8 heap snapshot streamed as a `.heapsnapshot` file (blocks the event loop while it is
 *   taken: seconds for a large heap, so only for an operator who asked).
 * - `/debug/pprof/`: an index.
 * - `/debug/gc`: a full garbage collection, as Go's `/debug/gc` (runtime.GC); the soak test uses it to measure
 *   live heap rather than GC-timing-dependent RSS.
 * Stricter than the rest of `/debug/`: only loopback peers (a profile can reveal memory contents; a heap snapshot
 * contains key material), regardless of TS_ALLOW_DEBUG_IP, trusted CIDRs or a debug key. Adapter (http,
 * inspector, v8).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Session } from 'node:inspector/promises';
import { isIP } from 'node:net';
import { getHeapSnapshot, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '../log.ts';
import { sleep, type Clock } from '../time/clock.ts';
import { PPROF_DEFAULT_SECONDS, PPROF_MAX_SECONDS } from './ops-constants.ts';

/** True for 127.0.0.0/8, ::1 and their IPv4-mapped forms. */
export function isLoopbackAddress(addr: string): boolean {
  const a = addr.startsWith('::ffff:') && isIP(addr.slice(7)) === 4 ? addr.slice(7) : addr;
  if (isIP(a) === 4) return a.split('.')[0] === '127';
  return a === '::1' || a === '0:0:0:0:0:0:0:1';
}

/** Parses `seconds`: default PPROF_DEFAULT_SECONDS, integer 1..PPROF_MAX_SECONDS; null when invalid. */
export function profileSeconds(q: string | null): number | null {
  if (q === null || q === '') return PPROF_DEFAULT_SECONDS;
  if (!/^\d{1,4}$/.test(q)) return null;
  const n = Number(q);
  return n >= 1 && n <= PPROF_MAX_SECONDS ? n : null;
}

const INDEX = [
  '<!DOCTYPE html><html><head><meta charset="utf-8"><title>derper pprof</title></head><body>',
  '<h1>derper profiles (Node)</h1><ul>',
  `<li><a href="/debug/pprof/profile?seconds=${PPROF_DEFAULT_SECONDS}">profile?seconds=N</a>: CPU profile (.cpuprofile JSON, max ${PPROF_MAX_SECONDS} s)</li>`,
  '<li><a href="/debug/pprof/heap">heap</a>: V8 heap snapshot (.heapsnapshot)</li>',
  '</ul></body></html>',
  '',
].join('\n');

function plain(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(Buffer.byteLength(body)), 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
}

export interface ProfileRoutesOptions {
  clock: Clock;
  logger: Logger;
}

/**
 * Returns a handler for `/debug/pprof…` paths: it answers (and returns true) for those paths, false for others.
 * The caller has already applied the general /debug/ access check; this adds the loopback-only rule.
 */
export function createProfileRoutes(o: ProfileRoutesOptions): (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) => boolean {
  let busy = false;
  return (req, res, path, query) => {
    if (path !== '/debug/pprof' && !path.startsWith('/debug/pprof/') && path !== '/debug/gc') return false;
    if (!isLoopbackAddress(req.socket.remoteAddress ?? '')) {
      plain(res, 403, 'pprof is only served to loopback clients\n');
      return true;
    }
    if (path === '/debug/gc') {
      const before = process.memoryUsage().heapUsed;
      fullGc();
      plain(res, 200, `Running GC...\nDone. heapUsed ${before} -> ${process.memoryUsage().heapUsed}\n`);
      return true;
    }
    if (path === '/debug/pprof' || path === '/debug/pprof/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(INDEX);
      return true;
    }
    if (path === '/debug/pprof/profile') {
      const seconds = profileSeconds(query.get('seconds'));
      if (seconds === null) {
        plain(res, 400, `seconds: want an integer in [1, ${PPROF_MAX_SECONDS}]\n`);
        return true;
      }
      if (busy) {
        plain(res, 409, 'a CPU profile is already running\n');
        return true;
      }
      busy = true;
      void cpuProfile(seconds, o.clock)
        .then((json) => {
          res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Disposition': 'attachment; filename="derper.cpuprofile"' });
          res.end(json);
        })
        .catch((e: unknown) => {
          o.logger.warn('cpu profile failed', { err: e instanceof Error ? e.message : String(e) });
          if (!res.headersSent) plain(res, 500, 'cpu profile failed\n');
        })
        .finally(() => {
          busy = false;
        });
      return true;
    }
    if (path === '/debug/pprof/heap') {
      o.logger.info('writing heap snapshot', { remote: req.socket.remoteAddress });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Disposition': 'attachment; filename="derper.heapsnapshot"' });
      const snap = getHeapSnapshot();
      snap.on('error', () => res.destroy());
      snap.pipe(res);
      return true;
    }
    plain(res, 404, '404 page not found\n');
    return true;
  };
}

/** Runs the V8 CPU profiler for `seconds` (on the given clock) and returns the `.cpuprofile` JSON. */
export async function cpuProfile(seconds: number, clock: Clock): Promise<string> {
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    await sleep(clock, seconds * 1000);
    const { profile } = await session.post('Profiler.stop');
    return JSON.stringify(profile);
  } finally {
    session.disconnect();
  }
}

let gcFn: (() => void) | null = null;

/** A full GC without starting Node with --expose-gc: the flag is set at run time and `gc` taken from a fresh context. */
export function fullGc(): void {
  if (gcFn === null) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}
