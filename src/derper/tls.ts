/**
 * Manual cert mode and TLS server options (spec/derp.md §3.3, §16.1): loads `<certdir>/<hostname>.crt/.key`
 * (hostname stripped to `[A-Za-z0-9.-]`), generates a self-signed IP cert when the files are missing and the
 * hostname is an IP, checks the cert is valid for the hostname, and builds Node TLS options: TLS ≥ 1.2, ALPN
 * `http/1.1`, SNI must equal a DNS hostname ("cert mismatch with hostname"), and the meta cert appended to the
 * served chain so Go clients use fast start. Adapter (reads/writes the cert files).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { WiremeshError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { TLS_CIPHERS, TLS_HANDSHAKE_TIMEOUT_MS } from './constants.ts';
import { writeFileAtomic } from './keyfile.ts';
import { certNamePin, generateIpCert } from './x509.ts';

/** The file stem derper uses for a hostname: every character outside `[A-Za-z0-9.-]` removed. */
export function certFileStem(hostname: string): string {
  return hostname.replace(/[^A-Za-z0-9.-]/g, '');
}

export interface ManualCert {
  /** PEM of the leaf followed by any intermediates, as read from the .crt file. */
  chainPem: string;
  keyPem: string;
  leaf: X509Certificate;
  /** True when the files were generated now. */
  generated: boolean;
  /** For an IP hostname: the ready-made DERPNode JSON pinning this cert. */
  derpNodeJson: string | null;
}

/** The DERPNode JSON derper logs for a self-signed IP cert (§16.1). */
export function derpNodeJson(ip: string, leafDer: Uint8Array): string {
  return JSON.stringify({ Name: 'custom', RegionID: 900, HostName: ip, CertName: certNamePin(leafDer) });
}

/** The file's text, or null when it does not exist (other errors propagate). */
export async function readIfExists(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** Loads (or, for an IP hostname, creates) the manual-mode certificate. */
export async function loadManualCert(opts: { certDir: string; hostname: string; nowMs: number; logger: Logger }): Promise<ManualCert> {
  const { certDir, hostname, logger } = opts;
  const stem = certFileStem(hostname);
  if (stem === '') throw new WiremeshError('tls_bad_hostname', `--hostname ${JSON.stringify(hostname)} has no usable characters`);
  const crtFile = path.join(certDir, `${stem}.crt`);
  const keyFile = path.join(certDir, `${stem}.key`);
  const ip = isIP(hostname) !== 0;
  let chainPem = await readIfExists(crtFile);
  let keyPem = await readIfExists(keyFile);
  let generated = false;
  if (chainPem === null || keyPem === null) {
    if (!ip) {
      throw new WiremeshError('tls_cert_missing', `manual cert mode: cannot read ${crtFile} and ${keyFile}; provide a certificate for ${hostname}`);
    }
    const g = generateIpCert(hostname, opts.nowMs);
    await mkdir(certDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(keyFile, g.keyPem, 0o600);
    await writeFileAtomic(crtFile, g.certPem, 0o644);
    chainPem = g.certPem;
    keyPem = g.keyPem;
    generated = true;
    logger.info('generated self-signed IP certificate', { cert: crtFile, key: keyFile });
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chainPem);
    createPrivateKey(keyPem);
  } catch (e) {
    throw new WiremeshError('tls_cert_parse', `manual cert mode: cannot parse ${crtFile}/${keyFile}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const valid = ip ? leaf.checkIP(hostname) !== undefined : leaf.checkHost(hostname) !== undefined;
  if (!valid) throw new WiremeshError('tls_cert_hostname', `cert invalid for hostname ${JSON.stringify(hostname)}`);
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new WiremeshError('tls_key_mismatch', `${keyFile} does not match ${crtFile}`);
  const node = ip ? derpNodeJson(hostname, new Uint8Array(leaf.raw)) : null;
  if (node !== null) {
    logger.info(`using self-signed certificate for IP address ${hostname}; configure it in the DERP map as: ${node}`);
  }
  return { chainPem, keyPem, leaf, generated, derpNodeJson: node };
}

/** Normalises PEM text so certificates can be concatenated (each block ends with a newline). */
const withNewline = (pem: string): string => (pem.endsWith('\n') ? pem : pem + '\n');

/** True when the SNI a client sent is acceptable for `hostname` (IP hostnames accept any SNI). */
export function sniAllowed(hostname: string, servername: string | undefined | null | false): boolean {
  if (isIP(hostname) !== 0) return true;
  return typeof servername === 'string' && servername.toLowerCase() === hostname.toLowerCase();
}

/**
 * Node TLS options for the derper listener. The served chain is leaf + intermediates + meta cert.
 * `SNICallback` refuses a mismatching SNI during the handshake; a ClientHello without SNI cannot be refused
 * there in Node, so derper.ts drops such connections right after the handshake (see docs/derper.md).
 */
export function tlsServerOptions(cert: { chainPem: string; keyPem: string }, metaCertPem: string | null, hostname: string): TlsOptions {
  const ctx: SecureContextOptions = {
    cert: withNewline(cert.chainPem) + (metaCertPem ?? ''),
    key: cert.keyPem,
    minVersion: 'TLSv1.2',
    ciphers: TLS_CIPHERS,
    honorCipherOrder: true,
  };
  return {
    ...ctx,
    ALPNProtocols: ['http/1.1'],
    handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
    SNICallback: (servername, cb) => {
      if (sniAllowed(hostname, servername)) cb(null, undefined);
      else cb(new WiremeshError('tls_sni_mismatch', `cert mismatch with hostname: ${JSON.stringify(servername)}`), undefined);
    },
  };
}
