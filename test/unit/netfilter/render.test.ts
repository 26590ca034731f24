/**
 * Rendering and parsing (spec/netfilter.md §4.1, §5.2, §5.3): iptables specs equal the saved form, the nft keys of
 * our rules equal the keys of the JSON nft 1.0.6 printed for them (golden, captured in a namespace), and both
 * parsers survive arbitrary input (fast-check) and round-trip.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { iptSpec, parseIptablesSave, planIptables, renderIptablesSave, splitSpec } from '../../../src/netfilter/iptables.ts';
import { exprKey, nftKey, nftText, parseNftJson, planNft } from '../../../src/netfilter/nftables.ts';
import { chainRules, defaultConfig, desiredState, validateConfig, parseMode, type Rule } from '../../../src/netfilter/rules.ts';
import { emptySnapshot, transitionSteps } from '../../../src/netfilter/state.ts';
import { hasCode } from '../../../src/errors.ts';
import { returnsOrThrowsTyped } from '../typed-errors.ts';

const C = { counter: { packets: 0, bytes: 0 } };
/** `nft -j list ruleset` expressions of rules written with nftText (nft 1.0.6, kernel 6.18). */
const GOLDEN: [Rule, 'ip' | 'ip6', unknown[]][] = [
  [{ kind: 'loopback', addr: '100.101.102.104' }, 'ip', [{ match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'lo*' } }, { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '100.101.102.104' } }, C, { accept: null }]],
  [{ kind: 'loopback', addr: 'fd7a:115c:a1e0::1234' }, 'ip6', [{ match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'lo*' } }, { match: { op: '==', left: { payload: { protocol: 'ip6', field: 'saddr' } }, right: 'fd7a:115c:a1e0::1234' } }, C, { accept: null }]],
  [{ kind: 'udpPort', port: 41641 }, 'ip', [{ match: { op: '==', left: { payload: { protocol: 'udp', field: 'dport' } }, right: 41641 } }, C, { accept: null }]],
  [{ kind: 'offTunSource', prefix: '100.64.0.0/10', verdict: 'drop' }, 'ip', [{ match: { op: '!=', left: { meta: { key: 'iifname' } }, right: 'tailscale0*' } }, { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: { prefix: { addr: '100.64.0.0', len: 10 } } } }, C, { drop: null }]],
  [{ kind: 'markFromTun' }, 'ip', [{ match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'tailscale0*' } }, C, { mangle: { key: { meta: { key: 'mark' } }, value: { '|': [{ '&': [{ meta: { key: 'mark' } }, 4278517759] }, 262144] } } }]],
  [{ kind: 'markedAccept' }, 'ip', [{ match: { op: '==', left: { '&': [{ meta: { key: 'mark' } }, 16711680] }, right: 262144 } }, C, { accept: null }]],
  [{ kind: 'masquerade' }, 'ip', [{ match: { op: '==', left: { '&': [{ meta: { key: 'mark' } }, 16711680] }, right: 262144 } }, C, { masquerade: null }]],
  [{ kind: 'jump', target: 'ts-input' }, 'ip', [C, { jump: { target: 'ts-input' } }]],
  [{ kind: 'connmarkRestore' }, 'ip', [{ match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } }, { match: { op: '!=', left: { '&': [{ ct: { key: 'mark' } }, 16711680] }, right: 0 } }, { mangle: { key: { meta: { key: 'mark' } }, value: { '&': [{ ct: { key: 'mark' } }, 16711680] } } }]],
  [{ kind: 'connmarkSave' }, 'ip', [{ match: { op: 'in', left: { ct: { key: 'state' } }, right: 'new' } }, { match: { op: '!=', left: { '&': [{ meta: { key: 'mark' } }, 16711680] }, right: 0 } }, { mangle: { key: { ct: { key: 'mark' } }, value: { '&': [{ meta: { key: 'mark' } }, 16711680] } } }]],
];

