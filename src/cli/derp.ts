/**
 * `wiremesh derp connect|send|recv|watch|ping <url>`: DERP client tools for debugging and scripting (like
 * `tailscale debug derp`; spec/derp.md §3, §6, §11, §14). Flag parsing and wiring only; the protocol work is in
 * src/derp/client.ts. Text output is one line per event; `--format=json` prints one JSON object per line.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { cliCommand, commanderStatus } from './command.ts';
import { readFileSync } from 'node:fs';
import { DerpClient, type DerpClientOptions, type DerpMessage } from '../derp/client.ts';
import { WiremeshError } from '../errors.ts';
import { formatAddrPort } from '../net/packet.ts';
import {
  generatePrivate, nodePublicText, parseNodePublic, parsePrivate, parseUntypedPublic, type NodePrivate, type NodePublic,
} from '../types/key.ts';

interface CommonOpts {
  keyFile?: string;
  meshPskFile?: string;
  fastStart?: string;
  websocket: boolean;
  insecure: boolean;
  ca?: string;
  format: 'text' | 'json';
  timeout: number;
}

type Out = (text: string, json: Record<string, unknown>) => void;

function positiveInt(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} wants a non-negative integer`);
  return n;
}

/** A private key file: `privkey:<hex>` text or derper's JSON `{"PrivateKey":"privkey:<hex>"}`. */
export function parsePrivateKeyFile(text: string): NodePrivate {
  const t = text.trim();
  if (t.startsWith('{')) {
    const v = JSON.parse(t) as { PrivateKey?: unknown };
    if (typeof v.PrivateKey !== 'string') throw new WiremeshError('invalid_key', 'key file JSON has no PrivateKey');
    return parsePrivate(v.PrivateKey);
  }
  return parsePrivate(t);
}

/** A mesh PSK: exactly 64 hex digits after trimming whitespace. */
export function parseMeshPsk(text: string): Uint8Array {
  const t = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(t)) throw new WiremeshError('invalid_mesh_key', 'invalid mesh key: want 64 hex digits');
  return Uint8Array.from(Buffer.from(t, 'hex'));
}

/** `nodekey:<hex>` or 64 bare hex digits. */
export function parsePeerKey(text: string): NodePublic {
  return text.startsWith('nodekey:') ? parseNodePublic(text) : parseUntypedPublic(text);
}

/** Payload for display: UTF-8 when printable, else hex. */
function showData(d: Uint8Array): string {
  const s = Buffer.from(d).toString('utf8');
  return /^[\x20-\x7e]*$/.test(s) ? JSON.stringify(s) : `hex:${Buffer.from(d).toString('hex')}`;
}

export function describeMessage(m: DerpMessage): { text: string; json: Record<string, unknown> } {
  switch (m.type) {
    case 'recvPacket':
      return { text: `recv from=${nodePublicText(m.source)} len=${m.data.length} data=${showData(m.data)}`, json: { event: 'recv', source: nodePublicText(m.source), len: m.data.length, data: Buffer.from(m.data).toString('base64') } };
    case 'peerPresent': {
      const addr = m.ipPort === null ? '-' : formatAddrPort(m.ipPort);
      return { text: `present ${nodePublicText(m.key)} ${addr} flags=0x${m.flags.toString(16).padStart(2, '0')}`, json: { event: 'peerPresent', key: nodePublicText(m.key), addr: m.ipPort === null ? null : addr, flags: m.flags } };
    }
    case 'peerGone': {
      const reason = m.reason === 0 ? 'disconnected' : m.reason === 1 ? 'not-here' : `0x${m.reason.toString(16)}`;
      return { text: `gone ${nodePublicText(m.key)} reason=${reason}`, json: { event: 'peerGone', key: nodePublicText(m.key), reason } };
    }
    case 'health':
      return { text: `health ${m.problem === '' ? 'ok' : JSON.stringify(m.problem)}`, json: { event: 'health', problem: m.problem } };
    case 'restarting':
      return { text: `restarting reconnect-in=${m.reconnectInMs}ms try-for=${m.tryForMs}ms`, json: { event: 'restarting', reconnectInMs: m.reconnectInMs, tryForMs: m.tryForMs } };
    case 'ping':
    case 'pong':
      return { text: `${m.type} ${Buffer.from(m.data).toString('hex')}`, json: { event: m.type, data: Buffer.from(m.data).toString('hex') } };
    case 'keepAlive':
      return { text: 'keepalive', json: { event: 'keepAlive' } };
    case 'unknown':
      return { text: `unknown frame type=0x${m.frameType.toString(16)} len=${m.length}`, json: { event: 'unknown', frameType: m.frameType, len: m.length } };
  }
}

