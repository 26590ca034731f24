/**
 * DERP load generator (issue #6 §7 "Speed"; method of spec/node-performance.md §1). Speaks DERP itself through
 * bench/derp-conn.ts and prints ONE JSON line with the result, so a driver can run it against any relay:
 *
 *   throughput  N pairs = 2N connections, each sending greedily to its partner (write a pre-built ~64 KiB block
 *               of SendPacket frames until write() returns false, then wait for 'drain'); delivered RecvPacket
 *               frames are counted over `--seconds` after `--warmup`. Reports kfps, payload Gbit/s, the share of
 *               sent frames that arrived, relay CPU (from /proc/<pid>/stat) and the load generator's own CPU.
 *   window      closed loop: N pairs, each sender keeps at most `--window` frames in flight (windowed()).
 *   latency     one pair ping-pongs a single packet (A→B, B echoes to A) while `--bg-pairs` other pairs send at a
 *               paced total of `--bg-kfps`; p50/p99/p99.9 of RTT/2 ("added latency" of one relay traversal).
 *   scale       the drop from `--few` (20) to `--pairs` (100) pairs in one run: all pairs connect, slices of
 *               `--slice` seconds alternate between the first `--few` sending and all of them (closed loop).
 *   idle        opens `--conns` idle connections (full handshakes) and reads the relay's VmRSS before/after.
 *
 * Usage: node bench/derp-loadgen.ts --mode throughput --host 127.0.0.1 --port P [--tls] --pairs 20 --size 570
 *        [--warmup 1] [--seconds 3] [--pid RELAY_PID] [--client native|node]
 * `--client`: the load generator's own TCP/TLS stack (bench/derp-conn.ts); native (the addon) when it is built.
 */
import { parseArgs } from 'node:util';
import { FRAME_HEADER_LEN, FrameType, KEY_LEN } from '../src/derp/constants.ts';
import { type BenchConn, checkEngine, connectMany, defaultEngine, frameLenFor, newIdentity, sendBlock, type Target } from './derp-conn.ts';
import { cpuSeconds, percentile, rssBytes, sleep } from './proc.ts';

const BLOCK_BYTES = 64 * 1024;
/** Writes per pump turn before yielding to the event loop (so receive callbacks still run). */
const MAX_WRITES_PER_TURN = 8;
const HANDSHAKE_PARALLEL = 64;
/** Window mode: a sender with no acknowledged progress for this long declares its window lost. */
const STALL_MS = 200;
/** Latency mode: a probe unanswered this long is presumed dropped and replaced. */
const PROBE_TIMEOUT_MS = 200;

const { values: a } = parseArgs({
  options: {
    mode: { type: 'string', default: 'throughput' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    tls: { type: 'boolean', default: false },
    pairs: { type: 'string', default: '20' },
    size: { type: 'string', default: '1400' },
    warmup: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '3' },
    pid: { type: 'string', default: '0' },
    'bg-pairs': { type: 'string', default: '0' },
    'bg-kfps': { type: 'string', default: '0' },
    conns: { type: 'string', default: '1000' },
    'src-ips': { type: 'string', default: '1' },
    window: { type: 'string', default: '32' },
    few: { type: 'string', default: '20' },
    slice: { type: 'string', default: '0.5' },
    settle: { type: 'string', default: '0.1' },
    client: { type: 'string' },
  },
});

const target: Target = { host: a.host, port: Number(a.port), tls: a.tls, engine: a.client === undefined ? defaultEngine() : checkEngine(a.client) };
const relayPid = Number(a.pid);
const size = Number(a.size);
const warmupMs = Number(a.warmup) * 1000;
const windowMs = Number(a.seconds) * 1000;
const srcIps = Array.from({ length: Number(a['src-ips']) }, (_, i) => `127.0.0.${i + 1}`);

function emit(o: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ mode: a.mode, tls: a.tls, client: target.engine, ...o }) + '\n');
}

function closeAll(conns: BenchConn[]): void {
  for (const c of conns) c.sock.destroy();
}

/** Pairs conns (0↔1, 2↔3, …); returns the connected list. */
async function openPairs(pairs: number): Promise<BenchConn[]> {
  const ids = Array.from({ length: 2 * pairs }, newIdentity);
  return connectMany(target, ids, HANDSHAKE_PARALLEL, srcIps);
}

const partnerOf = (conns: BenchConn[], i: number): BenchConn => conns[i ^ 1]!;

