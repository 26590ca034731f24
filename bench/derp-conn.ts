/**
 * Lean DERP client for the benchmarks (spec/derp.md §3.2, §4, §6): dials plain TCP or TLS (self-signed accepted),
 * by default on the native addon's client end (src/net/tls-native.ts: Node's TLS client costs more CPU per
 * record than the relay under test, so a TLS run would measure the load generator), or with `engine: 'node'` on
 * node:net / node:tls;
 * sends the HTTP `Upgrade: DERP` request, completes the handshake (ServerKey → ClientInfo → ServerInfo, the
 * ServerInfo box is not opened: the bench trusts the server) and then hands the socket to a cheap counting
 * parser that only looks at frame headers. Built on src/derp/frame.ts, client-info.ts and types/key.ts; it avoids
 * the library client so the load generator spends its core on sending and counting, not on bookkeeping.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { FRAME_HEADER_LEN, FrameType, KEY_LEN } from '../src/derp/constants.ts';
import { createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { hsalsa } from '@noble/ciphers/salsa.js';
import { sealBox } from '../src/derp/box.ts';
import { decodeServerKey, encodeFrame, writeHeader } from '../src/derp/frame.ts';
import type { NodePrivate, NodePublic } from '../src/types/key.ts';
import { NativeTlsClientContext, NativeTlsServer, NativeTlsSocket, nativeTlsAvailable, nativeTlsUnavailableReason } from '../src/net/tls-native.ts';

export interface Target {
  host: string;
  port: number;
  tls: boolean;
  /** 'native': the addon's client end (TLS or plain); 'node': node:tls / node:net. */
  engine: 'native' | 'node';
}

/** The engine to use by default: native when the addon is built. */
export function defaultEngine(): Target['engine'] {
  return nativeTlsAvailable() ? 'native' : 'node';
}

export function checkEngine(engine: string): Target['engine'] {
  if (engine === 'node') return 'node';
  if (engine !== 'native') throw new Error(`--client ${engine}: want native or node`);
  if (!nativeTlsAvailable()) throw new Error(`--client native: ${nativeTlsUnavailableReason()}`);
  return 'native';
}

export interface Identity {
  priv: NodePrivate;
  pub: NodePublic;
  key: KeyObject;
}

/**
 * A fresh node key. X25519 runs in node:crypto (OpenSSL), ~20× faster than the pure-JS curve: the load
 * generator opens 10 000 connections and must not be the bottleneck of the handshake rate.
 */
export function newIdentity(): Identity {
  const { privateKey } = generateKeyPairSync('x25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    priv: Uint8Array.from(Buffer.from(jwk.d!, 'base64url')) as NodePrivate,
    pub: Uint8Array.from(Buffer.from(jwk.x!, 'base64url')) as NodePublic,
    key: privateKey,
  };
}

const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);

/** crypto_box_beforenm with node:crypto X25519 + noble HSalsa20 (same result as src/derp/box.ts boxBeforeNm). */
function beforeNm(id: Identity, serverKey: Uint8Array): Uint8Array {
  const peer = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(serverKey).toString('base64url') }, format: 'jwk' });
  const shared = diffieHellman({ privateKey: id.key, publicKey: peer });
  const inp = new Uint32Array(8);
  for (let i = 0; i < 8; i++) inp[i] = shared.readUInt32LE(i * 4);
  const out = new Uint32Array(8);
  hsalsa(SIGMA, inp, new Uint32Array(4), out);
  const k = Buffer.alloc(32);
  for (let i = 0; i < 8; i++) k.writeUInt32LE(out[i]!, i * 4);
  return k;
}

/** The ClientInfo frame a bare Go derp client sends: our key ∥ box({"version":2,"CanAckPings":false}). */
function clientInfoFrame(id: Identity, serverKey: Uint8Array): Buffer {
  const sealed = sealBox(beforeNm(id, serverKey), Buffer.from('{"version":2,"CanAckPings":false}'));
  return encodeFrame(FrameType.ClientInfo, id.pub, sealed);
}

/** Called for every complete frame header after the handshake; `len` is the frame's payload length. */
export type FrameSink = (type: number, len: number, firstBody: Buffer | null, bodyOffset: number) => void;

/**
 * A connected, handshaken DERP connection. After `ready`, incoming bytes go through a header-only parser: each
 * frame's type and length are reported to `onFrame`; the body is skipped (the first chunk that holds the start
 * of the body is passed along so latency mode can read a sequence number).
 */
export class BenchConn {
  readonly sock: Duplex & { writableNeedDrain: boolean };
  readonly id: Identity;
  onFrame: FrameSink = () => {};
  /**
   * Counting mode (closed loops): RecvPackets are counted here and the highest sequence number (the first 4 bytes
   * of the packet) kept, instead of a call to onFrame per frame.
   */
  counting = false;
  rxPackets = 0;
  rxBytes = 0;
  maxSeq = 0;
  /** Runs after each received chunk has been fed through onFrame. */
  onData: () => void = () => {};
  #busy = false;
  #hdr = Buffer.alloc(FRAME_HEADER_LEN);
  #hdrHave = 0;
  #skip = 0;