describe('netfilter rendering', () => {
  it('iptables specs are the §4.1 saved forms', () => {
    assert.equal(iptSpec({ kind: 'udpPort', port: 41641 }, 'tailscale0'), '-p udp -m udp --dport 41641 -j ACCEPT');
    assert.equal(iptSpec({ kind: 'markFromTun' }, 'wm0'), '-i wm0 -j MARK --set-xmark 0x40000/0xff0000');
    assert.equal(iptSpec({ kind: 'loopback', addr: 'fd7a:115c:a1e0::1' }, 'x'), '-s fd7a:115c:a1e0::1/128 -i lo -j ACCEPT');
    assert.equal(iptSpec({ kind: 'offTunSource', prefix: '100.115.92.0/23', verdict: 'return' }, 'tailscale0'), '-s 100.115.92.0/23 ! -i tailscale0 -j RETURN');
  });

  it('ts-input order is loopback, tun, UDP port, ChromeOS RETURN, CGNAT DROP (≥1.98); v6 has no CGNAT rules', () => {
    const c = defaultConfig({ port: 41641, addrs: ['100.101.102.104', 'fd7a:115c:a1e0::1234'] });
    assert.deepEqual(chainRules(c, 'ip').get('ts-input')!.map((r) => r.kind), ['loopback', 'tunAccept', 'udpPort', 'offTunSource', 'offTunSource']);
    assert.deepEqual(chainRules(c, 'ip6').get('ts-input')!.map((r) => r.kind), ['loopback', 'tunAccept', 'udpPort']);
    assert.deepEqual(chainRules({ ...c, stateful: true }, 'ip6').get('ts-forward')!.map((r) => r.kind), ['markFromTun', 'markedAccept', 'statefulDrop', 'toTunAccept']);
    assert.deepEqual(chainRules({ ...c, cgnat: 'return', snat: false }, 'ip').get('ts-input')!.slice(3), [{ kind: 'offTunSource', prefix: '100.64.0.0/10', verdict: 'return' }]);
    assert.deepEqual(chainRules({ ...c, snat: false }, 'ip').get('ts-postrouting'), []);
    const off = desiredState({ ...c, mode: 'off' }, { ipv6: true, ipv6Nat: true });
    assert.deepEqual([off.families, off.hooks, off.connmark], [[], false, false]);
  });

  it('nft keys of our rules equal the keys of what nft -j printed for them', () => {
    for (const [rule, fam, json] of GOLDEN) assert.equal(nftKey(rule, 'tailscale0', fam), exprKey(json), rule.kind);
    assert.equal(nftText({ kind: 'markFromTun' }, 'tailscale0', 'ip'), 'iifname "tailscale0*" counter meta mark set meta mark & 0xff00ffff | 0x00040000');
    assert.equal(exprKey(GOLDEN[7]![2]), 'jump ts-input');
  });

  it('rejects bad configs with NETFILTER_BAD_CONFIG', () => {
    const bad = [{ iface: '' }, { iface: 'a b' }, { iface: 'x'.repeat(16) }, { iface: 'lo' }, { iface: 'ts0;rm' }, { port: 0 }, { port: 70000 }, { addrs: ['1.2.3.999'] }, { addrs: ['-j ACCEPT'] }];
    for (const b of bad) assert.throws(() => validateConfig(defaultConfig(b)), (e) => hasCode(e, 'NETFILTER_BAD_CONFIG'), JSON.stringify(b));
    assert.throws(() => parseMode('auto'), (e) => hasCode(e, 'NETFILTER_BAD_CONFIG'));
  });
});

describe('iptables-save parser', () => {
  it('parses the real format, drops raw/security, and rejects garbage', () => {
    const t = parseIptablesSave('# x\n*raw\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT DROP [1:2]\n:ts-input - [0:0]\n-A INPUT -j ts-input\n-A ts-input -m comment --comment "a b" -j ACCEPT\nCOMMIT\n');
    assert.deepEqual([...t.keys()], ['filter']);
    assert.equal(t.get('filter')!.get('INPUT')!.policy, 'DROP');
    assert.deepEqual(splitSpec(t.get('filter')!.get('ts-input')!.rules[0]!.key), ['-m', 'comment', '--comment', 'a b', '-j', 'ACCEPT']);
    for (const bad of ['-A INPUT -j X\n', '*filter\n-A NOPE -j X\n', '*filter\n:\n', '*filter\nbogus\n']) {
      assert.throws(() => parseIptablesSave(bad), (e) => hasCode(e, 'NETFILTER_BAD_SAVE'));
    }
  });

  it('round-trips rendered dumps and never throws anything but NETFILTER_BAD_SAVE', () => {
    const word = fc.stringMatching(/^[A-Za-z0-9_.\-/!]{1,12}$/);
    const chain = fc.record({ name: fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,10}$/), base: fc.boolean(), rules: fc.array(fc.array(word, { minLength: 1, maxLength: 6 }).map((w) => w.join(' ')), { maxLength: 5 }) });
    fc.assert(
      fc.property(fc.uniqueArray(chain, { selector: (c) => c.name, maxLength: 5 }), fc.constantFrom('filter', 'nat', 'mangle'), (chains, table) => {
        const m = new Map(chains.map((c) => [c.name, { name: c.name, base: c.base, policy: c.base ? 'ACCEPT' : null, rules: c.rules.map((key) => ({ key })) }]));
        const tables = new Map([[table as 'filter', m]]);
        assert.deepEqual(parseIptablesSave(renderIptablesSave(tables)), tables);
      }),
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => void returnsOrThrowsTyped(() => parseIptablesSave(s), 'NETFILTER_BAD_SAVE')),
    );
  });
});

