/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): the top functions by self time and by inclusive time,
 * as shares of all samples. Used to find where the relay spends its core (docs/BENCHMARKS.md "Profile").
 *
 *   node bench/prof-top.ts FILE.cpuprofile [--top 30]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
}

const { values: a, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '30' } } });
const prof = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const hits = new Map<number, number>();
for (const s of prof.samples) hits.set(s, (hits.get(s) ?? 0) + 1);
const total = prof.samples.length;
const label = (n: Node): string => {
  const f = n.callFrame;
  const file = f.url.replace(/^.*\/(src|bench|node_modules)\//, '$1/').replace(/^node:/, '');
  return `${f.functionName || '(anon)'} ${file}:${f.lineNumber + 1}`;
};
const self = new Map<string, number>();
const incl = new Map<string, number>();
for (const [id, h] of hits) {
  const n = byId.get(id)!;
  self.set(label(n), (self.get(label(n)) ?? 0) + h);
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const l = label(byId.get(cur)!);
    if (seen.has(l)) continue;
    seen.add(l);
    incl.set(l, (incl.get(l) ?? 0) + h);
  }
}
const top = Number(a.top);
const show = (title: string, m: Map<string, number>): void => {
  process.stdout.write(`## ${title} (${total} samples)\n`);
  for (const [l, h] of [...m].sort((x, y) => y[1] - x[1]).slice(0, top)) process.stdout.write(`${((h / total) * 100).toFixed(1).padStart(5)} %  ${l}\n`);
};
show('self', self);
show('inclusive', incl);
