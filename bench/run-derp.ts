/**
 * DERP benchmark driver (issue #6 §7 "Speed"; method of spec/node-performance.md: relay pinned to CPU 1, load
 * generator to CPU 0, medians of N runs, ratios). In ONE run it starts the Go derper and the wiremesh derper
 * for each transport (plain, TLS), alternates them per configuration and run (the order flips every run), runs
 * bench/derp-loadgen.ts against each and prints markdown tables of medians with wiremesh/Go ratios.
 *
 *   node bench/run-derp.ts [--sizes 570,1400] [--pairs 2,20,100] [--tls plain|tls|both] [--runs 3]
 *     [--seconds 2] [--warmup 1] [--tests greedy,window,latency,idle] [--window 32] [--idle-conns 10000]
 *     [--idle-runs 1] [--latency-sizes 570] [--bg-pairs 20] [--bg-kfps 50] [--json results.json]
 *     [--wm-node-flags "--cpu-prof"] [--wm-dir /path/to/other/checkout] [--client native|node]
 *     [--scale-pairs 20,100] [--scale-seconds 8] [--floor] [--report results.json]
 * `--report`: print the tables of an earlier run's --json file (with the same --tests, --sizes, … ) instead of running.
 * Test `scale` measures the drop from 20 to 100 pairs within one load-generator run (derp-loadgen.ts --mode
 * scale: all 100 pairs connected, 0.5 s slices alternating between 20 and 100 of them sending), so the two counts
 * share the minutes of a run instead of being two separate runs compared across the machine's drift.
 * `--floor`: the plain `scale` sweep also runs bench/floor-relay.c (the least a DERP relay can do, in C; built with
 * `cc`), in the same rotation: what any relay on this machine loses from 20 to 100 pairs.
 * `--client`: the load generator's TCP/TLS stack (bench/derp-conn.ts): the native addon by default when built.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { median } from './proc.ts';
import { NODE, runJson, type Running, startFloorRelay, startGoDerper, startWiremeshDerper } from './servers.ts';

const RELAY_CPU = 1;
const LOADGEN_CPU = 0;

const { values: a } = parseArgs({
  options: {
    sizes: { type: 'string', default: '570,1400' },
    pairs: { type: 'string', default: '2,20,100' },
    tls: { type: 'string', default: 'both' },
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '0.5' },
    tests: { type: 'string', default: 'greedy,window,scale,latency,idle' },
    'scale-pairs': { type: 'string', default: '20,100' },
    'scale-seconds': { type: 'string', default: '8' },
    window: { type: 'string', default: '32' },
    'idle-conns': { type: 'string', default: '10000' },
    'idle-runs': { type: 'string', default: '1' },
    'latency-sizes': { type: 'string', default: '570' },
    'wm-dir': { type: 'string' },
    'bg-pairs': { type: 'string', default: '20' },
    'bg-kfps': { type: 'string', default: '50' },
    'src-ips': { type: 'string', default: '8' },
    json: { type: 'string' },
    report: { type: 'string' },
    'wm-node-flags': { type: 'string', default: '' },
    client: { type: 'string' },
    floor: { type: 'boolean', default: false },
  },
});

const list = (s: string): number[] => s.split(',').filter((x) => x !== '').map(Number);
const sizes = list(a.sizes);
const pairsList = list(a.pairs);
const runs = Number(a.runs);
const tests = new Set(a.tests.split(','));
const transports = a.tls === 'both' ? [false, true] : [a.tls === 'tls'];
const wmNodeFlags = a['wm-node-flags'] === '' ? [] : a['wm-node-flags'].split(' ');
const SERVERS = ['go', 'wiremesh'] as const;
/** `floor`: bench/floor-relay.c, in the plain `scale` sweep only, with `--floor`. */
type ServerName = (typeof SERVERS)[number] | 'floor';

const start = (name: ServerName, tls: boolean): Promise<Running> =>
  name === 'go' ? startGoDerper(RELAY_CPU, tls) : startWiremeshDerper(RELAY_CPU, tls, wmNodeFlags, a['wm-dir']);