  constructor(sock: net.Socket | NativeTlsSocket, id: Identity) {
    this.sock = sock;
    this.id = id;
    const read = (buf: Buffer, n: number): void => {
      this.feed(buf, n);
      this.onData();
    };
    sock.on('data', (d: Buffer) => read(d, d.length));
    sock.on('drain', () => (this.#busy = false)); // registered first: the caller's 'drain' handlers see it cleared
    // On the addon, reads go straight from its read buffer to the parser (valid only during the call, which is
    // enough), by the host's tap: no socket or stream state per read.
    if (sock instanceof NativeTlsSocket) {
      sock.setDirectReader(read);
      readTap(sock.rawHost).conns[sock.rawId] = this;
    }
  }

  /** True from a send() that returned false until 'drain'. */
  get busy(): boolean {
    return this.#busy;
  }

  /**
   * Sends `buf[start, end)`; false when the caller must wait for 'drain' before sending more. On the addon the
   * bytes are taken at once (whatever the kernel does not take is copied), so `buf` may be rewritten right
   * after; on Node's stack they are copied unless `stable` says `buf` never changes.
   */
  send(buf: Buffer, start: number, end: number, stable = false): boolean {
    const s = this.sock;
    const direct = s instanceof NativeTlsSocket ? s.writeDirect(buf, start, end) : null;
    const ok = direct !== null ? direct === 0 : s.write(stable ? buf.subarray(start, end) : Buffer.from(buf.subarray(start, end)));
    if (!ok) this.#busy = true;
    return ok;
  }

  /** Header-only incremental parse of `chunk[0, n)`. */
  feed(chunk: Buffer, n: number): void {
    let o = 0;
    while (o < n) {
      if (this.#skip > 0) {
        const k = Math.min(this.#skip, n - o);
        this.#skip -= k;
        o += k;
        continue;
      }
      if (this.#hdrHave === 0 && n - o >= FRAME_HEADER_LEN) {
        const type = chunk[o]!;
        const len = ((chunk[o + 1]! << 24) | (chunk[o + 2]! << 16) | (chunk[o + 3]! << 8) | chunk[o + 4]!) >>> 0;
        o += FRAME_HEADER_LEN;
        if (!this.counting) this.onFrame(type, len, chunk, o);
        else if (type === FrameType.RecvPacket) {
          this.rxPackets++;
          this.rxBytes += len - KEY_LEN;
          const s = o + KEY_LEN;
          if (s + 4 <= n) {
            const seq = ((chunk[s]! << 24) | (chunk[s + 1]! << 16) | (chunk[s + 2]! << 8) | chunk[s + 3]!) >>> 0;
            if (seq > this.maxSeq) this.maxSeq = seq;
          }
        }
        this.#skip = len;
        continue;
      }
      const k = Math.min(FRAME_HEADER_LEN - this.#hdrHave, n - o);
      chunk.copy(this.#hdr, this.#hdrHave, o, o + k);
      this.#hdrHave += k;
      o += k;
      if (this.#hdrHave === FRAME_HEADER_LEN) {
        this.#hdrHave = 0;
        const len = this.#hdr.readUInt32BE(1);
        if (!this.counting) this.onFrame(this.#hdr[0]!, len, o < n ? chunk : null, o);
        else if (this.#hdr[0] === FrameType.RecvPacket) {
          this.rxPackets++; // its sequence number may lie beyond this chunk: the next frames carry newer ones
          this.rxBytes += len - KEY_LEN;
        }
        this.#skip = len;
      }
    }
  }
}

/** A block of `count` SendPacket frames to `dst`, each carrying `size` payload bytes (first 8 = seq slot). */
export function sendBlock(dst: Uint8Array, size: number, count: number): Buffer {
  const frameLen = FRAME_HEADER_LEN + KEY_LEN + size;
  const out = Buffer.alloc(frameLen * count);
  for (let i = 0; i < count; i++) {
    const o = i * frameLen;
    writeHeader(out, o, FrameType.SendPacket, KEY_LEN + size);
    out.set(dst, o + FRAME_HEADER_LEN);
  }
  return out;
}

export const frameLenFor = (size: number): number => FRAME_HEADER_LEN + KEY_LEN + size;

const HANDSHAKE_TIMEOUT_MS = 30_000;

let nativeTable: NativeTlsServer | null = null;

/** The addon host's read tap: established BenchConns by id take their reads straight from its read buffer. */
interface BenchTap {
  readonly conns: (BenchConn | undefined)[];
  read(id: number, n: number): number;
  pending(id: number): void;
  drained(id: number): void;
  released(id: number): void;
}

const taps = new Map<NativeTlsServer, BenchTap>();

function readTap(host: NativeTlsServer): BenchTap {
  let t = taps.get(host);
  if (t !== undefined) return t;
  const conns: (BenchConn | undefined)[] = [];
  t = {
    conns,
    read(id: number, n: number): number {
      const c = conns[id];
      if (c === undefined) return 0;
      c.feed(host.readBuffer, n);
      c.onData();
      return n;
    },
    pending(): void {},
    drained(): void {},
    released(id: number): void {
      conns[id] = undefined;
    },
  };
  taps.set(host, t);
  host.setTap(t);
  return t;
}
const clientContexts = new Map<string, NativeTlsClientContext>();

/** TCP (and TLS, without checking the certificate) on the addon; resolves once the socket can carry bytes. */
async function dialNative(t: Target, localAddress: string | undefined): Promise<NativeTlsSocket> {
  nativeTable ??= new NativeTlsServer({ context: null, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS, onSecure: () => {} });
  const raw = net.connect({ host: t.host, port: t.port, ...(localAddress === undefined ? {} : { localAddress }) });
  raw.pause(); // before 'connect': Node never reads this socket, the addon does
  raw.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    raw.once('connect', resolve);
    raw.once('error', reject);
  });
  let ctx: NativeTlsClientContext | null = null;
  if (t.tls) {
    ctx = clientContexts.get(t.host) ?? new NativeTlsClientContext(t.host, false);
    clientContexts.set(t.host, ctx);
  }
  return nativeTable.connect(raw, ctx);
}

/** Dials, upgrades and handshakes one connection. `localAddress` spreads source IPs (127.0.0.x). */
export async function connect(t: Target, id: Identity, localAddress?: string): Promise<BenchConn> {
  if (t.engine === 'native') return handshake(t, id, await dialNative(t, localAddress), null);
  const raw = net.connect({ host: t.host, port: t.port, ...(localAddress === undefined ? {} : { localAddress }) });
  raw.setNoDelay(true);
  return handshake(t, id, t.tls ? tls.connect({ socket: raw, rejectUnauthorized: false }) : raw, raw);
}

/** HTTP upgrade and DERP handshake on `sock`; `raw` is the TCP socket still connecting under it (node engine). */
function handshake(t: Target, id: Identity, sock: net.Socket | NativeTlsSocket, raw: net.Socket | null): Promise<BenchConn> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error('handshake timeout')), HANDSHAKE_TIMEOUT_MS);
    let buf: Buffer = Buffer.alloc(0);
    let phase: 'http' | 'serverKey' | 'serverInfo' = 'http';
    const fail = (e: Error): void => {
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      for (;;) {
        if (phase === 'http') {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buf.subarray(0, end).toString('latin1');
          if (!/^HTTP\/1\.1 101/.test(head)) return fail(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
          buf = buf.subarray(end + 4);
          phase = 'serverKey';
          continue;
        }
        if (buf.length < FRAME_HEADER_LEN) return;
        const len = buf.readUInt32BE(1);
        if (buf.length < FRAME_HEADER_LEN + len) return;
        const type = buf[0]!;
        const body = buf.subarray(FRAME_HEADER_LEN, FRAME_HEADER_LEN + len);
        buf = buf.subarray(FRAME_HEADER_LEN + len);
        if (phase === 'serverKey') {
          if (type !== FrameType.ServerKey) return fail(new Error(`want ServerKey, got 0x${type.toString(16)}`));
          sock.write(clientInfoFrame(id, decodeServerKey(body)));
          phase = 'serverInfo';
          continue;
        }
        if (type !== FrameType.ServerInfo) return fail(new Error(`want ServerInfo, got 0x${type.toString(16)}`));
        clearTimeout(timer);
        sock.off('data', onData);
        sock.off('error', fail);
        sock.on('error', () => {});
        const c = new BenchConn(sock, id);
        if (buf.length > 0) c.feed(Buffer.from(buf), buf.length);
        resolve(c);
        return;
      }
    };
    sock.on('data', onData);
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('closed during handshake')));
    const hostHeader = `${t.host}:${t.port}`;
    const req = `GET /derp HTTP/1.1\r\nHost: ${hostHeader}\r\nUser-Agent: wiremesh-bench\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n\r\n`;
    if (raw === null) sock.write(req);
    else if (t.tls) sock.once('secureConnect', () => sock.write(req));
    else raw.once('connect', () => sock.write(req));
  });
}

/** Connects `n` identities with at most `parallel` handshakes in flight; source IPs rotate over `srcIps`. */
export async function connectMany(t: Target, ids: Identity[], parallel: number, srcIps: string[] = []): Promise<BenchConn[]> {
  const out: BenchConn[] = new Array<BenchConn>(ids.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < ids.length) {
      const i = next++;
      const src = srcIps.length === 0 ? undefined : srcIps[i % srcIps.length];
      out[i] = await connect(t, ids[i]!, src);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, ids.length) }, worker));
  return out;
}

/** A frame with only a header (used for one-off sends such as a single latency probe). */
export const oneFrame = (dst: Uint8Array, payload: Uint8Array): Buffer => encodeFrame(FrameType.SendPacket, dst, payload);
