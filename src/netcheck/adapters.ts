/**
 * netcheck adapters (DESIGN.md layer 3; spec/nat-traversal.md §7.2–§7.3): the real implementations of the
 * engine's seams — UDP sockets, DNS, the HTTPS `/derp/latency-check` fallback over a pre-dialed TLS connection,
 * the `/generate_204` captive-portal check and the TTL-limited hop check (via the system `ping`). Loading the
 * DERP map lives in src/derpmap/load.ts. Nothing here decides anything; src/netcheck/client.ts does.
 */
import { execFile } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import http from 'node:http';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { WiremeshError } from '../errors.ts';
import type { PacketConn } from '../net/packet.ts';
import { derpPort, type DerpNode } from '../derpmap/derpmap.ts';
import { listenUdp } from '../net/udp.ts';
import { cryptoRandom } from '../stun/client.ts';
import { realClock } from '../time/clock.ts';
import type { NetcheckDeps } from './client.ts';
import {
  CAPTIVE_CHALLENGE_HEADER, CAPTIVE_PORTAL_MAX_ENDPOINTS, CAPTIVE_PORTAL_TIMEOUT_MS, CAPTIVE_RESPONSE_HEADER,
  HOP_PROBE_TIMEOUT_MS, ICMP_TIMEOUT_MS, LATENCY_CHECK_MAX_BYTES, LATENCY_CHECK_PATH, NetcheckErrorCode,
} from './constants.ts';
import type { Family } from './plan.ts';

/** Tailscale's default DERP map URL (used only when no --derp-map is given). */
export const DEFAULT_DERP_MAP_URL = 'https://controlplane.tailscale.com/derpmap/default';

function nodeIPv4(n: DerpNode): string {
  return n.IPv4 !== undefined && isIP(n.IPv4) === 4 ? n.IPv4 : n.HostName;
}

/** HTTPS GET /derp/latency-check over a TLS connection dialed first; resolves with the request's duration (ms). */
export function httpsLatency(node: DerpNode, signal: AbortSignal): Promise<number> {
  const host = nodeIPv4(node);
  const servername = isIP(node.CertName ?? node.HostName) === 0 ? (node.CertName ?? node.HostName) : undefined;
  return new Promise((resolve, reject) => {
    const fail = (msg: string): void => {
      sock.destroy();
      reject(new WiremeshError(NetcheckErrorCode.LatencyCheckFailed, `${node.Name}: ${msg}`));
    };
    const sock = tls.connect({ host, port: derpPort(node), rejectUnauthorized: node.InsecureForTests !== true, ...(servername === undefined ? {} : { servername }) });
    const onAbort = (): void => fail('aborted');
    signal.addEventListener('abort', onAbort, { once: true });
    sock.once('close', () => signal.removeEventListener('abort', onAbort));
    sock.once('error', (e) => fail(e.message));
    sock.once('secureConnect', () => {
      const t0 = performance.now();
      const hostHeader = node.HostName.includes(':') ? `[${node.HostName}]` : node.HostName;
      sock.write(`GET ${LATENCY_CHECK_PATH} HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n\r\n`);
      let got = Buffer.alloc(0);
      sock.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        if (got.length > LATENCY_CHECK_MAX_BYTES) return fail(`response larger than ${LATENCY_CHECK_MAX_BYTES} bytes`);
        const end = got.indexOf('\r\n\r\n');
        if (end < 0) return;
        const ms = performance.now() - t0;
        const status = /^HTTP\/1\.[01] (\d{3})/.exec(got.subarray(0, end).toString('latin1'));
        sock.destroy();
        if (status === null) return reject(new WiremeshError(NetcheckErrorCode.LatencyCheckFailed, `${node.Name}: not an HTTP response`));
        const code = Number(status[1]);
        if (code < 200 || code > 299) return reject(new WiremeshError(NetcheckErrorCode.LatencyCheckFailed, `${node.Name}: HTTP ${code}`));
        resolve(ms);
      });
    });
  });
}

