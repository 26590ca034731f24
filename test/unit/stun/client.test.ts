// STUN client engine on a ManualClock over an in-memory PacketConn: retransmission, RTT from the answered send,
// timeouts, stray/malformed packets ignored, several concurrent queries demuxed by txid, abort and close.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StunTransactions, stunQuery, type StunQueryOptions } from '../../../src/stun/client.ts';
import { buildResponse, parseRequest, parseTailnodeRequest } from '../../../src/stun/codec.ts';
import { StunErrorCode } from '../../../src/stun/constants.ts';
import { ManualClock } from '../../../src/time/clock.ts';
import { hasCode } from '../../../src/errors.ts';
import type { AddrPort, PacketConn, PacketHandler } from '../../../src/net/packet.ts';

/** In-memory PacketConn: records sends; the test delivers datagrams by hand. */
class MemConn implements PacketConn {
  readonly sent: { data: Uint8Array; to: AddrPort }[] = [];
  readonly handlers = new Set<PacketHandler>();
  send(data: Uint8Array, to: AddrPort): void {
    this.sent.push({ data: new Uint8Array(data), to });
  }
  onMessage(h: PacketHandler): () => void {
    this.handlers.add(h);
    return () => this.handlers.delete(h);
  }
  localAddr(): AddrPort {
    return { address: '10.0.0.2', port: 41641 };
  }
  close(): void {}
  deliver(data: Uint8Array, from: AddrPort): void {
    for (const h of [...this.handlers]) h(data, from);
  }
  /** Answers the i-th sent request as a server would, reporting `mapped`. */
  answer(i: number, mapped: AddrPort): void {
    const s = this.sent[i]!;
    const req = parseRequest(s.data);
    assert.ok(req);
    this.deliver(buildResponse(req.txid, mapped), s.to);
  }
}

function counterRandom(): (n: number) => Uint8Array {
  let c = 0;
  return (n) => {
    c++;
    return Uint8Array.from({ length: n }, (_, i) => (c * 31 + i) & 0xff);
  };
}

const SERVER: AddrPort = { address: '192.0.2.10', port: 3478 };
const MAPPED: AddrPort = { address: '203.0.113.5', port: 61000 };

function opts(clock: ManualClock, extra: Partial<StunQueryOptions> = {}): StunQueryOptions {
  return { clock, timeoutMs: 1000, retryMs: 200, random: counterRandom(), ...extra };
}

/** Lets promise callbacks run. */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('retransmits with fresh txids and measures RTT from the answered send', async () => {
  const clock = new ManualClock(5000);
  const conn = new MemConn();
  const p = stunQuery(conn, SERVER, opts(clock));
  assert.equal(conn.sent.length, 1);
  assert.equal(conn.sent[0]!.data.length, 40, 'tailnode request');
  assert.ok(parseTailnodeRequest(conn.sent[0]!.data));
  assert.deepEqual(conn.sent[0]!.to, SERVER);
  clock.advance(200);
  clock.advance(200);
  assert.equal(conn.sent.length, 3);
  const txids = new Set(conn.sent.map((s) => Buffer.from(s.data.subarray(8, 20)).toString('hex')));
  assert.equal(txids.size, 3, 'each transmission has its own txid');
  clock.advance(30);
  conn.answer(2, MAPPED);
  const r = await p;
  assert.deepEqual(r.address, MAPPED);
  assert.equal(r.rttMs, 30);
  assert.equal(r.sends, 3);
  assert.deepEqual(r.server, SERVER);
  assert.equal(clock.pending, 0, 'timers cancelled');
  assert.equal(conn.handlers.size, 0, 'stunQuery detaches its handler');
  clock.advance(1000);
  assert.equal(conn.sent.length, 3, 'no retransmission after success');
});

test('a late answer to an earlier transmission counts, with its own RTT', async () => {
  const clock = new ManualClock();
  const conn = new MemConn();
  const p = stunQuery(conn, SERVER, opts(clock));
  clock.advance(250);
  conn.answer(0, MAPPED);
  assert.equal((await p).rttMs, 250);
});

test('times out with stun_timeout after timeoutMs, having sent every retryMs', async () => {
  const clock = new ManualClock();
  const conn = new MemConn();
  const p = stunQuery(conn, SERVER, opts(clock));
  let err: unknown;
  p.catch((e: unknown) => { err = e; });
  clock.advance(999);
  await tick();
  assert.equal(err, undefined);
  clock.advance(1);
  await tick();
  assert.ok(hasCode(err, StunErrorCode.Timeout), String(err));
  assert.equal(conn.sent.length, 5, 'sends at 0, 200, 400, 600, 800');
  assert.equal(clock.pending, 0);
  // A reply after the timeout is a stray: nothing breaks.
  conn.answer(0, MAPPED);
});

test('retryMs >= timeoutMs sends exactly once', async () => {
  const clock = new ManualClock();
  const conn = new MemConn();
  const p = stunQuery(conn, SERVER, opts(clock, { retryMs: 5000 }));
  clock.advance(1000);
  await assert.rejects(p, (e) => hasCode(e, StunErrorCode.Timeout));
  assert.equal(conn.sent.length, 1);
});

