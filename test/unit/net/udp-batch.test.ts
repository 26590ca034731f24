// The native recvmmsg/sendmmsg socket (src/net/udp-batch.ts + native/udp_batch.c) over real loopback sockets:
// batched receive with correct sources (v4, v6), sendmmsg reaching a dgram socket, truncation flagged, errors
// counted instead of thrown mid-batch, clean idempotent close, and typed errors for bad arguments.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { setTimeout as delay } from 'node:timers/promises';
import {
  BATCH_MAX, BatchUdpSocket, batchUdpAvailable, batchUdpUnavailableReason, FLAG_TRUNCATED, Meta, META_INTS, SLOT_BYTES,
  UdpBatchError, UdpBatchErrorCode,
} from '../../../src/net/udp-batch.ts';
import { parseIp } from '../../../src/net/ip.ts';
import { canBindV6 } from '../../support/ipv6.ts';

const SKIP = batchUdpAvailable() ? false : `batch addon not built: ${batchUdpUnavailableReason()}`;

const HAS_V6 = await canBindV6();

interface Got {
  data: Uint8Array;
  from: { address: string; port: number };
  truncated: boolean;
}

/** A batch socket that records every datagram and every batch size. */
function recorder(family: 4 | 6, host: string, opts: { ipv6Only?: boolean } = {}): { sock: BatchUdpSocket; got: Got[]; batches: number[] } {
  const got: Got[] = [];
  const batches: number[] = [];
  const sock = BatchUdpSocket.open({
    family, host, port: 0, ...opts,
    onBatch: (s, n) => {
      batches.push(n);
      for (let i = 0; i < n; i++) got.push(s.received(i));
    },
  });
  return { sock, got, batches };
}

async function dgramSocket(type: 'udp4' | 'udp6', host: string): Promise<dgram.Socket> {
  const s = dgram.createSocket(type);
  await new Promise<void>((r) => s.bind(0, host, r));
  return s;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 300 && !cond(); i++) await delay(10);
  assert.ok(cond(), `timed out waiting for ${what}`);
}

/** Datagram k: 4-byte big-endian index then k bytes of filler, so content and length identify it. */
const datagram = (k: number): Buffer => {
  const b = Buffer.alloc(4 + (k % 200), k & 0xff);
  b.writeUInt32BE(k, 0);
  return b;
};

for (const [family, host] of [[4, '127.0.0.1'], [6, '::1']] as const) {
  test(`receives bursts in batches with the right source (IPv${family})`, { skip: SKIP || (family === 6 && !HAS_V6 ? 'no IPv6 loopback' : false) }, async (t) => {
    const r = recorder(family, host);
    t.after(() => r.sock.close());
    const c = await dgramSocket(family === 4 ? 'udp4' : 'udp6', host);
    t.after(() => c.close());
    const N = 500;
    // Send while the loop is blocked, so the datagrams pile up in the socket buffer and arrive as full batches.
    for (let k = 0; k < N; k++) c.send(datagram(k), r.sock.port, host);
    await until(() => r.got.length >= N, `${N} datagrams`);
    assert.equal(r.got.length, N);
    r.got.forEach((g, k) => {
      assert.equal(Buffer.from(g.data).toString('hex'), datagram(k).toString('hex'), `datagram ${k}`);
      assert.deepEqual(g.from, { address: host, port: c.address().port });
      assert.equal(g.truncated, false);
    });
    assert.ok(r.batches.every((n) => n >= 1 && n <= BATCH_MAX), `batch sizes ${r.batches.join(',')}`);
    assert.ok(Math.max(...r.batches) > 1, `expected real batching, got sizes ${r.batches.join(',')}`);
    const st = r.sock.stats();
    assert.equal(st.recvPackets, N);
    assert.equal(st.recvBatches, r.batches.length);
  });
}

test('an IPv4 client of a dual-stack IPv6 socket is reported as family 4', { skip: SKIP || (HAS_V6 ? false : 'no IPv6') }, async (t) => {
  const r = recorder(6, '::', { ipv6Only: false });
  t.after(() => r.sock.close());
  const c = await dgramSocket('udp4', '127.0.0.1');
  t.after(() => c.close());
  c.send(datagram(1), r.sock.port, '127.0.0.1');
  await until(() => r.got.length === 1, 'one datagram');
  assert.deepEqual(r.got[0]!.from, { address: '127.0.0.1', port: c.address().port });
  assert.equal(r.sock.recvMeta[Meta.Family], 4);
});

