// The derper CLI as a child process: `--log-format json --verbose` writes one JSON object per stderr line
// (debug lines included), flags come from DERP_* variables, and SIGTERM closes a connected DERP client and exits
// 0 within the shutdown bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DerpClient } from '../../../src/derp/client.ts';
import { SHUTDOWN_TIMEOUT_MS } from '../../../src/derper/ops-constants.ts';
import { generatePrivate } from '../../../src/types/key.ts';

const BIN = path.resolve(import.meta.dirname, '../../../bin/wiremesh.js');

test('JSON logs, env flags, verbose, graceful SIGTERM', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-logs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const child = spawn(process.execPath, [BIN, 'derper', '-a', '127.0.0.1:0', '-c', path.join(dir, 'k'), '--log-format', 'json', '--verbose'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DERP_STUN: 'false', DERP_HOME: 'blank', DERP_NO_SUCH_FLAG: '1' },
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    child.once('exit', () => reject(new Error(`derper exited: ${stderr}`)));
  });
  assert.match(line, /^derper: listening http=127\.0\.0\.1:\d+ stun=off$/, 'DERP_STUN=false took effect');
  const port = Number(/:(\d+) /.exec(line)![1]);
  const home = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(await home.text(), '', 'DERP_HOME=blank took effect');

  // A malformed request produces a debug-level line (only with --verbose).
  await new Promise<void>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.end('NOT HTTP\r\n\r\n'));
    s.on('close', () => resolve());
    s.on('error', () => resolve());
    s.resume();
  });

  const c = await DerpClient.connect(`http://127.0.0.1:${port}/derp`, { privateKey: generatePrivate() });
  assert.ok((await c.ping()) >= 0);
  const t0 = Date.now();
  child.kill('SIGTERM');
  const closedErr = await c.closed;
  assert.ok(closedErr !== null, 'the server closed our connection');
  assert.equal(await exited, 0);
  assert.ok(Date.now() - t0 < SHUTDOWN_TIMEOUT_MS, 'exited within the shutdown bound');

  const lines = stderr.trim().split('\n');
  const objs = lines.map((l) => JSON.parse(l) as { time: string; level: string; msg: string; vars?: string[] });
  for (const o of objs) {
    assert.ok(!Number.isNaN(Date.parse(o.time)), 'time is ISO 8601');
    assert.ok(['debug', 'info', 'warn', 'error'].includes(o.level));
    assert.equal(typeof o.msg, 'string');
  }
  assert.ok(objs.some((o) => o.level === 'debug'), 'verbose shows debug lines');
  assert.ok(objs.some((o) => o.msg === 'flags from the environment' && o.vars?.includes('DERP_STUN→--stun') === true));
  assert.ok(objs.some((o) => o.level === 'warn' && o.vars?.includes('DERP_NO_SUCH_FLAG') === true), 'typo warned');
  assert.ok(objs.some((o) => o.msg === 'shutting down'));
});