/** One /generate_204 check: true = a portal answered, false = the DERP node answered, null = no answer. */
function check204(node: DerpNode, signal: AbortSignal): Promise<boolean | null> {
  const host = nodeIPv4(node);
  const challenge = `ts_${host}`;
  return new Promise((resolve) => {
    const req = http.get(
      { host, port: 80, path: `/generate_204?t=${Math.floor(Date.now() / 1000)}`, headers: { [CAPTIVE_CHALLENGE_HEADER]: challenge, 'Cache-Control': 'no-cache, no-store, must-revalidate', Pragma: 'no-cache' }, signal, timeout: CAPTIVE_PORTAL_TIMEOUT_MS },
      (res) => {
        res.resume();
        const answer = res.headers[CAPTIVE_RESPONSE_HEADER.toLowerCase()];
        resolve(!(res.statusCode === 204 && answer === `response ${challenge}`));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

/** Captive-portal check against up to CAPTIVE_PORTAL_MAX_ENDPOINTS DERP nodes that serve port 80 (spec §7.3). */
export async function captivePortal(nodes: DerpNode[], signal: AbortSignal): Promise<boolean> {
  const results = await Promise.all(nodes.slice(0, CAPTIVE_PORTAL_MAX_ENDPOINTS).map((n) => check204(n, signal)));
  return results.some((r) => r === true);
}

const SAFE_ARG = /^[-\w.]+$/;

/**
 * Runs several `ping -n -c 1` at once under one `sh` (one process spawn instead of one per ping, so the event loop
 * is not stalled), each output line prefixed with its job's tag. Node has no ICMP sockets, hence the system ping.
 * Rejects when ping is missing or not permitted.
 */
function pingBatch(jobs: { tag: string; args: string[] }[], waitMs: number, signal: AbortSignal): Promise<Map<string, string>> {
  for (const j of jobs) if (!SAFE_ARG.test(j.tag) || !j.args.every((a) => SAFE_ARG.test(a))) return Promise.reject(new Error('unsafe ping argument'));
  const waitS = String(Math.max(1, Math.ceil(waitMs / 1000)));
  const script = jobs.map((j) => `(ping -n -c 1 -W ${waitS} ${j.args.join(' ')} 2>&1 | sed 's/^/${j.tag} /') &`).join('\n') + '\nwait\n';
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', script], { signal, timeout: waitMs + 1000 }, (err, stdout) => {
      const out = String(stdout);
      if (/not found|not permitted|permission denied/i.test(out)) return reject(new Error(`ping unavailable: ${out.slice(0, 200)}`));
      if (err !== null && out === '') return reject(err);
      const byTag = new Map<string, string>();
      for (const line of out.split('\n')) {
        const sp = line.indexOf(' ');
        if (sp < 0) continue;
        const tag = line.slice(0, sp);
        byTag.set(tag, `${byTag.get(tag) ?? ''}${line.slice(sp + 1)}\n`);
      }
      resolve(byTag);
    });
  });
}

/**
 * Routers that answer TTL-limited ICMP echoes toward `target` ("Time to live exceeded"), TTL 1..maxHops sent at
 * once: per hop the router's address, or null when the target itself answered or nothing did.
 */
export async function hopProbe(target: string, maxHops: number, signal: AbortSignal): Promise<(string | null)[]> {
  if (isIP(target) !== 4) return [];
  const ttls = Array.from({ length: maxHops }, (_, i) => i + 1);
  const out = await pingBatch(ttls.map((t) => ({ tag: `ttl${t}`, args: ['-t', String(t), target] })), HOP_PROBE_TIMEOUT_MS, signal);
  return ttls.map((t) => {
    const m = /From (\d+\.\d+\.\d+\.\d+)[^\n]*Time to live exceeded/i.exec(out.get(`ttl${t}`) ?? '');
    return m === null ? null : m[1]!;
  });
}

/** One ICMPv4 echo to each address at once; the round trips ping reported, by address. */
export async function icmpLatency(ips: string[], signal: AbortSignal): Promise<Map<string, number>> {
  const v4 = ips.filter((ip) => isIP(ip) === 4);
  const out = await pingBatch(v4.map((ip, i) => ({ tag: `ip${i}`, args: [ip] })), ICMP_TIMEOUT_MS, signal);
  const got = new Map<string, number>();
  v4.forEach((ip, i) => {
    const m = /time[=<]([\d.]+) ?ms/.exec(out.get(`ip${i}`) ?? '');
    if (m !== null) got.set(ip, Number(m[1]));
  });
  return got;
}

/** Real-world dependencies for runNetcheck (ports are ephemeral; IPv6 socket optional). */
export function realNetcheckDeps(opts: { bindAddress?: string; bindPort?: number; portMapProbe?: NetcheckDeps['portMapProbe'] } = {}): NetcheckDeps {
  const deps: NetcheckDeps = {
    clock: realClock,
    random: cryptoRandom,
    wallNow: () => Date.now(),
    async listenUdp(family: Family): Promise<PacketConn | null> {
      const host = family === 4 ? (opts.bindAddress ?? '0.0.0.0') : '::';
      if (family === 6 && opts.bindAddress !== undefined && isIP(opts.bindAddress) !== 6) return null;
      try {
        return await listenUdp({ host, port: opts.bindPort ?? 0, family });
      } catch {
        return null;
      }
    },
    async resolve(host: string, family: Family): Promise<string | null> {
      try {
        return (await lookup(host, { family })).address;
      } catch {
        return null;
      }
    },
    httpsLatency,
    icmpLatency,
    captivePortal,
    hopProbe,
  };
  if (opts.portMapProbe !== undefined) deps.portMapProbe = opts.portMapProbe;
  return deps;
}
