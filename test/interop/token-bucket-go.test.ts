/**
 * The `--rate-config` token bucket announced in ServerInfo (spec/derp.md §5, §12; beyond Go, whose server never
 * sends it) is honoured by the real Go DERP client (tailscale.com/derp/derphttp v1.102.3, test/interop/go/
 * derpclient): it paces its sends and drops over budget locally (cost 5 + 32 + len per packet). The same burst
 * without a rate config is delivered in full, so the difference is the Go client's bucket, not the network.
 * Skips without a Go toolchain.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';
import { DerpClient } from '../../src/derp/client.ts';
import { RECEIVE_LIMIT_FRAME_COST_CAP } from '../../src/derp/server/constants.ts';
import { startDerper, type DerperConfig } from '../../src/derper/derper.ts';
import { generatePrivate, nodePublicText, parseNodePublic } from '../../src/types/key.ts';
import { which } from '../support/gobin.ts';
import { buildGoDerpClient, runGoDerpClient } from './go-derpclient.ts';

const skip = which('go') === null ? 'Go toolchain not installed (needed to build test/interop/go/derpclient)' : false;
let goClient: string | null = null;
before(async () => {
  if (skip === false) goClient = await buildGoDerpClient();
});

function config(over: Partial<DerperConfig>): DerperConfig {
  return {
    host: '127.0.0.1', port: 0, tls: null, httpPort: -1, stunPort: null, derp: true, privateKey: generatePrivate(), meshKey: null,
    home: '', hostname: '127.0.0.1', bootstrapDnsNames: [], verifyClientUrl: '', verifyClientUrlFailOpen: false,
    tcpWriteTimeoutMs: 2000, tcpKeepAliveMs: 0, ...over,
  };
}

const PAYLOAD = 'p'.repeat(1000); // the Go client appends " <n>": ~1004-byte packets
const COUNT = 200;

/** Runs the Go client sending COUNT packets to one of our clients; returns how many arrived. */
async function goBurst(rateConfigPath: string | undefined): Promise<number> {
  const d = await startDerper(config(rateConfigPath === undefined ? {} : { rateConfigPath }));
  const rx = await DerpClient.connect(`http://127.0.0.1:${d.httpPort}/derp`, { privateKey: generatePrivate() });
  try {
    // The Go client applies the bucket when its Recv loop reads ServerInfo, which races with sends right after
    // Connect: -send-delay lets ServerInfo be processed first (tailscaled sends nothing that early either).
    // -recv 1 keeps the Go client connected until we answer: exiting with unread data would RST the connection
    // and discard what the server had not read yet.
    const go = runGoDerpClient(goClient!, ['-url', `http://127.0.0.1:${d.httpPort}/derp`, '-to', nodePublicText(rx.publicKey), '-count', String(COUNT), '-data', PAYLOAD, '-send-delay', '500ms', '-recv', '1', '-timeout', '30s']);
    const ready = await go.waitEvent('ready', 20_000);
    let got = 0;
    for (;;) {
      try {
        const m = await rx.next(1500);
        if (m.type === 'recvPacket') got++;
      } catch {
        break; // 1.5 s of silence: the burst is over
      }
    }
    rx.send(parseNodePublic(String(ready.publicKey)), Buffer.from('bye'));
    const { code, stderr } = await go.exited;
    assert.equal(code, 0, stderr.slice(-1500));
    return got;
  } finally {
    rx.close();
    await d.close();
  }
}

test('Go derphttp client honours the announced token bucket; without one the same burst arrives in full', { skip, timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-tb-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'rate.json');
  writeFileSync(file, JSON.stringify({ PerClientRateLimitBytesPerSec: 1000, PerClientRateBurstBytes: 0 }));
  const limited = await goBurst(file);
  const unlimited = await goBurst(undefined);
  t.diagnostic(`Go client, ${COUNT} × ~1 KB at once: ${limited} delivered with the announced bucket, ${unlimited} without`);
  assert.equal(unlimited, COUNT);
  // Burst 65568 (raised from 0) fits 62 packets of 5 + 32 + 1004 bytes, plus ~1 KB/s of refill while sending.
  const fit = Math.floor(RECEIVE_LIMIT_FRAME_COST_CAP / (5 + 32 + 1004));
  assert.ok(limited >= fit && limited <= fit + 5, `${limited} delivered, want ≈ ${fit}`);
});
