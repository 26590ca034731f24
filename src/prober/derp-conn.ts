/**
 * The DERP connection seam of the mesh / bw / qd probes (spec/derp.md §18 "newConn"): a `DerpDialer` opens a
 * client to one node with a fresh key, and `connectNode` applies derpprobe's checks — a prober connection must
 * be TLS with the server name equal to the node's HostName (Go sends no SNI for an IP HostName, so such a node
 * fails with `TLS server name "" != derp hostname "…"` in both probers), and ServerInfo must have arrived (the
 * client's connect resolves only after it). `derpClientDialer` is the adapter over src/derp/client.ts.
 */
import net from 'node:net';
import { WiremeshError } from '../errors.ts';
import { DerpClient, type DerpMessage } from '../derp/client.ts';
import { derpPort, type DerpNode } from '../derpmap/derpmap.ts';
import { generatePrivate, type NodePublic } from '../types/key.ts';
import { trustedRoots } from './roots.ts';
import { abortable } from './util.ts';

/** One probe-side DERP connection. */
export interface ProbeConn {
  readonly publicKey: NodePublic;
  /** TLS facts, or null for a plain-HTTP connection. `serverName` is the SNI sent ('' when none). */
  readonly tls: { serverName: string } | null;
  send(dst: NodePublic, data: Uint8Array): void;
  /** The next message; rejects once the connection has ended. */
  next(): Promise<DerpMessage>;
  close(): void;
}

export interface DialOptions {
  isProber: boolean;
  meshKey?: Uint8Array;
  signal: AbortSignal;
}

export type DerpDialer = (node: DerpNode, opts: DialOptions) => Promise<ProbeConn>;

/** Opens a connection to `node` and applies derpprobe's prober checks (§18). */
export async function connectNode(dial: DerpDialer, node: DerpNode, opts: DialOptions): Promise<ProbeConn> {
  const c = await dial(node, opts);
  if (opts.isProber) {
    const fail = (msg: string): never => {
      c.close();
      throw new WiremeshError('probe_tls_state', msg);
    };
    if (c.tls === null) fail('no TLS state');
    else if (c.tls.serverName !== node.HostName) fail(`TLS server name ${JSON.stringify(c.tls.serverName)} != derp hostname ${JSON.stringify(node.HostName)}`);
  }
  return c;
}

/** The host a node is dialled at: its IPv4, else its IPv6, else HostName (as Go's derphttp does). */
export function dialHost(node: DerpNode): string {
  const usable = (ip: string | undefined): ip is string => ip !== undefined && ip !== '' && ip !== 'none';
  if (usable(node.IPv4)) return node.IPv4;
  if (usable(node.IPv6)) return node.IPv6;
  return node.HostName;
}

/** Dials over TLS (`https://<ip>:<DERPPort>/derp`, SNI = HostName unless an IP, InsecureForTests honoured). */
export function derpClientDialer(opts: { connectTimeoutMs?: number } = {}): DerpDialer {
  return async (node, o) => {
    const host = dialHost(node);
    const port = derpPort(node);
    const serverName = net.isIP(node.HostName) === 0 ? node.HostName : '';
    const url = `https://${host.includes(':') ? `[${host}]` : host}:${port}/derp`;
    const insecure = node.InsecureForTests === true;
    const connecting = DerpClient.connect(url, {
      privateKey: generatePrivate(),
      isProber: o.isProber,
      ...(o.meshKey !== undefined ? { meshKey: o.meshKey } : {}),
      ...(opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
      tls: {
        insecure,
        ...(serverName !== '' ? { servername: serverName } : {}),
        ...(insecure ? {} : { ca: trustedRoots().join('') }),
      },
    });
    // If the probe is aborted mid-connect, close the client whenever the connect settles.
    connecting.then((c) => { if (o.signal.aborted) c.close(); }, () => {});
    const client = await abortable(connecting, o.signal);
    return {
      publicKey: client.publicKey,
      tls: { serverName },
      send: (dst, data) => client.send(dst, data),
      next: () => client.next(),
      close: () => client.close(),
    };
  };
}
