/**
 * Port mapping against a real miniupnpd (spec/lab.md §7; issue #4), one router per protocol:
 *   UPnP IGD only (enable_upnp=yes, enable_natpmp=no) — the client is allowed all three and must pick UPnP;
 *   NAT-PMP (enable_natpmp=yes, enable_upnp=no) — the client is restricted to NAT-PMP (miniupnpd cannot serve
 *     NAT-PMP without PCP), and the router's lease file must say "NAT-PMP";
 *   PCP (same router) — the client is allowed all three, must prefer PCP, and the lease file must say "PCP MAP".
 * For each: the mapping is created (nft DNAT rule), a datagram from the internet namespace reaches the host and is
 * answered, renewal at half-life keeps the rule past its lifetime, a miniupnpd killed by PID and restarted with its
 * state wiped gets the mapping back from the client, and release removes the router's rule.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { isRoot, which } from '../../support/gobin.ts';
import { HOST_IP, PortmapLab, WAN_IP } from './router.ts';

const HERE = path.dirname(new URL(import.meta.url).pathname);
const ROOT = path.resolve(HERE, '../../..');
const skip = !isRoot() ? 'needs root' : which('miniupnpd') === null ? 'needs miniupnpd (apt miniupnpd-nftables)'
  : which('turnserver') === null ? 'needs turnserver (apt coturn)' : false;

type Ev = Record<string, any>;

class Agent {
  readonly events: Ev[] = [];
  readonly #p: ChildProcess;
  #stderr = '';
  readonly #lab: PortmapLab;
  constructor(lab: PortmapLab, args: string[]) {
    this.#lab = lab;
    this.#p = lab.lab.spawn(lab.host, process.execPath, [path.join(HERE, 'agent.ts'), ...args], {
      stdio: ['pipe', 'pipe', 'pipe'], cwd: ROOT,
    });
    createInterface({ input: this.#p.stdout! }).on('line', (l) => this.events.push(JSON.parse(l) as Ev));
    this.#p.stderr!.on('data', (d: Buffer) => { this.#stderr += d.toString(); });
  }
  send(cmd: string): void {
    this.#p.stdin!.write(cmd + '\n');
  }
  async waitFor(pred: (e: Ev) => boolean, ms: number, what: string): Promise<Ev> {
    const end = Date.now() + ms;
    for (;;) {
      const e = this.events.find(pred);
      if (e !== undefined) return e;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(this.events)}\n${this.#stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  kill(): Promise<void> {
    return this.#lab.lab.kill(this.#p, 'SIGKILL');
  }
  count(pred: (e: Ev) => boolean): number {
    return this.events.filter(pred).length;
  }
  async request(cmd: string, event: string, ms = 8000): Promise<Ev> {
    const n = this.events.length;
    this.send(cmd);
    return this.waitFor((e) => this.events.indexOf(e) >= n && (e.event === event || e.event === 'error'), ms, `${cmd} → ${event}`);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Case {
  name: string;
  router: { upnp: boolean; natpmp: boolean };
  clientProtocols: string | null;
  expect: 'upnp' | 'pmp' | 'pcp';
  leaseMark: RegExp;
}

const LIFETIME = 4;
/**
 * Probe budget in the lab. The 250 ms product budget is asserted in the unit tests (ManualClock); here the machine
 * is 2 cores shared with other test runs, and a just-started Node child can miss 250 ms on its first probe, which
 * would test the host's load, not the protocol.
 */
const PROBE_MS = 1000;
const CASES: Case[] = [
  { name: 'UPnP IGD only', router: { upnp: true, natpmp: false }, clientProtocols: null, expect: 'upnp', leaseMark: /wiremesh-portmap/ },
  { name: 'NAT-PMP', router: { upnp: false, natpmp: true }, clientProtocols: 'pmp', expect: 'pmp', leaseMark: /NAT-PMP/ },
  { name: 'PCP', router: { upnp: false, natpmp: true }, clientProtocols: null, expect: 'pcp', leaseMark: /PCP MAP [0-9a-f]{24}/ },
];

