/**
 * Trust roots for the prober's TLS checks, like Go on Linux (spec/derp.md §18, §19.3): the system roots plus
 * the PEM file named by `SSL_CERT_FILE` when set (how tests trust a derper's self-signed certificate). Adapter.
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

let cached: { key: string; roots: string[] } | null = null;

/** PEM strings of every trusted root; `env` defaults to process.env. */
export function trustedRoots(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const file = env.SSL_CERT_FILE ?? '';
  if (cached !== null && cached.key === file) return cached.roots;
  const roots = new Set<string>(tls.getCACertificates('system'));
  if (file !== '') {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)) roots.add(m[0] + '\n');
  }
  cached = { key: file, roots: [...roots] };
  return cached.roots;
}
