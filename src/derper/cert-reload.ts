/**
 * Manual-mode certificate reload without a restart (issue #6 item 3; the cert files of spec/derp.md §16.1).
 * Go's derper reads `<certdir>/<hostname>.crt/.key` once; wiremesh watches the directory (fs.watch, plus a
 * poll of the files' mtime/size/inode as a fallback where watch events are lost) and, when the pair changed and
 * is valid for the hostname, hands it to `onCert`, which swaps the listener's secure context
 * (`tls.Server.setSecureContext`): new handshakes get the new certificate, established connections are untouched.
 * An invalid or half-written pair is logged and ignored; the old certificate stays in use. Adapter (fs).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import type { SecureContextOptions } from 'node:tls';
import { WiremeshError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Clock, Timer } from '../time/clock.ts';
import { TLS_CIPHERS } from './constants.ts';
import { CERT_RELOAD_DEBOUNCE_MS, CERT_RELOAD_POLL_MS } from './ops-constants.ts';
import { certFileStem } from './tls.ts';

export interface CertPair {
  /** Leaf PEM followed by any intermediates. */
  chainPem: string;
  keyPem: string;
}

export interface LoadedCert extends CertPair {
  leaf: X509Certificate;
}

/** The secure-context part of the listener options for a cert pair with the meta cert appended (§3.3). */
export function secureContextOptions(cert: CertPair, metaCertPem: string | null): SecureContextOptions {
  const chain = cert.chainPem.endsWith('\n') ? cert.chainPem : cert.chainPem + '\n';
  return { cert: chain + (metaCertPem ?? ''), key: cert.keyPem, minVersion: 'TLSv1.2', ciphers: TLS_CIPHERS, honorCipherOrder: true };
}

/** Parses and checks a pair: the leaf is valid for `hostname` (DNS or IP) and matches the key. Throws WiremeshError. */
export function checkCertPair(pair: CertPair, hostname: string): LoadedCert {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(pair.chainPem);
  } catch (e) {
    throw new WiremeshError('tls_cert_parse', `cannot parse certificate: ${e instanceof Error ? e.message : String(e)}`);
  }
  let key;
  try {
    key = createPrivateKey(pair.keyPem);
  } catch (e) {
    throw new WiremeshError('tls_cert_parse', `cannot parse private key: ${e instanceof Error ? e.message : String(e)}`);
  }
  const valid = isIP(hostname) !== 0 ? leaf.checkIP(hostname) !== undefined : leaf.checkHost(hostname) !== undefined;
  if (!valid) throw new WiremeshError('tls_cert_hostname', `cert invalid for hostname ${JSON.stringify(hostname)}`);
  if (!leaf.checkPrivateKey(key)) throw new WiremeshError('tls_key_mismatch', 'private key does not match the certificate');
  return { ...pair, leaf };
}

export interface CertWatcherOptions {
  certDir: string;
  hostname: string;
  /** Fingerprint (SHA-256, as X509Certificate.fingerprint256) of the certificate in use at start. */
  currentFingerprint: string;
  onCert(cert: LoadedCert): void;
  clock: Clock;
  logger: Logger;
  pollMs?: number;
  debounceMs?: number;
}

/** Watches the manual cert pair and calls `onCert` whenever a new valid pair appears. */
export class CertWatcher {
  readonly #o: CertWatcherOptions;
  readonly #crt: string;
  readonly #key: string;
  #fingerprint: string;
  #watcher: FSWatcher | null = null;
  #poll: Timer | null = null;
  #debounce: Timer | null = null;
  #lastStat = '';
  #checking: Promise<boolean> | null = null;
  /** Number of successful reloads (exported as a metric). */
  reloads = 0;
  /** Number of reload attempts rejected (invalid pair). */
  failures = 0;

  constructor(o: CertWatcherOptions) {
    this.#o = o;
    const stem = certFileStem(o.hostname);
    this.#crt = path.join(o.certDir, `${stem}.crt`);
    this.#key = path.join(o.certDir, `${stem}.key`);
    this.#fingerprint = o.currentFingerprint;
  }

  async start(): Promise<void> {
    this.#lastStat = await this.#statSignature();
    try {
      this.#watcher = watch(this.#o.certDir, { persistent: false }, (_event, file) => {
        const name = file === null ? null : String(file);
        if (name === null || this.#crt.endsWith(path.sep + name) || this.#key.endsWith(path.sep + name)) this.#schedule();
      });
      this.#watcher.on('error', (e) => this.#o.logger.warn('cert dir watch failed; polling only', { err: e.message }));
    } catch (e) {
      this.#o.logger.warn('cannot watch cert dir; polling only', { dir: this.#o.certDir, err: e instanceof Error ? e.message : String(e) });
    }
    this.#poll = this.#o.clock.setInterval(() => {
      void this.#statSignature().then((sig) => {
        if (sig !== this.#lastStat) this.#schedule();
      });
    }, this.#o.pollMs ?? CERT_RELOAD_POLL_MS);
  }

  stop(): void {
    this.#watcher?.close();
    this.#watcher = null;
    this.#poll?.cancel();
    this.#debounce?.cancel();
  }

  /** Reads the pair now and applies it if it changed and is valid; true when a new certificate was applied. */
  check(): Promise<boolean> {
    this.#checking ??= this.#check().finally(() => {
      this.#checking = null;
    });
    return this.#checking;
  }

  #schedule(): void {
    this.#debounce?.cancel();
    this.#debounce = this.#o.clock.setTimeout(() => void this.check(), this.#o.debounceMs ?? CERT_RELOAD_DEBOUNCE_MS);
  }

  async #statSignature(): Promise<string> {
    const parts = await Promise.all(
      [this.#crt, this.#key].map((f) => stat(f).then((s) => `${s.ino}:${s.size}:${s.mtimeMs}`, () => 'missing')),
    );
    return parts.join('|');
  }

  async #check(): Promise<boolean> {
    this.#lastStat = await this.#statSignature();
    let pair: CertPair;
    try {
      pair = { chainPem: await readFile(this.#crt, 'utf8'), keyPem: await readFile(this.#key, 'utf8') };
    } catch (e) {
      this.#o.logger.warn('cert reload: cannot read the cert files; keeping the current certificate', { err: e instanceof Error ? e.message : String(e) });
      return false;
    }
    let loaded: LoadedCert;
    try {
      loaded = checkCertPair(pair, this.#o.hostname);
    } catch (e) {
      this.failures++;
      this.#o.logger.warn('cert reload: new files rejected; keeping the current certificate', { err: e instanceof Error ? e.message : String(e) });
      return false;
    }
    if (loaded.leaf.fingerprint256 === this.#fingerprint) return false;
    this.#o.onCert(loaded);
    this.#fingerprint = loaded.leaf.fingerprint256;
    this.reloads++;
    this.#o.logger.info('reloaded TLS certificate', { cert: this.#crt, serial: loaded.leaf.serialNumber, notAfter: loaded.leaf.validTo });
    return true;
  }
}
