/**
 * STUN benchmark driver (issue #6 §7 "Speed"; method of spec/node-performance.md: server pinned to CPU 1, load
 * generator to CPU 0, medians of N runs). In ONE run it starts our StunServer (bench/stun-server.ts), coturn
 * (`turnserver -S`) and the Go derper's STUN listener, alternates them per run, and prints a markdown table of
 * answered requests per second with ratios. Generic RFC 5389 requests go to ours and coturn (the Go derper
 * answers only `tailnode` requests); `tailnode` requests go to all three.
 *
 *   node bench/run-stun.ts [--runs 3] [--seconds 3] [--warmup 1] [--sockets 64] [--window 8] [--json out.json]
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { median } from './proc.ts';
import { NODE, runJson, type Running, startCoturn, startGoDerper, startWiremeshStun } from './servers.ts';

const SERVER_CPU = 1;
const LOADGEN_CPU = 0;

const { values: a } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    sockets: { type: 'string', default: '64' },
    window: { type: 'string', default: '8' },
    json: { type: 'string' },
  },
});
const runs = Number(a.runs);

const PLAN: Record<string, string[]> = { generic: ['wiremesh', 'coturn'], tailnode: ['wiremesh', 'go', 'coturn'] };
const results: { kind: string; server: string; run: number; r: Record<string, number> }[] = [];

const t0 = Date.now();
const servers: Record<string, Running> = {
  wiremesh: await startWiremeshStun(SERVER_CPU),
  coturn: await startCoturn(SERVER_CPU),
  go: await startGoDerper(SERVER_CPU, false),
};
await new Promise((r) => setTimeout(r, 500));
try {
  for (const [kind, names] of Object.entries(PLAN)) {
    for (let run = 0; run < runs; run++) {
      const order = run % 2 === 0 ? names : [...names].reverse();
      for (const name of order) {
        const s = servers[name]!;
        const argv = [NODE, 'bench/stun-bench.ts', '--host', s.host, '--port', String(s.stunPort), '--pid', String(s.pid), '--kind', kind,
          '--sockets', a.sockets, '--window', a.window, '--seconds', a.seconds, '--warmup', a.warmup];
        try {
          const r = await runJson(LOADGEN_CPU, argv);
          results.push({ kind, server: name, run, r });
          process.stderr.write(`stun ${kind} ${name} #${run}: ${JSON.stringify(r)}\n`);
        } catch (e) {
          process.stderr.write(`stun ${kind} ${name} failed: ${(e as Error).message}\n`);
        }
      }
    }
  }
} finally {
  for (const s of Object.values(servers)) await s.stop();
}
if (a.json !== undefined) writeFileSync(a.json, JSON.stringify(results, null, 1));

const med = (kind: string, server: string, key: string): number =>
  median(results.filter((x) => x.kind === kind && x.server === server).map((x) => x.r[key]!));
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '–');
const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(0)} %` : '–');
const rows = [
  `Medians of ${runs} runs; server on CPU ${SERVER_CPU}, load generator on CPU ${LOADGEN_CPU}; ${a.sockets} sockets × ${a.window} requests in flight; ${a.seconds} s window after ${a.warmup} s warm-up.`,
  '',
  '| request | server | k answered/s | answered share | server CPU | wiremesh ratio |',
  '|---|---|---|---|---|---|',
];
for (const [kind, names] of Object.entries(PLAN)) {
  for (const name of names) {
    const ratio = name === 'wiremesh' ? '' : `**${f2(med(kind, 'wiremesh', 'kreqs') / med(kind, name, 'kreqs'))}×**`;
    rows.push(`| ${kind} | ${name === 'go' ? 'Go derper' : name} | ${f1(med(kind, name, 'kreqs'))} | ${pct(med(kind, name, 'answeredShare'))} | ${pct(med(kind, name, 'serverCpu'))} | ${ratio} |`);
  }
}
process.stdout.write(rows.join('\n') + `\n\n_total ${((Date.now() - t0) / 60000).toFixed(1)} min_\n`);
