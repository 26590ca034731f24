/**
 * `/bootstrap-dns` (spec/derp.md §16.3): with `--bootstrap-dns-names`, each name is resolved with node:dns every
 * 10 minutes and served as a tab-indented JSON object name → [IP strings] (order shuffled per refresh); without
 * names nothing is ever resolved and the body is empty, as Go's. Lookups go through an injectable function for tests.
 */
import { lookup } from 'node:dns/promises';
import type { Clock, Timer } from '../time/clock.ts';
import type { Logger } from '../log.ts';
import { BOOTSTRAP_DNS_REFRESH_MS } from './constants.ts';

export type Resolve = (name: string) => Promise<string[]>;

const defaultResolve: Resolve = async (name) => (await lookup(name, { all: true, verbatim: true })).map((a) => a.address);

function shuffle<T>(a: T[], random: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

export class BootstrapDns {
  readonly #names: readonly string[];
  readonly #resolve: Resolve;
  readonly #logger: Logger;
  /** Empty until a refresh succeeds: Go's derper serves a zero-byte body when no names are configured. */
  #json = '';
  #timer: Timer | null = null;
  requests = 0;

  constructor(opts: { names: readonly string[]; resolve?: Resolve; logger: Logger }) {
    this.#names = opts.names;
    this.#resolve = opts.resolve ?? defaultResolve;
    this.#logger = opts.logger;
  }

  /** Resolves every configured name once (failures keep the name out). */
  async refresh(): Promise<void> {
    if (this.#names.length === 0) return;
    const entries: Record<string, string[]> = {};
    await Promise.all(
      this.#names.map(async (name) => {
        try {
          const ips = await this.#resolve(name);
          if (ips.length > 0) entries[name] = shuffle([...ips], Math.random);
        } catch (e) {
          this.#logger.warn('bootstrap-dns lookup failed', { name, err: e instanceof Error ? e.message : String(e) });
        }
      }),
    );
    this.#json = JSON.stringify(entries, null, '\t');
  }

  /** Starts the refresh loop (only when names are configured). */
  start(clock: Clock): void {
    if (this.#names.length === 0 || this.#timer !== null) return;
    void this.refresh();
    this.#timer = clock.setInterval(() => void this.refresh(), BOOTSTRAP_DNS_REFRESH_MS);
  }

  stop(): void {
    this.#timer?.cancel();
    this.#timer = null;
  }

  /** The body for one request. `?q=` (unpublished names) is not supported: the published set is returned. */
  body(_query: string | null): string {
    this.requests++;
    return this.#json;
  }
}
