/**
 * Portmap lab topology (spec/lab.md §1, §7): "inet" (203.0.113.254 + coturn on .10/.11 for miniupnpd's STUN
 * self-check) ⇄ "rtr" (WAN 203.0.113.1, MASQUERADE, miniupnpd, LAN 10.1.0.1) ⇄ "host" (10.1.0.2). Namespaces come
 * from test/support/netns.ts (per-run prefix); miniupnpd is started and killed by PID.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Lab } from '../../support/netns.ts';

const HERE = path.dirname(new URL(import.meta.url).pathname);
export const WAN_IP = '203.0.113.1';
export const HOST_IP = '10.1.0.2';

export interface RouterMode {
  upnp: boolean;
  natpmp: boolean;
  minLifetime: number;
}

export class PortmapLab {
  readonly lab = new Lab('pm');
  readonly inet: string;
  readonly rtr: string;
  readonly host: string;
  readonly wan: string;
  readonly lanIf: string;
  readonly dir = mkdtempSync(path.join(tmpdir(), 'wm-portmap-'));
  readonly leases = path.join(this.dir, 'leases');
  #upnpd: ChildProcess | null = null;
  #logFile = '';
  #starts = 0;

  readonly mode: RouterMode;

  constructor(mode: RouterMode) {
    this.mode = mode;
    const l = this.lab;
    this.inet = l.netns('inet');
    this.rtr = l.netns('rtr');
    this.host = l.netns('host');
    const p = `x${l.prefix.slice(-6)}`; // miniupnpd reads a name starting with a digit as an address
    this.wan = `${p}wan`;
    this.lanIf = `${p}lan`;
    l.link(this.inet, `${p}inet`, '203.0.113.254/24', this.rtr, this.wan, `${WAN_IP}/24`);
    l.link(this.rtr, this.lanIf, '10.1.0.1/24', this.host, `${p}eth`, `${HOST_IP}/24`);
    l.exec(this.inet, 'ip', ['addr', 'add', '203.0.113.10/32', 'dev', `${p}inet`]);
    l.exec(this.inet, 'ip', ['addr', 'add', '203.0.113.11/32', 'dev', `${p}inet`]);
    l.exec(this.rtr, 'ip', ['route', 'add', 'default', 'via', '203.0.113.254']);
    l.exec(this.rtr, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    l.exec(this.host, 'ip', ['route', 'add', 'default', 'via', '10.1.0.1']);
    l.exec(this.rtr, 'iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-o', this.wan, '-j', 'MASQUERADE']);
    l.exec(this.rtr, 'nft', ['-f', path.join(HERE, 'nft_init.nft')]);
    const conf = readFileSync(path.join(HERE, 'miniupnpd.conf.in'), 'utf8')
      .replaceAll('@WAN@', this.wan).replaceAll('@LAN@', this.lanIf)
      .replaceAll('@UPNP@', mode.upnp ? 'yes' : 'no').replaceAll('@NATPMP@', mode.natpmp ? 'yes' : 'no')
      .replaceAll('@MINLIFE@', String(mode.minLifetime)).replaceAll('@LEASES@', this.leases);
    writeFileSync(path.join(this.dir, 'miniupnpd.conf'), conf);
  }

  /** coturn as the STUN server miniupnpd checks its WAN against (gotchas 1–2). */
  async startStun(): Promise<void> {
    // Output to a file, never a pipe: while the test blocks in execFileSync nobody drains a pipe, and a daemon
    // that logs every request then blocks in write() and stops serving (seen with miniupnpd's SSDP debug log).
    const log = openSync(path.join(this.dir, 'turnserver.log'), 'a');
    this.lab.spawn(this.inet, 'turnserver', ['-n', '-S', '-L', '203.0.113.10', '-L', '203.0.113.11', '-p', '19302',
      '--alt-listening-port', '19303', '--no-tls', '--no-dtls', '--no-cli', '--log-file', 'stdout', '--simple-log'],
    { stdio: ['ignore', log, log] });
    closeSync(log);
    for (let i = 0; i < 50; i++) {
      if (this.lab.exec(this.inet, 'ss', ['-lun']).includes('203.0.113.11:19303')) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('coturn did not start');
  }

  /** Starts miniupnpd in the router and waits until it serves what the mode enables. */
  async startMiniupnpd(): Promise<number> {
    // A fresh log file per start (see startStun for why it is a file and not a pipe).
    this.#logFile = path.join(this.dir, `miniupnpd.${++this.#starts}.log`);
    const fd = openSync(this.#logFile, 'a');
    const p = this.lab.spawn(this.rtr, 'miniupnpd', ['-f', path.join(this.dir, 'miniupnpd.conf'), '-d', '-P', path.join(this.dir, 'pid')],
      { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    this.#upnpd = p;
    const ready = (): boolean =>
      this.miniupnpdLog.includes('Port forwarding is now enabled') &&
      (!this.mode.upnp || this.miniupnpdLog.includes('HTTP listening on port')) &&
      (!this.mode.natpmp || this.miniupnpdLog.includes('Listening for NAT-PMP'));
    for (let i = 0; i < 100 && !ready(); i++) {
      if (p.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!ready()) throw new Error(`miniupnpd not ready:\n${this.miniupnpdLog}`);
    return p.pid!;
  }

  get miniupnpdLog(): string {
    return this.#logFile === '' || !existsSync(this.#logFile) ? '' : readFileSync(this.#logFile, 'utf8');
  }

  /**
   * Kills miniupnpd by PID and wipes its state the way a router reboot does: rules outlive the daemon and come back
   * from the lease file (gotcha 7), so both are cleared before it starts again.
   */
  async stopMiniupnpd(wipeState: boolean): Promise<void> {
    if (this.#upnpd !== null) await this.lab.kill(this.#upnpd);
    this.#upnpd = null;
    if (wipeState) {
      for (const chain of ['miniupnpd', 'prerouting_miniupnpd', 'postrouting_miniupnpd']) {
        this.lab.exec(this.rtr, 'nft', ['flush', 'chain', 'inet', 'filter', chain]);
      }
      rmSync(this.leases, { force: true });
    }
  }

  /** The router's DNAT rules (nft list chain inet filter prerouting_miniupnpd). */
  dnatRules(): string {
    return this.lab.exec(this.rtr, 'nft', ['list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd']);
  }

  /** True when the router DNATs UDP externalPort to host:internalPort. */
  hasRule(externalPort: number, internalPort: number): boolean {
    const re = new RegExp(`dport ${externalPort} dnat ip to ${HOST_IP.replaceAll('.', '\\.')}:${internalPort}\\b`);
    return re.test(this.dnatRules());
  }

  leaseFile(): string {
    return existsSync(this.leases) ? readFileSync(this.leases, 'utf8') : '';
  }

  /** Sends "ping" from the internet namespace to WAN_IP:port; returns "<reply> <from ip> <from port>" or null after 1 s. */
  pingFromInternet(port: number): string | null {
    const js = `const s = require('node:dgram').createSocket('udp4');
const t = setTimeout(() => { console.log('timeout'); s.close(); }, 1000);
s.on('message', (d, a) => { console.log(d.toString() + ' ' + a.address + ' ' + a.port); clearTimeout(t); s.close(); });
s.bind(0, '203.0.113.254', () => s.send('ping', ${port}, '${WAN_IP}'));`;
    const out = this.lab.exec(this.inet, process.execPath, ['-e', js]).trim();
    return out === 'timeout' ? null : out;
  }

  cleanup(): void {
    this.lab.cleanup();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
