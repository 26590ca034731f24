// STUN interop with real peers (spec/derp.md §15, checklist 38; spec/lab.md §5a), loopback only, no root:
// Go `stunc` and coturn's `turnutils_stunclient` against our StunServer; our client against coturn's
// `turnserver -S` and against the real Go derper's STUN listener. Peers are started by PID and killed.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { StunServer } from '../../src/stun/server.ts';
import { cryptoRandom, stunQuery } from '../../src/stun/client.ts';
import { StunErrorCode } from '../../src/stun/constants.ts';
import { listenUdp } from '../../src/net/udp.ts';
import { realClock } from '../../src/time/clock.ts';
import { hasCode } from '../../src/errors.ts';
import { goBinary, which } from '../support/gobin.ts';

const execFileP = promisify(execFile);
const stunc = goBinary('stunc');
const derper = goBinary('derper');
const turnserver = which('turnserver');
const stunclient = which('turnutils_stunclient');

/** Runs a peer client without blocking the event loop (our server answers from this process). */
async function runPeer(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const r = await execFileP('timeout', ['10', cmd, ...args], { encoding: 'utf8' });
    return { ...r, code: 0 };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number };
    return { stdout: err.stdout ?? '', stderr: err.stderr ?? '', code: err.code ?? -1 };
  }
}

/** ::1 is configured (some CI containers run without IPv6). */
function hasV6Loopback(): boolean {
  return Object.values(networkInterfaces()).some((list) => list?.some((a) => a.family === 'IPv6' && a.address === '::1'));
}

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function freeTcpPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Starts a long-running peer; it is killed by PID when the test ends. Returns the process and its log. */
function startPeer(t: TestContext, cmd: string, args: string[]): { proc: ChildProcess; log: () => string } {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout?.on('data', (d: Buffer) => { log += d.toString(); });
  proc.stderr?.on('data', (d: Buffer) => { log += d.toString(); });
  t.after(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const k = setTimeout(() => proc.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(k);
  });
  return { proc, log: () => log };
}

async function ourServer(t: TestContext, opts: { strictTailnode?: boolean } = {}): Promise<StunServer> {
  const s = new StunServer(opts);
  await s.listen({ port: 0 });
  t.after(() => s.close());
  return s;
}

test('Go stunc gets its address from our server', { skip: stunc === null ? 'stunc not installed (scripts/install-lab-deps.sh)' : false }, async (t) => {
  for (const strictTailnode of [false, true]) {
    const server = await ourServer(t, { strictTailnode });
    const r = await runPeer(stunc!, ['127.0.0.1', String(server.port)]);
    assert.equal(r.code, 0, r.stderr);
    // stunc logs `stun addr: <ip:port>`; it binds a dual-stack wildcard socket, so the source is 127.0.0.1.
    const m = /stun addr: (\S+)/.exec(r.stderr + r.stdout);
    assert.ok(m, `stunc output: ${r.stderr}`);
    assert.match(m[1]!, /^127\.0\.0\.1:\d+$/);
    assert.equal(server.metrics().responses.tailnode, 1);
    assert.equal(server.metrics().requests.success, 1);
  }
});

test('coturn turnutils_stunclient gets its address from our server (v4 and v6)', { skip: stunclient === null ? 'turnutils_stunclient not installed (apt coturn)' : false }, async (t) => {
  const server = await ourServer(t);
  // -L pins the client's local address, so the reflexive address must be exactly it.
  const r4 = await runPeer(stunclient!, ['-p', String(server.port), '-L', '127.0.0.5', '127.0.0.1']);
  assert.equal(r4.code, 0, r4.stdout + r4.stderr);
  assert.match(r4.stdout, /IPv4\. UDP reflexive addr: 127\.0\.0\.5:\d+/);
  if (hasV6Loopback()) {
    const r6 = await runPeer(stunclient!, ['-p', String(server.port), '::1']);
    assert.equal(r6.code, 0, r6.stdout + r6.stderr);
    assert.match(r6.stdout, /IPv6\. UDP reflexive addr: ::1:\d+/);
  } else {
    t.diagnostic('no IPv6 loopback: IPv6 part skipped');
  }
  assert.deepEqual(server.metrics().responses, { tailnode: 0, rfc5389: hasV6Loopback() ? 2 : 1, unknown_attribute: 0 });
});

