/**
 * SSDP codec (UPnP Device Architecture 1.1 §1.3; spec/nat-traversal.md §8.1): the M-SEARCH requests the probe sends
 * and a bounded parser for the unicast HTTPU responses an Internet Gateway Device returns. Pure.
 */
import { WiremeshError } from '../../errors.ts';
import { PortmapErrorCode, SSDP_MAX_RESPONSE_LEN, SSDP_MULTICAST_V4, SSDP_PORT, UPNP_MAX_FIELD_LEN } from '../constants.ts';

/** Search targets the probe uses: everything (unicast to the gateway), then the IGD device type. */
export const SearchTarget = {
  All: 'ssdp:all',
  Igd1: 'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
  Igd2: 'urn:schemas-upnp-org:device:InternetGatewayDevice:2',
} as const;

/** An M-SEARCH request (MX 2, MAN "ssdp:discover"), as bytes ready to send. */
export function encodeMSearch(st: string, host = `${SSDP_MULTICAST_V4}:${SSDP_PORT}`): Uint8Array {
  const text = `M-SEARCH * HTTP/1.1\r\nHOST: ${host}\r\nST: ${st}\r\nMAN: "ssdp:discover"\r\nMX: 2\r\n\r\n`;
  return new TextEncoder().encode(text);
}

export interface SsdpResponse {
  /** URL of the root device description. */
  location: string;
  st: string;
  usn: string;
  server: string;
  /** 2 for InternetGatewayDevice:2, 1 for any other IGD. */
  igdVersion: 1 | 2;
}

/**
 * Parses an SSDP search response. Returns null if it is not an `HTTP/1.1 200` response or does not mention
 * `:InternetGatewayDevice:` (spec §8.1: only IGD replies count). Throws PORTMAP_TOO_LARGE over 2 KiB and
 * PORTMAP_MALFORMED for a missing or non-http Location.
 */
export function parseSsdpResponse(data: Uint8Array): SsdpResponse | null {
  if (data.length > SSDP_MAX_RESPONSE_LEN) {
    throw new WiremeshError(PortmapErrorCode.TooLarge, `SSDP response of ${data.length} bytes`);
  }
  const text = new TextDecoder('utf-8', { fatal: false }).decode(data);
  const lines = text.split(/\r?\n/);
  if (!/^HTTP\/1\.[01] 200\b/.test(lines[0] ?? '')) return null;
  if (!text.includes(':InternetGatewayDevice:')) return null;
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const name = line.slice(0, i).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, line.slice(i + 1).trim().slice(0, UPNP_MAX_FIELD_LEN));
  }
  const location = headers.get('location') ?? '';
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    throw new WiremeshError(PortmapErrorCode.Malformed, `SSDP response without a valid Location: ${JSON.stringify(location)}`);
  }
  if (url.protocol !== 'http:') {
    throw new WiremeshError(PortmapErrorCode.Malformed, `SSDP Location is not http: ${JSON.stringify(location)}`);
  }
  return {
    location: url.href,
    st: headers.get('st') ?? '',
    usn: headers.get('usn') ?? '',
    server: headers.get('server') ?? '',
    igdVersion: text.includes(':InternetGatewayDevice:2') ? 2 : 1,
  };
}