test('sendmmsg: one send(n) delivers n datagrams to a dgram socket, from our port', { skip: SKIP }, async (t) => {
  const r = recorder(4, '127.0.0.1');
  t.after(() => r.sock.close());
  const rx = await dgramSocket('udp4', '127.0.0.1');
  t.after(() => rx.close());
  const seen: { msg: Buffer; port: number }[] = [];
  rx.on('message', (msg, rinfo) => seen.push({ msg, port: rinfo.port }));
  const to = { family: 4 as const, address: Uint8Array.of(127, 0, 0, 1), port: rx.address().port };
  for (let i = 0; i < BATCH_MAX; i++) r.sock.setSend(i, datagram(i), to);
  assert.equal(r.sock.send(BATCH_MAX), BATCH_MAX);
  assert.equal(r.sock.send(3, 10), 3, 'slots 10..12 again');
  await until(() => seen.length >= BATCH_MAX + 3, 'all datagrams');
  assert.deepEqual(seen.map((s) => s.msg.readUInt32BE(0)), [...Array.from({ length: BATCH_MAX }, (_, i) => i), 10, 11, 12]);
  assert.ok(seen.every((s) => s.port === r.sock.port));
  assert.equal(r.sock.stats().sendPackets, BATCH_MAX + 3);
});

test('a dual-stack IPv6 socket sends to family-4 destinations (as IPv4-mapped)', { skip: SKIP || (HAS_V6 ? false : 'no IPv6') }, async (t) => {
  const r = recorder(6, '::', { ipv6Only: false });
  t.after(() => r.sock.close());
  const rx = await dgramSocket('udp4', '127.0.0.1');
  t.after(() => rx.close());
  let got: Buffer | null = null;
  rx.on('message', (m) => (got = m));
  r.sock.setSend(0, datagram(7), { family: 4, address: Uint8Array.of(127, 0, 0, 1), port: rx.address().port });
  assert.equal(r.sock.send(1), 1);
  await until(() => got !== null, 'the datagram');
  assert.equal(got!.readUInt32BE(0), 7);
});

test('bad destinations are counted and skipped; the rest of the batch still goes out', { skip: SKIP }, async (t) => {
  const r = recorder(4, '127.0.0.1');
  t.after(() => r.sock.close());
  const rx = await dgramSocket('udp4', '127.0.0.1');
  t.after(() => rx.close());
  const seen: number[] = [];
  rx.on('message', (m) => seen.push(m.readUInt32BE(0)));
  const ok = { family: 4 as const, address: Uint8Array.of(127, 0, 0, 1), port: rx.address().port };
  r.sock.setSend(0, datagram(0), ok);
  r.sock.setSend(1, datagram(1), { family: 6, address: parseIp('::1')!, port: ok.port }); // v6 target on a v4 socket
  r.sock.setSend(2, datagram(2), { ...ok, port: 0 }); // port 0: the kernel refuses it
  r.sock.setSend(3, datagram(3), ok);
  r.sock.sendMeta[4 * META_INTS + Meta.Length] = SLOT_BYTES + 1; // corrupt record
  r.sock.sendMeta[4 * META_INTS + Meta.Family] = 4;
  assert.equal(r.sock.send(5), 2);
  await until(() => seen.length >= 2, 'the two good datagrams');
  assert.deepEqual(seen, [0, 3]);
  const st = r.sock.stats();
  assert.equal(st.sendErrors, 3);
  assert.equal(st.sendPackets, 2);
  assert.ok(st.lastError !== null);
});

test('a datagram longer than a slot is flagged truncated', { skip: SKIP }, async (t) => {
  const r = recorder(4, '127.0.0.1');
  t.after(() => r.sock.close());
  const c = await dgramSocket('udp4', '127.0.0.1');
  t.after(() => c.close());
  c.send(Buffer.alloc(SLOT_BYTES + 500, 1), r.sock.port, '127.0.0.1');
  c.send(Buffer.alloc(SLOT_BYTES, 2), r.sock.port, '127.0.0.1');
  await until(() => r.got.length === 2, 'two datagrams');
  assert.equal(r.got[0]!.truncated, true);
  assert.equal(r.got[0]!.data.length, SLOT_BYTES);
  assert.equal(r.got[1]!.truncated, false, 'exactly one slot fits');
  assert.equal(r.got[1]!.data.length, SLOT_BYTES);
  assert.equal(r.sock.stats().recvTruncated, 1);
  assert.equal(FLAG_TRUNCATED, 1);
});

