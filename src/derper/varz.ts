/**
 * Prometheus text rendering of derper's expvar-style metric sets (spec/derp.md §16.4): a set `derp` whose keys
 * are Go's expvar names becomes `derp_<name>` with a `gauge_`/`counter_` prefix deciding the type and then
 * stripped; unprefixed numbers are counters (as Go's tsweb varz renders expvar.Int). Nested objects become
 * labelled series (one level: `{kind}`, two levels: `{reason,kind}`), with label names from LABEL_NAMES.
 * Hand-rendered rather than prom-client: the engine already keeps its own counters and returns snapshots, so a
 * registry would only copy them; rendering snapshots keeps Go's exact names and needs no global state.
 */

export type MetricValue = number | { readonly [k: string]: MetricValue };

/** Label names for labelled metrics, by their Prometheus name without the set prefix. */
export const LABEL_NAMES: Readonly<Record<string, readonly string[]>> = {
  packets_received_kind: ['kind'],
  packets_dropped: ['reason', 'kind'],
  bytes_dropped: ['reason', 'kind'],
  closes_by_code: ['code'],
  requests: ['disposition'],
  addrfamily: ['family'],
  responses: ['kind'],
  tls_request_version: ['version'],
};

export interface MetricSet {
  /** Prefix of every name (e.g. `derp`, `stun`, `derper`). */
  prefix: string;
  /** An expvar-style object: numbers or (nested) maps of numbers; other values are skipped. */
  values: object;
}

const sanitize = (s: string): string => s.replace(/[^A-Za-z0-9_]/g, '_');
const escapeLabel = (s: string): string => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

function typeAndName(key: string): { type: 'gauge' | 'counter'; name: string } {
  if (key.startsWith('gauge_')) return { type: 'gauge', name: key.slice(6) };
  if (key.startsWith('counter_')) return { type: 'counter', name: key.slice(8) };
  return { type: 'counter', name: key };
}

function samples(v: unknown, labels: readonly string[], depth: number, acc: Array<[string[], number]>, path: string[]): void {
  if (typeof v === 'number') {
    if (Number.isFinite(v)) acc.push([path, v]);
    return;
  }
  if (typeof v === 'bigint') {
    acc.push([path, Number(v)]);
    return;
  }
  if (v === null || typeof v !== 'object' || depth >= 2) return;
  for (const [k, child] of Object.entries(v)) samples(child, labels, depth + 1, acc, [...path, k]);
}

/** Renders the sets as Prometheus text exposition format 0.0.4. */
export function renderPrometheus(sets: readonly MetricSet[]): string {
  const out: string[] = [];
  for (const set of sets) {
    for (const [key, v] of Object.entries(set.values)) {
      const { type, name } = typeAndName(key);
      const full = sanitize(`${set.prefix}_${name}`);
      const labelNames = LABEL_NAMES[name] ?? ['label', 'label2'];
      const acc: Array<[string[], number]> = [];
      samples(v, labelNames, 0, acc, []);
      if (acc.length === 0) continue;
      out.push(`# TYPE ${full} ${type}`);
      for (const [path, n] of acc) {
        const lbl = path.map((p, i) => `${labelNames[i] ?? `label${i + 1}`}="${escapeLabel(p)}"`).join(',');
        out.push(`${full}${lbl === '' ? '' : `{${lbl}}`} ${n}`);
      }
    }
  }
  return out.join('\n') + '\n';
}
