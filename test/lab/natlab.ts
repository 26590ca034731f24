/**
 * The namespace NAT lab (spec/lab.md §1–§5, lab-recipes/natlab.sh redone per run): an "internet" namespace with
 * the Go derper (DERP + STUN + HTTPS latency check + /generate_204) on 203.0.113.10, coturn STUN on 198.51.100.10,
 * the wiremesh derper's STUN on 198.51.100.11 (when it starts), and one or more sites, each a host behind a
 * router profile:
 *
 *   easy               MASQUERADE (EIM, port-preserving, APDF)              — Tailscale's "easy NAT"
 *   hard               MASQUERADE --random-fully (new random port per dest) — "hard NAT"
 *   udp-blocked        easy NAT + FORWARD drop of all outbound UDP
 *   stateful-firewall  no NAT, routed 192.0.2.16i/28, drops unsolicited inbound
 *   double-nat         home router (10.i.0.0/24) behind a CGNAT router (100.64.i.0/24), both MASQUERADE
 *   captive-portal     UDP blocked, and LAN port 80 DNAT'ed to a login page on the router
 *
 * Every router drops NEW inbound to itself on the WAN (spec/lab.md §1 gotcha: needed for hole punching).
 * Names carry the per-run prefix of test/support/netns.ts; `down()` kills what it started by PID and deletes
 * the namespaces, so nothing is left behind.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { goBinary, which } from '../support/gobin.ts';
import { Lab } from '../support/netns.ts';

export const LAB_PROFILES = ['easy', 'hard', 'udp-blocked', 'stateful-firewall', 'double-nat', 'captive-portal'] as const;
export type LabProfile = (typeof LAB_PROFILES)[number];

export const DERP_IP = '203.0.113.10';
export const COTURN_IP = '198.51.100.10';
export const WM_STUN_IP = '198.51.100.11';
/** Sites per topology: WAN addresses 203.0.113.1..9 (the 10+ range holds the servers). */
export const MAX_SITES = 9;
const ROOT = path.resolve(import.meta.dirname, '../..');
const NODE = path.join(ROOT, 'node_modules/.bin/node');

export interface NatLab {
  lab: Lab;
  /** The first site's profile, host namespace, host address and routers (innermost first). */
  profile: LabProfile;
  hostNs: string;
  hostIp: string;
  routers: string[];
  /** Every site, in the order asked for. */
  sites: Site[];
  inetNs: string;
  derpMapPath: string;
  /** Which STUN servers run: 'go-derper', 'coturn', 'wiremesh-derper'. */
  stunServers: string[];
  /** Why the wiremesh derper did not start (its exit code and last output), or null. */
  wiremeshDerperError: string | null;
  /** Runs a command in the host namespace (returns stdout). */
  exec(cmd: string, args: string[]): string;
  down(): Promise<void>;
}

/** Why the lab cannot run here, or null. */
export function natlabUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  if (goBinary('derper') === null) return 'needs the Go derper (scripts/install-lab-deps.sh)';
  if (which('turnserver') === null) return 'needs coturn (turnserver)';
  if (which('iptables') === null) return 'needs iptables';
  if (which('ping') === null) return 'needs ping (iputils-ping: ICMP fallback and the double-NAT hop check)';
  return null;
}

function waitForLine(p: ChildProcess, re: RegExp, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let buf = '';
    const t = setTimeout(() => done(false), timeoutMs);
    const onData = (d: Buffer): void => {
      buf += d.toString();
      if (re.test(buf)) done(true);
    };
    const done = (ok: boolean): void => {
      clearTimeout(t);
      p.stdout?.off('data', onData);
      p.stderr?.off('data', onData);
      p.off('exit', onExit);
      resolve(ok);
    };
    const onExit = (): void => done(false);
    p.stdout?.on('data', onData);
    p.stderr?.on('data', onData);
    p.once('exit', onExit);
  });
}

