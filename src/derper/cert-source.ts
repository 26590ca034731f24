/**
 * Where the derper listener's certificate comes from over the process lifetime (spec/derp.md §16.1 cert modes):
 * - manual: `<certdir>/<host>.crt/.key` (tls.ts, incl. the generated IP cert), then reloaded when the files
 *   change (cert-reload.ts);
 * - letsencrypt: ACME HTTP-01 on the port-80 listener with renewal (acme.ts); a cached certificate is used at
 *   start, else a self-signed placeholder until the first one is issued.
 * Every new certificate is installed with `tls.Server.setSecureContext`, with the meta cert appended (§3.3), so
 * new handshakes use it and established connections are not touched. derper.ts only calls openCertSource,
 * wrapPort80, start and stop. Adapter.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SecureContextTarget as TlsServer } from './tls-listener.ts';
import { WiremeshError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Clock } from '../time/clock.ts';
import { AcmeManager, placeholderCert } from './acme.ts';
import { CertWatcher, secureContextOptions, type CertPair } from './cert-reload.ts';
import { loadManualCert } from './tls.ts';

export interface AcmeSettings {
  /** ACME directory (`--acme-directory-url`, default Let's Encrypt production). */
  directoryUrl: string;
  /** Extra CA for the ACME server's HTTPS (`--acme-ca-file`). */
  caFile: string | null;
  /** Account contact (`--acme-email`). */
  email: string | null;
}

export interface CertSourceConfig {
  hostname: string;
  certDir: string;
  /** Non-null = `--certmode letsencrypt`. */
  acme: AcmeSettings | null;
  /** Manual mode: watch the files and reload on change (default on). */
  reload: boolean;
  /** Whether the port-80 listener exists (HTTP-01 needs it). */
  port80: boolean;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface CertSource {
  /** The certificate the listener is created with. */
  readonly initial: CertPair & { derpNodeJson: string | null };
  /** Wraps the port-80 handler so ACME HTTP-01 challenges are answered first. */
  wrapPort80(next: Handler): Handler;
  /** Starts reloading/issuing; new certificates go into `server`'s secure context with `metaCertPem` appended. */
  start(server: TlsServer, metaCertPem: string | null): Promise<void>;
  stop(): void;
  /** Counters for /debug/varz (`derper` set). */
  metrics(): Record<string, number>;
}

export async function openCertSource(cfg: CertSourceConfig, deps: { clock: Clock; logger: Logger }): Promise<CertSource> {
  const { clock, logger } = deps;
  let install: (pair: CertPair) => void = () => {};
  if (cfg.acme !== null) {
    if (!cfg.port80) throw new WiremeshError('derper_usage', '--certmode letsencrypt answers ACME HTTP-01 on the port-80 listener; do not disable it with --http-port -1');
    const acme = new AcmeManager({
      hostname: cfg.hostname,
      certDir: cfg.certDir,
      ...cfg.acme,
      clock,
      logger: logger.child({ c: 'acme' }),
      onCert: (c) => install(c),
    });
    const cached = await acme.loadCached();
    if (cached === null) logger.info('no ACME certificate yet; serving a self-signed placeholder until it is issued', { host: cfg.hostname });
    return {
      initial: { ...(cached ?? placeholderCert(cfg.hostname, Date.now())), derpNodeJson: null },
      wrapPort80: (next) => (req, res) => {
        if (!acme.handleChallenge(req, res)) next(req, res);
      },
      start: async (server, meta) => {
        install = (pair) => server.setSecureContext(secureContextOptions(pair, meta));
        acme.start();
      },
      stop: () => acme.stop(),
      metrics: () => ({ counter_acme_certificates_issued: acme.issued, counter_acme_failures: acme.failed }),
    };
  }
  const cert = await loadManualCert({ certDir: cfg.certDir, hostname: cfg.hostname, nowMs: Date.now(), logger });
  let watcher: CertWatcher | null = null;
  return {
    initial: cert,
    wrapPort80: (next) => next,
    start: async (server, meta) => {
      if (!cfg.reload) return;
      watcher = new CertWatcher({
        certDir: cfg.certDir,
        hostname: cfg.hostname,
        currentFingerprint: cert.leaf.fingerprint256,
        onCert: (pair) => server.setSecureContext(secureContextOptions(pair, meta)),
        clock,
        logger,
      });
      await watcher.start();
    },
    stop: () => watcher?.stop(),
    metrics: () => ({ counter_cert_reloads: watcher?.reloads ?? 0, counter_cert_reload_failures: watcher?.failures ?? 0 }),
  };
}
