/**
 * `wiremesh netfilter apply|show|clean` end to end inside a namespace: auto-detection on a fresh host, `show`'s
 * exit status and drift listing, `apply --watch` restoring after `nft flush ruleset`, nodivert `--watch` refusing
 * to touch anything, and `clean`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { isRoot, which } from '../../support/gobin.ts';
import { Lab } from '../../support/netns.ts';

const skip = !isRoot() ? 'needs root' : which('nft') === null ? 'nft missing' : false;
const BIN = path.resolve(import.meta.dirname, '../../../bin/wiremesh.js');
const FLAGS = ['--addr', '100.101.102.104', '--port', '41641'];

describe('wiremesh netfilter CLI', { skip }, () => {
  let lab: Lab;
  let ns: string;
  const env = { ...process.env };
  delete env.WIREMESH_FIREWALL_MODE;
  const cli = (...args: string[]) => {
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, BIN, 'netfilter', ...args], { encoding: 'utf8', env });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  before(() => {
    lab = new Lab('cli');
    ns = lab.netns('c');
  });
  after(() => lab?.cleanup());

  it('apply (auto → nftables on a fresh host), show in place, show drift with exit 1', () => {
    const a = cli('apply', '--mode', 'on', ...FLAGS, '--json');
    assert.equal(a.code, 0, a.err);
    const j = JSON.parse(a.out) as { backend: string; commands: string[] };
    assert.equal(j.backend, 'nftables');
    assert.ok(j.commands.includes('nft insert rule ip filter INPUT counter jump ts-input'));
    const s = cli('show', '--mode', 'on', ...FLAGS);
    assert.equal(s.code, 0, s.out + s.err);
    assert.match(s.out, /jump ts-input/);
    assert.match(s.out, /installed: on\nmode on: in place/);
    lab.exec(ns, 'nft', ['flush', 'chain', 'ip', 'filter', 'ts-input']);
    const d = cli('show', '--mode', 'on', ...FLAGS);
    assert.equal(d.code, 1);
    assert.match(d.out, /NOT in place\n {2}- ip filter ts-input: flushed \(0 of 5 rules\)/);
  });

  it('apply --watch restores after nft flush ruleset and logs what moved', async () => {
    const p = lab.spawn(ns, process.execPath, [BIN, 'netfilter', 'apply', '--mode', 'on', ...FLAGS, '--watch'], { env });
    let err = '';
    p.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
    const t0 = Date.now();
    while (!err.includes('mode applied')) {
      assert.ok(Date.now() - t0 < 10_000, `apply did not start: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    lab.exec(ns, 'nft', ['flush', 'ruleset']);
    const t1 = Date.now();
    while (cli('show', '--mode', 'on', ...FLAGS).code !== 0) {
      assert.ok(Date.now() - t1 < 8000, `not restored: ${err}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (let i = 0; i < 40 && !err.includes('restored'); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(err, /rules changed by another program; restored drift=.*chain missing/);
    await lab.kill(p);
    assert.equal(p.exitCode ?? 0, 0);
  });

  it('nodivert --watch does nothing; clean removes our chains; off is then in place', () => {
    const n = cli('apply', '--mode', 'nodivert', ...FLAGS, '--watch');
    assert.equal(n.code, 0, n.err);
    assert.match(n.err, /--watch does nothing in mode nodivert/);
    const c = cli('clean', '--json');
    assert.equal(c.code, 0, c.err);
    assert.ok((JSON.parse(c.out) as { commands: string[] }).commands.some((x) => x.includes('delete chain ip filter ts-input')));
    const off = cli('show', '--mode', 'off');
    assert.equal(off.code, 0, off.out + off.err);
    assert.equal(cli('apply', '--mode', 'on', '--iface', 'x;y').code, 2);
  });
});
