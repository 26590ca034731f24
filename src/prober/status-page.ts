/**
 * The prober's human status page (spec/derp.md §18 `/`): one table row per probe with its status, last latency,
 * the age of its last result, its recent history and its error, failures first so a person sees them at a
 * glance. Pure: renders HTML from ProbeInfo snapshots; every interpolated string is escaped.
 */
import type { ProbeInfo } from './prober.ts';
import { formatGoDuration } from './util.ts';

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

export interface StatusPageOptions {
  title: string;
  /** Clock time (ms) the ages are measured from. */
  now: number;
  /** Human description of the map source, shown under the title. */
  source?: string;
  /** Seconds between automatic reloads; 0 disables. */
  refreshSecs?: number;
}

/** Age in a compact human form: `850ms`, `12s`, `3m4s`, `2h5m`. */
export function formatAge(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

/** The last result's verdict (a probe running again keeps showing its last result); 'pending' before any. */
function verdict(p: ProbeInfo): 'good' | 'bad' | 'pending' {
  const last = p.history[p.history.length - 1];
  return last === undefined ? 'pending' : last.ok ? 'good' : 'bad';
}

function rank(p: ProbeInfo): number {
  const v = verdict(p);
  return v === 'bad' ? 0 : v === 'pending' ? 1 : 2;
}

function row(p: ProbeInfo, now: number): string {
  const status = verdict(p);
  const last = p.history[p.history.length - 1];
  const latency = last?.ok === true ? formatGoDuration(last.latencyMs) : '–';
  const age = p.end !== null ? `${formatAge(now - p.end)} ago` : '–';
  const hist = p.history.map((r) => `<span class="${r.ok ? 'ok' : 'ko'}" title="${r.ok ? 'good' : escapeHtml(r.error ?? 'bad')}">${r.ok ? '●' : '✕'}</span>`).join('');
  const err = last?.ok === false ? escapeHtml(last.error ?? '') : '';
  const run = `/debug/probe-run?name=${encodeURIComponent(p.name)}`;
  return `<tr class="st-${status}" data-probe="${escapeHtml(p.name)}">` +
    `<td class="name"><a href="${escapeHtml(run)}" title="run now">${escapeHtml(p.name)}</a></td>` +
    `<td>${escapeHtml(p.class)}</td>` +
    `<td><span class="badge b-${status}">${status}</span>${p.status === 'running' ? ' <span class="run">running</span>' : ''}</td>` +
    `<td class="num">${escapeHtml(latency)}</td>` +
    `<td class="num">${escapeHtml(age)}</td>` +
    `<td class="hist">${hist}</td>` +
    `<td class="err">${err}</td></tr>`;
}

const CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{font-size:22px;margin:0 0 4px}.sub{color:#5a6372;margin-bottom:16px}
.sum span{display:inline-block;margin-right:16px;font-weight:600}.sum .g{color:#1a7f37}.sum .b{color:#cf222e}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002}
th,td{padding:6px 10px;border-bottom:1px solid #e6e8eb;text-align:left;vertical-align:top}
th{background:#f1f3f5;font-weight:600;font-size:13px}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.name a{color:#0b57d0;text-decoration:none;font-family:ui-monospace,monospace}td.err{color:#cf222e;font-family:ui-monospace,monospace;font-size:12px;word-break:break-word}
tr.st-bad{background:#fff5f5}.badge{padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.b-good{background:#dafbe1;color:#1a7f37}.b-bad{background:#ffebe9;color:#cf222e}.b-pending{background:#eef1f4;color:#5a6372}.run{color:#5a6372;font-size:12px}
.hist span{font-size:11px;margin-right:1px}.hist .ok{color:#2da44e}.hist .ko{color:#cf222e}
.links{margin-top:12px;color:#5a6372}.links a{color:#0b57d0}`;

/** Renders the whole page. */
export function renderStatusPage(probes: readonly ProbeInfo[], o: StatusPageOptions): string {
  const sorted = [...probes].sort((a, b) => rank(a) - rank(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const good = probes.filter((p) => verdict(p) === 'good').length;
  const bad = probes.filter((p) => verdict(p) === 'bad').length;
  const pending = probes.length - good - bad;
  const refresh = (o.refreshSecs ?? 0) > 0 ? `<meta http-equiv="refresh" content="${o.refreshSecs}">` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">${refresh}<title>${escapeHtml(o.title)}</title><style>${CSS}</style></head>
<body><h1>${escapeHtml(o.title)}</h1>
<div class="sub">${o.source !== undefined ? `DERP map: ${escapeHtml(o.source)}` : ''}</div>
<div class="sum"><span>${probes.length} probes</span><span class="g">${good} good</span><span class="b">${bad} bad</span>${pending > 0 ? `<span>${pending} pending</span>` : ''}</div>
<table id="probes"><thead><tr><th>Probe</th><th>Class</th><th>Status</th><th>Latency</th><th>Age</th><th>Recent</th><th>Error</th></tr></thead>
<tbody>
${sorted.map((p) => row(p, o.now)).join('\n')}
</tbody></table>
<div class="links"><a href="/debug/varz">Prober metrics</a> · <a href="/debug/probe-all">Run all probes</a> · <a href="/healthz">healthz</a></div>
</body></html>
`;
}