async function connect(url: string, o: CommonOpts, out: Out, extra: Partial<DerpClientOptions> = {}): Promise<DerpClient> {
  const privateKey = o.keyFile !== undefined ? parsePrivateKeyFile(readFileSync(o.keyFile, 'utf8')) : generatePrivate();
  const opts: DerpClientOptions = {
    privateKey,
    websocket: o.websocket,
    connectTimeoutMs: o.timeout,
    tls: { insecure: o.insecure, ...(o.ca !== undefined ? { ca: readFileSync(o.ca) } : {}) },
    ...(o.meshPskFile !== undefined ? { meshKey: parseMeshPsk(readFileSync(o.meshPskFile, 'utf8')) } : {}),
    ...(o.fastStart !== undefined ? { serverKey: parsePeerKey(o.fastStart) } : {}),
    ...extra,
  };
  const c = await DerpClient.connect(url, opts);
  out(`connected self=${nodePublicText(c.publicKey)} server=${nodePublicText(c.serverKey)} version=${c.serverInfo.version}`, {
    event: 'connected', publicKey: nodePublicText(c.publicKey), serverKey: nodePublicText(c.serverKey), serverInfo: c.serverInfo,
  });
  return c;
}

/** Reads messages until `onMessage` returns true, the connection ends, or `ms` passes (0 = forever). */
async function pump(c: DerpClient, ms: number, onMessage: (m: DerpMessage) => boolean): Promise<'done' | 'timeout' | 'closed'> {
  const end = ms > 0 ? performance.now() + ms : Infinity;
  for (;;) {
    const left = end - performance.now();
    if (left <= 0) return 'timeout';
    let m: DerpMessage;
    try {
      m = await c.next(Number.isFinite(left) ? left : undefined);
    } catch (e) {
      return e instanceof WiremeshError && e.code === 'recv_timeout' ? 'timeout' : 'closed';
    }
    if (onMessage(m)) return 'done';
  }
}

function addCommon(cmd: Command): Command {
  return cmd
    .argument('<url>', 'DERP server, http(s)://host:port/derp')
    .option('--key-file <file>', 'private key (privkey:<hex> or derper JSON); a fresh key if omitted')
    .option('--mesh-psk-file <file>', 'mesh PSK (64 hex digits): connect as a mesh peer')
    .option('--fast-start <serverkey>', 'known server key (nodekey:… or hex): skip waiting for the 101')
    .option('--websocket', 'use WebSocket (subprotocol derp) instead of Upgrade: DERP', false)
    .option('--insecure', 'do not verify the TLS certificate', false)
    .option('--ca <file>', 'PEM CA bundle to trust')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .option('--timeout <ms>', 'connect timeout', (v) => positiveInt(v, '--timeout'), 10_000);
}