test('strays, non-STUN and malformed answers are ignored and passed to onUnmatched', async () => {
  const clock = new ManualClock();
  const conn = new MemConn();
  const txs = new StunTransactions(conn);
  const unmatched: Uint8Array[] = [];
  txs.onUnmatched((d) => unmatched.push(d));
  let done = false;
  const p = txs.query(SERVER, opts(clock)).finally(() => { done = true; });
  const req = parseRequest(conn.sent[0]!.data)!;
  const stray = buildResponse(new Uint8Array(12).fill(7), MAPPED);
  const notStun = new TextEncoder().encode('wireguard-ish bytes, definitely not STUN');
  const good = buildResponse(req.txid, MAPPED);
  const malformed = new Uint8Array(good.subarray(0, 26));
  malformed[3] = 6; // header length 6: XOR-MAPPED-ADDRESS truncated
  const errorResp = new Uint8Array(good);
  errorResp[1] = 0x11;
  for (const d of [stray, notStun, malformed, errorResp]) conn.deliver(d, SERVER);
  await tick();
  assert.equal(done, false);
  assert.equal(unmatched.length, 4);
  conn.deliver(good, { address: '198.51.100.1', port: 9 });
  const r = await p;
  assert.deepEqual(r.address, MAPPED);
  assert.deepEqual(r.from, { address: '198.51.100.1', port: 9 });
  assert.equal(unmatched.length, 4, 'the matched answer is consumed');
  txs.close();
});

test('several concurrent queries over one conn each get their own answer', async () => {
  const clock = new ManualClock();
  const conn = new MemConn();
  const txs = new StunTransactions(conn);
  const servers: AddrPort[] = [0, 1, 2].map((i) => ({ address: `192.0.2.${20 + i}`, port: 3478 }));
  const random = counterRandom();
  const ps = servers.map((s) => txs.query(s, { clock, timeoutMs: 1000, retryMs: 300, random }));
  assert.equal(txs.pending, 3);
  clock.advance(10);
  conn.answer(2, { address: '203.0.113.2', port: 2 });
  clock.advance(10);
  conn.answer(0, { address: '203.0.113.0', port: 0 });
  clock.advance(10);
  conn.answer(1, { address: '2001:db8::1', port: 1 });
  const rs = await Promise.all(ps);
  assert.deepEqual(rs.map((r) => r.address), [
    { address: '203.0.113.0', port: 0 }, { address: '2001:db8::1', port: 1 }, { address: '203.0.113.2', port: 2 },
  ]);
  assert.deepEqual(rs.map((r) => r.rttMs), [20, 30, 10]);
  assert.deepEqual(rs.map((r) => r.server), servers);
  assert.equal(txs.pending, 0);
  txs.close();
  assert.equal(conn.handlers.size, 0);
});

test('handlePacket feeds a table that does not own the socket', async () => {
  const clock = new ManualClock();
  const conn = new MemConn();
  const txs = new StunTransactions(conn, { listen: false });
  assert.equal(conn.handlers.size, 0);
  const p = txs.query(SERVER, opts(clock, { generic: true }));
  assert.equal(conn.sent[0]!.data.length, 20, 'generic request has no attributes');
  const req = parseRequest(conn.sent[0]!.data)!;
  assert.equal(req.kind, 'rfc5389');
  assert.equal(txs.handlePacket(new Uint8Array(3), SERVER), false);
  assert.equal(txs.handlePacket(buildResponse(req.txid, MAPPED), SERVER), true);
  assert.deepEqual((await p).address, MAPPED);
});

test('abort signal and close reject with stun_aborted and stop retransmitting', async () => {
  const clock = new ManualClock();
  const conn = new MemConn();
  const ac = new AbortController();
  const p = stunQuery(conn, SERVER, opts(clock, { signal: ac.signal }));
  ac.abort();
  await assert.rejects(p, (e) => hasCode(e, StunErrorCode.Aborted));
  clock.advance(1000);
  assert.equal(conn.sent.length, 1);
  await assert.rejects(stunQuery(conn, SERVER, opts(clock, { signal: ac.signal })), (e) => hasCode(e, StunErrorCode.Aborted));

  const txs = new StunTransactions(conn);
  const q = txs.query(SERVER, opts(clock));
  txs.close();
  await assert.rejects(q, (e) => hasCode(e, StunErrorCode.Aborted));
  await assert.rejects(txs.query(SERVER, opts(clock)), (e) => hasCode(e, StunErrorCode.Aborted));
  assert.equal(clock.pending, 0);
});

test('a random source returning the wrong length is a bad argument', async () => {
  const clock = new ManualClock();
  await assert.rejects(stunQuery(new MemConn(), SERVER, opts(clock, { random: () => new Uint8Array(4) })), (e) => hasCode(e, StunErrorCode.BadArgument));
  assert.equal(clock.pending, 0);
});