interface Result {
  test: string;
  tls: boolean;
  size: number;
  pairs: number;
  server: ServerName;
  run: number;
  r: Record<string, number>;
}
const results: Result[] = [];

/** Machine-wide CPU ticks [steal, total] from /proc/stat: steal is time the hypervisor gave to someone else. */
function cpuTicks(): [number, number] {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return [f[7] ?? 0, f.reduce((x, y) => x + y, 0)];
}

/** One load-generator run; adds `stealPct`, the machine's steal time during it (a noisy neighbour shows here). */
async function loadgen(s: Running, mode: string, extra: string[]): Promise<Record<string, number>> {
  const argv = [NODE, 'bench/derp-loadgen.ts', '--mode', mode, '--host', s.host, '--port', String(s.port), '--pid', String(s.pid),
    '--seconds', mode === 'scale' ? a['scale-seconds'] : a.seconds, '--warmup', a.warmup, '--src-ips', a['src-ips'], ...(s.tls ? ['--tls'] : []),
    ...(a.client === undefined ? [] : ['--client', a.client]), ...extra];
  const [s0, t0] = cpuTicks();
  const r = await runJson(LOADGEN_CPU, argv);
  const [s1, t1] = cpuTicks();
  return { ...r, stealPct: t1 > t0 ? (100 * (s1 - s0)) / (t1 - t0) : 0 };
}

/**
 * Every configuration × run, both servers, order flipped on odd runs. Runs are the outer loop: run k of every
 * configuration comes before run k+1 of any, so a slow or fast minute of the VM lands on all pair counts alike
 * and the 20 → 100 pairs comparison is not a comparison of two different minutes.
 */
async function sweep(servers: { [K in ServerName]?: Running | undefined }, tls: boolean, test: string, configs: { size: number; pairs: number; args: string[] }[]): Promise<void> {
  const names = (['go', 'wiremesh', 'floor'] as const).filter((n) => servers[n] !== undefined);
  for (let run = 0; run < runs; run++) {
    for (const c of configs) {
      const order = run % 2 === 0 ? names : [...names].reverse();
      for (const name of order) {
        const mode = test === 'greedy' ? 'throughput' : test;
        try {
          const r = await loadgen(servers[name]!, mode, c.args);
          results.push({ test, tls, size: c.size, pairs: c.pairs, server: name, run, r });
          process.stderr.write(`${test} ${tls ? 'tls' : 'plain'} ${c.size}B ${c.pairs}p ${name} #${run}: ${JSON.stringify(r)}\n`);
        } catch (e) {
          process.stderr.write(`${test} ${name} failed: ${(e as Error).message}\n`);
        }
      }
    }
  }
}

async function main(): Promise<void> {
  if (a.report !== undefined) {
    results.push(...(JSON.parse(readFileSync(a.report, 'utf8')) as Result[]));
    process.stdout.write(report() + '\n');
    return;
  }
  const t0 = Date.now();
  for (const tls of transports) {
    const throughputCfgs = sizes.flatMap((size) => pairsList.map((pairs) => ({ size, pairs, args: ['--size', String(size), '--pairs', String(pairs)] })));
    const latencyCfgs = list(a['latency-sizes']).flatMap((size) => [
      { size, pairs: 0, args: ['--size', String(size)] },
      { size, pairs: Number(a['bg-pairs']), args: ['--size', String(size), '--bg-pairs', a['bg-pairs'], '--bg-kfps', a['bg-kfps']] },
    ]);
    const [few, many] = list(a['scale-pairs']) as [number, number];
    const scaleCfgs = sizes.map((size) => ({ size, pairs: many, args: ['--size', String(size), '--pairs', String(many), '--few', String(few), '--window', a.window] }));
    if (tests.has('greedy') || tests.has('window') || tests.has('scale') || tests.has('latency')) {
      const servers = { go: await start('go', tls), wiremesh: await start('wiremesh', tls) };
      try {
        if (tests.has('greedy')) await sweep(servers, tls, 'greedy', throughputCfgs);
        if (tests.has('window')) await sweep(servers, tls, 'window', throughputCfgs.map((c) => ({ ...c, args: [...c.args, '--window', a.window] })));
        if (tests.has('scale')) {
          const floor = a.floor && !tls ? await startFloorRelay(RELAY_CPU) : undefined;
          try {
            await sweep({ ...servers, floor }, tls, 'scale', scaleCfgs);
          } finally {
            await floor?.stop();
          }
        }
        if (tests.has('latency')) await sweep(servers, tls, 'latency', latencyCfgs);
      } finally {
        await servers.go.stop();
        await servers.wiremesh.stop();
      }
    }
    if (tests.has('idle')) {
      // A fresh server per run: RSS growth left by earlier tests would hide the per-connection cost.
      for (let run = 0; run < Number(a['idle-runs']); run++) {
        for (const name of run % 2 === 0 ? SERVERS : [...SERVERS].reverse()) {
          let s: Running | null = null;
          try {
            s = await start(name, tls);
            const r = await loadgen(s, 'idle', ['--conns', a['idle-conns']]);
            results.push({ test: 'idle', tls, size: 0, pairs: 0, server: name, run, r });
            process.stderr.write(`idle ${tls ? 'tls' : 'plain'} ${name} #${run}: ${JSON.stringify(r)}\n`);
          } catch (e) {
            process.stderr.write(`idle ${name} failed: ${(e as Error).message}\n`);
          } finally {
            await s?.stop();
          }
        }
      }
    }
  }
  if (a.json !== undefined) writeFileSync(a.json, JSON.stringify(results, null, 1));
  process.stdout.write(report() + `\n_total ${((Date.now() - t0) / 60000).toFixed(1)} min_\n`);
}

