// derper's HTTP routes (spec/derp.md §16.3, checklist 7–11), served by createRouter on 127.0.0.1:0 with a
// stand-in DERP handler.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { createPort80Router, createRouter, challengeResponse, type DerperRoutesOptions } from '../../../src/derper/routes.ts';
import { emptyDebugPolicy } from '../../../src/derper/access.ts';
import { silentLogger } from '../../../src/log.ts';
import { renderPrometheus } from '../../../src/derper/varz.ts';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, path: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    r.on('error', reject);
    r.end();
  });
}

let derpCalls = 0;
const baseOpts: DerperRoutesOptions = {
  derp: {
    handleRequest: (_req, res) => {
      derpCalls++;
      res.writeHead(426, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('DERP requires connection upgrade\n');
    },
  },
  home: '',
  hostname: 'derp.example.test',
  debugPolicy: emptyDebugPolicy(),
  vars: () => ({ derp: { accepts: 3 } }),
  varz: () => renderPrometheus([{ prefix: 'derp', values: { gauge_current_connections: 2, accepts: 3 } }]),
  check: () => {},
  bootstrapDns: () => '{}',
  logger: silentLogger,
};

const servers: http.Server[] = [];
async function serve(handler: http.RequestListener): Promise<number> {
  const s = http.createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

let port = 0;
before(async () => {
  port = await serve(createRouter(baseOpts));
});
after(() => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
});

const BROWSER = ['strict-transport-security', 'content-security-policy', 'x-frame-options', 'x-content-type-options'];

test('/derp/probe and /derp/latency-check: GET/HEAD 200 empty with ACAO *, others 405', async () => {
  for (const path of ['/derp/probe', '/derp/latency-check']) {
    for (const method of ['GET', 'HEAD']) {
      const r = await request(port, path, { method });
      assert.equal(r.status, 200, `${method} ${path}`);
      assert.equal(r.body, '');
      assert.equal(r.headers['access-control-allow-origin'], '*');
    }
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const r = await request(port, path, { method });
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.body, 'bogus probe method\n');
    }
  }
});

test('/derp goes to the engine; --derp=false → 404 "derp server disabled"', async () => {
  const before = derpCalls;
  const r = await request(port, '/derp');
  assert.equal(r.status, 426);
  assert.equal(derpCalls, before + 1);
  const off = await serve(createRouter({ ...baseOpts, derp: null }));
  const d = await request(off, '/derp', { headers: { Upgrade: 'DERP' } });
  assert.equal(d.status, 404);
  assert.equal(d.body, 'derp server disabled\n');
  assert.equal((await request(off, '/derp/probe')).status, 200, 'probe paths still work');
  const home = await request(off, '/');
  assert.match(home.body, /Status: disabled/);
});

test('/generate_204: 204 + Cache-Control, challenge echoed only when valid', async () => {
  const cases: Array<[string | null, string | undefined]> = [
    [null, undefined],
    ['ts_derp1', 'response ts_derp1'],
    ['A-z.0:9_-', 'response A-z.0:9_-'],
    ['x'.repeat(64), 'response ' + 'x'.repeat(64)],
    ['x'.repeat(65), undefined],
    ['has space', undefined],
    ['semi;colon', undefined],
  ];
  for (const [challenge, want] of cases) {
    const r = await request(port, '/generate_204', challenge === null ? {} : { headers: { 'X-Tailscale-Challenge': challenge } });
    assert.equal(r.status, 204);
    assert.equal(r.body, '');
    assert.equal(r.headers['cache-control'], 'no-cache, no-store, must-revalidate, no-transform, max-age=0');
    assert.equal(r.headers['x-tailscale-response'], want, `challenge ${challenge}`);
  }
});

test('challengeResponse: property — echoed iff ≤ 64 chars of [A-Za-z0-9._:-]', () => {
  assert.equal(challengeResponse('a\0b'), null);
  fc.assert(
    fc.property(fc.string({ maxLength: 80, unit: 'binary' }), (s) => {
      const ok = s.length > 0 && s.length <= 64 && /^[A-Za-z0-9._:-]+$/.test(s);
      return challengeResponse(s) === (ok ? `response ${s}` : null);
    }),
  );
});

