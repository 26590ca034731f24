/**
 * The reconciler (spec/netfilter.md §8, issues #11926/#2908) against real firewalls in a namespace: after
 * `iptables -F`, after another program inserts a rule above our jump (a ufw-like reload), and after
 * `nft flush ruleset`, the rules are back within RECONCILE_INTERVAL_MS plus one apply, with a log line naming
 * what moved; a program that keeps moving them hits the fight bound; nodivert/off hosts are never written to.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { isRoot, which } from '../../support/gobin.ts';
import { Lab } from '../../support/netns.ts';
import { IptablesBackend, NftablesBackend, type Backend } from '../../../src/netfilter/backend.ts';
import { netnsExec, recordingExec } from '../../../src/netfilter/exec.ts';
import { Netfilter } from '../../../src/netfilter/manager.ts';
import { defaultConfig, Mode } from '../../../src/netfilter/rules.ts';
import { createLogger } from '../../../src/log.ts';
import { realClock } from '../../../src/time/clock.ts';
import { RECONCILE_INTERVAL_MS } from '../../../src/netfilter/constants.ts';

const skip = !isRoot() ? 'needs root' : ['nft', 'iptables-nft', 'iptables-legacy'].find((b) => which(b) === null);
const REPORT = process.env.WIREMESH_NF_REPORT;
/** Detection ≤ one interval, plus one apply (a few iptables runs on a loaded 2-core machine). */
const BOUND_MS = RECONCILE_INTERVAL_MS + 4000;

const cfg = defaultConfig({ port: 41641, addrs: ['100.101.102.104', 'fd7a:115c:a1e0::1234'] });