function med(test: string, tls: boolean, size: number, pairs: number, server: ServerName, key: string): number {
  return median(results.filter((x) => x.test === test && x.tls === tls && x.size === size && x.pairs === pairs && x.server === server).map((x) => x.r[key]!));
}

/** Delivered kframes per CPU-second the relay used: robust to CPU stolen by other load (median over runs). */
function eff(test: string, tls: boolean, size: number, pairs: number, server: ServerName): number {
  return median(results.filter((x) => x.test === test && x.tls === tls && x.size === size && x.pairs === pairs && x.server === server).map((x) => x.r.kfps! / x.r.relayCpu!));
}

const f0 = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '–');
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '–');
const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(0)} %` : '–');
const tname = (tls: boolean): string => (tls ? 'TLS' : 'plain');

function throughputTable(test: string): string {
  const rows = ['| transport | size | pairs | Go kfps (Gbit/s) | wiremesh kfps (Gbit/s) | **ratio** | delivered Go / wm | relay CPU Go / wm | kframes per relay CPU-s Go / wm |', '|---|---|---|---|---|---|---|---|---|'];
  for (const tls of transports) {
    for (const size of sizes) {
      for (const pairs of pairsList) {
        const g = (s: ServerName, k: string): number => med(test, tls, size, pairs, s, k);
        rows.push(`| ${tname(tls)} | ${size} B | ${pairs} | ${f0(g('go', 'kfps'))} (${f2(g('go', 'gbps'))}) | ${f0(g('wiremesh', 'kfps'))} (${f2(g('wiremesh', 'gbps'))}) | **${f2(g('wiremesh', 'kfps') / g('go', 'kfps'))}×** | ${pct(g('go', 'delivered'))} / ${pct(g('wiremesh', 'delivered'))} | ${pct(g('go', 'relayCpu'))} / ${pct(g('wiremesh', 'relayCpu'))} | ${f0(eff(test, tls, size, pairs, 'go'))} / ${f0(eff(test, tls, size, pairs, 'wiremesh'))} |`);
      }
      if (pairsList.includes(20) && pairsList.includes(100)) {
        const drop = (s: ServerName): string => pct(1 - med(test, tls, size, 100, s, 'kfps') / med(test, tls, size, 20, s, 'kfps'));
        const effDrop = (s: ServerName): string => pct(1 - eff(test, tls, size, 100, s) / eff(test, tls, size, 20, s));
        rows.push(`| ${tname(tls)} | ${size} B | drop 20→100 | ${drop('go')} | ${drop('wiremesh')} | | | | ${effDrop('go')} / ${effDrop('wiremesh')} |`);
      }
    }
  }
  return rows.join('\n');
}

/** A scale run counts when the relay had its core in both halves (≥ this CPU share): else it measured the VM's steal. */
const SCALE_RELAY_BOUND = 0.95;

/**
 * The drop measured within each run (test `scale`): medians over the runs in which the relay was the bottleneck in
 * both halves (relay CPU ≥ SCALE_RELAY_BOUND; all runs when there is none, marked), and the range of their drops.
 */
function scaleTable(): string {
  const [few, many] = list(a['scale-pairs']);
  const rows = [`| transport | size | Go kfps ${few} → ${many} pairs | Go drop (range) | wiremesh kfps ${few} → ${many} pairs | **wiremesh drop** (range) | drop per relay CPU-s Go / wm | relay CPU µs per frame ${few} → ${many}, Go / wm | relay-bound runs Go / wm |`, '|---|---|---|---|---|---|---|---|---|'];
  const floorRows = [`| size | server | kfps ${few} → ${many} pairs | drop (range) | drop per relay CPU-s | relay CPU µs per frame ${few} → ${many} (added) | relay-bound runs |`, '|---|---|---|---|---|---|---|'];
  for (const tls of transports) {
    for (const size of sizes) {
      const [g, w, f] = (['go', 'wiremesh', 'floor'] as const).map((s) => scaleStats(tls, size, s));
      rows.push(`| ${tname(tls)} | ${size} B | ${g!.kfps} | ${g!.drop} (${g!.range}) | ${w!.kfps} | **${w!.drop}** (${w!.range}) | ${g!.eff} / ${w!.eff} | ${g!.cost} / ${w!.cost} | ${g!.count} / ${w!.count} |`);
      if (f!.n > 0) for (const [name, x] of [['Go', g!], ['wiremesh', w!], ['floor', f!]] as const) floorRows.push(`| ${size} B | ${name} | ${x.kfps} | ${x.drop} (${x.range}) | ${x.eff} | ${x.cost} | ${x.count} |`);
    }
  }
  if (floorRows.length === 2) return rows.join('\n');
  return `${rows.join('\n')}\n\nWith \`--floor\`, plain, the same runs with bench/floor-relay.c (the least a relay can do, in C):\n\n${floorRows.join('\n')}`;
}

