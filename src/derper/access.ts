/**
 * Who may see `/debug/…` (spec/derp.md §16.3): loopback, Tailscale IPs (100.64.0.0/10 except 100.115.92.0/23,
 * fd7a:115c:a1e0::/48), the single IP in TS_ALLOW_DEBUG_IP, CIDRs in TS_DEBUG_TRUSTED_CIDRS, or a GET with
 * `?debugkey=` equal to the trimmed contents of the TS_DEBUG_KEY_PATH file. Any X-Forwarded-For denies.
 * A pure function of the request facts and a policy; the policy is built once from the environment.
 */
import { BlockList, isIP } from 'node:net';
import { constantTimeEqual } from '../types/key.ts';

export interface DebugRequestFacts {
  /** The socket's remote address as Node reports it (may be `::ffff:a.b.c.d`). */
  remoteAddress: string;
  /** True when the request carries any X-Forwarded-For header. */
  forwardedFor: boolean;
  method: string;
  /** The `debugkey` query parameter, if any. */
  debugKeyParam: string | null;
}

export interface DebugAccessPolicy {
  /** TS_ALLOW_DEBUG_IP: exact address string allowed. */
  allowIp: string | null;
  /** TS_DEBUG_TRUSTED_CIDRS, already parsed. */
  trusted: BlockList;
  /** Trimmed contents of the TS_DEBUG_KEY_PATH file, or null. */
  debugKey: string | null;
}

const tailscaleRanges = new BlockList();
tailscaleRanges.addSubnet('100.64.0.0', 10, 'ipv4');
tailscaleRanges.addSubnet('fd7a:115c:a1e0::', 48, 'ipv6');
const chromeOsVmRange = new BlockList();
chromeOsVmRange.addSubnet('100.115.92.0', 23, 'ipv4');
const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** `::ffff:a.b.c.d` → `a.b.c.d`; other addresses unchanged (zone ids dropped). */
export function unmapAddress(addr: string): string {
  const noZone = addr.split('%')[0] ?? addr;
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(noZone);
  return m?.[1] ?? noZone;
}

function family(ip: string): 'ipv4' | 'ipv6' | null {
  const v = isIP(ip);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : null;
}

export function isLoopbackIp(ip: string): boolean {
  const f = family(ip);
  return f !== null && loopback.check(ip, f);
}

/** Tailscale's CGNAT range minus the ChromeOS VM range, plus the Tailscale ULA range. */
export function isTailscaleIp(ip: string): boolean {
  const f = family(ip);
  if (f === null) return false;
  return tailscaleRanges.check(ip, f) && !chromeOsVmRange.check(ip, f);
}

/** Parses a comma-separated CIDR list (bad entries are returned in `bad`). */
export function parseTrustedCidrs(list: string): { trusted: BlockList; bad: string[] } {
  const trusted = new BlockList();
  const bad: string[] = [];
  for (const raw of list.split(',')) {
    const s = raw.trim();
    if (s === '') continue;
    const [ip = '', bitsText] = s.split('/');
    const f = family(ip);
    const bits = Number(bitsText);
    const max = f === 'ipv4' ? 32 : 128;
    if (f === null || bitsText === undefined || !/^\d+$/.test(bitsText) || bits > max) {
      bad.push(s);
      continue;
    }
    trusted.addSubnet(ip, bits, f);
  }
  return { trusted, bad };
}

export function emptyDebugPolicy(): DebugAccessPolicy {
  return { allowIp: null, trusted: new BlockList(), debugKey: null };
}

export function debugAccessAllowed(req: DebugRequestFacts, policy: DebugAccessPolicy): boolean {
  if (req.forwardedFor) return false;
  const ip = unmapAddress(req.remoteAddress);
  const f = family(ip);
  if (f === null) return false;
  if (isTailscaleIp(ip) || isLoopbackIp(ip)) return true;
  if (policy.allowIp !== null && policy.allowIp !== '' && ip === policy.allowIp) return true;
  if (policy.trusted.check(ip, f)) return true;
  if (req.method === 'GET' && policy.debugKey !== null && policy.debugKey !== '' && req.debugKeyParam !== null && req.debugKeyParam !== '') {
    const a = Buffer.from(req.debugKeyParam);
    const b = Buffer.from(policy.debugKey);
    return constantTimeEqual(a, b);
  }
  return false;
}
