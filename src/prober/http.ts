/**
 * HTTP adapter of derpprobe's server mode (spec/derp.md §18): `/` status page, `/healthz` (`ok\n`),
 * `/debug/probe-run?name=` (runs one probe now: 200 or 424 Failed Dependency, JSON with Accept:
 * application/json), `/debug/probe-all` (runs every non-continuous probe, JSON, 424 if any failed, `exclude=`
 * repeatable) and `/debug/varz` (Prometheus text: the probe metrics plus prom-client's process metrics).
 */
import http from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { renderMetrics } from './metrics.ts';
import type { ProbeInfo, ProbeResult, Prober } from './prober.ts';
import { renderStatusPage } from './status-page.ts';
import { formatGoDuration } from './util.ts';

export interface ProberHttpOptions {
  title?: string;
  source?: string;
  /** Converts a prober clock time (ms) to seconds since the epoch. */
  toEpochSecs: (clockMs: number) => number;
}

function stats(info: ProbeInfo): { ratio: number; median: number } {
  const h = info.history;
  const okLat = h.filter((r) => r.ok).map((r) => r.latencyMs).sort((a, b) => a - b);
  return { ratio: h.length === 0 ? 0 : h.filter((r) => r.ok).length / h.length, median: okLat[Math.floor(okLat.length / 2)] ?? 0 };
}

/** JSON shape of one run result (field names follow Go's RunHandlerResponse). */
function runJson(info: ProbeInfo, prev: ProbeInfo, r: ProbeResult): Record<string, unknown> {
  const p = stats(prev);
  return {
    ProbeInfo: {
      Name: info.name, Class: info.class, Labels: info.labels, IntervalMs: info.intervalMs,
      Status: r.ok ? 'succeeded' : 'failed', Error: r.error ?? '', LatencyMs: r.ok ? r.latencyMs : 0,
      RecentResults: info.history.map((x) => x.ok), RecentLatenciesMs: info.history.filter((x) => x.ok).map((x) => x.latencyMs),
    },
    PreviousSuccessRatio: p.ratio,
    PreviousMedianLatencyMs: p.median,
  };
}

/** Builds the request handler (usable with any node:http server). */
export function proberHandler(prober: Prober, o: ProberHttpOptions): http.RequestListener {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const send = (res: http.ServerResponse, status: number, type: string, body: string): void => {
    res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
    res.end(body);
  };
  return (req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      switch (url.pathname) {
        case '/':
          return send(res, 200, 'text/html; charset=utf-8', renderStatusPage(prober.list(), {
            title: o.title ?? 'DERP Prober', now: prober.clock.now(), refreshSecs: 15, ...(o.source !== undefined ? { source: o.source } : {}),
          }));
        case '/healthz':
          return send(res, 200, 'text/plain', 'ok\n');
        case '/debug/varz':
          return send(res, 200, registry.contentType,
            renderMetrics(prober.list().map((info) => ({ info, classMetrics: prober.get(info.name)?.pc.metrics?.() ?? [] })), o.toEpochSecs) +
            (await registry.metrics()));
        case '/debug/probe-run': {
          const name = url.searchParams.get('name') ?? '';
          if (name === '') return send(res, 400, 'text/plain', 'missing name parameter\n');
          const probe = prober.get(name);
          if (probe === undefined || probe.pc.continuous === true) return send(res, 404, 'text/plain', `unknown probe ${JSON.stringify(name)}\n`);
          const prev = probe.info();
          const r = await probe.runNow();
          const info = probe.info();
          const status = r.ok ? 200 : 424;
          if (req.headers.accept === 'application/json') return send(res, status, 'application/json', JSON.stringify(runJson(info, prev, r)) + '\n');
          const s = stats(info);
          const line = `Last ${info.history.length} probes (including this one): success rate ${Math.floor(s.ratio * 100)}%, median latency ${formatGoDuration(s.median)}\n`;
          return send(res, status, 'text/plain', r.ok ? `Probe succeeded in ${formatGoDuration(r.latencyMs)}\n${line}` : `Probe failed: ${r.error}\n${line}`);
        }
        case '/debug/probe-all': {
          const prevs = new Map(prober.list().map((i) => [i.name, i]));
          const results = await prober.runAll(url.searchParams.getAll('exclude'));
          const out: Record<string, unknown> = {};
          let allOk = true;
          for (const [name, r] of results) {
            allOk &&= r.ok;
            const info = prober.get(name)?.info();
            if (info !== undefined) out[name] = runJson(info, prevs.get(name) ?? info, r);
          }
          return send(res, allOk ? 200 : 424, 'application/json', JSON.stringify({ Results: out }) + '\n');
        }
        default:
          return send(res, 404, 'text/plain', '404 page not found\n');
      }
    })().catch((e: unknown) => {
      if (!res.headersSent) send(res, 500, 'text/plain', `internal error: ${(e as Error).message}\n`);
      else res.destroy();
    });
  };
}

/** Listens on `host:port` (port 0 = ephemeral) and resolves with the server and its bound port. */
export async function listenProberHttp(prober: Prober, host: string | undefined, port: number, o: ProberHttpOptions): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(proberHandler(prober, o));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, ...(host !== undefined && host !== '' ? { host } : {}) }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address();
  return { server, port: typeof a === 'object' && a !== null ? a.port : port };
}
