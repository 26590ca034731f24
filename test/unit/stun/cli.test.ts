// `wiremesh stun`: target parsing, and the real command against our StunServer on loopback (text and JSON,
// tailnode and --generic, timeout exit status).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { parseTarget } from '../../../src/cli/stun.ts';
import { StunServer } from '../../../src/stun/server.ts';

const execFileP = promisify(execFile);
const NODE = process.execPath;
const BIN = new URL('../../../bin/wiremesh.js', import.meta.url).pathname;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(NODE, [BIN, 'stun', ...args], { encoding: 'utf8', timeout: 20000 });
    return { code: 0, ...r };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

test('parseTarget', () => {
  assert.deepEqual(parseTarget('derp1.example.com'), { host: 'derp1.example.com', port: 3478 });
  assert.deepEqual(parseTarget('192.0.2.1:19302'), { host: '192.0.2.1', port: 19302 });
  assert.deepEqual(parseTarget('[2001:db8::1]:443'), { host: '2001:db8::1', port: 443 });
  assert.deepEqual(parseTarget('[::1]'), { host: '::1', port: 3478 });
  assert.deepEqual(parseTarget('2001:db8::1'), { host: '2001:db8::1', port: 3478 });
  for (const bad of ['', 'host:0', 'host:65536', 'a:b:c', '[::1]:x']) assert.throws(() => parseTarget(bad), bad);
});

test('wiremesh stun prints the reflexive address (text, json, --generic)', async (t) => {
  const server = new StunServer();
  await server.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => server.close());
  const text = await cli([`127.0.0.1:${server.port}`]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^127\.0\.0\.1:\d+\n$/);
  const json = await cli(['--format=json', '--generic', `127.0.0.1:${server.port}`]);
  assert.equal(json.code, 0, json.stderr);
  const j = JSON.parse(json.stdout) as { ip: string; port: number; localPort: number; request: string; rttMs: number };
  assert.equal(j.ip, '127.0.0.1');
  assert.equal(j.port, j.localPort);
  assert.equal(j.request, 'rfc5389');
  assert.deepEqual(server.metrics().responses, { tailnode: 1, rfc5389: 1, unknown_attribute: 0 });
});

test('wiremesh stun exits 1 on timeout and 2 on bad usage', async (t) => {
  const server = new StunServer({ strictTailnode: true });
  await server.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => server.close());
  const r = await cli(['--generic', '--timeout', '300', `127.0.0.1:${server.port}`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /stun_timeout/);
  assert.equal((await cli(['--timeout', 'x', '127.0.0.1'])).code, 2);
  assert.equal((await cli([])).code, 2);
});