/** One server's `scale` figures for a transport and size, formatted for the tables. */
function scaleStats(tls: boolean, size: number, s: ServerName): { n: number; kfps: string; drop: string; range: string; eff: string; cost: string; count: string } {
  const all = results.filter((x) => x.test === 'scale' && x.tls === tls && x.size === size && x.server === s).map((x) => x.r);
  const bound = all.filter((r) => r.relayCpuFew! >= SCALE_RELAY_BOUND && r.relayCpuMany! >= SCALE_RELAY_BOUND);
  const used = bound.length > 0 ? bound : all;
  const m = (k: string): number => median(used.map((r) => r[k]!));
  const d = used.map((r) => r.drop!);
  // The relay's CPU time per frame (µs) in each half, and what the many pairs added: the absolute cost of scale.
  const us = (half: 'Few' | 'Many'): number => median(used.map((r) => (r[`relayCpu${half}`]! * 1000) / r[`kfps${half}`]!));
  const added = median(used.map((r) => (r.relayCpuMany! * 1000) / r.kfpsMany! - (r.relayCpuFew! * 1000) / r.kfpsFew!));
  return {
    n: all.length,
    kfps: `${f0(m('kfpsFew'))} → ${f0(m('kfpsMany'))}`,
    drop: pct(m('drop')),
    range: d.length === 0 ? '–' : `${pct(Math.min(...d))} … ${pct(Math.max(...d))}`,
    eff: pct(m('effDrop')),
    cost: `${f2(us('Few'))} → ${f2(us('Many'))} (${added >= 0 ? '+' : ''}${f2(added)})`,
    count: `${bound.length}/${all.length}${bound.length === 0 ? ' (all used)' : ''}`,
  };
}

