/**
 * STUN load generator (issue #6 §7 "Speed"; spec/derp.md §15). `--sockets` connected UDP sockets each keep
 * `--window` Binding requests outstanding: every answer immediately releases one more request, and a socket that
 * got no answer for LOSS_MS refills its window (requests lost to full socket buffers are replaced, not waited
 * for). Counts answered requests (Binding success responses) per second over `--seconds` after `--warmup`, and
 * the server's CPU from /proc/<pid>/stat. Prints ONE JSON line.
 *
 *   --kind tailnode   Tailscale's 40-byte request (SOFTWARE tailnode + FINGERPRINT), what derper answers
 *   --kind generic    a bare 20-byte RFC 5389 Binding request, what any STUN server answers
 *
 * `--batch` (default when build/udp_batch.node is built; `--no-batch` forces node:dgram): every client socket is
 * a BatchUdpSocket (src/net/udp-batch.ts): answers arrive through recvmmsg and the requests they release leave
 * with one sendmmsg per batch, from pre-built send slots. The server still sees `--sockets` source ports with
 * `--window` requests each in flight. node:dgram tops out near 120-130 k req/s on one core; batch mode offered
 * 210-260 k req/s here, where most of its CPU is the kernel's loopback work (charged to the sending process),
 * so it is roughly as expensive per request as the cheapest server, and a saturated server is visible as
 * `serverCpu` ≈ 1.
 *
 * Usage: node bench/stun-bench.ts --port P [--host 127.0.0.1] [--kind generic] [--sockets 64] [--window 8]
 *        [--seconds 3] [--warmup 1] [--pid SERVER_PID] [--batch | --no-batch]
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { parseArgs } from 'node:util';
import { parseIp } from '../src/net/ip.ts';
import { BATCH_MAX, BatchUdpSocket, batchUdpAvailable, META_INTS, Meta, SLOT_BYTES } from '../src/net/udp-batch.ts';
import { buildBindingRequest, buildTailnodeRequest } from '../src/stun/codec.ts';
import { cpuSeconds, sleep } from './proc.ts';

/** A socket with no answer for this long refills its window. */
const LOSS_MS = 50;
/** Distinct pre-built requests per socket (different transaction IDs), used round-robin. */
const REQUESTS_PER_SOCKET = 16;
const BINDING_SUCCESS = 0x0101;

const { values: a } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    kind: { type: 'string', default: 'generic' },
    sockets: { type: 'string', default: '64' },
    window: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    pid: { type: 'string', default: '0' },
    batch: { type: 'boolean' },
    'no-batch': { type: 'boolean' },
  },
});

const port = Number(a.port);
const window = Number(a.window);
const pid = Number(a.pid);
const build = a.kind === 'tailnode' ? buildTailnodeRequest : (txid: Uint8Array): Uint8Array => buildBindingRequest(txid);

let answered = 0;
let sent = 0;
let other = 0;

const useBatch = a['no-batch'] === true ? false : (a.batch ?? batchUdpAvailable());
if (useBatch && !batchUdpAvailable()) throw new Error('--batch: build/udp_batch.node is not built (node scripts/build-native.ts)');
if (useBatch && window > BATCH_MAX) throw new Error(`--batch: --window must be <= ${BATCH_MAX}`);

interface Client {
  /** Sends `n` requests. */
  send(n: number): void;
  lastAnswer: number;
  close(): void;
}

async function openDgram(): Promise<Client> {
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => sock.connect(port, a.host, resolve));
  const reqs = Array.from({ length: REQUESTS_PER_SOCKET }, () => build(randomBytes(12)));
  let next = 0;
  const c: Client = {
    send(n) {
      for (let i = 0; i < n; i++) {
        sock.send(reqs[next]!);
        next = (next + 1) % REQUESTS_PER_SOCKET;
      }
      sent += n;
    },
    lastAnswer: performance.now(),
    close: () => sock.close(),
  };
  sock.on('message', (msg) => {
    if (msg.length >= 20 && msg.readUInt16BE(0) === BINDING_SUCCESS) answered++;
    else other++;
    c.lastAnswer = performance.now();
    c.send(1);
  });
  sock.on('error', () => {});
  return c;
}

/** A batch client: all BATCH_MAX send slots hold distinct pre-built requests; a batch of n answers sends n slots. */
function openBatch(): Client {
  const v6 = isIPv6(a.host);
  const server = parseIp(a.host);
  if (server === null) throw new Error(`--batch needs an IP literal --host, got ${a.host}`);
  let next = 0;
  const c: Client = {
    send(n) {
      if (next + n > BATCH_MAX) next = 0;
      sent += n;
      sock.send(n, next);
      next += n;
    },
    lastAnswer: performance.now(),
    close: () => sock.close(),
  };
  const sock = BatchUdpSocket.open({
    family: v6 ? 6 : 4,
    host: v6 ? '::1' : '127.0.0.1',
    port: 0,
    onBatch: (s, n) => {
      const d = s.recvData;
      const m = s.recvMeta;
      for (let i = 0; i < n; i++) {
        const o = i * SLOT_BYTES;
        if (m[i * META_INTS + Meta.Length]! >= 20 && ((d[o]! << 8) | d[o + 1]!) === BINDING_SUCCESS) answered++;
        else other++;
      }
      c.lastAnswer = performance.now();
      c.send(n);
    },
  });
  const to = { family: v6 ? (6 as const) : (4 as const), address: v6 ? server : server.subarray(server.length - 4), port };
  for (let i = 0; i < BATCH_MAX; i++) sock.setSend(i, build(randomBytes(12)), to);
  return c;
}

const clients = await Promise.all(Array.from({ length: Number(a.sockets) }, () => (useBatch ? openBatch() : openDgram())));
for (const c of clients) c.send(window);
const refill = setInterval(() => {
  const now = performance.now();
  for (const c of clients) {
    if (now - c.lastAnswer < LOSS_MS) continue;
    c.lastAnswer = now;
    c.send(window);
  }
}, LOSS_MS / 2);
await sleep(Number(a.warmup) * 1000);
const s0 = { t: performance.now(), answered, sent, cpu: cpuSeconds(pid), self: process.cpuUsage() };
await sleep(Number(a.seconds) * 1000);
const secs = (performance.now() - s0.t) / 1000;
const self = process.cpuUsage(s0.self);
clearInterval(refill);
process.stdout.write(JSON.stringify({
  kind: a.kind,
  batch: useBatch,
  sockets: clients.length,
  window,
  kreqs: (answered - s0.answered) / secs / 1000,
  answeredShare: (answered - s0.answered) / (sent - s0.sent),
  unexpected: other,
  serverCpu: (cpuSeconds(pid) - s0.cpu) / secs,
  loadgenCpu: (self.user + self.system) / 1e6 / secs,
}) + '\n');
for (const c of clients) c.close();
process.exit(0);