describe('portmap against miniupnpd (namespace lab)', { skip, concurrency: 1 }, () => {
  for (const c of CASES) {
    it(`${c.name}: map, traffic, renew, router restart, release`, { timeout: 120_000 }, async (t) => {
      const lab = new PortmapLab({ ...c.router, minLifetime: LIFETIME });
      try {
        await lab.startStun();
        await lab.startMiniupnpd();
        const agent = new Agent(lab, [
          ...(c.clientProtocols === null ? [] : ['--protocols', c.clientProtocols]),
          '--lifetime', String(LIFETIME), '--check', '500', '--retry', '500', '--probe-timeout', String(PROBE_MS),
        ]);
        const port = (await agent.waitFor((e) => e.event === 'listening', 10_000, 'listening')).port as number;

        // Probe: what the router offers, as netcheck would see it.
        const probe = (await agent.request('probe', 'probe')).report;
        assert.equal(probe.upnp, c.router.upnp, 'probe.upnp');
        if (c.clientProtocols === null) {
          assert.equal(probe.pmp, c.router.natpmp, 'probe.pmp');
          assert.equal(probe.pcp, c.router.natpmp, 'probe.pcp');
        }
        assert.equal(probe.gateway, '10.1.0.1');

        // The CLI, as someone debugging their router would run it: probe, map and unmap (text and JSON).
        const cli = (...a: string[]): string => lab.lab.exec(lab.host, process.execPath, [path.join(ROOT, 'bin/wiremesh.js'), 'portmap', ...a]);
        const cliProbe = JSON.parse(cli('probe', '--format=json', '--timeout', String(PROBE_MS)));
        assert.deepEqual([cliProbe.upnp, cliProbe.pmp, cliProbe.pcp], [c.router.upnp, c.router.natpmp, c.router.natpmp]);
        assert.match(cli('probe', '--timeout', String(PROBE_MS)), new RegExp(`UPnP: +${c.router.upnp ? 'yes' : 'no'}`));
        const cliMap = JSON.parse(cli('map', '--port', '45000', '--protocol', c.expect, '--lifetime', '60', '--format=json',
          '--timeout', String(PROBE_MS)));
        assert.equal(cliMap.protocol, c.expect);
        assert.ok(lab.hasRule(cliMap.externalPort, 45000), `CLI map left no rule:\n${lab.dnatRules()}`);
        cli('unmap', '--port', '45000', '--protocol', c.expect, '--external-port', String(cliMap.externalPort), '--timeout', String(PROBE_MS),
          ...(cliMap.nonce === undefined ? [] : ['--nonce', cliMap.nonce]));
        assert.ok(!lab.hasRule(cliMap.externalPort, 45000), `CLI unmap left the rule:\n${lab.dnatRules()}`);

        // 1. Mapping created with the expected protocol; the router holds the DNAT rule.
        const mapped = await agent.request('map', 'mapped');
        assert.equal(mapped.event, 'mapped', JSON.stringify(mapped));
        const m = mapped.mapping;
        assert.equal(m.protocol, c.expect);
        assert.equal(m.externalIp, WAN_IP);
        assert.equal(m.internalAddress, HOST_IP);
        assert.equal(m.internalPort, port);
        assert.ok(lab.hasRule(m.externalPort, port), `no DNAT rule for ${m.externalPort}:\n${lab.dnatRules()}`);
        assert.match(lab.leaseFile(), c.leaseMark, 'the lease file names the protocol that created the mapping');

        // 2. A datagram from the internet namespace to the external port reaches the host, and the reply returns.
        const reply = lab.pingFromInternet(m.externalPort);
        assert.equal(reply, `pong ${WAN_IP} ${m.externalPort}`);
        await agent.waitFor((e) => e.event === 'recv' && e.data === 'ping', 2000, 'ping at the host');

        // 3. Renewal at half-life keeps the rule past its lifetime (miniupnpd removes expired rules).
        await sleep(LIFETIME * 1000 * 2 + 500);
        assert.ok(agent.count((e) => e.event === 'change' && e.why === 'renewed') >= 2, 'renewed at least twice');
        assert.ok(lab.hasRule(m.externalPort, port), `rule gone after ${2 * LIFETIME}s despite renewal:\n${lab.dnatRules()}`);
        assert.equal(lab.pingFromInternet(m.externalPort), `pong ${WAN_IP} ${m.externalPort}`);

        // 4. Router restart with its state wiped (kill by PID, flush rules + lease file, start again).
        await lab.stopMiniupnpd(true);
        assert.ok(!lab.hasRule(m.externalPort, port), 'state wiped');
        await lab.startMiniupnpd();
        const back = await (async () => {
          const end = Date.now() + 15_000;
          while (Date.now() < end) {
            if ([...lab.dnatRules().matchAll(/dport (\d+) dnat ip to 10\.1\.0\.2:(\d+)/g)].some((x) => Number(x[2]) === port)) return true;
            await sleep(200);
          }
          return false;
        })();
        assert.ok(back, `the client did not map again after the restart:\n${lab.dnatRules()}`);
        const stats = (await agent.request('stats', 'stats'));
        const now = stats.mapping;
        assert.equal(now.protocol, c.expect);
        // UPnP has no epoch: the periodic check (GetSpecificPortMappingEntry → 714) or the next renewal re-adds it,
        // whichever runs first; the rule being back is the proof. PMP/PCP must have seen the epoch go back.
        if (c.expect !== 'upnp') assert.ok(stats.stats.reboots >= 1, `epoch going back was noticed: ${JSON.stringify(stats.stats)}`);
        assert.equal(lab.pingFromInternet(now.externalPort), `pong ${WAN_IP} ${now.externalPort}`);

        // 5. Release removes the router's rule; traffic no longer reaches the host.
        const rel = await agent.request('release', 'released');
        assert.equal(rel.event, 'released', JSON.stringify(rel));
        assert.ok(!lab.hasRule(now.externalPort, port), `rule still there after release:\n${lab.dnatRules()}`);
        assert.doesNotMatch(lab.leaseFile(), new RegExp(`:${port}:`), 'lease gone');
        assert.equal(lab.pingFromInternet(now.externalPort), null);
        t.diagnostic(`first grant ${JSON.stringify(m)}`);
        t.diagnostic(`after restart ${JSON.stringify(stats.stats)} externalPort=${now.externalPort}`);

        // 6. Control: without renewal the router expires the rule (so step 3 proved something). Map again, then
        // kill the agent by PID (no release, no renewal) and watch the rule go within two lifetimes.
        const again = await agent.request('map', 'mapped');
        assert.equal(again.event, 'mapped', JSON.stringify(again));
        assert.ok(lab.hasRule(again.mapping.externalPort, port));
        await agent.kill();
        await sleep(LIFETIME * 1000 * 2 + 1500);
        assert.ok(!lab.hasRule(again.mapping.externalPort, port), `unrenewed rule outlived its lifetime:\n${lab.dnatRules()}`);
      } finally {
        lab.cleanup();
      }
    });
  }
});
