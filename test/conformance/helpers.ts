/**
 * Shared helpers for the DERP conformance suite: the target/context types, connection tracking for cleanup,
 * message waiting, HTTP requests and Prometheus scraping of `/debug/varz`.
 */
import http from 'node:http';
import assert from 'node:assert/strict';
import { DerpClient, type DerpClientOptions, type DerpMessage } from '../../src/derp/client.ts';
import { DISCO_MAGIC } from '../../src/derp/constants.ts';
import { generatePrivate, toHex, type NodePrivate } from '../../src/types/key.ts';

export interface DerpServerHandle {
  /** `http://127.0.0.1:PORT/derp` */
  url: string;
  stunPort: number;
  meshKey: Uint8Array;
  profile: 'wiremesh' | 'go';
  /** With `tls: true`: the self-signed certificate the server generated (PEM), to trust as a CA. */
  certFile?: string;
  stop(): Promise<void>;
}

export interface DerpStartOptions {
  /** false → start with `--derp=false` (checklist 11). */
  derp?: boolean;
  verifyClientUrl?: string;
  verifyClientUrlFailOpen?: boolean;
  /** Serve TLS with a generated self-signed IP certificate (`--certmode manual --hostname 127.0.0.1`). */
  tls?: boolean;
}

export interface DerpTarget {
  name: string;
  /** A reason to skip (missing binary); never set it to hide a failure. */
  skip?: string | false;
  start(opts?: DerpStartOptions): Promise<DerpServerHandle>;
}

export interface SuiteContext {
  readonly server: DerpServerHandle;
  readonly target: DerpTarget;
  /** Connects a DERP client (fresh key unless given) and tracks it for cleanup. */
  connect(opts?: Partial<DerpClientOptions>, url?: string): Promise<DerpClient>;
  /** Same as connect() but with the server's mesh key. */
  connectMesh(opts?: Partial<DerpClientOptions>): Promise<DerpClient>;
  track<T extends { close(): void }>(c: T): T;
}

export function makeContext(target: DerpTarget, getServer: () => DerpServerHandle): SuiteContext & { closeAll(): void } {
  const open = new Set<{ close(): void }>();
  const ctx = {
    get server() { return getServer(); },
    target,
    track<T extends { close(): void }>(c: T): T {
      open.add(c);
      return c;
    },
    async connect(opts: Partial<DerpClientOptions> = {}, url?: string): Promise<DerpClient> {
      const c = await DerpClient.connect(url ?? getServer().url, { privateKey: generatePrivate(), connectTimeoutMs: 5000, ...opts });
      return ctx.track(c);
    },
    connectMesh(opts: Partial<DerpClientOptions> = {}): Promise<DerpClient> {
      return ctx.connect({ meshKey: getServer().meshKey, ...opts });
    },
    closeAll(): void {
      for (const c of open) c.close();
      open.clear();
    },
  };
  return ctx;
}

type MsgOf<T extends DerpMessage['type']> = Extract<DerpMessage, { type: T }>;

/** Waits for the next message of `type` matching `pred`, discarding others (keepalives, unrelated presence). */
export async function nextOf<T extends DerpMessage['type']>(c: DerpClient, type: T, timeoutMs = 3000, pred: (m: MsgOf<T>) => boolean = () => true): Promise<MsgOf<T>> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const left = Math.max(1, end - performance.now());
    const m = await c.next(left).catch((e: Error) => { throw new Error(`waiting for ${type}: ${e.message}`); });
    if (m.type === type && pred(m as MsgOf<T>)) return m as MsgOf<T>;
  }
}

/** Every message received within `ms`. */
export async function collect(c: DerpClient, ms: number): Promise<DerpMessage[]> {
  const out: DerpMessage[] = [];
  const end = performance.now() + ms;
  for (;;) {
    const left = end - performance.now();
    if (left <= 0) return out;
    try {
      out.push(await c.next(left));
    } catch {
      return out;
    }
  }
}

/** Asserts the server closes this client's connection within the timeout. */
export async function expectClosed(c: DerpClient, what: string, timeoutMs = 3000): Promise<void> {
  const r = await Promise.race([c.closed, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs).unref())]);
  assert.notEqual(r, 'timeout', `${what}: server did not close the connection within ${timeoutMs} ms`);
  assert.notEqual(r, null, `${what}: closed locally, not by the server`);
}

/** Asserts the connection is still usable: a Ping round trip succeeds. */
export async function expectAlive(c: DerpClient, what: string): Promise<void> {
  await assert.doesNotReject(c.ping(undefined, 3000), `${what}: connection not usable (ping failed)`);
}

/** A payload the server classifies as disco (≥ 62 bytes, `TS💬` prefix). */
export function discoPacket(len = 100): Uint8Array {
  const b = crypto.getRandomValues(new Uint8Array(len));
  b.set(DISCO_MAGIC, 0);
  return b;
}

export const sameKey = (a: Uint8Array, b: Uint8Array): boolean => toHex(a) === toHex(b);
export const newKey = (): NodePrivate => generatePrivate();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request to the server's origin (path relative to it). */
export function httpRequest(derpUrl: string, path: string, o: { method?: string; headers?: Record<string, string> } = {}): Promise<HttpResult> {
  const u = new URL(derpUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path, method: o.method ?? 'GET', headers: o.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('HTTP request timed out')));
    req.end();
  });
}

/** Scrapes `/debug/varz` and returns `name{labels}` → value. */
export async function scrapeVarz(derpUrl: string): Promise<Map<string, number>> {
  const r = await httpRequest(derpUrl, '/debug/varz');
  assert.equal(r.status, 200, '/debug/varz from loopback');
  const m = new Map<string, number>();
  for (const line of r.body.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i).replace(/\s+/g, ''), Number(line.slice(i + 1)));
  }
  return m;
}

/** A metric value, 0 when absent. */
export async function metric(derpUrl: string, name: string): Promise<number> {
  return (await scrapeVarz(derpUrl)).get(name) ?? 0;
}

/** Polls a metric until `pred` holds (metrics are updated asynchronously); returns the last value. */
export async function waitMetric(derpUrl: string, name: string, pred: (v: number) => boolean, timeoutMs = 2000): Promise<number> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const v = await metric(derpUrl, name);
    if (pred(v) || performance.now() > end) return v;
    await sleep(50);
  }
}
