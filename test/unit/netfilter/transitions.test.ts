/**
 * Mode transitions (spec/netfilter.md §6, §10) as a table against a fake iptables: every from→to pair ends in
 * the state §10 lists, applying twice changes nothing, other programs' rules survive, and drift is reported.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IptablesBackend } from '../../../src/netfilter/backend.ts';
import { Netfilter, cleanupAll } from '../../../src/netfilter/manager.ts';
import { defaultConfig, Mode, MODES, type Mode as ModeT } from '../../../src/netfilter/rules.ts';
import { silentLogger } from '../../../src/log.ts';
import { FakeIptables } from './fake-iptables.ts';

const cfg = (mode: ModeT, over = {}) => defaultConfig({ mode, port: 41641, addrs: ['100.101.102.104', 'fd7a:115c:a1e0::1234'], ...over });

/** §4.1 listing (v4), in iptables-save order for a fresh host. */
const ON_V4 = [
  '*filter',
  ':INPUT ACCEPT [0:0]',
  ':FORWARD ACCEPT [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  ':ts-input - [0:0]',
  ':ts-forward - [0:0]',
  '-A INPUT -j ts-input',
  '-A FORWARD -j ts-forward',
  '-A ts-input -s 100.101.102.104/32 -i lo -j ACCEPT',
  '-A ts-input -i tailscale0 -j ACCEPT',
  '-A ts-input -p udp -m udp --dport 41641 -j ACCEPT',
  '-A ts-input -s 100.115.92.0/23 ! -i tailscale0 -j RETURN',
  '-A ts-input -s 100.64.0.0/10 ! -i tailscale0 -j DROP',
  '-A ts-forward -i tailscale0 -j MARK --set-xmark 0x40000/0xff0000',
  '-A ts-forward -m mark --mark 0x40000/0xff0000 -j ACCEPT',
  '-A ts-forward -s 100.64.0.0/10 -o tailscale0 -j DROP',
  '-A ts-forward -o tailscale0 -j ACCEPT',
  'COMMIT',
  '*nat',
  ':PREROUTING ACCEPT [0:0]',
  ':INPUT ACCEPT [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  ':POSTROUTING ACCEPT [0:0]',
  ':ts-postrouting - [0:0]',
  '-A POSTROUTING -j ts-postrouting',
  '-A ts-postrouting -m mark --mark 0x40000/0xff0000 -j MASQUERADE',
  'COMMIT',
  '*mangle',
  ':PREROUTING ACCEPT [0:0]',
  ':INPUT ACCEPT [0:0]',
  ':FORWARD ACCEPT [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  ':POSTROUTING ACCEPT [0:0]',
  '-A PREROUTING -m conntrack --ctstate RELATED,ESTABLISHED -m connmark ! --mark 0x0/0xff0000 -j CONNMARK --restore-mark --nfmask 0xff0000 --ctmask 0xff0000',
  '-A OUTPUT -m conntrack --ctstate NEW -m mark ! --mark 0x0/0xff0000 -j CONNMARK --save-mark --nfmask 0xff0000 --ctmask 0xff0000',
  'COMMIT',
].join('\n') + '\n';

const rulesOf = (save: string): string[] => save.split('\n').filter((l) => l.startsWith('-A ') || l.startsWith(':ts-'));
const builtinRules = (save: string): string[] => rulesOf(save).filter((l) => /^-A (INPUT|FORWARD|POSTROUTING|PREROUTING|OUTPUT) /.test(l));

async function setup(): Promise<{ fake: FakeIptables; nf: Netfilter }> {
  const fake = new FakeIptables();
  return { fake, nf: new Netfilter(await IptablesBackend.create(fake.exec, 'iptables'), silentLogger) };
}

