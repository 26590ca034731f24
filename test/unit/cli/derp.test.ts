/**
 * `wiremesh derp` end to end as a user runs it (src/cli/derp.ts): recv/send/watch/ping against a `wiremesh
 * derper` child on loopback, text and JSON output, exit statuses.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DerpServerHandle } from '../../conformance/helpers.ts';
import { startWiremeshDerper } from '../../conformance/targets.ts';
import { generatePrivate, nodePublicText, privateText, publicFromPrivate } from '../../../src/types/key.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const node = path.join(root, 'node_modules/.bin/node');
const cli = path.join(root, 'bin/wiremesh.js');
let server: DerpServerHandle;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'wm-cli-derp-'));

before(async () => { server = await startWiremeshDerper(); });
after(async () => {
  await server?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(node, [cli, 'derp', ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

test('recv --count 2 gets what send --count 2 sends; watch shows present/gone; ping --format=json', async () => {
  const priv = generatePrivate();
  const keyFile = path.join(tmp, 'node.key');
  writeFileSync(keyFile, privateText(priv) + '\n', { mode: 0o600 });
  const meshFile = path.join(tmp, 'mesh.key');
  writeFileSync(meshFile, Buffer.from(server.meshKey).toString('hex'), { mode: 0o600 });
  const watch = spawn(node, [cli, 'derp', 'watch', server.url, '--mesh-psk-file', meshFile, '--wait', '20000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let watchOut = '';
  watch.stdout.on('data', (d: Buffer) => { watchOut += d.toString(); });
  const recv = spawn(node, [cli, 'derp', 'recv', server.url, '--key-file', keyFile, '--count', '2', '--wait', '15000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let recvOut = '';
  recv.stdout.on('data', (d: Buffer) => { recvOut += d.toString(); });
  const recvExit = new Promise<number | null>((r) => recv.once('exit', (c) => r(c)));
  for (let i = 0; i < 200 && !recvOut.includes('connected'); i++) await new Promise((r) => setTimeout(r, 50));
  const me = nodePublicText(publicFromPrivate(priv));
  assert.match(recvOut, new RegExp(`connected self=${me} server=nodekey:[0-9a-f]{64} version=2`));
  const send = await run(['send', server.url, '--to', me, '--data', 'hello cli', '--count', '2', '--format=json']);
  assert.equal(send.code, 0, send.stderr);
  const lines = send.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(lines.map((l) => l.event), ['connected', 'sent']);
  assert.equal(await recvExit, 0);
  const sender = String(lines[0]!.publicKey);
  assert.equal(recvOut.match(new RegExp(`recv from=${sender} len=9 data="hello cli"`, 'g'))?.length, 2);
  const ping = await run(['ping', server.url, '--count', '2', '--interval', '10', '--format=json']);
  assert.equal(ping.code, 0, ping.stderr);
  assert.equal(ping.stdout.trim().split('\n').filter((l) => (JSON.parse(l) as { event: string }).event === 'pong').length, 2);
  const goneLine = new RegExp(`gone ${me} reason=disconnected`);
  for (let i = 0; i < 100 && !goneLine.test(watchOut); i++) await new Promise((r) => setTimeout(r, 50));
  const watchExit = new Promise((r) => watch.once('exit', r));
  if (watch.exitCode === null) process.kill(watch.pid!, 'SIGTERM');
  await watchExit;
  assert.match(watchOut, new RegExp(`present ${me} 127\\.0\\.0\\.1:\\d+ flags=0x01`));
  assert.match(watchOut, new RegExp(`gone ${me} reason=disconnected`));
});

test('usage errors exit 2; connection errors exit 1; watch without a mesh key exits 1', async () => {
  const [usage, refused, watch] = await Promise.all([
    run(['send', server.url]), run(['connect', 'http://127.0.0.1:1/derp']), run(['watch', server.url]),
  ]);
  assert.equal(usage.code, 2, 'missing --to');
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /ECONNREFUSED/);
  assert.equal(watch.code, 1);
  assert.match(watch.stderr, /mesh-psk-file/);
});