/** Waits until something listens on `ip:port` (tcp or udp) inside `ns`. */
async function waitListening(lab: Lab, ns: string, proto: 'tcp' | 'udp', ip: string, port: number, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const out = lab.exec(ns, 'ss', ['-Hln', proto === 'tcp' ? '-t' : '-u', 'src', `${ip}:${port}`], { allowFail: true });
    if (out.trim() !== '') return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

function ipt(lab: Lab, ns: string, args: string[]): void {
  lab.exec(ns, 'iptables', args);
}

/** A router namespace whose WAN (`<name>w`) is plugged into `up` (onto its bridge when given). */
function router(lab: Lab, name: string, up: { ns: string; bridge: string | null; wanCidr: string; gw: string }): string {
  const ns = lab.netns(name);
  const wanIf = `${name}w`;
  const peerIf = `i-${name}`;
  lab.link(ns, wanIf, up.wanCidr, up.ns, peerIf, null);
  if (up.bridge !== null) lab.exec(up.ns, 'ip', ['link', 'set', peerIf, 'master', up.bridge]);
  lab.exec(ns, 'ip', ['route', 'add', 'default', 'via', up.gw]);
  lab.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  // Drop (not reject) NEW inbound to the router itself on the WAN (spec/lab.md §1 `input drop`).
  ipt(lab, ns, ['-A', 'INPUT', '-i', wanIf, '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'DROP']);
  return ns;
}

export interface NatlabOptions {
  /** Start the wiremesh derper as a third STUN server (default true; skipped if it does not start). */
  wiremeshDerper?: boolean;
  /**
   * Also give the internet, the routers and the hosts IPv6 (2001:db8::/32): routed, never translated, through the
   * same firewall profile (ip6tables); coturn then also answers on COTURN_IP6. Not for double-nat sites.
   */
  ipv6?: boolean;
}

export const COTURN_IP6 = '2001:db8:ff::10';

export interface Site {
  profile: LabProfile;
  /** Namespace of the site's host, and its address. */
  hostNs: string;
  hostIp: string;
  /** Router namespaces, innermost first. */
  routers: string[];
  /** The host's IPv6 address when the lab has IPv6. */
  hostIp6: string | null;
}

/** IPv6 for site `i`: WAN 2001:db8::i, LAN 2001:db8:i::/64 routed from the internet; `nodad` avoids DAD delays. */
function addSiteIPv6(lab: Lab, inet: string, i: number, r: string, host: string, profile: LabProfile): string {
  const v6 = (ns: string, args: string[]): void => void lab.exec(ns, 'ip', ['-6', ...args]);
  const wanIf = `r${i}w`;
  const lanIf = `r${i}l`;
  v6(r, ['addr', 'add', `2001:db8::${i}/64`, 'dev', wanIf, 'nodad']);
  v6(r, ['addr', 'add', `2001:db8:${i}::1/64`, 'dev', lanIf, 'nodad']);
  v6(r, ['route', 'add', 'default', 'via', '2001:db8::fe']);
  lab.exec(r, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
  v6(host, ['addr', 'add', `2001:db8:${i}::2/64`, 'dev', 'eth0', 'nodad']);
  v6(host, ['route', 'add', 'default', 'via', `2001:db8:${i}::1`]);
  v6(inet, ['route', 'add', `2001:db8:${i}::/64`, 'via', `2001:db8::${i}`]);
  // Same policy as IPv4, minus NAT: stateful firewall (replies only), and UDP dropped where IPv4 UDP is.
  const ip6t = (args: string[]): void => void lab.exec(r, 'ip6tables', args);
  if (profile === 'udp-blocked' || profile === 'captive-portal') ip6t(['-A', 'FORWARD', '-i', lanIf, '-o', wanIf, '-p', 'udp', '-j', 'DROP']);
  ip6t(['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
  ip6t(['-A', 'FORWARD', '-i', lanIf, '-o', wanIf, '-j', 'ACCEPT']);
  ip6t(['-A', 'FORWARD', '-i', wanIf, '-j', 'DROP']);
  return `2001:db8:${i}::2`;
}

/**
 * Site `i` (1-based): WAN 203.0.113.i, LAN 10.i.0.0/24 (host .2); stateful-firewall LANs are routed
 * 192.0.2.16i/28; double NAT puts the home router on 100.64.i.0/24 behind a CGNAT router.
 */
async function buildSite(lab: Lab, inet: string, i: number, profile: LabProfile): Promise<Site> {
  const wan = { ns: inet, bridge: 'br0', wanCidr: `203.0.113.${i}/24`, gw: '203.0.113.254' };
  const routers: string[] = [];
  let hostIp = `10.${i}.0.2`;
  let lanGw = `10.${i}.0.1`;
  let prefixLen = 24;
  let lanNs: string;
  let lanIf: string;
  if (profile === 'double-nat') {
    const cg = router(lab, `cg${i}`, wan);
    ipt(lab, cg, ['-t', 'nat', '-A', 'POSTROUTING', '-o', `cg${i}w`, '-j', 'MASQUERADE']);
    const home = lab.netns(`hm${i}`);
    lab.link(home, `hm${i}w`, `100.64.${i}.2/24`, cg, `cg${i}l`, `100.64.${i}.1/24`);
    lab.exec(home, 'ip', ['route', 'add', 'default', 'via', `100.64.${i}.1`]);
    lab.exec(home, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    ipt(lab, home, ['-A', 'INPUT', '-i', `hm${i}w`, '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'DROP']);
    ipt(lab, home, ['-t', 'nat', '-A', 'POSTROUTING', '-o', `hm${i}w`, '-j', 'MASQUERADE']);
    routers.push(home, cg);
    lanNs = home;
    lanIf = `hm${i}l`;
  } else {
    const name = `r${i}`;
    const r = router(lab, name, wan);
    routers.push(r);
    lanNs = r;
    lanIf = `${name}l`;
    const wanIf = `${name}w`;
    const masq = ['-t', 'nat', '-A', 'POSTROUTING', '-o', wanIf, '-j', 'MASQUERADE'];
    if (profile === 'easy' || profile === 'udp-blocked' || profile === 'captive-portal') ipt(lab, r, masq);
    if (profile === 'hard') ipt(lab, r, [...masq, '--random-fully']);
    if (profile === 'udp-blocked' || profile === 'captive-portal') ipt(lab, r, ['-A', 'FORWARD', '-i', lanIf, '-o', wanIf, '-p', 'udp', '-j', 'DROP']);
    if (profile === 'stateful-firewall') {
      const base = 16 * i;
      hostIp = `192.0.2.${base + 2}`;
      lanGw = `192.0.2.${base + 1}`;
      prefixLen = 28;
      lab.exec(inet, 'ip', ['route', 'add', `192.0.2.${base}/28`, 'via', `203.0.113.${i}`]);
      ipt(lab, r, ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
      ipt(lab, r, ['-A', 'FORWARD', '-i', lanIf, '-o', wanIf, '-j', 'ACCEPT']);
      ipt(lab, r, ['-A', 'FORWARD', '-i', wanIf, '-j', 'DROP']);
    }
  }
  const host = lab.netns(`h${i}`);
  lab.link(lanNs, lanIf, `${lanGw}/${prefixLen}`, host, 'eth0', `${hostIp}/${prefixLen}`);
  lab.exec(host, 'ip', ['route', 'add', 'default', 'via', lanGw]);

  if (profile === 'captive-portal') {
    // A login page on the router, and every LAN HTTP request rewritten to it.
    const portal = lab.spawn(lanNs, NODE, ['-e', `require('http').createServer((q,s)=>{s.writeHead(200,{'Content-Type':'text/html'});s.end('<html>Please log in</html>')}).listen(8080,'${lanGw}',()=>console.log('portal up'))`]);
    if (!(await waitForLine(portal, /portal up/, 10_000))) throw new Error('captive portal server did not start');
    ipt(lab, lanNs, ['-t', 'nat', '-A', 'PREROUTING', '-i', lanIf, '-p', 'tcp', '--dport', '80', '-j', 'DNAT', '--to-destination', `${lanGw}:8080`]);
    ipt(lab, lanNs, ['-I', 'INPUT', '-i', lanIf, '-p', 'tcp', '--dport', '8080', '-j', 'ACCEPT']);
  }
  return { profile, hostNs: host, hostIp, routers, hostIp6: null };
}

/**
 * Brings up the internet, its servers and one site per profile (e.g. `['easy', 'hard']` for two hosts behind two
 * different NATs); the returned object's `down()` removes everything.
 */
export async function natlabUp(profiles: LabProfile | readonly LabProfile[], opts: NatlabOptions = {}): Promise<NatLab> {
  const list = typeof profiles === 'string' ? [profiles] : [...profiles];
  if (list.length < 1 || list.length > MAX_SITES) throw new Error(`natlab: 1..${MAX_SITES} sites`);
  const lab = new Lab('n');
  const tmp = mkdtempSync(path.join(os.tmpdir(), `wm-natlab-${lab.prefix}-`));
  const stunServers: string[] = [];
  try {
    // The internet: one bridge holding the gateway and the server addresses.
    const inet = lab.netns('inet');
    lab.exec(inet, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    lab.exec(inet, 'ip', ['link', 'set', 'br0', 'up']);
    for (const a of ['203.0.113.254/24', `${DERP_IP}/32`, `${COTURN_IP}/32`, `${WM_STUN_IP}/32`]) lab.exec(inet, 'ip', ['addr', 'add', a, 'dev', 'br0']);
    if (opts.ipv6 === true) {
      for (const a of ['2001:db8::fe/64', `${COTURN_IP6}/128`]) lab.exec(inet, 'ip', ['-6', 'addr', 'add', a, 'dev', 'br0', 'nodad']);
      lab.exec(inet, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
    }
    const sites: Site[] = [];
    for (const [i, p] of list.entries()) {
      const site = await buildSite(lab, inet, i + 1, p);
      if (opts.ipv6 === true) {
        if (p === 'double-nat') throw new Error('natlab: ipv6 is not supported on double-nat sites');
        site.hostIp6 = addSiteIPv6(lab, inet, i + 1, site.routers[0]!, site.hostNs, p);
      }
      sites.push(site);
    }

    // Servers: Go derper (TLS on 443 with a self-signed IP cert, HTTP on 80, STUN on 3478).
    const derperBin = goBinary('derper')!;
    const derper = lab.spawn(inet, derperBin, ['-a', `${DERP_IP}:443`, '-c', path.join(tmp, 'derper.json'), '-certmode', 'manual', '-hostname', DERP_IP, '-certdir', path.join(tmp, 'certs'), '-http-port', '80', '-stun-port', '3478']);
    const coturn = lab.spawn(inet, which('turnserver')!, ['-n', '-S', '-L', COTURN_IP, ...(opts.ipv6 === true ? ['-L', COTURN_IP6] : []), '-p', '3478', '--no-tls', '--no-dtls', '--no-cli', '--log-file', 'stdout', '--simple-log', '--pidfile', path.join(tmp, 'turnserver.pid')]);
    void coturn;
    // The wiremesh derper as a third STUN server (plain HTTP on 8080; STUN-only in the map), started alongside.
    let wmOutput = '';
    let wiremeshDerperError: string | null = null;
    const wm = opts.wiremeshDerper === false
      ? null
      : lab.spawn(inet, NODE, [path.join(ROOT, 'bin/wiremesh.js'), 'derper', '-a', `${WM_STUN_IP}:8080`, '--stun-port', '3478', '--http-port', '-1', '-c', path.join(tmp, 'wm-derper.key')], { cwd: ROOT });
    wm?.stdout?.on('data', (d: Buffer) => (wmOutput += d.toString()));
    wm?.stderr?.on('data', (d: Buffer) => (wmOutput += d.toString()));
    const wmReady = wm === null ? Promise.resolve(false) : waitForLine(wm, /derper: listening/, 20_000);
    const ready = await Promise.all([
      waitListening(lab, inet, 'tcp', DERP_IP, 443, 15_000),
      waitListening(lab, inet, 'tcp', DERP_IP, 80, 15_000),
      waitListening(lab, inet, 'udp', DERP_IP, 3478, 15_000),
      waitListening(lab, inet, 'udp', COTURN_IP, 3478, 15_000),
      opts.ipv6 === true ? waitListening(lab, inet, 'udp', `[${COTURN_IP6}]`, 3478, 15_000) : Promise.resolve(true),
    ]);
    if (!ready.every(Boolean)) throw new Error(`lab servers not ready (derper tls/http/stun, coturn): ${ready.join(',')}; derper exit=${derper.exitCode}`);
    stunServers.push('go-derper', 'coturn');
    // IPv6: prove each site's routed path works (and warm the neighbour caches on the way) before a test measures
    // it; the first datagrams over a fresh IPv6 path can otherwise be lost to neighbour discovery.
    for (const site of sites) {
      if (site.hostIp6 === null) continue;
      let ok = false;
      for (let i = 0; i < 10 && !ok; i++) ok = lab.exec(site.hostNs, 'ping', ['-6', '-c', '1', '-W', '1', COTURN_IP6], { allowFail: true }).includes(' 0% packet loss');
      if (!ok) throw new Error(`natlab: no IPv6 path from ${site.hostNs} to ${COTURN_IP6}`);
    }

    const regions: Record<string, unknown> = {
      '1': { RegionID: 1, RegionCode: 'lab', RegionName: 'Lab Go derper', Nodes: [{ Name: '1a', RegionID: 1, HostName: DERP_IP, IPv4: DERP_IP, IPv6: 'none', STUNPort: 3478, DERPPort: 443, InsecureForTests: true, CanPort80: true }] },
      '2': { RegionID: 2, RegionCode: 'trn', RegionName: 'Lab coturn', Nodes: [{ Name: '2a', RegionID: 2, HostName: COTURN_IP, IPv4: COTURN_IP, IPv6: opts.ipv6 === true ? COTURN_IP6 : 'none', STUNPort: 3478, STUNOnly: true }] },
    };
    if (wm !== null) {
      if (await wmReady) {
        stunServers.push('wiremesh-derper');
        regions['3'] = { RegionID: 3, RegionCode: 'wm', RegionName: 'Lab wiremesh derper', Nodes: [{ Name: '3a', RegionID: 3, HostName: WM_STUN_IP, IPv4: WM_STUN_IP, IPv6: 'none', STUNPort: 3478, STUNOnly: true }] };
      } else {
        wiremeshDerperError = `exit=${wm.exitCode ?? 'none'} output=${JSON.stringify(wmOutput.slice(-400))}`;
        await lab.kill(wm);
      }
    }
    const derpMapPath = path.join(tmp, 'derpmap.json');
    writeFileSync(derpMapPath, JSON.stringify({ Regions: regions }, null, 2));

    const first = sites[0]!;
    return {
      lab,
      profile: first.profile,
      hostNs: first.hostNs,
      hostIp: first.hostIp,
      routers: first.routers,
      sites,
      inetNs: inet,
      derpMapPath,
      stunServers,
      wiremeshDerperError,
      exec: (cmd, args) => lab.exec(first.hostNs, cmd, args),
      async down() {
        lab.cleanup();
        rmSync(tmp, { recursive: true, force: true });
      },
    };
  } catch (e) {
    lab.cleanup();
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
