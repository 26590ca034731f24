// makeProbePlan as a table (spec/nat-traversal.md §7.2): full plan, families, disabled nodes, rotation, incremental.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DerpMap, DerpNode } from '../../../src/derpmap/derpmap.ts';
import { makeProbePlan, nodeMightDo, type Probe } from '../../../src/netcheck/plan.ts';

const node = (name: string, regionID: number, extra: Partial<DerpNode> = {}): DerpNode => ({ Name: name, RegionID: regionID, HostName: `${name}.example`, ...extra });

const MAP: DerpMap = {
  Regions: {
    '1': { RegionID: 1, RegionCode: 'aaa', RegionName: 'A', Nodes: [node('1a', 1, { IPv4: '192.0.2.1', IPv6: '2001:db8::1' }), node('1b', 1, { IPv4: '192.0.2.2', IPv6: '2001:db8::2' })] },
    '2': { RegionID: 2, RegionCode: 'bbb', RegionName: 'B', Nodes: [node('2a', 2, { IPv4: '192.0.2.3', IPv6: 'none' })] },
    '3': { RegionID: 3, RegionCode: 'ccc', RegionName: 'C', NoMeasureNoHome: true, Nodes: [node('3a', 3, { IPv4: '192.0.2.4' })] },
    '4': { RegionID: 4, RegionCode: 'ddd', RegionName: 'D', Nodes: [node('4a', 4, { IPv4: '192.0.2.5', STUNPort: -1 })] },
  },
};

const short = (ps: Probe[]): string[] => ps.map((p) => `${p.delayMs}:${p.regionID}/v${p.family}/${p.node}#${p.try}`);

test('full plan, IPv4 only: 3 tries per region at 0/100/200 ms, rotating nodes; NoMeasureNoHome and STUN-less skipped', () => {
  assert.deepEqual(short(makeProbePlan({ derpMap: MAP, haveV4: true, haveV6: false })), [
    '0:1/v4/1a#0', '0:2/v4/2a#0',
    '100:1/v4/1b#1', '100:2/v4/2a#1',
    '200:1/v4/1a#2', '200:2/v4/2a#2',
  ]);
});

test('full plan, dual stack: IPv6 only where the node may do IPv6 ("none" disables)', () => {
  assert.deepEqual(short(makeProbePlan({ derpMap: MAP, haveV4: true, haveV6: true })), [
    '0:1/v4/1a#0', '0:1/v6/1a#0', '0:2/v4/2a#0',
    '100:1/v4/1b#1', '100:1/v6/1b#1', '100:2/v4/2a#1',
    '200:1/v4/1a#2', '200:1/v6/1a#2', '200:2/v4/2a#2',
  ]);
});

test('no usable family: empty plan', () => {
  assert.deepEqual(makeProbePlan({ derpMap: MAP, haveV4: false, haveV6: false }), []);
});

test('incremental plan: 3 fastest + home, tries 2/2/1 and 4 for home, retries spaced by 1.2 × latency', () => {
  const big: DerpMap = { Regions: {} };
  for (let i = 1; i <= 6; i++) big.Regions[String(i)] = { RegionID: i, RegionCode: `r${i}`, RegionName: `R${i}`, Nodes: [node(`${i}a`, i, { IPv4: `192.0.2.${i}` })] };
  const last = { regionLatencyMs: new Map([[1, 50], [2, 10], [3, 20], [4, 30], [5, 40], [6, 60]]), preferredDERP: 6 };
  const plan = makeProbePlan({ derpMap: big, haveV4: true, haveV6: false, last });
  assert.deepEqual(short(plan), [
    '0:2/v4/2a#0', '0:3/v4/3a#0', '0:4/v4/4a#0', '0:6/v4/6a#0',
    '12:2/v4/2a#1', '24:3/v4/3a#1', '72:6/v4/6a#1', '244:6/v4/6a#2', '366:6/v4/6a#3',
  ]);
});

test('nodeMightDo: literals, "none", host names, STUN disabled', () => {
  const rows: [Partial<DerpNode>, 4 | 6, boolean][] = [
    [{ IPv4: '192.0.2.1' }, 4, true],
    [{ IPv4: 'none' }, 4, false],
    [{ IPv4: '2001:db8::1' }, 4, false],
    [{}, 4, true],
    [{}, 6, true],
    [{ HostName: '192.0.2.9' }, 6, false],
    [{ IPv6: '2001:db8::1' }, 6, true],
    [{ STUNPort: -1, IPv4: '192.0.2.1' }, 4, false],
    [{ STUNTestIP: '127.0.0.1' }, 4, true],
  ];
  for (const [extra, fam, want] of rows) assert.equal(nodeMightDo(node('x', 1, extra), fam), want, JSON.stringify(extra));
});
