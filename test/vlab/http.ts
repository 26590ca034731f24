/**
 * HTTP over the vlab's one-shot "tcp" datagrams, and the netcheck seams built on it (spec/nat-traversal.md
 * §7.2 HTTPS `/derp/latency-check` fallback, §7.3 `/generate_204` captive-portal check). Requests and responses
 * are small JSON objects: this tests netcheck's decisions, not HTTP parsing (the real adapter does that).
 */
import type { NetcheckDeps, PortMapResult } from '../../src/netcheck/client.ts';
import type { DerpNode } from '../../src/derpmap/derpmap.ts';
import { derpPort } from '../../src/derpmap/derpmap.ts';
import type { Family } from '../../src/netcheck/plan.ts';
import type { Host, Router } from './network.ts';

export interface VHttpRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
}
export interface VHttpResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
export const encodeJSON = (v: unknown): Uint8Array => enc.encode(JSON.stringify(v));
export const decodeJSON = <T>(b: Uint8Array): T => JSON.parse(dec.decode(b)) as T;

/** A DERP node's HTTP side: `/derp/latency-check` on `httpsPort`, `/generate_204` (with challenge) on port 80. */
export function serveDerpHttp(host: Host, httpsPort = 443): void {
  const handle = (data: Uint8Array): Uint8Array => {
    const req = decodeJSON<VHttpRequest>(data);
    const path = req.path.split('?')[0];
    if (path === '/derp/latency-check') return encodeJSON({ status: 200, headers: {}, body: '' } satisfies VHttpResponse);
    if (path === '/generate_204') {
      const ch = req.headers['X-Tailscale-Challenge'];
      const headers: Record<string, string> = ch === undefined ? {} : { 'X-Tailscale-Response': `response ${ch}` };
      return encodeJSON({ status: 204, headers, body: '' } satisfies VHttpResponse);
    }
    return encodeJSON({ status: 404, headers: {}, body: 'not found' } satisfies VHttpResponse);
  };
  host.serveTcp(httpsPort, handle);
  host.serveTcp(80, handle);
}

/** Makes `router` a captive portal: every LAN port-80 request gets a login page (status 200, no challenge answer). */
export function makeCaptivePortal(router: Router): void {
  router.captivePortal = () => encodeJSON({ status: 200, headers: { 'Content-Type': 'text/html' }, body: '<html>Please log in</html>' } satisfies VHttpResponse);
}

function nodeIp(n: DerpNode): string {
  return n.IPv4 ?? n.HostName;
}

export interface VlabDepsOptions {
  portMap?: PortMapResult;
  /** Timeout for one vlab HTTP request. */
  httpTimeoutMs?: number;
  /** Whether to run the double-NAT hop check (default true). */
  hops?: boolean;
}

/** NetcheckDeps for a vlab host: its sockets, the network's clock, seeded txids, and the HTTP/hop seams. */
export function vlabNetcheckDeps(host: Host, opts: VlabDepsOptions = {}): NetcheckDeps {
  const clock = host.network.clock;
  const rnd = host.network.random;
  const timeout = opts.httpTimeoutMs ?? 1000;
  const deps: NetcheckDeps = {
    clock,
    wallNow: () => Date.UTC(2026, 10, 22) + clock.now(),
    random: (n) => Uint8Array.from({ length: n }, () => Math.floor(rnd() * 256)),
    listenUdp: async (family: Family) => (family === 4 ? host.udp() : host.ip6 === null ? null : host.udp(0, 6)),
    osHasIPv6: host.ip6 !== null,
    async httpsLatency(node, signal) {
      const t0 = clock.now();
      const req: VHttpRequest = { method: 'GET', path: '/derp/latency-check', headers: {} };
      const res = await host.requestTcp({ address: nodeIp(node), port: derpPort(node) }, encodeJSON(req), timeout);
      if (signal.aborted) throw new Error('aborted');
      if (res === null) throw new Error('timeout');
      const r = decodeJSON<VHttpResponse>(res);
      if (r.status < 200 || r.status > 299) throw new Error(`HTTP ${r.status}`);
      return clock.now() - t0;
    },
    async captivePortal(nodes) {
      const results = await Promise.all(nodes.map(async (n) => {
        const challenge = `ts_${nodeIp(n)}`;
        const req: VHttpRequest = { method: 'GET', path: '/generate_204', headers: { 'X-Tailscale-Challenge': challenge } };
        const res = await host.requestTcp({ address: nodeIp(n), port: 80 }, encodeJSON(req), timeout);
        if (res === null) return null;
        const r = decodeJSON<VHttpResponse>(res);
        return !(r.status === 204 && r.headers['X-Tailscale-Response'] === `response ${challenge}`);
      }));
      return results.some((r) => r === true);
    },
  };
  if (opts.hops !== false) {
    const hops = host.routerHops();
    deps.hopProbe = async (_target, maxHops) => Array.from({ length: maxHops }, (_, i) => hops[i] ?? null);
  }
  if (opts.portMap !== undefined) {
    const pm = opts.portMap;
    deps.portMapProbe = async () => pm;
  }
  return deps;
}
