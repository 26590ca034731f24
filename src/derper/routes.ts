/**
 * derper's main HTTP handler (spec/derp.md §16.3, checklist 7–11): `/derp` (delegated to the DERP engine),
 * probe paths, `/generate_204`, `/robots.txt`, `/bootstrap-dns`, the home page for `/` and unmatched paths, and
 * `/debug/…` behind the access check of access.ts. Also the plain-HTTP port-80 handler of TLS mode (§16.1).
 * Adapter: depends only on node:http types; the engine, metrics and DNS cache are injected.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.ts';
import { debugAccessAllowed, type DebugAccessPolicy } from './access.ts';
import { BROWSER_HEADERS, CHALLENGE_HEADER, CHALLENGE_MAX_LEN, GENERATE_204_CACHE_CONTROL, RESPONSE_HEADER } from './constants.ts';

export interface DerperRoutesOptions {
  /** Handles `/derp` requests that reached 'request' (426 or Upgrade without Connection: upgrade); null = `--derp=false`. */
  derp: { handleRequest(req: IncomingMessage, res: ServerResponse): void } | null;
  /** `--home`: '' default page, 'blank' empty 200, or an http(s) URL to redirect to. */
  home: string;
  hostname: string;
  debugPolicy: DebugAccessPolicy;
  /** `/debug/vars` JSON object. */
  vars(): unknown;
  /** `/debug/varz` Prometheus text. */
  varz(): string;
  /** `/debug/check`: throws when the engine's consistency check fails. */
  check(): void;
  /** `/bootstrap-dns` body (JSON text). */
  bootstrapDns(query: string | null): string;
  logger: Logger;
  /** Extra `/debug/…` pages (e.g. pprof, src/derper/profile.ts), asked after the access check; true = answered. */
  extraDebug?: (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) => boolean;
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

const CHALLENGE_RE = /^[A-Za-z0-9._:-]*$/;

/** The `/generate_204` echo rule: a challenge ≤ 64 chars of `[A-Za-z0-9._:-]` gets `response <v>`. */
export function challengeResponse(challenge: string | undefined): string | null {
  if (challenge === undefined || challenge === '') return null;
  if (challenge.length > CHALLENGE_MAX_LEN || !CHALLENGE_RE.test(challenge)) return null;
  return `response ${challenge}`;
}

/** Splits a request target into path and query (no URL normalisation, like Go's mux on a clean path). */
export function splitTarget(url: string | undefined): { path: string; query: URLSearchParams } {
  const u = url ?? '/';
  const q = u.indexOf('?');
  return q < 0 ? { path: u, query: new URLSearchParams() } : { path: u.slice(0, q), query: new URLSearchParams(u.slice(q + 1)) };
}

function text(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  });
  res.end(body);
}

function browserHeaders(res: ServerResponse): void {
  for (const [k, v] of Object.entries(BROWSER_HEADERS)) res.setHeader(k, v);
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function homePage(opts: { derpEnabled: boolean; debugAccess: boolean; hostname: string }): string {
  const lines = [
    '<!DOCTYPE html>',
    '<html><head><meta charset="utf-8"><title>DERP</title></head><body>',
    '<h1>DERP</h1>',
    '<p>This is a Tailscale DERP server (wiremesh).</p>',
    '<p>It relays end-to-end encrypted packets between Tailscale clients when they cannot reach each other directly, and answers STUN so they can learn their public address.</p>',
    '<p>Documentation: <a href="https://tailscale.com/kb/1232/derp-servers">DERP servers</a>, <a href="https://tailscale.com/kb/1118/custom-derp-servers">running your own</a>.</p>',
  ];
  if (!opts.derpEnabled) lines.push('<p>Status: disabled</p>');
  if (/^derp.*\.tailscale\.com$/i.test(opts.hostname)) {
    lines.push(`<p>To report abuse of ${escapeHtml(opts.hostname)}, see <a href="https://tailscale.com/security">tailscale.com/security</a>.</p>`);
  }
  if (opts.debugAccess) lines.push('<p>Debug info at <a href="/debug/">/debug/</a>.</p>');
  lines.push('</body></html>', '');
  return lines.join('\n');
}

function hasDebugAccess(req: IncomingMessage, policy: DebugAccessPolicy): boolean {
  const { query } = splitTarget(req.url);
  return debugAccessAllowed(
    {
      remoteAddress: req.socket.remoteAddress ?? '',
      forwardedFor: req.headers['x-forwarded-for'] !== undefined,
      method: req.method ?? 'GET',
      debugKeyParam: query.get('debugkey'),
    },
    policy,
  );
}

const DEBUG_INDEX = [
  '<!DOCTYPE html><html><head><meta charset="utf-8"><title>derper debug</title></head><body>',
  '<h1>derper debug</h1><ul>',
  '<li><a href="/debug/vars">/debug/vars</a> (JSON)</li>',
  '<li><a href="/debug/varz">/debug/varz</a> (Prometheus)</li>',
  '<li><a href="/debug/check">/debug/check</a> (consistency check)</li>',
  '<li><a href="/debug/pprof/">/debug/pprof/</a> (CPU profile, heap snapshot; loopback only)</li>',
  '</ul></body></html>',
  '',
].join('\n');

function serveDebug(o: DerperRoutesOptions, req: IncomingMessage, res: ServerResponse, path: string): void {
  if (!hasDebugAccess(req, o.debugPolicy)) {
    text(res, 403, 'debug access denied\n');
    return;
  }
  if (o.extraDebug?.(req, res, path, splitTarget(req.url).query) === true) return;
  switch (path) {
    case '/debug/':
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(DEBUG_INDEX);
      return;
    case '/debug/vars':
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(o.vars(), null, 2) + '\n');
      return;
    case '/debug/varz':
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(o.varz());
      return;
    case '/debug/check':
      try {
        o.check();
        text(res, 200, 'derp.Server ConsistencyCheck okay\n');
      } catch (e) {
        text(res, 500, `derp.Server ConsistencyCheck: ${e instanceof Error ? e.message : String(e)}\n`);
      }
      return;
    default:
      text(res, 404, '404 page not found\n');
  }
}