export async function run(argv: string[]): Promise<number> {
  let status = 0;
  const write = (s: string): boolean => process.stdout.write(s);
  const outFor = (o: CommonOpts): Out => (text, json) => void write(o.format === 'json' ? JSON.stringify(json) + '\n' : text + '\n');
  const action = (fn: (url: string, o: CommonOpts, out: Out, c: Command) => Promise<number>) =>
    async (url: string, o: CommonOpts, cmd: Command): Promise<void> => {
      try {
        status = await fn(url, o, outFor(o), cmd);
      } catch (e) {
        process.stderr.write(`wiremesh derp: ${(e as Error).message}\n`);
        status = 1;
      }
    };

  const program = cliCommand('wiremesh derp').description('DERP client tools (debugging, scripting)');

  addCommon(program.command('connect').description('connect, print the server key and info, and ping once'))
    .action(action(async (url, o, out) => {
      const c = await connect(url, o, out);
      const rtt = await c.ping();
      out(`ping rtt=${rtt.toFixed(2)}ms`, { event: 'ping', rttMs: rtt });
      c.close();
      return 0;
    }));

  addCommon(program.command('send').description('send packets to a peer key'))
    .requiredOption('--to <nodekey>', 'destination public key')
    .option('--data <text>', 'payload (UTF-8)', 'hello')
    .option('--hex <hex>', 'payload as hex (overrides --data)')
    .option('--count <n>', 'packets to send', (v) => positiveInt(v, '--count'), 1)
    .action(action(async (url, o, out, cmd) => {
      const so = cmd.opts<{ to: string; data: string; hex?: string; count: number }>();
      const to = parsePeerKey(so.to);
      const payload = so.hex !== undefined ? Buffer.from(so.hex, 'hex') : Buffer.from(so.data, 'utf8');
      const c = await connect(url, o, out);
      for (let i = 0; i < so.count; i++) c.send(to, payload);
      await c.ping(); // the server has read every packet once its pong comes back
      out(`sent ${so.count} packet(s) of ${payload.length} bytes to ${nodePublicText(to)}`, { event: 'sent', count: so.count, len: payload.length, to: nodePublicText(to) });
      c.close();
      return 0;
    }));

  addCommon(program.command('recv').description('print received packets (and other messages)'))
    .option('--count <n>', 'exit after this many packets (0 = never)', (v) => positiveInt(v, '--count'), 0)
    .option('--wait <ms>', 'exit with status 1 after this long (0 = never)', (v) => positiveInt(v, '--wait'), 0)
    .action(action(async (url, o, out, cmd) => {
      const ro = cmd.opts<{ count: number; wait: number }>();
      const c = await connect(url, o, out);
      let got = 0;
      const r = await pump(c, ro.wait, (m) => {
        if (m.type === 'keepAlive') return false;
        const d = describeMessage(m);
        out(d.text, d.json);
        if (m.type === 'recvPacket') got++;
        return ro.count > 0 && got >= ro.count;
      });
      c.close();
      return r === 'done' ? 0 : 1;
    }));

  addCommon(program.command('watch').description('mesh only: print PeerPresent/PeerGone for every client of the server'))
    .option('--wait <ms>', 'exit after this long (0 = never)', (v) => positiveInt(v, '--wait'), 0)
    .action(action(async (url, o, out, cmd) => {
      if (o.meshPskFile === undefined) throw new WiremeshError('usage', 'watch needs --mesh-psk-file (WatchConns is a mesh-only frame)');
      const c = await connect(url, o, out);
      c.watchConns();
      const r = await pump(c, cmd.opts<{ wait: number }>().wait, (m) => {
        if (m.type === 'peerPresent' || m.type === 'peerGone' || m.type === 'health' || m.type === 'restarting') {
          const d = describeMessage(m);
          out(d.text, d.json);
        }
        return false;
      });
      c.close();
      return r === 'closed' ? 1 : 0;
    }));

  addCommon(program.command('ping').description('DERP Ping/Pong round trips'))
    .option('--count <n>', 'pings to send', (v) => positiveInt(v, '--count'), 3)
    .option('--interval <ms>', 'pause between pings', (v) => positiveInt(v, '--interval'), 1000)
    .action(action(async (url, o, out, cmd) => {
      const po = cmd.opts<{ count: number; interval: number }>();
      const c = await connect(url, o, out);
      let failed = 0;
      for (let i = 0; i < po.count; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, po.interval));
        try {
          const rtt = await c.ping();
          out(`pong seq=${i} rtt=${rtt.toFixed(3)}ms`, { event: 'pong', seq: i, rttMs: rtt });
        } catch (e) {
          failed++;
          out(`timeout seq=${i} ${(e as Error).message}`, { event: 'timeout', seq: i, error: (e as Error).message });
        }
      }
      c.close();
      return failed === 0 ? 0 : 1;
    }));

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    const usage = commanderStatus(e);
    if (usage !== null) return usage;
    throw e;
  }
  return status;
}