test('close is clean and idempotent: port released, no more batches, send throws udp_batch_closed', { skip: SKIP }, async (t) => {
  const r = recorder(4, '127.0.0.1');
  const port = r.sock.port;
  r.sock.close();
  r.sock.close();
  assert.equal(r.sock.closed, true);
  assert.throws(() => r.sock.send(1), (e: unknown) => e instanceof UdpBatchError && e.code === UdpBatchErrorCode.Closed);
  // The port is free again at once (the fd is closed synchronously).
  const again = await dgramSocket('udp4', '127.0.0.1');
  t.after(() => again.close());
  const other = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    other.once('error', reject);
    other.bind(port, '127.0.0.1', resolve);
  });
  other.close();
  const c = await dgramSocket('udp4', '127.0.0.1');
  t.after(() => c.close());
  c.send(datagram(1), port, '127.0.0.1');
  await delay(50);
  assert.equal(r.got.length, 0);
});

test('close from inside onBatch stops delivery of the rest', { skip: SKIP }, async (t) => {
  let batches = 0;
  const sock = BatchUdpSocket.open({
    family: 4, host: '127.0.0.1', port: 0,
    onBatch: (s) => {
      batches++;
      s.close();
    },
  });
  t.after(() => sock.close());
  const c = await dgramSocket('udp4', '127.0.0.1');
  t.after(() => c.close());
  for (let k = 0; k < 200; k++) c.send(datagram(k), sock.port, '127.0.0.1');
  await until(() => batches > 0, 'a batch');
  await delay(50);
  assert.equal(batches, 1);
  assert.equal(sock.closed, true);
});

test('bad arguments and bind failures are typed errors', { skip: SKIP }, async (t) => {
  // A socket that opens although it should not is closed at once, so a failing assertion cannot leak it.
  const open = (o: Partial<Parameters<typeof BatchUdpSocket.open>[0]>): (() => unknown) => () =>
    BatchUdpSocket.open({ family: 4, host: '127.0.0.1', port: 0, onBatch: () => {}, ...o } as Parameters<typeof BatchUdpSocket.open>[0]).close();
  const code = (c: string, errno?: string) => (e: unknown): boolean =>
    e instanceof UdpBatchError && e.code === c && (errno === undefined || e.errno === errno);
  assert.throws(open({ family: 5 as 4 }), code(UdpBatchErrorCode.BadArgument));
  assert.throws(open({ host: 'localhost' }), code(UdpBatchErrorCode.BadArgument));
  assert.throws(open({ host: '::1' }), code(UdpBatchErrorCode.BadArgument), 'IPv6 literal on a family-4 socket');
  assert.throws(open({ port: 70000 }), code(UdpBatchErrorCode.BadArgument));
  assert.throws(open({ port: 1.5 }), code(UdpBatchErrorCode.BadArgument));
  assert.throws(open({ port: Number.NaN }), code(UdpBatchErrorCode.BadArgument));
  assert.throws(open({ port: 1e20 }), code(UdpBatchErrorCode.BadArgument));
  assert.throws(open({ onBatch: 'nope' as unknown as () => void }), code(UdpBatchErrorCode.BadArgument));
  assert.throws(open({ host: '192.0.2.1' }), code(UdpBatchErrorCode.Syscall, 'EADDRNOTAVAIL'));
  const r = recorder(4, '127.0.0.1');
  t.after(() => r.sock.close());
  assert.throws(open({ port: r.sock.port }), code(UdpBatchErrorCode.Syscall, 'EADDRINUSE'));
  assert.throws(() => r.sock.send(BATCH_MAX + 1), code(UdpBatchErrorCode.BadArgument));
  assert.throws(() => r.sock.send(2, BATCH_MAX - 1), code(UdpBatchErrorCode.BadArgument));
  assert.throws(() => r.sock.send(-1), code(UdpBatchErrorCode.BadArgument));
  assert.throws(() => r.sock.setSend(BATCH_MAX, new Uint8Array(1), { family: 4, address: new Uint8Array(4), port: 1 }), code(UdpBatchErrorCode.BadArgument));
  assert.equal(r.sock.send(0), 0);
});

test('an exception in onBatch is an uncaughtException, not a crash; later batches still arrive', { skip: SKIP }, async () => {
  const { execFile } = await import('node:child_process');
  const fixture = new URL('./fixtures/udp-batch-throw.ts', import.meta.url).pathname;
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [fixture], { timeout: 10_000 }, (e, stdout, stderr) => (e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout))));
  assert.deepEqual(JSON.parse(out), { uncaught: 'boom in onBatch', batches: 2, microtaskRan: true });
});
