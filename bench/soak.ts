/**
 * Soak test for `wiremesh derper` (issue #6 item 6): one derper child process on loopback, many DERP clients
 * connecting, sending and leaving for a number of minutes, the server's RSS and open fds sampled every 10 s.
 *
 *   npm run soak -- --minutes 10                 # (script: node bench/soak.ts)
 *   node_modules/.bin/node bench/soak.ts --minutes 10 --workers 24 --packets 20 [--tls]
 *
 * `--tls`: the derper serves TLS (manual cert mode, generated IP cert for 127.0.0.1; the native TLS engine when
 * built, docs/tls-native.md) and the clients dial https; samples are read from its port-80 listener.
 *
 * Each worker loops: connect two fresh clients A and B (new keys), A sends `--packets` packets of random size
 * (64..1200 bytes) to B, B must receive every one byte-for-byte within 5 s, both leave (A closes cleanly, B's
 * socket is sometimes just dropped), pause 0–100 ms. Any exception, timeout or mismatch counts as an error.
 * Before each sample the server runs a full GC (`/debug/gc`), so the live heap is measured, not GC timing.
 * Output: one JSON line per sample on stdout, then a Markdown summary; exit status 1 when errors > 0, the live
 * heap grew by more than 25 % between the first sample after warm-up (1 min) and the last, or connections
 * remain at the end.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DerpClient } from '../src/derp/client.ts';
import { generatePrivate } from '../src/types/key.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    workers: { type: 'string', default: '24' },
    packets: { type: 'string', default: '20' },
    'sample-seconds': { type: 'string', default: '10' },
    tls: { type: 'boolean', default: false },
  },
});
const minutes = Number(values.minutes);
const workers = Number(values.workers);
const packets = Number(values.packets);
const sampleMs = Number(values['sample-seconds']) * 1000;
const WARMUP_MS = Math.min(60_000, (minutes * 60_000) / 4);

const root = path.resolve(import.meta.dirname, '..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'wm-soak-'));
const useTls = values.tls;
const tlsArgs = useTls ? ['--certmode', 'manual', '--hostname', '127.0.0.1', '--certdir', dir, '--http-port', '0'] : [];
const child = spawn(process.execPath, [path.join(root, 'bin/wiremesh.js'), 'derper', '-a', '127.0.0.1:0', '-c', path.join(dir, 'derper.key'), '--stun-port', '0', ...tlsArgs], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
let serverLog = '';
child.stderr.on('data', (d: Buffer) => {
  serverLog += d.toString();
  if (serverLog.length > 100_000) serverLog = serverLog.slice(-50_000);
});
// `port`: where clients dial; `debugPort`: where /debug is read over plain HTTP (the port-80 listener with TLS).
const [port, debugPort] = await new Promise<[number, number]>((resolve, reject) => {
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    const m = useTls ? /https=[^\s]*:(\d+) .*port80=[^\s]*:(\d+)/.exec(out) : /http=[^\s]*:(\d+)/.exec(out);
    if (m !== null) resolve([Number(m[1]), Number(m[2] ?? m[1])]);
  });
  child.once('exit', (code) => reject(new Error(`derper exited ${code}: ${serverLog}`)));
});
const url = `${useTls ? 'https' : 'http'}://127.0.0.1:${port}/derp`;
// No servername: an IP gets no SNI (RFC 6066 §3); the certificate is checked against the host.
const tls = useTls ? { tls: { ca: readFileSync(path.join(dir, '127.0.0.1.crt'), 'utf8') } } : {};
const pid = child.pid!;

function procStatus(): { rssKiB: number; fds: number } {
  const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { rssKiB: Number(rss?.[1] ?? 0), fds: readdirSync(`/proc/${pid}/fd`).length };
}

async function scrape(): Promise<{ conns: number; accepts: number; heapKiB: number; relayed: number; fastPath: number }> {
  // A full GC first (/debug/gc, like Go's), so heapUsed is the live heap, not GC timing.
  const gc = await (await fetch(`http://127.0.0.1:${debugPort}/debug/gc`)).text();
  const heapKiB = Math.round(Number(/-> (\d+)/.exec(gc)?.[1] ?? NaN) / 1024);
  const r = await fetch(`http://127.0.0.1:${debugPort}/debug/varz`);
  const varz = await r.text();
  const num = (name: string): number => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(varz)?.[1] ?? NaN);
  return { conns: num('derp_current_connections'), accepts: num('derp_accepts'), heapKiB, relayed: num('derp_packets_sent'), fastPath: num('derp_packets_fast_path') };
}

let cycles = 0;
let sent = 0;
let errors = 0;
const errorKinds = new Map<string, number>();
const deadline = Date.now() + minutes * 60_000;

async function cycle(): Promise<void> {
  const a = await DerpClient.connect(url, { privateKey: generatePrivate(), ...tls });
  const b = await DerpClient.connect(url, { privateKey: generatePrivate(), ...tls });
  try {
    const want: Uint8Array[] = [];
    for (let i = 0; i < packets; i++) {
      const p = crypto.getRandomValues(new Uint8Array(64 + Math.floor(Math.random() * 1137)));
      want.push(p);
      a.send(b.publicKey, p);
      sent++;
    }
    for (let i = 0; i < packets; ) {
      const m = await b.next(5000);
      if (m.type !== 'recvPacket') continue;
      if (Buffer.compare(Buffer.from(m.data), Buffer.from(want[i]!)) !== 0) throw new Error('packet mismatch');
      i++;
    }
  } finally {
    a.close();
    b.close();
  }
}

async function worker(): Promise<void> {
  while (Date.now() < deadline) {
    try {
      await cycle();
      cycles++;
    } catch (e) {
      errors++;
      const k = e instanceof Error ? e.message.slice(0, 80) : String(e);
      errorKinds.set(k, (errorKinds.get(k) ?? 0) + 1);
    }
    await new Promise((r) => setTimeout(r, Math.random() * 100));
  }
}

interface Sample { t: number; rssKiB: number; heapKiB: number; fds: number; conns: number; accepts: number; relayed: number; fastPath: number; cycles: number; packets: number; errors: number }
const samples: Sample[] = [];
const start = Date.now();
async function sample(): Promise<void> {
  const v = await scrape().catch(() => ({ conns: NaN, accepts: NaN, heapKiB: NaN, relayed: NaN, fastPath: NaN }));
  const s = { t: Math.round((Date.now() - start) / 1000), ...procStatus(), ...v, cycles, packets: sent, errors };
  samples.push(s);
  process.stdout.write(JSON.stringify(s) + '\n');
}

await sample();
const timer = setInterval(() => void sample(), sampleMs);
await Promise.all(Array.from({ length: workers }, worker));
clearInterval(timer);
await new Promise((r) => setTimeout(r, 2000));
await sample(); // after every client left: connections should be back to 0
const exited = new Promise((r) => child.once('exit', r));
child.kill('SIGTERM');
await exited;
rmSync(dir, { recursive: true, force: true });

const afterWarm = samples.find((s) => s.t * 1000 >= WARMUP_MS) ?? samples[0]!;
const last = samples[samples.length - 1]!;
// Leak check on the live heap after a full GC (RSS follows V8's heap sizing and is only reported).
const growth = (last.heapKiB - afterWarm.heapKiB) / afterWarm.heapKiB;
const maxRss = Math.max(...samples.map((s) => s.rssKiB));
const maxHeap = Math.max(...samples.map((s) => s.heapKiB));
const lines = [
  '',
  `## soak summary: ${minutes} min, ${useTls ? 'TLS' : 'plain HTTP'}, ${workers} workers x 2 clients, ${packets} packets/cycle`,
  `cycles ${cycles}, connections ${cycles * 2}, packets ${sent}, errors ${errors}, server exit ${child.exitCode ?? child.signalCode}`,
  `live heap after GC: after warm-up ${(afterWarm.heapKiB / 1024).toFixed(1)} MiB (t=${afterWarm.t}s), max ${(maxHeap / 1024).toFixed(1)} MiB, end ${(last.heapKiB / 1024).toFixed(1)} MiB, growth ${(growth * 100).toFixed(1)} %`,
  `RSS: after warm-up ${(afterWarm.rssKiB / 1024).toFixed(1)} MiB, max ${(maxRss / 1024).toFixed(1)} MiB, end ${(last.rssKiB / 1024).toFixed(1)} MiB`,
  `connections at the end ${last.conns}`,
  `packets relayed ${last.relayed}, by the fast path ${last.fastPath} (docs/derp-server.md "Fast path")`,
  ...[...errorKinds].map(([k, n]) => `error x${n}: ${k}`),
  '',
  '| t (s) | heap after GC (MiB) | RSS (MiB) | fds | current conns | accepts | packets |',
  '|---:|---:|---:|---:|---:|---:|---:|',
  ...samples.map((s) => `| ${s.t} | ${(s.heapKiB / 1024).toFixed(1)} | ${(s.rssKiB / 1024).toFixed(1)} | ${s.fds} | ${s.conns} | ${s.accepts} | ${s.packets} |`),
];
process.stdout.write(lines.join('\n') + '\n');
process.exitCode = errors > 0 || growth > 0.25 || last.conns !== 0 || child.exitCode !== 0 ? 1 : 0;
