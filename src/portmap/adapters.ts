/**
 * Port-mapping adapters: the default gateway from /proc/net/route + os.networkInterfaces(), the HTTP seam over
 * node:http (bounded body, timeout), and the random source over node:crypto. The only portmap code doing I/O
 * (spec/nat-traversal.md §8: the gateway is the default route's next hop; §8.4 UPnP over HTTP).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { networkInterfaces } from 'node:os';
import { WiremeshError } from '../errors.ts';
import { PortmapErrorCode } from './constants.ts';
import { parseProcNetRoute, pickLocalAddress } from './route.ts';
import type { HttpClient } from './upnp/igd.ts';

export interface GatewayInfo {
  gateway: string;
  localAddress: string;
  iface: string;
}

/** The IPv4 default gateway of this network namespace and our address towards it. */
export function discoverGateway(): GatewayInfo {
  let text: string;
  try {
    text = readFileSync('/proc/net/route', 'utf8');
  } catch (e) {
    throw new WiremeshError(PortmapErrorCode.NoGateway, `cannot read /proc/net/route: ${String(e)}`);
  }
  const route = parseProcNetRoute(text);
  if (route === null) throw new WiremeshError(PortmapErrorCode.NoGateway, 'no IPv4 default route');
  const local = pickLocalAddress(networkInterfaces()[route.iface] ?? [], route.gateway);
  if (local === null) throw new WiremeshError(PortmapErrorCode.NoGateway, `no IPv4 address on ${route.iface}`);
  return { gateway: route.gateway, localAddress: local, iface: route.iface };
}

export const cryptoRandom = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

/** HTTP/1.1 over node:http, no keep-alive, body capped at req.maxBytes (PORTMAP_TOO_LARGE), timeout req.timeoutMs. */
export const nodeHttp: HttpClient = (req) =>
  new Promise((resolve, reject) => {
    const body = req.body === undefined ? undefined : Buffer.from(req.body, 'utf8');
    const r = http.request(req.url, {
      method: req.method,
      headers: { ...req.headers, ...(body === undefined ? {} : { 'Content-Length': String(body.length) }), Connection: 'close' },
      agent: false,
      timeout: req.timeoutMs,
    }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > req.maxBytes) {
          r.destroy(new WiremeshError(PortmapErrorCode.TooLarge, `HTTP body over ${req.maxBytes} bytes from ${req.url}`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    r.on('timeout', () => r.destroy(new WiremeshError(PortmapErrorCode.Timeout, `HTTP ${req.method} ${req.url} timed out`)));
    r.on('error', reject);
    r.end(body);
  });
