// Report rendering (spec/nat-traversal.md §7.1, §7.7): Go duration syntax, time format, the text layout of
// `tailscale netcheck`, and the JSON field names, opt-bools and nanosecond latencies of `--format=json`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DerpMap } from '../../../src/derpmap/derpmap.ts';
import { emptyReport, formatJSON, formatLatency, formatText, formatTime, goDuration, reportToJSON } from '../../../src/netcheck/report.ts';

test('goDuration matches Go time.Duration.String()', () => {
  const rows: [number, string][] = [
    [0, '0s'], [1, '1ns'], [999, '999ns'], [1000, '1µs'], [1500, '1.5µs'], [400_000, '400µs'],
    [1_000_000, '1ms'], [12_300_000, '12.3ms'], [999_900_000, '999.9ms'], [1e9, '1s'], [1_234_500_000, '1.2345s'],
    [61e9, '1m1s'], [3_600e9, '1h0m0s'], [-1_500_000, '-1.5ms'],
  ];
  for (const [ns, s] of rows) assert.equal(goDuration(ns), s, String(ns));
});

test('latency is rounded to 0.1 ms like Duration.Round(time.Millisecond/10)', () => {
  assert.equal(formatLatency(0.41234), '400µs');
  assert.equal(formatLatency(12.34), '12.3ms');
  assert.equal(formatLatency(5), '5ms');
  assert.equal(formatLatency(1234.56), '1.2346s');
});

test('time prints as "2006-01-02 15:04:05.999999999Z07:00" (UTC, trailing zeros trimmed)', () => {
  assert.equal(formatTime(Date.UTC(2026, 10, 22, 3, 12, 0, 120)), '2026-11-22 03:12:00.12Z');
  assert.equal(formatTime(Date.UTC(2026, 10, 22, 3, 12, 0, 0)), '2026-11-22 03:12:00Z');
});

const DM: DerpMap = {
  Regions: {
    '1': { RegionID: 1, RegionCode: 'nyc', RegionName: 'New York City', Nodes: [] },
    '2': { RegionID: 2, RegionCode: 'sfo', RegionName: 'San Francisco', Nodes: [] },
    '10': { RegionID: 10, RegionCode: 'sea', RegionName: 'Seattle', Nodes: [] },
  },
};

function sample(): ReturnType<typeof emptyReport> {
  const r = emptyReport(Date.UTC(2026, 10, 22, 3, 12, 0, 5));
  r.udp = true;
  r.ipv4 = true;
  r.ipv4CanSend = true;
  r.osHasIPv6 = true;
  r.mappingVariesByDestIP = false;
  r.upnp = false;
  r.pmp = true;
  r.pcp = false;
  r.preferredDERP = 2;
  r.regionLatencyMs = new Map([[1, 71.234], [2, 12.3456]]);
  r.regionV4LatencyMs = new Map([[1, 71.234], [2, 12.3456]]);
  r.globalV4 = '203.0.113.1:41641';
  r.globalV4Counters = new Map([['203.0.113.1:41641', 2]]);
  return r;
}

test('text output has tailscale netcheck\'s lines, order and alignment', () => {
  assert.equal(formatText(sample(), DM), [
    '',
    'Report:',
    '\t* Time: 2026-11-22 03:12:00.005Z',
    '\t* UDP: true',
    '\t* IPv4: yes, 203.0.113.1:41641',
    '\t* IPv6: no, but OS has support',
    '\t* MappingVariesByDestIP: false',
    '\t* PortMapping: NAT-PMP',
    '\t* Nearest DERP: San Francisco',
    '\t* DERP latency:',
    '\t\t- sfo: 12.3ms  (San Francisco)',
    '\t\t- nyc: 71.2ms  (New York City)',
    '\t\t- sea:         (Seattle)',
    '',
  ].join('\n'));
});

test('text output variants: unknown mapping, unchecked port mapping, captive portal, no latency, verbose', () => {
  const r = emptyReport(0);
  r.captivePortal = true;
  r.doubleNAT = true;
  const t = formatText(r, DM);
  assert.match(t, /\t\* UDP: false\n\t\* IPv4: \(no addr found\)\n\t\* IPv6: no, unavailable in OS\n\t\* MappingVariesByDestIP: \n\t\* PortMapping: not checked\n\t\* CaptivePortal: true\n\t\* DoubleNAT: true\n\t\* Nearest DERP: unknown \(no response to latency probes\)\n$/);
  assert.match(formatText(sample(), DM, { verbose: true }), /\t\t- sfo: 12\.3ms {2}\(derp2, San Francisco\)\n/);
});

test('JSON uses Go field names, opt-bools as true/false/null and latencies in integer nanoseconds', () => {
  const j = reportToJSON(sample());
  assert.deepEqual(Object.keys(j), [
    'Now', 'UDP', 'IPv4', 'IPv6', 'IPv4CanSend', 'IPv6CanSend', 'OSHasIPv6', 'ICMPv4', 'MappingVariesByDestIP', 'UPnP', 'PMP', 'PCP',
    'PreferredDERP', 'RegionLatency', 'RegionV4Latency', 'RegionV6Latency', 'GlobalV4Counters', 'GlobalV6Counters', 'GlobalV4', 'GlobalV6',
    'CaptivePortal', 'DoubleNAT',
  ]);
  assert.equal(j.Now, '2026-11-22T03:12:00.005Z');
  assert.deepEqual(j.RegionLatency, { '1': 71_234_000, '2': 12_345_600 });
  assert.equal(j.RegionV6Latency, null);
  assert.equal(j.CaptivePortal, null);
  assert.equal(j.PMP, true);
  assert.deepEqual(j.GlobalV4Counters, { '203.0.113.1:41641': 2 });
  const text = formatJSON(sample());
  assert.match(text, /^\{\n\t"Now": /, 'indented with tabs like json.MarshalIndent(…, "", "\\t")');
  assert.deepEqual(JSON.parse(text), JSON.parse(JSON.stringify(j)));
});
