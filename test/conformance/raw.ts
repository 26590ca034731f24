/**
 * Raw-socket helpers for the DERP conformance suite: exact-byte HTTP exchanges and a hand-rolled DERP handshake
 * (spec/derp.md §3, §6), so tests can assert what is on the wire independently of src/derp/client.ts.
 */
import net from 'node:net';
import { boxBeforeNm, openBox, sealBox } from '../../src/derp/box.ts';
import { FrameType, MAGIC } from '../../src/derp/constants.ts';
import { encodeFrame, FrameReader, type Frame } from '../../src/derp/frame.ts';
import { generatePrivate, publicFromPrivate, toHex, type NodePrivate, type NodePublic } from '../../src/types/key.ts';

export function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port) };
}

/** A TCP connection that accumulates everything it receives and notes when it closes. */
export class RawConn {
  readonly sock: net.Socket;
  buf: Buffer = Buffer.alloc(0);
  closedAt: number | null = null;
  #waiters: (() => void)[] = [];
  readonly opened: Promise<void>;

  constructor(host: string, port: number) {
    this.sock = net.connect({ host, port });
    this.sock.setNoDelay(true);
    this.opened = new Promise((resolve, reject) => {
      this.sock.once('connect', () => resolve());
      this.sock.once('error', reject);
    });
    this.sock.on('error', () => {});
    this.sock.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.#wake(); });
    this.sock.on('close', () => { this.closedAt = performance.now(); this.#wake(); });
  }

  static async open(url: string): Promise<RawConn> {
    const { host, port } = hostPort(url);
    const c = new RawConn(host, port);
    await c.opened;
    return c;
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  write(b: Uint8Array | string): void {
    this.sock.write(b);
  }

  /** Waits until `pred()` holds, the connection closes, or the timeout passes; returns pred(). */
  async until(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    const end = performance.now() + timeoutMs;
    while (!pred() && this.closedAt === null) {
      const left = end - performance.now();
      if (left <= 0) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
    return pred();
  }

  /** Resolves true if the peer closed within the timeout. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    await this.until(() => this.closedAt !== null, timeoutMs);
    return this.closedAt !== null;
  }

  /** Reads an HTTP response head (through CRLFCRLF); returns it and leaves the rest in buf. */
  async readHead(timeoutMs = 5000): Promise<string> {
    await this.until(() => this.buf.includes('\r\n\r\n'), timeoutMs);
    const i = this.buf.indexOf('\r\n\r\n');
    if (i < 0) throw new Error(`no HTTP response head; got ${JSON.stringify(this.buf.toString('latin1').slice(0, 200))}`);
    const head = this.buf.subarray(0, i + 4).toString('latin1');
    this.buf = this.buf.subarray(i + 4);
    return head;
  }

  /** Reads one DERP frame from buf, waiting for it; throws on timeout/close. */
  async readFrame(timeoutMs = 5000): Promise<Frame & { length: number }> {
    const have = (): boolean => this.buf.length >= 5 && this.buf.length >= 5 + this.buf.readUInt32BE(1);
    await this.until(have, timeoutMs);
    if (!have()) throw new Error(this.closedAt !== null ? 'connection closed' : 'timed out waiting for a frame');
    const r = new FrameReader(() => Number.MAX_SAFE_INTEGER);
    r.push(this.buf);
    const f = r.next()!;
    this.buf = Buffer.from(r.drain());
    return { type: f.type, payload: Buffer.from(f.payload), length: f.payload.length };
  }

  close(): void {
    this.sock.destroy();
  }
}

export function upgradeRequest(url: string, extra: string[] = [], opts: { method?: string; upgrade?: string | null; connection?: boolean } = {}): string {
  const u = new URL(url);
  const lines = [`${opts.method ?? 'GET'} ${u.pathname} HTTP/1.1`, `Host: ${u.host}`];
  if (opts.upgrade !== null) lines.push(`Upgrade: ${opts.upgrade ?? 'DERP'}`);
  if (opts.connection !== false) lines.push('Connection: Upgrade');
  return [...lines, ...extra].join('\r\n') + '\r\n\r\n';
}

/** A ClientInfo frame with an arbitrary JSON body (string), sealed correctly. */
export function clientInfoFrame(priv: NodePrivate, serverKey: Uint8Array, json: string): Buffer {
  const sealed = sealBox(boxBeforeNm(priv, serverKey), Buffer.from(json, 'utf8'));
  return encodeFrame(FrameType.ClientInfo, publicFromPrivate(priv), sealed);
}

export function serverKeyFromFrame(f: Frame): NodePublic {
  if (f.type !== FrameType.ServerKey) throw new Error(`want ServerKey, got frame type ${f.type}`);
  if (!Buffer.from(f.payload.subarray(0, 8)).equals(Buffer.from(MAGIC))) throw new Error('ServerKey without magic');
  return Uint8Array.from(f.payload.subarray(8, 40)) as NodePublic;
}

export interface RawDerp {
  conn: RawConn;
  priv: NodePrivate;
  pub: NodePublic;
  serverKey: NodePublic;
  serverInfoJson: string;
}

/** Full handshake on a raw socket: 101, ServerKey, ClientInfo(json), then the first frame must be ServerInfo. */
export async function rawDerpConnect(url: string, o: { priv?: NodePrivate; json?: string; headers?: string[] } = {}): Promise<RawDerp> {
  const priv = o.priv ?? generatePrivate();
  const conn = await RawConn.open(url);
  conn.write(upgradeRequest(url, o.headers));
  const head = await conn.readHead();
  if (!head.startsWith('HTTP/1.1 101 ')) throw new Error(`no 101: ${head}`);
  const serverKey = serverKeyFromFrame(await conn.readFrame());
  conn.write(clientInfoFrame(priv, serverKey, o.json ?? '{"version":2,"CanAckPings":false}'));
  const f = await conn.readFrame();
  if (f.type !== FrameType.ServerInfo) throw new Error(`first frame after ServerKey is type ${f.type}, want ServerInfo`);
  const plain = openBox(boxBeforeNm(priv, serverKey), f.payload);
  return { conn, priv, pub: publicFromPrivate(priv), serverKey, serverInfoJson: Buffer.from(plain).toString('utf8') };
}

export const hex = toHex;
