// Simultaneous-send hole punching across NAT pairs on the vlab (spec/nat-traversal.md §5 outcome table,
// spec/lab.md §1 selftest): each side learns the other's STUN-reflexive address and both send at once. Shows the
// vlab reproduces the documented outcomes, including full cone vs hard, which Linux conntrack cannot build.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatAddrPort, type AddrPort } from '../../src/net/packet.ts';
import { StunTransactions } from '../../src/stun/client.ts';
import { drive, Network } from './network.ts';
import { Filtering, Mapping, natConfig, type NatConfig } from './nat.ts';
import { startStunServer } from './stunserver.ts';

const EASY = natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent);
const FULL_CONE = natConfig(Mapping.EndpointIndependent, Filtering.EndpointIndependent);
const RESTRICTED = natConfig(Mapping.EndpointIndependent, Filtering.AddressDependent);
const HARD = natConfig(Mapping.AddressAndPortDependent, Filtering.AddressAndPortDependent);

async function punch(a: NatConfig, b: NatConfig, replyFromA = false): Promise<{ aGot: string[]; bGot: string[] }> {
  const net = new Network({ seed: 5 });
  startStunServer(net.addHost('stun', '203.0.113.10'));
  const ra = net.addRouter('ra', { wanIp: '203.0.113.1', lanIp: '10.1.0.1', nat: a });
  const rb = net.addRouter('rb', { wanIp: '203.0.113.2', lanIp: '10.2.0.1', nat: b });
  const ca = ra.addHost('a', '10.1.0.2').udp(41641);
  const cb = rb.addHost('b', '10.2.0.2').udp(41641);
  const stun: AddrPort = { address: '203.0.113.10', port: 3478 };
  const random = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff);
  const q = (c: typeof ca, seed: number) => new StunTransactions(c).query(stun, { clock: net.clock, timeoutMs: 500, retryMs: 1000, random: (n) => random(n).map((x) => x ^ seed) });
  const [ea, eb] = await drive(net.clock, Promise.all([q(ca, 1), q(cb, 2)]));
  const aGot: string[] = [];
  const bGot: string[] = [];
  ca.onMessage((_d, from) => aGot.push(formatAddrPort(from)));
  cb.onMessage((_d, from) => bGot.push(formatAddrPort(from)));
  // Both sides send to the other's reflexive address at the same time, five rounds 100 ms apart.
  for (let i = 0; i < 5; i++) {
    ca.send(new Uint8Array([1]), eb.address);
    cb.send(new Uint8Array([2]), ea.address);
    net.clock.advance(100);
  }
  if (replyFromA && aGot.length > 0) {
    // Peer-reflexive: a answers the source address it actually saw.
    const seen = aGot[0]!.split(':');
    ca.send(new Uint8Array([3]), { address: seen[0]!, port: Number(seen[1]) });
    net.clock.advance(100);
  }
  return { aGot: [...new Set(aGot)], bGot: [...new Set(bGot)] };
}

test('easy ⇄ easy: direct (both preserve port 41641)', async () => {
  const r = await punch(EASY, EASY);
  assert.deepEqual(r.aGot, ['203.0.113.2:41641']);
  assert.deepEqual(r.bGot, ['203.0.113.1:41641']);
});

test('hard ⇄ hard: no packet gets through (DERP territory)', async () => {
  const r = await punch(HARD, HARD);
  assert.deepEqual(r, { aGot: [], bGot: [] });
});

test('easy (APDF) ⇄ hard: fails — the easy side never targets the hard side\'s per-destination port', async () => {
  const r = await punch(EASY, HARD);
  assert.deepEqual(r, { aGot: [], bGot: [] });
});

test('full cone ⇄ hard: the hard side gets through; its fresh port is then learned peer-reflexively', async () => {
  const r = await punch(FULL_CONE, HARD, true);
  assert.equal(r.aGot.length, 1, 'a receives from the hard side\'s new per-destination port');
  assert.ok(r.aGot[0]!.startsWith('203.0.113.2:') && r.aGot[0] !== '203.0.113.2:41641');
  assert.deepEqual(r.bGot, ['203.0.113.1:41641'], 'the reply to that port reaches the hard side');
});

test('restricted cone (ADF) ⇄ hard: admitted by IP, as Tailscale\'s "easyAF" row says', async () => {
  const r = await punch(RESTRICTED, HARD);
  assert.equal(r.aGot.length, 1);
});
