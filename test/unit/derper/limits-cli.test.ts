/**
 * The limit and mesh flags through the real `wiremesh derper` command (src/cli/derper.ts): `--rate-config` is
 * announced and re-read on SIGHUP; `--accept-connection-*`/`--max-conns-per-ip` reach the listener; the mesh
 * transport follows TS_DEBUG_USE_DERP_HTTP and SSL_CERT_FILE as Go's does.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { DerpClient } from '../../../src/derp/client.ts';
import { meshTransportFromEnv } from '../../../src/derper/mesh.ts';
import { generatePrivate } from '../../../src/types/key.ts';
import { spawnUntil } from '../../conformance/spawn.ts';

const NODE = path.resolve('node_modules/.bin/node');
const BIN = path.resolve('bin/wiremesh.js');

test('meshTransportFromEnv: TS_DEBUG_USE_DERP_HTTP=1 → plain HTTP; SSL_CERT_FILE → the trusted CA bundle', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-meshenv-'));
  try {
    assert.deepEqual(meshTransportFromEnv({}), { meshPlainHttp: false });
    assert.deepEqual(meshTransportFromEnv({ TS_DEBUG_USE_DERP_HTTP: '1' }), { meshPlainHttp: true });
    assert.deepEqual(meshTransportFromEnv({ TS_DEBUG_USE_DERP_HTTP: 'true' }), { meshPlainHttp: true });
    assert.deepEqual(meshTransportFromEnv({ TS_DEBUG_USE_DERP_HTTP: '0' }), { meshPlainHttp: false });
    writeFileSync(path.join(dir, 'ca.pem'), 'PEM');
    assert.equal(meshTransportFromEnv({ SSL_CERT_FILE: path.join(dir, 'ca.pem') }).meshTls?.ca.toString(), 'PEM');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('derper CLI: --rate-config announced and reloaded on SIGHUP; --max-conns-per-ip enforced', { timeout: 30_000 }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-ratecli-'));
  const rate = path.join(dir, 'rate.json');
  writeFileSync(rate, JSON.stringify({ PerClientRateLimitBytesPerSec: 50_000, PerClientRateBurstBytes: 70_000 }));
  const proc = await spawnUntil(NODE, [BIN, 'derper', '-a', '127.0.0.1:0', '-c', path.join(dir, 'k.json'), '-stun=false',
    '--rate-config', rate, '--max-conns-per-ip', '3', '--accept-connection-limit', '1000', '--accept-connection-burst', '100'],
  /derper: listening http=127\.0\.0\.1:(\d+)/);
  const socks: net.Socket[] = [];
  t.after(async () => {
    for (const s of socks) s.destroy();
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const url = `http://127.0.0.1:${proc.match[1]}/derp`;
  const a = await DerpClient.connect(url, { privateKey: generatePrivate() });
  assert.deepEqual([a.serverInfo.tokenBucketBytesPerSecond, a.serverInfo.tokenBucketBytesBurst], [50_000, 70_000]);
  a.close();

  writeFileSync(rate, JSON.stringify({ PerClientRateLimitBytesPerSec: 80_000, PerClientRateBurstBytes: 10 }));
  process.kill(proc.child.pid!, 'SIGHUP');
  let b: DerpClient | null = null;
  for (let i = 0; i < 50; i++) {
    b = await DerpClient.connect(url, { privateKey: generatePrivate() });
    b.close();
    if (b.serverInfo.tokenBucketBytesPerSecond === 80_000) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual([b?.serverInfo.tokenBucketBytesPerSecond, b?.serverInfo.tokenBucketBytesBurst], [80_000, 65_568], 'reloaded; burst raised to 65568');
  assert.equal(proc.child.exitCode, null, 'SIGHUP does not kill it');

  // Per-IP cap 3: three idle connections stay, the fourth is closed at once.
  const open = (): Promise<'open' | 'closed'> => new Promise((resolve) => {
    const s = net.connect(Number(proc.match[1]), '127.0.0.1');
    socks.push(s);
    s.on('error', () => {});
    const timer = setTimeout(() => resolve('open'), 300);
    s.on('close', () => { clearTimeout(timer); resolve('closed'); });
  });
  await new Promise((r) => setTimeout(r, 100)); // the DERP clients above have gone
  assert.deepEqual([await open(), await open(), await open(), await open()], ['open', 'open', 'open', 'closed']);
});
