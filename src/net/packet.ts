/**
 * The datagram seam (DESIGN.md "Engines"): engines (STUN client, netcheck, port mapping, magicsock) send and
 * receive through a PacketConn, implemented over node:dgram (src/net/udp.ts) and over the virtual lab (test/vlab).
 */
export interface AddrPort {
  /** Textual IP: dotted IPv4 or IPv6 without brackets (never IPv4-mapped; adapters unmap). */
  address: string;
  port: number;
}

export type PacketHandler = (data: Uint8Array, from: AddrPort) => void;

export interface PacketConn {
  send(data: Uint8Array, to: AddrPort): void;
  /** Registers a receive handler; returns a function that removes it. */
  onMessage(handler: PacketHandler): () => void;
  localAddr(): AddrPort;
  close(): void;
}

/** `1.2.3.4:5` or `[::1]:5`. */
export function formatAddrPort(a: AddrPort): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** Parses `1.2.3.4:5`, `[::1]:5`; throws on anything else. */
export function parseAddrPort(s: string): AddrPort {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s) ?? /^([0-9.]+|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
  if (m === null || Number(m[2]) > 65535) throw new Error(`not an address:port: ${JSON.stringify(s)}`);
  return { address: m[1]!, port: Number(m[2]) };
}

/** Strips the `::ffff:` prefix of an IPv4-mapped IPv6 address. */
export function unmapAddress(address: string): string {
  return address.toLowerCase().startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
