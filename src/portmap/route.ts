/**
 * Default-gateway discovery, pure part (spec/nat-traversal.md §8: the gateway is the IPv4 default route's next hop,
 * and the local address is ours on that interface). Parses Linux /proc/net/route text; the adapter reads the file.
 */
export interface DefaultRoute {
  iface: string;
  gateway: string;
  metric: number;
}

const RTF_UP = 0x1;
const RTF_GATEWAY = 0x2;

/** Little-endian hex (as the kernel prints it) → dotted IPv4. */
function hexToIPv4(h: string): string | null {
  if (!/^[0-9A-Fa-f]{8}$/.test(h)) return null;
  const n = parseInt(h, 16);
  return `${n & 0xff}.${(n >>> 8) & 0xff}.${(n >>> 16) & 0xff}.${(n >>> 24) & 0xff}`;
}

/** The IPv4 default route with a gateway and the lowest metric, or null. */
export function parseProcNetRoute(text: string): DefaultRoute | null {
  let best: DefaultRoute | null = null;
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [iface = '', dest = '', gw = '', flags = '', , , metric = '0', mask = ''] = f;
    const fl = parseInt(flags, 16);
    if (dest !== '00000000' || mask !== '00000000' || (fl & RTF_UP) === 0 || (fl & RTF_GATEWAY) === 0) continue;
    const gateway = hexToIPv4(gw);
    if (gateway === null || gateway === '0.0.0.0') continue;
    const r = { iface, gateway, metric: Number(metric) };
    if (best === null || r.metric < best.metric) best = r;
  }
  return best;
}

export interface IfaceAddr {
  address: string;
  netmask: string;
  family: string;
}

const toInt = (ip: string): number => ip.split('.').reduce((a, o) => ((a << 8) | Number(o)) >>> 0, 0);

/** Our IPv4 address on `iface`, preferring one on the gateway's subnet. */
export function pickLocalAddress(addrs: readonly IfaceAddr[], gateway: string): string | null {
  const v4 = addrs.filter((a) => a.family === 'IPv4');
  const same = v4.find((a) => ((toInt(a.address) ^ toInt(gateway)) & toInt(a.netmask)) === 0);
  return (same ?? v4[0])?.address ?? null;
}
