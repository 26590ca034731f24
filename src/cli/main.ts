/**
 * `wiremesh` command dispatcher: each subcommand lives in its own module under src/cli/ exporting
 * `run(argv): Promise<number>` (the exit status), loaded only when used so start-up stays fast.
 */
const COMMANDS: Record<string, { module: string; summary: string }> = {
  derper: { module: './derper.ts', summary: 'DERP relay + STUN server (like Tailscale cmd/derper)' },
  derp: { module: './derp.ts', summary: 'DERP client tools: connect, send, recv, watch, ping' },
  derpprobe: { module: './derpprobe.ts', summary: 'monitor a DERP map (like cmd/derpprobe)' },
  stun: { module: './stun.ts', summary: 'STUN client: print the reflexive address a server sees' },
  netcheck: { module: './netcheck.ts', summary: 'NAT/firewall report (like tailscale netcheck), with --explain' },
  portmap: { module: './portmap.ts', summary: 'UPnP IGD / NAT-PMP / PCP: probe, map, unmap' },
  netfilter: { module: './netfilter.ts', summary: 'netfilter modes on/nodivert/off: apply, show, clean' },
};

function usage(): string {
  const lines = ['usage: wiremesh <command> [flags]', '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push('', "run 'wiremesh <command> --help' for a command's flags");
  return lines.join('\n') + '\n';
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === 'version') {
    process.stdout.write('wiremesh 0.1.0\n');
    return 0;
  }
  const cmd = COMMANDS[name];
  if (cmd === undefined) {
    process.stderr.write(`wiremesh: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return 2;
  }
  const mod = (await import(cmd.module)) as { run: (argv: string[]) => Promise<number> };
  return mod.run(rest);
}

const code = await main(process.argv.slice(2));
if (code !== 0 || process.exitCode === undefined) process.exitCode = code;