test('coturn turnutils_stunclient gets no answer from strictTailnode (derper) mode', { skip: stunclient === null ? 'turnutils_stunclient not installed' : false }, async (t) => {
  const server = await ourServer(t, { strictTailnode: true });
  const r = await execFileP('timeout', ['2', stunclient!, '-p', String(server.port), '127.0.0.1']).then(() => 0, (e: { code?: number }) => e.code);
  assert.equal(r, 124, 'the client waits for an answer that never comes');
  assert.ok(server.metrics().requests.not_stun >= 1);
  assert.equal(server.metrics().requests.success, 0);
});

test('our client gets its address from coturn (tailnode and generic requests)', { skip: turnserver === null ? 'turnserver not installed (apt coturn)' : false }, async (t) => {
  const port = await freeUdpPort();
  const peer = startPeer(t, turnserver!, ['-n', '-S', '-L', '127.0.0.1', '-p', String(port), '--no-tls', '--no-dtls', '--no-cli', '--log-file', 'stdout', '--simple-log']);
  const conn = await listenUdp({ host: '127.0.0.1' });
  t.after(() => conn.close());
  const server = { address: '127.0.0.1', port };
  // coturn takes a moment to start: the client's retransmissions cover it.
  for (const generic of [false, true]) {
    const r = await stunQuery(conn, server, { clock: realClock, timeoutMs: 8000, retryMs: 250, random: cryptoRandom, generic }).catch((e: unknown) => {
      throw new Error(`no answer from coturn (generic=${generic}); its log:\n${peer.log()}`, { cause: e });
    });
    assert.deepEqual(r.address, conn.localAddr());
    assert.deepEqual(r.from, server);
    assert.ok(r.rttMs >= 0 && r.rttMs < 8000);
  }
});

test('our client gets its address from the real Go derper; derper ignores generic requests', { skip: derper === null ? 'derper not installed (scripts/install-lab-deps.sh)' : false }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wm-stun-derper-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const [httpPort, stunPort] = [await freeTcpPort(), await freeUdpPort()];
  const peer = startPeer(t, derper!, ['-a', `127.0.0.1:${httpPort}`, '-http-port', '-1', '-c', path.join(dir, 'derper.key'), '-stun-port', String(stunPort), '-hostname', '127.0.0.1']);
  const conn = await listenUdp({ host: '127.0.0.1' });
  t.after(() => conn.close());
  const server = { address: '127.0.0.1', port: stunPort };
  const r = await stunQuery(conn, server, { clock: realClock, timeoutMs: 10000, retryMs: 250, random: cryptoRandom }).catch((e: unknown) => {
    throw new Error(`no answer from derper; its log:\n${peer.log()}`, { cause: e });
  });
  assert.deepEqual(r.address, conn.localAddr());
  assert.ok(peer.log().includes(`STUN server listening on 127.0.0.1:${stunPort}`), peer.log());
  // derper starts STUN before it logs its HTTP listener: the answer can come first.
  for (let i = 0; i < 100 && !peer.log().includes(`serving on 127.0.0.1:${httpPort}`); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(peer.log().includes(`serving on 127.0.0.1:${httpPort}`), `plain HTTP (port not 443, certmode not manual); log:\n${peer.log()}`);
  // spec/derp.md §15: generic clients get no reply from derper.
  await assert.rejects(
    stunQuery(conn, server, { clock: realClock, timeoutMs: 800, retryMs: 200, random: cryptoRandom, generic: true }),
    (e) => hasCode(e, StunErrorCode.Timeout),
  );
});
