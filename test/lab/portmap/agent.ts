/**
 * Lab agent: runs inside the host namespace (`ip netns exec <host> node agent.ts ...`). Binds a UDP "magicsock"
 * socket on an ephemeral port, answers "ping" datagrams with "pong", and drives a real PortMapper (real gateway
 * discovery, sockets and HTTP) from commands on stdin: map | release | check | stats | close. Every event is one
 * JSON line on stdout.
 */
import { createInterface } from 'node:readline';
import { listenUdp } from '../../../src/net/udp.ts';
import { openPortMapper } from '../../../src/portmap/index.ts';
import type { PortmapProtocol } from '../../../src/portmap/probe.ts';

const args = new Map<string, string>();
for (let i = 2; i + 1 < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const out = (o: Record<string, unknown>): void => void process.stdout.write(JSON.stringify(o) + '\n');

const sock = await listenUdp({ host: '0.0.0.0' });
sock.onMessage((data, from) => {
  out({ event: 'recv', data: Buffer.from(data).toString(), from });
  sock.send(new TextEncoder().encode('pong'), from);
});
const port = sock.localAddr().port;
const { mapper, close } = await openPortMapper({
  ...(args.has('protocols') ? { protocols: args.get('protocols')!.split(',') as PortmapProtocol[] } : {}),
  lifetimeSeconds: Number(args.get('lifetime') ?? '7200'),
  checkIntervalMs: Number(args.get('check') ?? '60000'),
  retryMs: Number(args.get('retry') ?? '1000'),
  probeTimeoutMs: Number(args.get('probe-timeout') ?? '250'),
  onChange: (m, why) => out({ event: 'change', why, mapping: m }),
});
out({ event: 'listening', port });

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = line.trim();
  try {
    if (cmd === 'probe') out({ event: 'probe', report: await mapper.probe() });
    else if (cmd === 'map') out({ event: 'mapped', mapping: await mapper.map(port) });
    else if (cmd === 'release') {
      await mapper.release();
      out({ event: 'released' });
    } else if (cmd === 'check') out({ event: 'checked', result: await mapper.check() });
    else if (cmd === 'stats') out({ event: 'stats', stats: mapper.stats, mapping: mapper.mapping });
    else if (cmd === 'close') {
      await close();
      sock.close();
      out({ event: 'closed', stats: mapper.stats });
      process.exit(0);
    }
  } catch (e) {
    out({ event: 'error', cmd, code: (e as { code?: string }).code ?? 'ERR', message: String(e) });
  }
}