describe('netfilter transitions (fake iptables)', () => {
  it('off→on writes exactly the §4.1 listing, and applying again runs nothing', async () => {
    const { fake, nf } = await setup();
    await nf.apply(cfg(Mode.On));
    assert.equal(fake.save('ip'), ON_V4);
    assert.ok(rulesOf(fake.save('ip6')).includes('-A ts-input -s fd7a:115c:a1e0::1234/128 -i lo -j ACCEPT'));
    assert.ok(!fake.save('ip6').includes('100.64.0.0/10'), 'no v6 CGNAT rules');
    assert.deepEqual(await nf.apply(cfg(Mode.On)), []);
  });

  for (const from of MODES) {
    for (const to of MODES) {
      it(`${from} → ${to} ends in the §10 state`, async () => {
        const { fake, nf } = await setup();
        fake.exec('iptables', ['-I', 'INPUT', '1', '-s', '198.51.100.1/32', '-j', 'DROP']); // someone else's rule
        await nf.apply(cfg(from));
        const before = fake.save('ip');
        await nf.apply(cfg(to));
        const after = fake.save('ip');
        const { fake: ref, nf: refNf } = await setup();
        ref.exec('iptables', ['-I', 'INPUT', '1', '-s', '198.51.100.1/32', '-j', 'DROP']);
        await refNf.apply(cfg(to));
        if (!(from === Mode.On && to === Mode.On)) assert.deepEqual(rulesOf(after).sort(), rulesOf(ref.save('ip')).sort(), 'same rules as a fresh apply');
        assert.ok(after.includes('-A INPUT -s 198.51.100.1/32 -j DROP'), 'foreign rule kept');
        if (to === Mode.On) assert.match(after, /:INPUT ACCEPT \[0:0\]\n[^]*?-A INPUT -j ts-input\n-A INPUT -s 198.51.100.1/, 'jump is rule 1');
        if (to === Mode.NoDivert) {
          assert.deepEqual(builtinRules(after), ['-A INPUT -s 198.51.100.1/32 -j DROP'], 'no jumps, no connmark');
          if (from === Mode.On) {
            const ours = (s: string) => rulesOf(s).filter((l) => / ts-|:ts-/.test(l) && !/^-A (INPUT|FORWARD|POSTROUTING) /.test(l));
            assert.deepEqual(ours(after), ours(before), 'on→nodivert keeps chain contents');
          }
        }
        if (to === Mode.Off) assert.deepEqual(rulesOf(after), ['-A INPUT -s 198.51.100.1/32 -j DROP']);
        assert.deepEqual((await nf.status(cfg(to))).drift, []);
        assert.equal((await nf.status(cfg(to))).installed, to);
      });
    }
  }

  it('nodivert keeps an admin-added jump; off removes it so the chains can go', async () => {
    const { fake, nf } = await setup();
    await nf.apply(cfg(Mode.NoDivert));
    await fake.exec('iptables', ['-I', 'INPUT', '1', '-j', 'ts-input']);
    fake.calls.length = 0;
    assert.deepEqual(await nf.apply(cfg(Mode.NoDivert)), []);
    assert.ok(fake.calls.every((c) => c.includes('-save') || c.includes(' -S')), 'read-only');
    await nf.apply(cfg(Mode.Off));
    assert.deepEqual(rulesOf(fake.save('ip')), []);
  });

  it('nodivert→on keeps the UDP-port and stateful rules (Tailscale loses them, §6)', async () => {
    const { fake, nf } = await setup();
    await nf.apply(cfg(Mode.NoDivert, { stateful: true }));
    await nf.apply(cfg(Mode.On, { stateful: true }));
    const s = fake.save('ip');
    assert.ok(s.includes('--dport 41641') && s.includes('! --ctstate RELATED,ESTABLISHED -j DROP'));
    assert.match(s, /-j DROP\n-A ts-forward -o tailscale0 -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP\n-A ts-forward -o tailscale0 -j ACCEPT/);
  });

  it('reports drift: a moved jump, a flushed chain, a missing connmark rule — then one apply restores all', async () => {
    const { fake, nf } = await setup();
    await nf.apply(cfg(Mode.On));
    await fake.exec('iptables', ['-I', 'INPUT', '1', '-j', 'ACCEPT']);
    await fake.exec('iptables', ['-F', 'ts-forward']);
    await fake.exec('iptables', ['-t', 'mangle', '-F', 'PREROUTING']);
    const d = (await nf.status(cfg(Mode.On))).drift;
    assert.deepEqual(d, [
      'ip filter INPUT: jump to ts-input moved to position 2, rule 1 is "-j ACCEPT"',
      'ip filter ts-forward: flushed (0 of 4 rules)',
      'ip mangle PREROUTING: connmarkRestore rule missing',
    ]);
    await nf.apply(cfg(Mode.On), Mode.On);
    assert.deepEqual((await nf.status(cfg(Mode.On))).drift, []);
    assert.deepEqual(builtinRules(fake.save('ip')).slice(0, 2), ['-A INPUT -j ts-input', '-A INPUT -j ACCEPT']);
  });

  it('start-up cleanup removes chains and jumps, keeps connmark and foreign rules', async () => {
    const { fake, nf } = await setup();
    fake.present.delete('nft');
    await fake.exec('iptables', ['-A', 'INPUT', '-s', '198.51.100.1/32', '-j', 'DROP']);
    await nf.apply(cfg(Mode.On));
    await cleanupAll(fake.exec, 'tailscale0', silentLogger);
    const s = fake.save('ip');
    assert.ok(!s.includes('ts-'), s);
    assert.ok(s.includes('--restore-mark') && s.includes('198.51.100.1'));
  });

  it('v6 without NAT support: no v6 ts-postrouting and no v6 nat hook', async () => {
    const fake = new FakeIptables();
    const base = fake.exec;
    const exec: typeof base = (cmd, args, input) => (cmd === 'ip6tables' && args.includes('nat') ? Promise.resolve({ stdout: '', stderr: 'no nat', code: 1 }) : base(cmd, args, input));
    const b = await IptablesBackend.create(exec, 'iptables');
    assert.deepEqual(b.caps, { ipv6: true, ipv6Nat: false });
    await new Netfilter(b, silentLogger).apply(cfg(Mode.On));
    assert.ok(!fake.save('ip6').includes('ts-postrouting'));
  });
});