for (const name of ['iptables-nft', 'iptables-legacy', 'nftables'] as const) {
  describe(`reconciler: ${name}`, { skip: skip === undefined ? false : `${skip} missing` }, () => {
    let lab: Lab;
    let ns: string;
    let backend: Backend;
    let nf: Netfilter;
    const lines: string[] = [];
    const sh = (cmd: string, args: string[], input?: string): string => lab.exec(ns, cmd, args, input === undefined ? {} : { input });
    const ipt = (args: string[]): string => sh(name === 'iptables-legacy' ? 'iptables-legacy' : 'iptables-nft', ['-w', ...args]);

    before(async () => {
      lab = new Lab('rc');
      ns = lab.netns('r');
      const exec = netnsExec(ns);
      backend = name === 'nftables' ? await NftablesBackend.create(exec) : await IptablesBackend.create(exec, name);
      nf = new Netfilter(backend, createLogger({ level: 'warn', write: (l) => lines.push(l) }));
    });
    after(() => lab?.cleanup());

    /** Disturbs the host with `disturb`, runs the real reconciler, returns ms until the state is back. */
    async function restoreTime(what: string, disturb: () => void, expectDrift: RegExp): Promise<number> {
      await nf.apply(cfg);
      assert.deepEqual((await nf.status(cfg)).drift, []);
      const rec = nf.reconciler(cfg, realClock)!;
      lines.length = 0;
      rec.start();
      try {
        disturb();
        const t0 = performance.now();
        assert.ok((await nf.status(cfg)).drift.length > 0, `${what} caused drift`);
        for (;;) {
          if ((await nf.status(cfg)).drift.length === 0) break;
          if (performance.now() - t0 > BOUND_MS * 2) assert.fail(`${what}: not restored in ${BOUND_MS * 2} ms`);
          await new Promise((r) => setTimeout(r, 50));
        }
        const ms = Math.round(performance.now() - t0);
        if (REPORT !== undefined) appendFileSync(REPORT, `reconcile ${name} ${what}: ${ms} ms\n`);
        assert.ok(ms <= BOUND_MS, `${what}: restored in ${ms} ms (bound ${BOUND_MS})`);
        // The reconciler logs after its restore completes: the state can look restored a moment before the line.
        for (let i = 0; i < 40 && !lines.some((l) => l.includes('restored')); i++) await new Promise((r) => setTimeout(r, 50));
        const log = lines.find((l) => l.includes('restored'));
        assert.ok(log !== undefined && expectDrift.test(log), `log line names what moved: ${lines.join('\n')}`);
        return ms;
      } finally {
        rec.stop();
      }
    }

    if (name !== 'nftables') {
      it('restores after iptables -F (jump and chain contents gone)', async (t) => {
        const ms = await restoreTime('iptables -F', () => ipt(['-F']), /jump to ts-input missing|ts-input: flushed/);
        t.diagnostic(`restored in ${ms} ms`);
      });
      it('restores our jump after another program inserts a rule above it (ufw-like reload)', async (t) => {
        const ms = await restoreTime('rule inserted above', () => {
          ipt(['-N', 'ufw-before-input']);
          ipt(['-I', 'INPUT', '1', '-j', 'ufw-before-input']);
        }, /jump to ts-input moved to position 2, rule 1 is \\"-j ufw-before-input\\"/);
        t.diagnostic(`restored in ${ms} ms`);
        const input = (await backend.read()).families.get('ip')?.get('filter')?.get('INPUT')?.rules.map((r) => r.key);
        assert.deepEqual(input, ['-j ts-input', '-j ufw-before-input'], "the other program's rule stays, below ours");
      });
    } else {
      it('restores after nft flush ruleset', async (t) => {
        const ms = await restoreTime('nft flush ruleset', () => sh('nft', ['flush', 'ruleset']), /chain missing/);
        t.diagnostic(`restored in ${ms} ms`);
      });
      it('restores our jump after another program inserts a rule above it', async (t) => {
        const ms = await restoreTime('rule inserted above', () => sh('nft', ['insert', 'rule', 'ip', 'filter', 'INPUT', 'ip', 'saddr', '198.51.100.9', 'counter', 'drop']), /jump to ts-input moved to position 2/);
        t.diagnostic(`restored in ${ms} ms`);
      });
    }

    it('stops fighting a program that keeps moving our rules (bound: maxRestores per window)', async () => {
      await nf.apply(cfg);
      const rec = nf.reconciler(cfg, realClock, { intervalMs: 150, maxRestores: 3, windowMs: 60_000, pauseMs: 60_000 })!;
      lines.length = 0;
      rec.start();
      const until = performance.now() + 2500;
      while (performance.now() < until) {
        if (name === 'nftables') sh('nft', ['insert', 'rule', 'ip', 'filter', 'INPUT', 'counter']);
        else ipt(['-I', 'INPUT', '1', '-s', '198.51.100.10/32', '-j', 'ACCEPT']);
        await new Promise((r) => setTimeout(r, 200));
      }
      rec.stop();
      assert.equal(rec.stats.restores, 3, 'restored exactly maxRestores times');
      assert.equal(rec.stats.giveUps, 1, 'then gave up once and stayed paused');
      assert.ok(lines.some((l) => l.includes('keeps changing our rules')), 'warned');
      await nf.apply(defaultConfig({ mode: Mode.Off }), Mode.On);
      if (name === 'nftables') sh('nft', ['flush', 'chain', 'ip', 'filter', 'INPUT']);
      else ipt(['-F', 'INPUT']);
    });

    it('nodivert and off: no reconciler, and re-applying never writes to built-in chains', async () => {
      for (const mode of [Mode.NoDivert, Mode.Off] as const) {
        const c = defaultConfig({ ...cfg, mode });
        await nf.apply(c);
        assert.equal(nf.reconciler(c, realClock), null, `${mode}: no reconciler`);
        if (name === 'nftables') sh('nft', ['-f', '-'], 'add table ip filter\nadd chain ip filter INPUT { type filter hook input priority 0; policy accept; }\ninsert rule ip filter INPUT ip saddr 198.51.100.11 counter drop\n');
        else ipt(['-I', 'INPUT', '1', '-s', '198.51.100.11/32', '-j', 'DROP']);
        const before = await backend.listing();
        const rec = recordingExec(netnsExec(ns));
        const b2 = name === 'nftables' ? new NftablesBackend(rec.exec) : await IptablesBackend.create(rec.exec, name);
        await new Netfilter(b2, createLogger({ level: 'error' })).apply(c, mode);
        const writes = rec.calls.filter((x) => x.args.some((a) => ['-I', '-A', '-D', '-F', '-X', '-N', '-P', '-f'].includes(a)));
        assert.deepEqual(writes, [], `${mode}: no writes on re-apply`);
        const strip = (s: string): string => s.replace(/^#.*$/gm, '');
        assert.equal(strip(await backend.listing()), strip(before), `${mode}: host untouched`);
        if (name === 'nftables') sh('nft', ['flush', 'chain', 'ip', 'filter', 'INPUT']);
        else ipt(['-D', 'INPUT', '-s', '198.51.100.11/32', '-j', 'DROP']);
      }
    });
  });
}