async function throughput(): Promise<void> {
  const pairs = Number(a.pairs);
  const conns = await openPairs(pairs);
  const frameLen = frameLenFor(size);
  const perBlock = Math.max(1, Math.floor(BLOCK_BYTES / frameLen));
  let rxFrames = 0;
  let rxBytes = 0;
  let txFrames = 0;
  let running = true;
  conns.forEach((c, i) => {
    c.onFrame = (type, len) => {
      if (type === FrameType.RecvPacket) {
        rxFrames++;
        rxBytes += len - KEY_LEN;
      }
    };
    const block = sendBlock(partnerOf(conns, i).id.pub, size, perBlock);
    const pump = (): void => {
      if (!running) return;
      for (let k = 0; k < MAX_WRITES_PER_TURN; k++) {
        txFrames += perBlock;
        if (!c.send(block, 0, block.length, true)) {
          c.sock.once('drain', pump);
          return;
        }
      }
      setImmediate(pump);
    };
    pump();
  });
  await sleep(warmupMs);
  const s0 = { t: performance.now(), rxFrames, rxBytes, txFrames, relay: cpuSeconds(relayPid), self: process.cpuUsage() };
  await sleep(windowMs);
  const secs = (performance.now() - s0.t) / 1000;
  const f = rxFrames - s0.rxFrames;
  const sent = txFrames - s0.txFrames;
  const self = process.cpuUsage(s0.self);
  running = false;
  emit({
    pairs,
    size,
    kfps: f / secs / 1000,
    gbps: ((rxBytes - s0.rxBytes) * 8) / secs / 1e9,
    delivered: sent > 0 ? f / sent : NaN,
    relayCpu: (cpuSeconds(relayPid) - s0.relay) / secs,
    loadgenCpu: (self.user + self.system) / 1e6 / secs,
  });
  closeAll(conns);
}

/** A closed loop over `pairs` pairs (see windowed()); only the first `active` pairs send. */
interface ClosedLoop {
  readonly totals: () => { rxFrames: number; rxBytes: number; txFrames: number; stalls: number };
  /** Lets the first `n` pairs send (the others stop refilling: their frames in flight still arrive). */
  setActive(n: number): void;
  stop(): void;
}

async function closedLoop(pairs: number, w: number): Promise<ClosedLoop> {
  const conns = await openPairs(pairs);
  const frameLen = frameLenFor(size);
  const seqAt = FRAME_HEADER_LEN + KEY_LEN;
  const tmpl = conns.map((_, i) => sendBlock(partnerOf(conns, i).id.pub, size, w));
  const sent = new Array<number>(conns.length).fill(0);
  const maxSeen = new Array<number>(conns.length).fill(0);
  const lastSeen = new Array<number>(conns.length).fill(0);
  let txFrames = 0;
  let stalls = 0;
  let activeConns = 0; // connections (2 per pair) allowed to send
  const minBatch = Math.max(1, w >> 2);
  const refill = (i: number): void => {
    const c = conns[i]!;
    const k = w - (sent[i]! - maxSeen[i ^ 1]!);
    if (i >= activeConns || k < minBatch || c.busy) return;
    // The sender's own template: numbered in place and sent at once (send() takes or copies the bytes).
    const buf = tmpl[i]!;
    for (let j = 0; j < k; j++) buf.writeUInt32BE(++sent[i]!, j * frameLen + seqAt);
    txFrames += k;
    c.send(buf, 0, k * frameLen);
  };
  conns.forEach((c, j) => {
    c.counting = true;
    c.onData = () => {
      if (c.maxSeq > maxSeen[j]!) maxSeen[j] = c.maxSeq;
      refill(j ^ 1);
    };
    c.sock.on('drain', () => refill(j));
  });
  const stallTimer = setInterval(() => {
    for (let i = 0; i < activeConns; i++) {
      const r = i ^ 1;
      if (maxSeen[r] === lastSeen[r] && sent[i]! > maxSeen[r]!) {
        maxSeen[r] = sent[i]!;
        stalls++;
        refill(i);
      }
      lastSeen[r] = maxSeen[r]!;
    }
  }, STALL_MS);
  return {
    totals: () => {
      let rxFrames = 0;
      let rxBytes = 0;
      for (const c of conns) {
        rxFrames += c.rxPackets;
        rxBytes += c.rxBytes;
      }
      return { rxFrames, rxBytes, txFrames, stalls };
    },
    setActive(n: number): void {
      const before = activeConns;
      activeConns = 2 * Math.min(n, pairs);
      for (let i = before; i < activeConns; i++) {
        lastSeen[i ^ 1] = maxSeen[i ^ 1]!;
        refill(i);
      }
    },
    stop(): void {
      activeConns = 0;
      clearInterval(stallTimer);
      closeAll(conns);
    },
  };
}

