/**
 * One command brings a namespace NAT-lab topology up and down (test/lab/natlab.ts; spec/lab.md §1–§5). Root only.
 *
 *   node_modules/.bin/node scripts/natlab.ts up <profile>[,<profile>…]  up; prints names; Ctrl-C (or SIGTERM) tears down
 *   node_modules/.bin/node scripts/natlab.ts run <profile> -- CMD...   up; runs CMD in the (first) host namespace; down
 *   node_modules/.bin/node scripts/natlab.ts down <prefix>             removes namespaces a killed run left behind
 *
 * `run` substitutes `{derpmap}` in CMD with the lab's DERP map path, e.g.
 *   scripts/natlab.ts run hard -- node_modules/.bin/node bin/wiremesh.js netcheck --derp-map {derpmap} --explain
 * Profiles: easy, hard, udp-blocked, stateful-firewall, double-nat, captive-portal. `--ipv6` adds routed IPv6.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../test/support/netns.ts';
import { LAB_PROFILES, natlabUnavailable, natlabUp, type LabProfile } from '../test/lab/natlab.ts';

function usage(): number {
  process.stderr.write(`usage: natlab.ts up <profile>[,…] [--ipv6] | run <profile>[,…] [--ipv6] -- CMD... | down <prefix>\nprofiles: ${LAB_PROFILES.join(', ')}\n`);
  return 2;
}

/** `easy` or `easy,hard` (one site per profile). */
function profileArg(s: string | undefined): LabProfile[] | null {
  if (s === undefined) return null;
  const list = s.split(',');
  return list.every((p) => (LAB_PROFILES as readonly string[]).includes(p)) ? (list as LabProfile[]) : null;
}

/** Deletes namespaces named `<prefix>-*` (killing their processes by PID first). */
function down(prefix: string): number {
  if (!/^wm[0-9a-z]{2,}$/.test(prefix)) {
    process.stderr.write('natlab: prefix must look like the one `up` printed (wm…)\n');
    return 2;
  }
  const names = run('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`${prefix}-`));
  for (const ns of names) {
    for (const pid of run('ip', ['netns', 'pids', ns], { allowFail: true }).split('\n').filter((p) => /^\d+$/.test(p))) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    run('ip', ['netns', 'del', ns], { allowFail: true });
    process.stdout.write(`deleted ${ns}\n`);
  }
  // The run's scratch directory (keys, certificates, DERP map) is named after the prefix too.
  for (const d of readdirSync(os.tmpdir()).filter((n) => n.startsWith(`wm-natlab-${prefix}-`))) {
    rmSync(path.join(os.tmpdir(), d), { recursive: true, force: true });
    process.stdout.write(`deleted ${path.join(os.tmpdir(), d)}\n`);
  }
  return 0;
}

async function main(args: string[]): Promise<number> {
  const ipv6 = args.indexOf('--ipv6');
  const argv = ipv6 >= 0 && (args.indexOf('--') < 0 || ipv6 < args.indexOf('--')) ? args.filter((_, i) => i !== ipv6) : args;
  const [cmd, arg, ...rest] = argv;
  if (cmd === 'down' && arg !== undefined) return down(arg);
  const profile = profileArg(arg);
  if ((cmd !== 'up' && cmd !== 'run') || profile === null) return usage();
  const why = natlabUnavailable();
  if (why !== null) {
    process.stderr.write(`natlab: ${why}\n`);
    return 1;
  }
  const lab = await natlabUp(profile, { ipv6: ipv6 >= 0 && argv !== args });
  try {
    const sites = lab.sites.map((s, i) => `  site ${i + 1} (${s.profile}): host ${s.hostNs} (${s.hostIp}${s.hostIp6 === null ? '' : `, ${s.hostIp6}`}), routers ${s.routers.join(', ')}\n`).join('');
    process.stdout.write(
      `natlab ${profile.join(',')} up (prefix ${lab.lab.prefix})\n${sites}` +
        `  internet: ${lab.inetNs}\n  STUN:    ${lab.stunServers.join(', ')}\n  DERP map: ${lab.derpMapPath}\n`,
    );
    if (cmd === 'run') {
      const sep = rest.indexOf('--');
      const command = (sep >= 0 ? rest.slice(sep + 1) : rest).map((a) => a.replaceAll('{derpmap}', `file://${lab.derpMapPath}`));
      if (command.length === 0) return usage();
      const r = spawnSync('ip', ['netns', 'exec', lab.hostNs, ...command], { stdio: 'inherit' });
      return r.status ?? 1;
    }
    process.stdout.write(`  enter it: ip netns exec ${lab.hostNs} bash     (Ctrl-C here tears everything down)\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    return 0;
  } finally {
    await lab.down();
    process.stdout.write('natlab: down\n');
  }
}

process.exitCode = await main(process.argv.slice(2));
