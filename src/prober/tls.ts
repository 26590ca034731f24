/**
 * The `tls` probe class (spec/derp.md §18): dial `HostName:DERPPort` with standard verification (system roots
 * plus SSL_CERT_FILE, SNI = HostName unless it is an IP literal, as Go does; InsecureForTests does not apply),
 * then check every presented certificate that is not self-signed (SubjectKeyId ≠ AuthorityKeyId) for a
 * NotBefore in the future or an expiry within EXPIRES_SOON_MS, and require a CRL distribution point on Let's
 * Encrypt leaves issued after 2025-05-07. `validateCerts` is the pure rule; `tlsProbe` the adapter around it.
 */
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { WiremeshError } from '../errors.ts';
import { EXPIRES_SOON_MS } from './constants.ts';
import { certKeyIds } from './certinfo.ts';
import type { ProbeClass, ProbeContext } from './prober.ts';
import { trustedRoots } from './roots.ts';
import { formatGoDuration } from './util.ts';

/** What the expiry rules look at, per presented certificate. */
export interface CertFacts {
  subject: string;
  issuer: string;
  notBefore: number;
  notAfter: number;
  subjectKeyId: string;
  authorityKeyId: string;
  hasCrlDistributionPoint: boolean;
}

/** Let's Encrypt leaves issued after this instant must carry a CRL distribution point (§18). */
export const LE_CRL_REQUIRED_AFTER_MS = Date.UTC(2025, 4, 7);

/** The §18 rules over a chain (leaf first) at wall time `now`; returns every violation (empty = good). */
export function validateCerts(chain: readonly CertFacts[], now: number): string[] {
  const errs: string[] = [];
  for (const c of chain) {
    if (c.subjectKeyId === c.authorityKeyId) continue; // self-signed (e.g. DERP's meta cert): skipped, as Go does
    if (now < c.notBefore) errs.push(`one of the certs has NotBefore in the future (${new Date(c.notBefore).toISOString()}): ${c.subject}`);
    if (now + EXPIRES_SOON_MS > c.notAfter) errs.push(`one of the certs expires in ${formatGoDuration(c.notAfter - now)}: ${c.subject}`);
  }
  const leaf = chain[0];
  if (leaf !== undefined && /O=Let's Encrypt/.test(leaf.issuer) && leaf.notBefore > LE_CRL_REQUIRED_AFTER_MS && !leaf.hasCrlDistributionPoint) {
    errs.push(`no CRL distribution point in Let's Encrypt leaf cert for ${leaf.subject}`);
  }
  return errs;
}

/** Facts of one DER certificate. */
export function certFacts(der: Uint8Array): CertFacts {
  const x = new X509Certificate(der);
  const ids = certKeyIds(der);
  return {
    subject: x.subject.replaceAll('\n', ','),
    issuer: x.issuer.replaceAll('\n', ','),
    notBefore: x.validFromDate.getTime(),
    notAfter: x.validToDate.getTime(),
    ...ids,
  };
}

/** The peer's chain as presented (leaf first), following issuer links until they loop. */
function peerChain(sock: tls.TLSSocket): Uint8Array[] {
  const out: Uint8Array[] = [];
  const seen = new Set<string>();
  let c: tls.DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
  while (c !== undefined && c.raw !== undefined && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(c.raw);
    c = c.issuerCertificate;
  }
  return out;
}

function dialTls(host: string, port: number, signal: AbortSignal): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host,
      port,
      ...(net.isIP(host) === 0 ? { servername: host } : {}),
      ca: trustedRoots(),
      rejectUnauthorized: true,
    });
    const onAbort = (): void => {
      sock.destroy();
      reject(signal.reason instanceof Error ? signal.reason : new WiremeshError('probe_aborted', 'aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    sock.once('secureConnect', () => {
      signal.removeEventListener('abort', onAbort);
      resolve(sock);
    });
    sock.once('error', (e) => {
      signal.removeEventListener('abort', onAbort);
      sock.destroy();
      reject(e);
    });
  });
}

/** The `tls` probe class for `host:port`; `wallNow` is the wall clock (ms since the epoch) for expiry checks. */
export function tlsProbe(host: string, port: number, wallNow: () => number): ProbeClass {
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    class: 'derp_tls',
    probe: async (ctx: ProbeContext) => {
      let sock: tls.TLSSocket;
      try {
        sock = await dialTls(host, port, ctx.signal);
      } catch (e) {
        throw new WiremeshError('tls_connect', `connecting to ${JSON.stringify(target)}: ${(e as Error).message}`);
      }
      try {
        const errs = validateCerts(peerChain(sock).map(certFacts), wallNow());
        if (errs.length > 0) throw new WiremeshError('tls_cert', errs.join('; '));
      } finally {
        sock.destroy();
      }
    },
  };
}
