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
 * Usage: node bench/stun-bench.ts --port P [--host 127.0.0.1] [--kind generic] [--sockets 64] [--window 8]
 *        [--seconds 3] [--warmup 1] [--pid SERVER_PID]
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
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
  },
});

const port = Number(a.port);
const window = Number(a.window);
const pid = Number(a.pid);
const build = a.kind === 'tailnode' ? buildTailnodeRequest : (txid: Uint8Array): Uint8Array => buildBindingRequest(txid);

let answered = 0;
let sent = 0;
let other = 0;

interface Client {
  sock: dgram.Socket;
  reqs: Uint8Array[];
  next: number;
  lastAnswer: number;
}

async function open(): Promise<Client> {
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => sock.connect(port, a.host, resolve));
  const c: Client = { sock, reqs: Array.from({ length: REQUESTS_PER_SOCKET }, () => build(randomBytes(12))), next: 0, lastAnswer: performance.now() };
  sock.on('message', (msg) => {
    if (msg.length >= 20 && msg.readUInt16BE(0) === BINDING_SUCCESS) answered++;
    else other++;
    c.lastAnswer = performance.now();
    send(c);
  });
  sock.on('error', () => {});
  return c;
}

function send(c: Client): void {
  c.sock.send(c.reqs[c.next]!);
  c.next = (c.next + 1) % REQUESTS_PER_SOCKET;
  sent++;
}

const clients = await Promise.all(Array.from({ length: Number(a.sockets) }, open));
for (const c of clients) for (let i = 0; i < window; i++) send(c);
const refill = setInterval(() => {
  const now = performance.now();
  for (const c of clients) {
    if (now - c.lastAnswer < LOSS_MS) continue;
    c.lastAnswer = now;
    for (let i = 0; i < window; i++) send(c);
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
  sockets: clients.length,
  window,
  kreqs: (answered - s0.answered) / secs / 1000,
  answeredShare: (answered - s0.answered) / (sent - s0.sent),
  unexpected: other,
  serverCpu: (cpuSeconds(pid) - s0.cpu) / secs,
  loadgenCpu: (self.user + self.system) / 1e6 / secs,
}) + '\n');
for (const c of clients) c.sock.close();
process.exit(0);