/** The main mux (§16.3). */
export function createRouter(o: DerperRoutesOptions): RequestHandler {
  return (req, res) => {
    const { path, query } = splitTarget(req.url);
    const method = req.method ?? 'GET';
    if (path === '/derp/probe' || path === '/derp/latency-check') {
      if (method === 'GET' || method === 'HEAD') {
        res.writeHead(200, { 'Access-Control-Allow-Origin': '*' });
        res.end();
      } else {
        text(res, 405, 'bogus probe method\n');
      }
      return;
    }
    if (path === '/derp') {
      if (o.derp === null) text(res, 404, 'derp server disabled\n');
      else o.derp.handleRequest(req, res);
      return;
    }
    if (path === '/generate_204') {
      const header = req.headers[CHALLENGE_HEADER];
      const resp = challengeResponse(Array.isArray(header) ? header[0] : header);
      const headers: Record<string, string> = { 'Cache-Control': GENERATE_204_CACHE_CONTROL };
      if (resp !== null) headers[RESPONSE_HEADER] = resp;
      res.writeHead(204, headers);
      res.end();
      return;
    }
    if (path === '/robots.txt') {
      browserHeaders(res);
      text(res, 200, 'User-agent: *\nDisallow: /\n');
      return;
    }
    if (path === '/bootstrap-dns') {
      browserHeaders(res);
      res.writeHead(200, { 'Content-Type': 'application/json', Connection: 'close' });
      res.end(o.bootstrapDns(query.get('q')));
      return;
    }
    if (path === '/debug') {
      res.writeHead(307, { Location: '/debug/' }); // Go v1.102.3 answers 307 (spec §16.3 says 301; the binary wins)
      res.end();
      return;
    }
    if (path.startsWith('/debug/')) {
      serveDebug(o, req, res, path);
      return;
    }
    // "/" and every unmatched path: the home page.
    browserHeaders(res);
    if (o.home === 'blank') {
      res.writeHead(200);
      res.end();
    } else if (o.home !== '') {
      res.writeHead(302, { Location: o.home });
      res.end();
    } else {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(homePage({ derpEnabled: o.derp !== null, debugAccess: hasDebugAccess(req, o.debugPolicy), hostname: o.hostname }));
    }
  };
}

/**
 * The plain-HTTP port-80 listener of TLS mode (§16.1): `/generate_204` and `/debug…` are served as on the main
 * mux; any other GET/HEAD is redirected to HTTPS (or to `/debug/` for `/` with debug access); other methods 400.
 */
export function createPort80Router(main: RequestHandler, o: Pick<DerperRoutesOptions, 'debugPolicy'>): RequestHandler {
  return (req, res) => {
    const { path } = splitTarget(req.url);
    if (path === '/generate_204' || path === '/debug' || path.startsWith('/debug/')) {
      main(req, res);
      return;
    }
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      text(res, 400, 'Use HTTPS\n');
      return;
    }
    if (path === '/' && hasDebugAccess(req, o.debugPolicy)) {
      res.writeHead(302, { Location: '/debug/' });
      res.end();
      return;
    }
    const host = req.headers.host ?? '';
    if (host === '' || !/^[A-Za-z0-9.:[\]-]+$/.test(host)) {
      text(res, 400, 'bad Host header\n');
      return;
    }
    res.writeHead(302, { Location: `https://${host}${req.url ?? '/'}` });
    res.end();
  };
}
