/**
 * Two `wiremesh derper` processes meshed with `--mesh-with` (spec/derp.md §11.4; issue #6 item 1): TLS manual mode
 * on loopback, shared mesh PSK; forwarding with the original source, PeerGone propagation both ways, and the mesh
 * re-forming after each server restarts (see mesh-scenario.ts). Needs openssl for the lab certificate.
 */
import { test } from 'node:test';
import { OPENSSL, startWmDerper } from '../../interop/derpprobe-lab.ts';
import { runMeshScenario } from './mesh-scenario.ts';

const skip = OPENSSL === null ? 'openssl not installed (needed for the lab certificate)' : false;

test('wiremesh derper ↔ wiremesh derper mesh: forwarding, PeerGone propagation, reconnect after restarts', { skip, timeout: 180_000 }, async (t) => {
  await runMeshScenario(t, { name: 'wm1', start: startWmDerper }, { name: 'wm2', start: startWmDerper });
});
