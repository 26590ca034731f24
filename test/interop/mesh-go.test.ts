/**
 * Mesh interop with the real Go derper v1.102.3 (spec/derp.md §11, §19.2; issue #6 item 1): a wiremesh derper and
 * a Go derper in TLS manual mode on loopback, each started with `--mesh-with` naming both, so ours dials Go's
 * (our mesh client ↔ Go's watcher stream and ForwardPacket handling) and Go's dials ours (Go's mesh client ↔ our
 * server). Proves forwarding with the original source both ways, PeerGone propagation both ways, and reconnects
 * after either server restarts (Go redials every 5 s; ours backs off from 1 s) — over TLS, and over plain HTTP with
 * TS_DEBUG_USE_DERP_HTTP=1 for both. Skips without Go's derper/openssl.
 */
import { test } from 'node:test';
import { GO_DERPER, OPENSSL, startGoDerper, startWmDerper } from './derpprobe-lab.ts';
import { runMeshScenario, startGoDerperPlain, startWmDerperPlain } from '../lab/derper/mesh-scenario.ts';

const skip = GO_DERPER === null ? 'Go derper not installed (go install tailscale.com/cmd/derper@v1.102.3)'
  : OPENSSL === null ? 'openssl not installed (needed for the lab certificate)' : false;

test('wiremesh derper (server 1) ↔ Go derper (server 2)', { skip, timeout: 180_000 }, async (t) => {
  await runMeshScenario(t, { name: 'wm', start: startWmDerper }, { name: 'go', start: startGoDerper });
});

test('Go derper (server 1) ↔ wiremesh derper (server 2)', { skip, timeout: 180_000 }, async (t) => {
  await runMeshScenario(t, { name: 'go', start: startGoDerper }, { name: 'wm', start: startWmDerper });
});

test('plain HTTP mesh (TS_DEBUG_USE_DERP_HTTP=1): wiremesh derper ↔ Go derper', { skip, timeout: 180_000 }, async (t) => {
  await runMeshScenario(t, { name: 'wm', start: startWmDerperPlain }, { name: 'go', start: startGoDerperPlain }, true);
});
