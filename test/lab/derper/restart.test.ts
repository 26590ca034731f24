// kill -9 of a running `wiremesh derper` (issue #6 item 6): TypeScript clients (ReconnectingDerpClient) lose the
// connection, back off, and are all back — and relaying again — within their backoff cap once the server is
// restarted on the same port with the same key file. Loopback only; the port is the ephemeral one the first run
// got.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ReconnectingDerpClient } from '../../../src/derp/reconnecting-client.ts';
import type { DerpMessage } from '../../../src/derp/client.ts';
import { generatePrivate, publicFromPrivate } from '../../../src/types/key.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const MAX_BACKOFF_MS = 2000;

function startDerper(addr: string, keyFile: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/wiremesh.js'), 'derper', '-a', addr, '-c', keyFile, '--stun-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /http=\S*:(\d+)/.exec(out);
      if (m !== null) resolve({ child, port: Number(m[1]) });
    });
    child.once('exit', (code) => reject(new Error(`derper exited ${code}: ${err}`)));
  });
}

async function waitUntil(cond: () => boolean, ms: number, why: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(why);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('clients reconnect within their backoff after kill -9 and a restart', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-restart-'));
  const keyFile = path.join(dir, 'derper.key');
  const procs: ChildProcess[] = [];
  const clients: ReconnectingDerpClient[] = [];
  t.after(() => {
    for (const c of clients) c.close();
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const first = await startDerper('127.0.0.1:0', keyFile);
  procs.push(first.child);
  const url = `http://127.0.0.1:${first.port}/derp`;
  const inbox = new Map<number, DerpMessage[]>();
  for (let i = 0; i < 4; i++) {
    inbox.set(i, []);
    clients.push(new ReconnectingDerpClient({ url, privateKey: generatePrivate(), maxBackoffMs: MAX_BACKOFF_MS, onMessage: (m) => inbox.get(i)!.push(m) }));
  }
  await Promise.all(clients.map((c) => c.connected()));
  const relay = async (label: string): Promise<void> => {
    const got = inbox.get(1)!;
    got.length = 0;
    const want = Buffer.from(`hello ${label}`);
    const dst = (await clients[1]!.connected()).publicKey;
    assert.ok(clients[0]!.send(dst, want));
    await waitUntil(() => got.some((m) => m.type === 'recvPacket' && Buffer.from(m.data).equals(want)), 5000, `packet relayed (${label})`);
  };
  await relay('before');

  const exited = new Promise((r) => first.child.once('exit', r));
  first.child.kill('SIGKILL');
  await exited;
  await waitUntil(() => clients.every((c) => c.state !== 'connected'), 5000, 'every client noticed the server is gone');
  assert.equal(clients[0]!.send(publicFromPrivate(generatePrivate()), Buffer.from('x')), false, 'sends fail while down');
  // Down long enough that the clients climb their backoff and fail dials (ECONNREFUSED).
  await new Promise((r) => setTimeout(r, 1500));

  const second = await startDerper(`127.0.0.1:${first.port}`, keyFile);
  procs.push(second.child);
  const restartedAt = Date.now();
  await waitUntil(() => clients.every((c) => c.connects === 2), MAX_BACKOFF_MS + 3000, 'every client reconnected within its backoff cap');
  const took = Date.now() - restartedAt;
  t.diagnostic(`all 4 clients back ${took} ms after the restart (backoff cap ${MAX_BACKOFF_MS} ms)`);
  assert.ok(took <= MAX_BACKOFF_MS + 1000, `reconnected in ${took} ms`);
  await relay('after');
});
