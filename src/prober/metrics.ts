/**
 * Prometheus metrics of the prober (spec/derp.md §18 `/debug/varz`), named as Go's derpprobe exports them with
 * namespace `derpprobe`: per probe `interval_secs`, `start_secs`, `end_secs`, `result`, `latency_millis`,
 * `attempts_total{status}`, `seconds_total{status}`, each labelled name/class plus the probe's labels, and the
 * class metrics of bw/qd probes. Pure text rendering; the process metrics of prom-client are appended by http.ts.
 */
import type { ClassMetric, ProbeInfo } from './prober.ts';

export const METRIC_NAMESPACE = 'derpprobe';

interface Family {
  help: string;
  type: 'gauge' | 'counter' | 'histogram';
  samples: string[];
}

const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

function labelText(labels: Readonly<Record<string, string>>): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return '';
  return `{${keys.map((k) => `${k}="${escapeLabel(labels[k]!)}"`).join(',')}}`;
}

const num = (v: number): string => (Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN');

export interface MetricsInput {
  info: ProbeInfo;
  classMetrics: ClassMetric[];
}

/**
 * Renders every probe's metrics. `toEpochSecs` converts a probe time (clock ms) to seconds since the epoch.
 */
export function renderMetrics(probes: readonly MetricsInput[], toEpochSecs: (clockMs: number) => number): string {
  const fams = new Map<string, Family>();
  const add = (name: string, help: string, type: Family['type'], labels: Record<string, string>, value: number): void => {
    let f = fams.get(name);
    if (f === undefined) fams.set(name, (f = { help, type, samples: [] }));
    f.samples.push(`${name}${labelText(labels)} ${num(value)}`);
  };
  const ns = METRIC_NAMESPACE;
  for (const { info: p, classMetrics } of probes) {
    const l: Record<string, string> = { ...p.labels, name: p.name, class: p.class };
    add(`${ns}_interval_secs`, 'Probe interval in seconds', 'gauge', l, p.intervalMs / 1000);
    if (p.start !== null) add(`${ns}_start_secs`, 'Latest probe start time (seconds since epoch)', 'gauge', l, Math.floor(toEpochSecs(p.start)));
    if (p.end === null) continue;
    add(`${ns}_end_secs`, 'Latest probe end time (seconds since epoch)', 'gauge', l, Math.floor(toEpochSecs(p.end)));
    const last = p.history[p.history.length - 1];
    add(`${ns}_result`, 'Latest probe result (1 = success, 0 = failure)', 'gauge', l, last?.ok === true ? 1 : 0);
    if (p.latencyMs !== null && p.latencyMs > 0) add(`${ns}_latency_millis`, 'Latest probe latency (ms)', 'gauge', l, Math.round(p.latencyMs));
    for (const status of ['fail', 'ok'] as const) {
      add(`${ns}_attempts_total`, 'Total number of probing attempts', 'counter', { ...l, status }, p.attempts[status]);
      add(`${ns}_seconds_total`, 'Total amount of time spent executing the probe', 'counter', { ...l, status }, p.seconds[status]);
    }
    for (const m of classMetrics) {
      if (m.histogram === undefined) {
        add(m.name, m.help, m.type, l, m.value);
        continue;
      }
      let f = fams.get(m.name);
      if (f === undefined) fams.set(m.name, (f = { help: m.help, type: 'histogram', samples: [] }));
      for (const [le, count] of m.histogram.buckets) f.samples.push(`${m.name}_bucket${labelText({ ...l, le: String(le) })} ${count}`);
      f.samples.push(`${m.name}_bucket${labelText({ ...l, le: '+Inf' })} ${m.histogram.count}`);
      f.samples.push(`${m.name}_sum${labelText(l)} ${num(m.histogram.sum)}`);
      f.samples.push(`${m.name}_count${labelText(l)} ${m.histogram.count}`);
    }
  }
  const out: string[] = [];
  for (const [name, f] of [...fams.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`, ...f.samples);
  }
  return out.length === 0 ? '' : out.join('\n') + '\n';
}