describe('nft -j parser', () => {
  const doc = (items: unknown[]): string => JSON.stringify({ nftables: [{ metainfo: { version: '1.0.6' } }, ...items] });
  it('keeps ip/ip6 filter/nat/mangle, counts every rule, and reads handles', () => {
    const r = parseNftJson(doc([
      { table: { family: 'ip', name: 'filter', handle: 1 } },
      { chain: { family: 'ip', table: 'filter', name: 'INPUT', handle: 1, type: 'filter', hook: 'input', prio: 0, policy: 'drop' } },
      { chain: { family: 'ip', table: 'filter', name: 'ts-input', handle: 2 } },
      { rule: { family: 'ip', table: 'filter', chain: 'INPUT', handle: 9, expr: GOLDEN[7]![2] } },
      { table: { family: 'inet', name: 'host', handle: 2 } },
      { chain: { family: 'inet', table: 'host', name: 'in', handle: 1, hook: 'input' } },
      { rule: { family: 'inet', table: 'host', chain: 'in', handle: 3, expr: [{ accept: null }] } },
    ]));
    assert.equal(r.ruleCount, 2);
    const input = r.snapshot.families.get('ip')!.get('filter')!.get('INPUT')!;
    assert.deepEqual(input, { name: 'INPUT', base: true, policy: 'drop', rules: [{ key: 'jump ts-input', handle: 9 }] });
    assert.equal(r.snapshot.families.size, 1);
  });
  it('throws only NETFILTER_BAD_NFT_JSON on arbitrary input', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json(), fc.jsonValue().map((v) => JSON.stringify({ nftables: [v] }))), (s) => void returnsOrThrowsTyped(() => parseNftJson(s), 'NETFILTER_BAD_NFT_JSON')),
    );
  });
});

describe('planners', () => {
  const want = desiredState(defaultConfig({ port: 41641 }), { ipv6: false, ipv6Nat: false });
  it('iptables: fresh → on is -N, -A…, -I 1 jumps, -I 1 connmark, in that order', () => {
    const cmds = planIptables(transitionSteps(null, 'on'), want, { families: new Map([['ip', new Map()]]) }).map((c) => c.args.slice(2, 4).join(' '));
    assert.deepEqual(cmds.slice(0, 3), ['-N ts-input', '-N ts-forward', '-N ts-postrouting']);
    assert.deepEqual(cmds.slice(-5), ['-I INPUT', '-I FORWARD', '-I POSTROUTING', '-I PREROUTING', '-I OUTPUT']);
    assert.ok(cmds.indexOf('-I INPUT') > cmds.lastIndexOf('-A ts-input'), 'chains filled before the jump');
  });
  it('nftables: fresh → on creates base chains, fills chains, inserts jumps; off on an empty host plans nothing', () => {
    const lines = planNft(transitionSteps(null, 'on'), want, emptySnapshot());
    assert.ok(lines.includes('add chain ip filter INPUT { type filter hook input priority filter; policy accept; }'));
    assert.ok(lines.includes('insert rule ip filter INPUT counter jump ts-input'));
    assert.ok(lines.indexOf('insert rule ip filter INPUT counter jump ts-input') > lines.indexOf('add rule ip filter ts-input udp dport 41641 counter accept'));
    const off = desiredState(defaultConfig({ mode: 'off' }), { ipv6: true, ipv6Nat: true });
    assert.deepEqual(planNft(transitionSteps('on', 'off'), off, emptySnapshot()), []);
  });
});
