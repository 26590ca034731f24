/**
 * Test-only DERP client and fixtures for the server engine tests: drives a DerpServer over in-memory duplex pairs
 * (or any Duplex), decodes what the server sends, and builds ClientInfo the way a Go client does.
 */
import { duplexPair, type Duplex } from 'node:stream';
import { boxBeforeNm, openBox, sealBox } from '../../../src/derp/box.ts';
import { FrameType } from '../../../src/derp/constants.ts';
import { decodeServerKey, encodeFrame, FrameReader, type Frame } from '../../../src/derp/frame.ts';
import { DerpServer, type DerpServerOptions } from '../../../src/derp/server/server.ts';
import { ManualClock } from '../../../src/time/clock.ts';
import { generatePrivate, publicFromPrivate, toHex, type NodePrivate, type NodePublic } from '../../../src/types/key.ts';

export const MESH_KEY = Uint8Array.from({ length: 32 }, (_, i) => i + 1);

export function newServer(opts: Partial<DerpServerOptions> = {}): { server: DerpServer; clock: ManualClock } {
  const clock = new ManualClock(1_000_000);
  const server = new DerpServer({ privateKey: generatePrivate(), clock, meshKey: MESH_KEY, random: (n) => new Uint8Array(n), ...opts });
  return { server, clock };
}

/** A ClientInfo payload: key ∥ nonce ∥ box(json). */
export function clientInfoPayload(priv: NodePrivate, serverPub: Uint8Array, json: string): Uint8Array {
  const pub = publicFromPrivate(priv);
  const sealed = sealBox(boxBeforeNm(priv, serverPub), new TextEncoder().encode(json));
  return Buffer.concat([pub, sealed]);
}

export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

export class TestClient {
  readonly priv: NodePrivate;
  readonly pub: NodePublic;
  readonly stream: Duplex;
  readonly frames: Frame[] = [];
  /** Every byte received, in order. */
  readonly raw: Buffer[] = [];
  serverKey: Uint8Array | null = null;
  ended = false;
  readonly closed: Promise<void>;
  #reader = new FrameReader(() => 1 << 21);
  #waiters: (() => void)[] = [];

  constructor(stream: Duplex, priv: NodePrivate = generatePrivate()) {
    this.priv = priv;
    this.pub = publicFromPrivate(priv);
    this.stream = stream;
    stream.on('data', (c: Buffer) => {
      this.raw.push(c);
      this.#reader.push(c);
      for (let f = this.#reader.next(); f !== null; f = this.#reader.next()) this.frames.push({ type: f.type, payload: Buffer.from(f.payload) });
      this.#wake();
    });
    stream.on('error', () => {});
    this.closed = new Promise((resolve) => {
      const done = (): void => {
        this.ended = true;
        this.#wake();
        resolve();
      };
      stream.once('end', done);
      stream.once('close', done);
    });
  }

  /** Opens a pair, hands one end to the server, and returns the client on the other end (handshake not done). */
  static attach(server: DerpServer, info: { remoteAddress?: string; remotePort?: number; idealNode?: string; head?: Uint8Array } = {}, priv?: NodePrivate): TestClient {
    const [a, b] = duplexPair();
    const c = new TestClient(a, priv);
    server.accept(b, { remoteAddress: info.remoteAddress ?? '192.0.2.7', remotePort: info.remotePort ?? 4242, ...(info.idealNode === undefined ? {} : { idealNode: info.idealNode }), ...(info.head === undefined ? {} : { head: info.head }) });
    return c;
  }

  /** Attaches and completes the handshake; returns once ServerInfo was received. */
  static async connect(server: DerpServer, opts: { json?: string; meshKey?: Uint8Array; prober?: boolean; priv?: NodePrivate; remoteAddress?: string; remotePort?: number; idealNode?: string } = {}): Promise<TestClient> {
    const c = TestClient.attach(server, opts, opts.priv);
    await c.handshake(opts.json ?? JSON.stringify({
      ...(opts.meshKey ? { meshKey: toHex(opts.meshKey) } : {}), version: 2, CanAckPings: true, ...(opts.prober ? { IsProber: true } : {}),
    }));
    return c;
  }

  async handshake(json: string): Promise<void> {
    const sk = await this.next();
    if (sk.type !== FrameType.ServerKey) throw new Error(`first frame ${sk.type}`);
    this.serverKey = decodeServerKey(sk.payload);
    this.write(encodeFrame(FrameType.ClientInfo, clientInfoPayload(this.priv, this.serverKey, json)));
    const si = await this.next();
    if (si.type !== FrameType.ServerInfo) throw new Error(`frame after ServerKey has type ${si.type}`);
    const plain = openBox(boxBeforeNm(this.priv, this.serverKey), si.payload);
    if (new TextDecoder().decode(plain) !== '{"version":2}') throw new Error('bad ServerInfo');
  }

  write(b: Uint8Array): void {
    this.stream.write(b);
  }

  send(dst: Uint8Array, packet: Uint8Array): void {
    this.write(encodeFrame(FrameType.SendPacket, dst, packet));
  }

  /** Next frame (optionally of one type, skipping others), or throws after `ms` of real time. */
  async next(type?: number, ms = 2000): Promise<Frame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = type === undefined ? (this.frames.length > 0 ? 0 : -1) : this.frames.findIndex((f) => f.type === type);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      if (this.ended) throw new Error(`connection closed while waiting for frame${type === undefined ? '' : ' type ' + type}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for frame${type === undefined ? '' : ' type ' + type}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves true if the connection closes within `ms` of real time. */
  async closedWithin(ms = 2000): Promise<boolean> {
    let t: NodeJS.Timeout | undefined;
    const r = await Promise.race([this.closed.then(() => true), new Promise<boolean>((res) => { t = setTimeout(() => res(false), ms); })]);
    clearTimeout(t);
    return r;
  }

  /** Waits a few event-loop turns and returns (and removes) every frame received meanwhile. */
  async drain(turns = 5): Promise<Frame[]> {
    for (let i = 0; i < turns; i++) await tick();
    return this.frames.splice(0);
  }

  close(): void {
    this.stream.destroy();
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}
