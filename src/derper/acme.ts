/**
 * `--certmode letsencrypt` (spec/derp.md §16.1: "Under letsencrypt, ACME HTTP-01 is also served here [port 80]"):
 * an ACME client built on the `acme-client` package. It keeps an account key and the certificate in `--certdir`
 * (`acme_account.key`, `<host>.crt`, `<host>.key`: the same file names manual mode reads, so a directory can be
 * switched between modes), answers HTTP-01 challenges on the port-80 listener
 * (`/.well-known/acme-challenge/<token>`), and renews when 2/3 of the certificate's lifetime has passed (Let's
 * Encrypt: day 60 of 90), with capped exponential retry on failure. Renewal timers run on an injected Clock.
 *
 * Differences from Go's autocert: issuance happens at start-up (and on renewal), not on the first handshake;
 * until the first certificate exists, the listener serves a self-signed placeholder for the hostname. Only the
 * configured hostname is ever requested (Go's HostWhitelist). `--acme-directory-url` points at another ACME
 * server (e.g. pebble in the lab); `--acme-ca-file` adds a CA for that server's HTTPS. The CA is installed on
 * acme-client's shared axios instance (process-wide), which is fine for one derper per process. Adapter.
 */
import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import path from 'node:path';
import { rootCertificates } from 'node:tls';
import { WiremeshError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Clock, Timer } from '../time/clock.ts';
import { checkCertPair, type LoadedCert } from './cert-reload.ts';
import { writeFileAtomic } from './keyfile.ts';
import {
  ACME_ISSUE_TIMEOUT_MS, ACME_MAX_PENDING_TOKENS, ACME_PLACEHOLDER_VALIDITY_MS, ACME_RENEW_FRACTION, ACME_RETRY_MAX_MS,
  ACME_RETRY_MIN_MS, MAX_TIMER_MS,
} from './ops-constants.ts';
import { certFileStem, readIfExists } from './tls.ts';
import { basicConstraintsLeaf, buildCertificate, derToPem, extKeyUsageServerAuth, keyUsageDigitalSignature, subjectAltName } from './x509.ts';

export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';
export const ACME_ACCOUNT_KEY_FILE = 'acme_account.key';

export interface AcmeOptions {
  hostname: string;
  certDir: string;
  directoryUrl: string;
  /** PEM file of an extra CA trusted for the ACME server's HTTPS (pebble's minica); null = system roots only. */
  caFile: string | null;
  email: string | null;
  /** Called with every new certificate (issuance and renewals); swaps the listener's secure context. */
  onCert(cert: LoadedCert): void;
  clock: Clock;
  logger: Logger;
  /** Wall-clock milliseconds (certificate validity is wall time); default Date.now. */
  wallNow?: () => number;
}

/** When a certificate with this validity should be renewed (wall ms). */
export function renewalTime(notBeforeMs: number, notAfterMs: number): number {
  return notBeforeMs + Math.floor((notAfterMs - notBeforeMs) * ACME_RENEW_FRACTION);
}

/** Retry delay after `failures` consecutive failures (1, 2, 4 … min, capped at an hour). */
export function retryDelay(failures: number): number {
  return Math.min(ACME_RETRY_MAX_MS, ACME_RETRY_MIN_MS * 2 ** Math.max(0, failures - 1));
}

