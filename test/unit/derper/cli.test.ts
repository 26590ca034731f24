// `wiremesh derper` as a process (spec/derp.md §16.1): the listening line on stdout, graceful SIGTERM, usage
// errors. Everything binds 127.0.0.1 on ephemeral ports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BIN = path.resolve(import.meta.dirname, '../../../bin/wiremesh.js');

/** Spawns `wiremesh derper …` and resolves with its listening line. */
function startCli(args: string[]): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(process.execPath, [BIN, 'derper', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n').find((l) => l.startsWith('derper: listening'));
      if (line !== undefined) resolve({ child, line });
    });
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    child.once('exit', (code) => reject(new Error(`derper exited ${code}: ${err}`)));
  });
}

function exitOf(child: ChildProcess): Promise<number | string | null> {
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
}

test('derper CLI: Go-style flags, listening line, routes, SIGTERM exits 0', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'derper-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = path.join(dir, 'derper.key');
  const { child, line } = await startCli(['-a', '127.0.0.1:0', '-c', keyFile, '-stun-port', '0']);
  t.after(() => child.kill('SIGKILL'));
  const m = /^derper: listening http=127\.0\.0\.1:(\d+) stun=(\d+)$/.exec(line);
  assert.ok(m, line);
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  const probe = await fetch(`http://127.0.0.1:${m[1]}/derp/probe`);
  assert.equal(probe.status, 200);
  const exited = exitOf(child);
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('derper CLI: TLS manual mode on port 0 with port-80 listener disabled', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'derper-cli-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { child, line } = await startCli(['--a=127.0.0.1:0', '--certmode=manual', '--hostname=127.0.0.1', `--certdir=${dir}`, '-c', path.join(dir, 'k'), '-http-port', '-1', '-stun=false']);
  t.after(() => child.kill('SIGKILL'));
  assert.match(line, /^derper: listening https=127\.0\.0\.1:\d+ stun=off port80=off$/);
  const exited = exitOf(child);
  child.kill('SIGINT');
  assert.equal(await exited, 0);
});

test('derper CLI: --version, usage errors and unsupported flags', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, 'derper', ...args], { encoding: 'utf8', timeout: 20_000 });
  const v = run('-version');
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^wiremesh derper \d+\.\d+\.\d+\n$/);
  const mesh = run('-mesh-with', 'http://a:1');
  assert.equal(mesh.status, 2);
  assert.match(mesh.stderr, /--mesh-with entry/);
  const unknown = run('--bogus');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown option/);
  if (process.getuid?.() !== 0) {
    // (As root the default /var/lib/derper/derper.key would be used instead, so this only runs unprivileged.)
    const noKey = run('-a', '127.0.0.1:0');
    assert.equal(noKey.status, 1);
    assert.match(noKey.stderr, /-c <config path> not specified/);
  }
  const le = run('-a', ':443', '-c', '/nonexistent/derper.key', '-certmode', 'gcp');
  assert.notEqual(le.status, 0);
  assert.match(le.stderr, /certmode gcp is not supported yet/);
});