function latencyTable(): string {
  const rows = ['| transport | size | background | Go p50 / p99 / p99.9 µs | wiremesh p50 / p99 / p99.9 µs | **p99 ratio** | bg kfps Go / wm | steal % (max of the runs) |', '|---|---|---|---|---|---|---|---|'];
  for (const tls of transports) {
    for (const size of list(a['latency-sizes'])) {
      for (const pairs of [0, Number(a['bg-pairs'])]) {
        const g = (s: ServerName, k: string): number => med('latency', tls, size, pairs, s, k);
        const bg = pairs === 0 ? 'idle' : `${pairs} pairs @ ${a['bg-kfps']} kfps`;
        const steal = Math.max(...results.filter((x) => x.test === 'latency' && x.tls === tls && x.size === size && x.pairs === pairs).map((x) => x.r.stealPct ?? 0));
        rows.push(`| ${tname(tls)} | ${size} B | ${bg} | ${f0(g('go', 'p50us'))} / ${f0(g('go', 'p99us'))} / ${f0(g('go', 'p999us'))} | ${f0(g('wiremesh', 'p50us'))} / ${f0(g('wiremesh', 'p99us'))} / ${f0(g('wiremesh', 'p999us'))} | **${f2(g('wiremesh', 'p99us') / g('go', 'p99us'))}×** | ${f0(g('go', 'bgKfps'))} / ${f0(g('wiremesh', 'bgKfps'))} | ${steal.toFixed(1)} |`);
      }
    }
  }
  return rows.join('\n');
}

function idleTable(): string {
  const rows = [`| transport | conns | Go bytes/conn | wiremesh bytes/conn | **ratio** | connect s Go / wm |`, '|---|---|---|---|---|---|'];
  for (const tls of transports) {
    const g = (s: ServerName, k: string): number => med('idle', tls, 0, 0, s, k);
    rows.push(`| ${tname(tls)} | ${a['idle-conns']} | ${f0(g('go', 'bytesPerConn'))} | ${f0(g('wiremesh', 'bytesPerConn'))} | **${f2(g('wiremesh', 'bytesPerConn') / g('go', 'bytesPerConn'))}×** | ${f2(g('go', 'connectSecs'))} / ${f2(g('wiremesh', 'connectSecs'))} |`);
  }
  return rows.join('\n');
}

/** The load generator's TCP/TLS stack, as its runs reported it. */
function clientName(): string {
  const seen = new Set(results.map((x) => (x.r as Record<string, unknown>).client).filter((c) => typeof c === 'string'));
  return seen.size === 0 ? (a.client ?? 'default') : [...seen].join(', ');
}

function report(): string {
  const steals = results.map((x) => x.r.stealPct ?? 0);
  const meanSteal = steals.length === 0 ? 0 : steals.reduce((x, y) => x + y, 0) / steals.length;
  // A saved run (--report) says how many runs it had; the flags of this invocation do not.
  const n = results.length === 0 ? runs : Math.max(...results.filter((x) => x.test !== 'idle').map((x) => x.run + 1));
  const parts = [`Medians of ${n} runs (idle memory: ${a['idle-runs']}); relay on CPU ${RELAY_CPU}, load generator on CPU ${LOADGEN_CPU} (client stack: ${clientName()}); ${a.seconds} s window after ${a.warmup} s warm-up. Steal time during the runs: mean ${meanSteal.toFixed(1)} %, max ${Math.max(0, ...steals).toFixed(1)} %.`];
  if (tests.has('greedy')) parts.push('### Throughput, greedy senders (write until write() is false, wait for drain)', throughputTable('greedy'));
  if (tests.has('window')) parts.push(`### Throughput, closed loop (${a.window} frames in flight per sender)`, throughputTable('window'));
  if (tests.has('scale')) parts.push(`### Drop from ${a['scale-pairs'].replace(',', ' to ')} pairs within one run (closed loop, ${a.window} frames in flight; slices of 0.5 s alternate; medians of the relay-bound runs: relay CPU ≥ ${SCALE_RELAY_BOUND * 100} % in both halves)`, scaleTable());
  if (tests.has('latency')) parts.push('### Added latency (RTT/2 of a 1-packet ping-pong)', latencyTable());
  if (tests.has('idle')) parts.push('### Memory per idle connection (VmRSS delta / conns)', idleTable());
  return parts.join('\n\n');
}

await main();
