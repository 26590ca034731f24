/**
 * PacketConn over node:dgram (adapter layer, DESIGN.md "Architecture: four layers"): the UDP socket behind STUN
 * (spec/derp.md §15), netcheck (spec/nat-traversal.md §7.2) and port mapping (§8). One socket per family;
 * addresses handed to handlers are unmapped.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { unmapAddress, type AddrPort, type PacketConn, type PacketHandler } from './packet.ts';

export interface UdpOptions {
  /** Address to bind; default 0.0.0.0 (or :: when family is 6). */
  host?: string;
  port?: number;
  family?: 4 | 6;
  reuseAddr?: boolean;
}

export async function listenUdp(opts: UdpOptions = {}): Promise<PacketConn> {
  const family = opts.family ?? (opts.host !== undefined && isIPv6(opts.host) ? 6 : 4);
  const sock = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', reuseAddr: opts.reuseAddr ?? false });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ port: opts.port ?? 0, address: opts.host ?? (family === 6 ? '::' : '0.0.0.0') }, () => {
      sock.off('error', reject);
      resolve();
    });
  });
  const handlers = new Set<PacketHandler>();
  sock.on('message', (msg, rinfo) => {
    const from = { address: unmapAddress(rinfo.address), port: rinfo.port };
    for (const h of handlers) h(msg, from);
  });
  sock.on('error', () => {
    /* ICMP errors (ECONNREFUSED) on UDP are not fatal to a listening socket */
  });
  let closed = false;
  return {
    send(data: Uint8Array, to: AddrPort): void {
      if (!closed) sock.send(data, to.port, to.address);
    },
    onMessage(handler: PacketHandler): () => void {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    localAddr(): AddrPort {
      const a = sock.address();
      return { address: unmapAddress(a.address), port: a.port };
    },
    close(): void {
      if (closed) return;
      closed = true;
      sock.close();
    },
  };
}