/**
 * Closed-loop throughput: each sender keeps at most `--window` frames in flight. Every frame carries a u32
 * sequence number; the receiver's highest seen number acknowledges everything before it (a relay that drops
 * from the head of its queue still lets the window advance); a sender that sees no progress for STALL_MS
 * declares its window lost and starts over. Measures the relay's lossless capacity instead of its overload
 * behaviour.
 */
async function windowed(): Promise<void> {
  const pairs = Number(a.pairs);
  const w = Number(a.window);
  const loop = await closedLoop(pairs, w);
  loop.setActive(pairs);
  await sleep(warmupMs);
  const t0 = loop.totals();
  const s0 = { t: performance.now(), relay: cpuSeconds(relayPid), self: process.cpuUsage() };
  await sleep(windowMs);
  const secs = (performance.now() - s0.t) / 1000;
  const t1 = loop.totals();
  const f = t1.rxFrames - t0.rxFrames;
  const sentN = t1.txFrames - t0.txFrames;
  const self = process.cpuUsage(s0.self);
  const relayCpu = (cpuSeconds(relayPid) - s0.relay) / secs;
  loop.stop();
  emit({
    pairs,
    size,
    window: w,
    kfps: f / secs / 1000,
    gbps: ((t1.rxBytes - t0.rxBytes) * 8) / secs / 1e9,
    delivered: sentN > 0 ? f / sentN : NaN,
    stallsPerSec: (t1.stalls - t0.stalls) / secs,
    relayCpu,
    loadgenCpu: (self.user + self.system) / 1e6 / secs,
  });
}

/**
 * The 20 → 100 pairs comparison within one run: all `--pairs` (the larger count, e.g. 100) pairs connect once,
 * then slices of `--slice` seconds alternate between only the first `--few` pairs sending and all of them, the
 * closed loop of windowed() in both. A slice starts after `--settle` seconds (the previous slice's frames in
 * flight arrive). The same relay, connections and minutes carry both counts, so a slow stretch of the machine
 * lands on both alike. Reports kfps and relay CPU summed over the slices of each count, and the drop.
 */
async function scale(): Promise<void> {
  const many = Number(a.pairs);
  const few = Number(a.few);
  const w = Number(a.window);
  const sliceMs = Number(a.slice) * 1000;
  const settleMs = Number(a.settle) * 1000;
  const loop = await closedLoop(many, w);
  loop.setActive(many);
  await sleep(warmupMs);
  const sum = new Map<number, { frames: number; secs: number; relay: number; self: number }>([[few, { frames: 0, secs: 0, relay: 0, self: 0 }], [many, { frames: 0, secs: 0, relay: 0, self: 0 }]]);
  const slices = Math.max(1, Math.round(windowMs / sliceMs / 2));
  const perSlice: Record<number, number[]> = { [few]: [], [many]: [] };
  for (let k = 0; k < 2 * slices; k++) {
    const n = k % 2 === 0 ? few : many;
    loop.setActive(n);
    await sleep(settleMs);
    const f0 = loop.totals().rxFrames;
    const s0 = { t: performance.now(), relay: cpuSeconds(relayPid), self: process.cpuUsage() };
    await sleep(sliceMs);
    const s = sum.get(n)!;
    const self = process.cpuUsage(s0.self);
    const frames = loop.totals().rxFrames - f0;
    const secs = (performance.now() - s0.t) / 1000;
    perSlice[n]!.push(Math.round(frames / secs / 1000));
    s.frames += frames;
    s.secs += secs;
    s.relay += cpuSeconds(relayPid) - s0.relay;
    s.self += (self.user + self.system) / 1e6;
  }
  loop.stop();
  const f = sum.get(few)!;
  const m = sum.get(many)!;
  const kfps = (x: { frames: number; secs: number }): number => x.frames / x.secs / 1000;
  emit({
    pairs: many,
    few,
    size,
    window: w,
    slices,
    kfpsFew: kfps(f),
    kfpsMany: kfps(m),
    drop: 1 - kfps(m) / kfps(f),
    relayCpuFew: f.relay / f.secs,
    relayCpuMany: m.relay / m.secs,
    effDrop: 1 - (m.frames / m.relay) / (f.frames / f.relay),
    loadgenCpuFew: f.self / f.secs,
    loadgenCpuMany: m.self / m.secs,
    slicesFew: perSlice[few],
    slicesMany: perSlice[many],
  });
}