test('/robots.txt and / (home) carry the browser headers', async () => {
  const robots = await request(port, '/robots.txt');
  assert.equal(robots.status, 200);
  assert.equal(robots.body, 'User-agent: *\nDisallow: /\n');
  for (const h of BROWSER) assert.ok(robots.headers[h], `robots ${h}`);
  for (const path of ['/', '/no/such/page', '/derpx']) {
    const home = await request(port, path);
    assert.equal(home.status, 200, path);
    assert.equal(home.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(home.body, /<h1>DERP<\/h1>/);
    assert.match(home.body, /This is a Tailscale DERP server/);
    assert.match(home.body, /Debug info at/, 'loopback has debug access');
    for (const h of BROWSER) assert.ok(home.headers[h], `home ${h}`);
  }
  const xff = await request(port, '/', { headers: { 'X-Forwarded-For': '192.0.2.1' } });
  assert.doesNotMatch(xff.body, /Debug info at/);
});

test('--home blank and --home URL', async () => {
  const blank = await serve(createRouter({ ...baseOpts, home: 'blank' }));
  const b = await request(blank, '/');
  assert.equal(b.status, 200);
  assert.equal(b.body, '');
  const redir = await serve(createRouter({ ...baseOpts, home: 'https://example.com/derp' }));
  const r = await request(redir, '/anything');
  assert.equal(r.status, 302);
  assert.equal(r.headers.location, 'https://example.com/derp');
});

test('/bootstrap-dns: application/json, Connection: close, browser headers', async () => {
  const r = await request(port, '/bootstrap-dns');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/json');
  assert.equal(r.headers.connection, 'close');
  assert.deepEqual(JSON.parse(r.body), {});
  for (const h of BROWSER) assert.ok(r.headers[h], h);
});

test('/debug: redirect, loopback allowed, X-Forwarded-For denied', async () => {
  const redirect = await request(port, '/debug');
  assert.equal(redirect.status, 307);
  assert.equal(redirect.headers.location, '/debug/');
  const index = await request(port, '/debug/');
  assert.equal(index.status, 200);
  assert.match(index.body, /\/debug\/varz/);
  for (const path of ['/debug/', '/debug/vars', '/debug/varz', '/debug/check']) {
    const denied = await request(port, path, { headers: { 'X-Forwarded-For': '127.0.0.1' } });
    assert.equal(denied.status, 403, path);
    assert.equal(denied.body, 'debug access denied\n');
  }
  const vars = await request(port, '/debug/vars');
  assert.deepEqual(JSON.parse(vars.body), { derp: { accepts: 3 } });
  const varz = await request(port, '/debug/varz');
  assert.match(varz.headers['content-type'] ?? '', /^text\/plain/);
  assert.match(varz.body, /^# TYPE derp_current_connections gauge\nderp_current_connections 2$/m);
  assert.match(varz.body, /^derp_accepts 3$/m);
  const check = await request(port, '/debug/check');
  assert.equal(check.body, 'derp.Server ConsistencyCheck okay\n');
  assert.equal((await request(port, '/debug/nope')).status, 404);
  const failing = await serve(createRouter({ ...baseOpts, check: () => { throw new Error('client count mismatch'); } }));
  const bad = await request(failing, '/debug/check');
  assert.equal(bad.status, 500);
  assert.match(bad.body, /client count mismatch/);
});

test('port-80 router: generate_204 and /debug served, others redirected to HTTPS or refused', async () => {
  const p80 = await serve(createPort80Router(createRouter(baseOpts), { debugPolicy: emptyDebugPolicy() }));
  const g = await request(p80, '/generate_204', { headers: { 'X-Tailscale-Challenge': 'ts_x' } });
  assert.equal(g.status, 204);
  assert.equal(g.headers['x-tailscale-response'], 'response ts_x');
  assert.equal((await request(p80, '/debug/check')).status, 200);
  const root = await request(p80, '/');
  assert.equal(root.status, 302);
  assert.equal(root.headers.location, '/debug/', 'loopback has debug access');
  const other = await request(p80, '/derp?x=1', { headers: { Host: 'derp.example.test' } });
  assert.equal(other.status, 302);
  assert.equal(other.headers.location, 'https://derp.example.test/derp?x=1');
  const rootXff = await request(p80, '/', { headers: { Host: 'derp.example.test', 'X-Forwarded-For': '1.2.3.4' } });
  assert.equal(rootXff.headers.location, 'https://derp.example.test/');
  const post = await request(p80, '/derp', { method: 'POST' });
  assert.equal(post.status, 400);
  assert.equal(post.body, 'Use HTTPS\n');
});

test('varz rendering: gauge/counter prefixes, labelled series, escaping', () => {
  const text = renderPrometheus([
    {
      prefix: 'derp',
      values: {
        gauge_watchers: 1,
        counter_packets_received_kind: { disco: 4, other: 5 },
        packets_dropped: { unknown_dest: { disco: 1, other: 0 } },
        closes_by_code: { 'bad"code': 2 },
        skipped: 'text',
      },
    },
    { prefix: 'stun', values: { requests: { success: 7 }, addrfamily: { ipv4: 7, ipv6: 0 } } },
  ]);
  assert.equal(
    text,
    [
      '# TYPE derp_watchers gauge',
      'derp_watchers 1',
      '# TYPE derp_packets_received_kind counter',
      'derp_packets_received_kind{kind="disco"} 4',
      'derp_packets_received_kind{kind="other"} 5',
      '# TYPE derp_packets_dropped counter',
      'derp_packets_dropped{reason="unknown_dest",kind="disco"} 1',
      'derp_packets_dropped{reason="unknown_dest",kind="other"} 0',
      '# TYPE derp_closes_by_code counter',
      'derp_closes_by_code{code="bad\\"code"} 2',
      '# TYPE stun_requests counter',
      'stun_requests{disposition="success"} 7',
      '# TYPE stun_addrfamily counter',
      'stun_addrfamily{family="ipv4"} 7',
      'stun_addrfamily{family="ipv6"} 0',
      '',
    ].join('\n'),
  );
});
