// derpprobe rendering (spec/derp.md §18): Go Duration.String formatting (fast-check) and the HTML status page
// (one row per probe, failures first, everything escaped).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatGoDuration } from '../../../src/prober/util.ts';
import { escapeHtml, formatAge, renderStatusPage } from '../../../src/prober/status-page.ts';
import { renderMetrics } from '../../../src/prober/metrics.ts';
import type { ProbeInfo } from '../../../src/prober/prober.ts';

test('formatGoDuration matches Go Duration.String', () => {
  const table: Array<[number, string]> = [
    [0, '0s'], [0.000001, '1ns'], [0.000999, '999ns'], [0.251098, '251.098µs'], [0.001, '1µs'], [28.009797, '28.009797ms'],
    [1, '1ms'], [999.999999, '999.999999ms'], [999.9999999, '1s'], [1000, '1s'], [1500, '1.5s'], [60_000, '1m0s'], [123_000.000001, '2m3.000000001s'],
    [3_600_000, '1h0m0s'], [-1500, '-1.5s'], [518_400_000, '144h0m0s'],
  ];
  for (const [ms, want] of table) assert.equal(formatGoDuration(ms), want, `${ms}`);
});

test('formatGoDuration output always parses as a Go duration shape', () => {
  fc.assert(fc.property(fc.double({ min: 0, max: 1e9, noNaN: true }), (ms) => {
    assert.match(formatGoDuration(ms), /^(0s|\d+(\.\d+)?(ns|µs|ms|s)|(\d+h)?(\d+m)?\d+(\.\d+)?s)$/);
  }));
});

const info = (name: string, over: Partial<ProbeInfo> = {}): ProbeInfo => ({
  name, class: 'derp_mesh', labels: { region: 'loc', derp_path: 'single' }, intervalMs: 15_000, continuous: false,
  status: 'succeeded', start: 1000, end: 1012, latencyMs: 12.5, error: null,
  history: [{ start: 1000, end: 1012, ok: true, latencyMs: 12.5, error: null }],
  attempts: { ok: 1, fail: 0 }, seconds: { ok: 0.0125, fail: 0 }, ...over,
});

test('status page: one row per probe, failures first, latency, age, error; everything escaped', () => {
  const probes = [
    info('derp/loc/900a/900a/mesh'),
    info('derp/loc/900b/tls', {
      status: 'failed', latencyMs: null, error: '<script>alert(1)</script> & "x"',
      history: [{ start: 0, end: 5, ok: true, latencyMs: 5, error: null }, { start: 900, end: 1012, ok: false, latencyMs: 112, error: '<script>alert(1)</script> & "x"' }],
    }),
    info('derp/loc/900c/udp', { status: 'unknown', start: null, end: null, latencyMs: null, history: [] }),
  ];
  const html = renderStatusPage(probes, { title: 'DERP <Prober>', now: 4012, source: 'file:///m.json?a=<b>' });
  assert.ok(!html.includes('<script>alert'));
  assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;'));
  assert.ok(html.includes('<title>DERP &lt;Prober&gt;</title>'));
  const rows = [...html.matchAll(/<tr class="st-(\w+)" data-probe="([^"]+)">/g)].map((m) => [m[1], m[2]]);
  assert.deepEqual(rows, [['bad', 'derp/loc/900b/tls'], ['pending', 'derp/loc/900c/udp'], ['good', 'derp/loc/900a/900a/mesh']]);
  assert.ok(html.includes('12.5ms'));
  assert.ok(html.includes('3s ago'));
  assert.ok(html.includes('3 probes') && html.includes('1 good') && html.includes('1 bad'));
  assert.ok(html.includes('/debug/probe-run?name=derp%2Floc%2F900b%2Ftls'));
  // A probe running again keeps showing its last result.
  const again = renderStatusPage([info('p', { status: 'running' })], { title: 't', now: 2000 });
  assert.match(again, /b-good">good<\/span> <span class="run">running/);
});

test('escapeHtml leaves no markup characters, for any string', () => {
  fc.assert(fc.property(fc.string(), (s) => {
    assert.doesNotMatch(escapeHtml(s), /[<>"']/);
  }));
});

test('formatAge', () => {
  assert.deepEqual([400, 12_000, 184_000, 7_500_000].map(formatAge), ['400ms', '12s', '3m4s', '2h5m']);
});

test('metrics: Go derpprobe names, labels, escaping, class metrics and histograms', () => {
  const text = renderMetrics([
    { info: info('derp/loc/900a/900a/mesh'), classMetrics: [] },
    { info: info('derp/"q"\\n', { status: 'failed', latencyMs: null, history: [{ start: 1, end: 2, ok: false, latencyMs: 1, error: 'x' }], attempts: { ok: 0, fail: 1 } }), classMetrics: [
      { name: 'derp_qd_probe_dropped_packets', help: 'Total packets dropped', type: 'counter', value: 3 },
      { name: 'derp_qd_probe_delays_seconds', help: 'd', type: 'gauge', value: 0, histogram: { buckets: [[0.005, 1], [1, 2]], sum: 0.5, count: 2 } },
    ] },
  ], (ms) => 1_700_000_000 + ms / 1000);
  assert.match(text, /# TYPE derpprobe_result gauge/);
  assert.match(text, /derpprobe_result\{class="derp_mesh",derp_path="single",name="derp\/loc\/900a\/900a\/mesh",region="loc"\} 1/);
  assert.match(text, /derpprobe_latency_millis\{[^}]*name="derp\/loc\/900a\/900a\/mesh"[^}]*\} 13/);
  assert.match(text, /derpprobe_result\{[^}]*name="derp\/\\"q\\"\\\\n"[^}]*\} 0/);
  assert.match(text, /derpprobe_attempts_total\{[^}]*status="fail"\} 1/);
  assert.match(text, /derpprobe_end_secs\{[^}]*\} 1700000001/);
  assert.match(text, /# TYPE derp_qd_probe_delays_seconds histogram/);
  assert.match(text, /derp_qd_probe_delays_seconds_bucket\{[^}]*le="\+Inf"[^}]*\} 2/);
  assert.match(text, /derp_qd_probe_dropped_packets\{[^}]*\} 3/);
  assert.equal(text.match(/# TYPE derpprobe_result /g)!.length, 1, 'one TYPE line per family');
});