async function latency(): Promise<void> {
  const bgPairs = Number(a['bg-pairs']);
  const bgKfps = Number(a['bg-kfps']);
  const conns = await openPairs(1 + bgPairs);
  const frameLen = frameLenFor(size);
  // Background: conns 2.. send at a paced total rate (frames per ms split evenly), never past write() === false.
  const bg = conns.slice(2);
  const perConnPerMs = bg.length === 0 ? 0 : bgKfps / bg.length;
  const blocks = bg.map((_, j) => sendBlock(partnerOf(conns, j + 2).id.pub, size, Math.max(1, Math.ceil(perConnPerMs * 20) + 1)));
  const bgSent = new Array<number>(bg.length).fill(0);
  let bgRx = 0;
  const t0 = performance.now();
  for (const c of bg) c.onFrame = (type) => void (type === FrameType.RecvPacket && bgRx++);
  const pacer = bg.length === 0 ? null : setInterval(() => {
    const el = performance.now() - t0;
    bg.forEach((c, j) => {
      const block = blocks[j]!;
      const due = Math.min(Math.floor(perConnPerMs * el) - bgSent[j]!, block.length / frameLen);
      if (due <= 0 || c.busy) return;
      bgSent[j] = bgSent[j]! + due;
      c.send(block, 0, due * frameLen, true);
    });
  }, 1);
  // Probe pair: A sends a numbered probe, B echoes the number back, A measures; a probe the relay dropped is
  // replaced after PROBE_TIMEOUT_MS (not counted).
  const A = conns[0]!;
  const B = conns[1]!;
  const toB = sendBlock(B.id.pub, size, 1);
  const toA = sendBlock(A.id.pub, size, 1);
  const seqAt = FRAME_HEADER_LEN + KEY_LEN;
  const samples: number[] = [];
  let measuring = false;
  let sentAt = 0;
  let seq = 0;
  let lost = 0;
  let running = true;
  const seqOf = (body: Buffer | null, off: number): number =>
    body !== null && off + KEY_LEN + 4 <= body.length ? body.readUInt32BE(off + KEY_LEN) : -1;
  B.onFrame = (type, _len, body, off) => {
    if (type !== FrameType.RecvPacket) return;
    const echo = Buffer.from(toA);
    echo.writeUInt32BE(seqOf(body, off) >>> 0, seqAt);
    B.send(echo, 0, echo.length, true);
  };
  const ping = (): void => {
    const probe = Buffer.from(toB);
    probe.writeUInt32BE(++seq, seqAt);
    sentAt = performance.now();
    A.send(probe, 0, probe.length, true);
  };
  A.onFrame = (type, _len, body, off) => {
    if (type !== FrameType.RecvPacket || seqOf(body, off) !== seq) return;
    if (measuring) samples.push((performance.now() - sentAt) / 2);
    if (running) ping();
  };
  const watchdog = setInterval(() => {
    if (running && performance.now() - sentAt > PROBE_TIMEOUT_MS) {
      lost++;
      ping();
    }
  }, PROBE_TIMEOUT_MS / 2);
  ping();
  await sleep(warmupMs);
  const bgRx0 = bgRx;
  const r0 = { t: performance.now(), relay: cpuSeconds(relayPid) };
  measuring = true;
  await sleep(windowMs);
  measuring = false;
  running = false;
  const secs = (performance.now() - r0.t) / 1000;
  if (pacer !== null) clearInterval(pacer);
  clearInterval(watchdog);
  const s = Float64Array.from(samples).sort();
  emit({
    size,
    bgPairs,
    bgKfpsTarget: bgKfps,
    bgKfps: (bgRx - bgRx0) / secs / 1000,
    samples: s.length,
    lostProbes: lost,
    p50us: percentile(s, 50) * 1000,
    p99us: percentile(s, 99) * 1000,
    p999us: percentile(s, 99.9) * 1000,
    relayCpu: (cpuSeconds(relayPid) - r0.relay) / secs,
  });
  closeAll(conns);
}

async function idle(): Promise<void> {
  const n = Number(a.conns);
  // Warm up the server's allocator and code paths, then measure.
  const warm = await connectMany(target, Array.from({ length: 200 }, newIdentity), HANDSHAKE_PARALLEL, srcIps);
  closeAll(warm);
  await sleep(1500);
  const ids = Array.from({ length: n }, newIdentity);
  const before = rssBytes(relayPid);
  const t0 = performance.now();
  const conns = await connectMany(target, ids, HANDSHAKE_PARALLEL, srcIps);
  const connectSecs = (performance.now() - t0) / 1000;
  await sleep(3000);
  const after = rssBytes(relayPid);
  emit({ conns: conns.length, rssBeforeMiB: before / 2 ** 20, rssAfterMiB: after / 2 ** 20, bytesPerConn: (after - before) / n, connectSecs });
  closeAll(conns);
}

const modes: Record<string, () => Promise<void>> = { throughput, window: windowed, scale, latency, idle };
const run = modes[a.mode];
if (run === undefined) throw new Error(`unknown --mode ${a.mode}`);
await run();
process.exit(0);