/** A self-signed ECDSA certificate for a DNS hostname, served until the first ACME certificate arrives. */
export function placeholderCert(hostname: string, nowMs: number): { chainPem: string; keyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const d = buildCertificate({
    serial: randomBytes(16),
    commonName: hostname,
    notBeforeMs: nowMs,
    notAfterMs: nowMs + ACME_PLACEHOLDER_VALIDITY_MS,
    publicKey,
    privateKey,
    extensions: [keyUsageDigitalSignature(), extKeyUsageServerAuth(), basicConstraintsLeaf(), subjectAltName({ dns: [hostname] })],
  });
  return { chainPem: derToPem(d), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

const msg = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** acme-client (and axios under it) takes seconds to load: only `--certmode letsencrypt` pays for it. */
const loadAcme = (): Promise<typeof import('acme-client')> => import('acme-client');

export class AcmeManager {
  readonly #o: AcmeOptions;
  readonly #wallNow: () => number;
  readonly #crt: string;
  readonly #key: string;
  readonly #tokens = new Map<string, string>();
  #timer: Timer | null = null;
  #failures = 0;
  #stopped = false;
  #running: Promise<LoadedCert> | null = null;
  /** Certificates obtained (first issuance and renewals) and failed attempts, for /debug/varz. */
  issued = 0;
  failed = 0;
  current: LoadedCert | null = null;

  constructor(o: AcmeOptions) {
    if (isIP(o.hostname) !== 0) throw new WiremeshError('acme_ip_hostname', '--certmode letsencrypt needs a DNS --hostname (IP certificates: use --certmode manual)');
    if (certFileStem(o.hostname) === '') throw new WiremeshError('tls_bad_hostname', `--hostname ${JSON.stringify(o.hostname)} has no usable characters`);
    this.#o = o;
    this.#wallNow = o.wallNow ?? Date.now;
    const stem = certFileStem(o.hostname);
    this.#crt = path.join(o.certDir, `${stem}.crt`);
    this.#key = path.join(o.certDir, `${stem}.key`);
  }

  /** The cached certificate if present and valid for the hostname (even if due for renewal), else null. */
  async loadCached(): Promise<LoadedCert | null> {
    const [chainPem, keyPem] = await Promise.all([readIfExists(this.#crt), readIfExists(this.#key)]);
    if (chainPem === null || keyPem === null) return null;
    try {
      const c = checkCertPair({ chainPem, keyPem }, this.#o.hostname);
      if (Date.parse(c.leaf.validTo) <= this.#wallNow()) return null;
      this.current = c;
      return c;
    } catch (e) {
      this.#o.logger.warn('ignoring cached ACME certificate', { err: msg(e) });
      return null;
    }
  }

  /** Serves `GET /.well-known/acme-challenge/<token>` on the port-80 listener; false for other paths. */
  handleChallenge(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '/';
    if (!url.startsWith(ACME_CHALLENGE_PREFIX)) return false;
    const token = url.slice(ACME_CHALLENGE_PREFIX.length).split('?')[0] ?? '';
    const keyAuth = this.#tokens.get(token);
    if (keyAuth === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('unknown ACME challenge token\n');
      return true;
    }
    this.#o.logger.debug('answered ACME HTTP-01 challenge', { remote: req.socket.remoteAddress });
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': String(Buffer.byteLength(keyAuth)) });
    res.end(req.method === 'HEAD' ? undefined : keyAuth);
    return true;
  }

  /** Starts the life cycle: issue now when there is no usable certificate, else schedule the renewal. */
  start(): void {
    if (this.current === null) this.#attempt();
    else this.#scheduleRenewal(this.current);
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = null;
  }

  /** Issues (or renews) now; resolves with the new certificate. Concurrent calls share one order. */
  renewNow(): Promise<LoadedCert> {
    this.#running ??= this.#issue().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  #attempt(): void {
    if (this.#stopped) return;
    this.renewNow().then(
      (c) => {
        this.#failures = 0;
        this.#scheduleRenewal(c);
      },
      (e: unknown) => {
        this.#failures++;
        this.failed++;
        const delay = retryDelay(this.#failures);
        this.#o.logger.error('ACME certificate request failed', { host: this.#o.hostname, err: msg(e), retryInS: Math.round(delay / 1000) });
        this.#scheduleAt(this.#wallNow() + delay);
      },
    );
  }

  #scheduleRenewal(c: LoadedCert): void {
    const at = renewalTime(Date.parse(c.leaf.validFrom), Date.parse(c.leaf.validTo));
    this.#o.logger.info('ACME renewal scheduled', { host: this.#o.hostname, at: new Date(at).toISOString(), notAfter: c.leaf.validTo });
    this.#scheduleAt(at);
  }

  /** Waits until wall time `at`, in steps of at most MAX_TIMER_MS (Node timers overflow beyond ~24.8 days). */
  #scheduleAt(at: number): void {
    if (this.#stopped) return;
    this.#timer?.cancel();
    const delay = Math.max(0, at - this.#wallNow());
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = null;
      if (this.#wallNow() < at) this.#scheduleAt(at);
      else this.#attempt();
    }, Math.min(delay, MAX_TIMER_MS));
  }

  async #accountKey(): Promise<string> {
    const file = path.join(this.#o.certDir, ACME_ACCOUNT_KEY_FILE);
    const existing = await readIfExists(file);
    if (existing !== null) {
      createPrivateKey(existing);
      return existing;
    }
    const pem = (await (await loadAcme()).crypto.createPrivateEcdsaKey('P-256')).toString();
    await writeFileAtomic(file, pem, 0o600);
    this.#o.logger.info('created ACME account key', { path: file });
    return pem;
  }

  async #issue(): Promise<LoadedCert> {
    const o = this.#o;
    await mkdir(o.certDir, { recursive: true, mode: 0o700 });
    const { Client, axios: acmeAxios, crypto: acmeCrypto, setLogger } = await loadAcme();
    if (o.caFile !== null) {
      const ca = await readFile(o.caFile, 'utf8');
      acmeAxios.defaults.httpsAgent = new https.Agent({ ca: [...rootCertificates, ca] });
    }
    setLogger((m) => o.logger.debug(`acme: ${m}`));
    const client = new Client({ directoryUrl: o.directoryUrl, accountKey: await this.#accountKey() });
    const [keyBuf, csr] = await acmeCrypto.createCsr({ commonName: o.hostname, altNames: [o.hostname] }, await acmeCrypto.createPrivateEcdsaKey('P-256'));
    o.logger.info('requesting ACME certificate', { host: o.hostname, directory: o.directoryUrl });
    let timeout: Timer | null = null;
    const timedOut = new Promise<never>((_resolve, reject) => {
      timeout = o.clock.setTimeout(() => reject(new WiremeshError('acme_timeout', `ACME issuance took longer than ${ACME_ISSUE_TIMEOUT_MS / 1000} s`)), ACME_ISSUE_TIMEOUT_MS);
    });
    let chainPem: string;
    try {
      chainPem = await Promise.race([
        client.auto({
          csr,
          ...(o.email === null ? {} : { email: o.email }),
          termsOfServiceAgreed: true,
          challengePriority: ['http-01'],
          // Our own listener answers; a self-check through public DNS would fail behind NAT and proves nothing.
          skipChallengeVerification: true,
          challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
            if (challenge.type !== 'http-01') throw new WiremeshError('acme_challenge_type', `unsupported challenge ${challenge.type}`);
            if (this.#tokens.size >= ACME_MAX_PENDING_TOKENS) throw new WiremeshError('acme_too_many_tokens', 'too many pending ACME challenges');
            this.#tokens.set(challenge.token, keyAuthorization);
          },
          challengeRemoveFn: async (_authz, challenge) => {
            this.#tokens.delete(challenge.token);
          },
        }),
        timedOut,
      ]);
    } finally {
      (timeout as Timer | null)?.cancel();
    }
    const cert = checkCertPair({ chainPem, keyPem: keyBuf.toString() }, o.hostname);
    await writeFileAtomic(this.#key, cert.keyPem, 0o600);
    await writeFileAtomic(this.#crt, cert.chainPem, 0o644);
    this.current = cert;
    this.issued++;
    o.logger.info('obtained ACME certificate', { host: o.hostname, serial: cert.leaf.serialNumber, notBefore: cert.leaf.validFrom, notAfter: cert.leaf.validTo });
    o.onCert(cert);
    return cert;
  }
}
