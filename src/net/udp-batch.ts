/**
 * Batched UDP socket (adapter layer): a typed wrapper around the optional native addon build/udp_batch.node
 * (native/udp_batch.c), which receives with recvmmsg and sends with sendmmsg — what node:dgram cannot do
 * (spec/node-performance.md §2 "No recvmmsg / No sendmmsg", §4 "uv_poll + one JS call per batch").
 *
 * Data moves through four fixed ArrayBuffers shared with C, not through per-packet objects:
 *   recvData / sendData  BATCH_MAX slots of SLOT_BYTES (slot i at i * SLOT_BYTES)
 *   recvMeta / sendMeta  BATCH_MAX records of META_BYTES, read through an Int32Array (META_INTS per record):
 *                        [len, flags, family 4|6, port] and through a Uint8Array: 16 address bytes at
 *                        i * META_BYTES + META_ADDR_OFFSET (IPv4 in the first 4; IPv4-mapped comes as family 4)
 * `onBatch(count)` runs once per recvmmsg batch (records 0..count-1 valid until it returns); fill send slots and
 * call `send(n)` — from inside onBatch or at any other time. Errors are `UdpBatchError` (stable `code`, plus
 * the errno name for system-call failures). When the addon is not built, `batchUdpAvailable()` is false and
 * callers use node:dgram (src/stun/server.ts does).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { WiremeshError } from '../errors.ts';
import { formatIp } from './ip.ts';
import type { AddrPort } from './packet.ts';

/** Datagrams per recvmmsg/sendmmsg and per onBatch call (must equal the addon's UB_MAX_BATCH). */
export const BATCH_MAX = 64;
/** Bytes per slab slot; longer datagrams arrive truncated with FLAG_TRUNCATED (UB_SLOT_BYTES). */
export const SLOT_BYTES = 2048;
/** Bytes per meta record (UB_META_BYTES): 4 int32 then 16 address bytes. */
export const META_BYTES = 32;
export const META_INTS = META_BYTES / 4;
/** Int32 fields of a meta record. */
export const Meta = { Length: 0, Flags: 1, Family: 2, Port: 3 } as const;
/** Byte offset of the address inside a meta record. */
export const META_ADDR_OFFSET = 16;
/** Meta flag: the datagram was longer than SLOT_BYTES and was cut (callers must drop it). */
export const FLAG_TRUNCATED = 1;
/** Version of the JS↔C layout this module speaks (UB_ABI). */
const ADDON_ABI = 1;
/** Counters kept by the addon in a Float64Array, by index. */
const Stat = {
  RecvPackets: 0, RecvBatches: 1, RecvTruncated: 2, RecvErrors: 3, SendPackets: 4, SendDropped: 5, SendErrors: 6, LastErrno: 7,
} as const;
const STATS_COUNT = 8;

export const UdpBatchErrorCode = {
  /** Wrong argument type/range (family, host literal, port, slot range). */
  BadArgument: 'udp_batch_bad_argument',
  /** The socket was closed. */
  Closed: 'udp_batch_closed',
  /** socket/bind/getsockname failed; `errno` names why (EADDRINUSE, EAFNOSUPPORT…). */
  Syscall: 'udp_batch_syscall',
  /** The addon is not built or does not match this module. */
  Unavailable: 'udp_batch_unavailable',
} as const;

export class UdpBatchError extends WiremeshError {
  /** errno name (e.g. `EADDRINUSE`) for `udp_batch_syscall`, else null. */
  readonly errno: string | null;
  readonly syscall: string | null;
  constructor(code: string, message: string, errno: string | null = null, syscall: string | null = null, cause?: unknown) {
    super(code, message, cause === undefined ? undefined : { cause });
    this.name = 'UdpBatchError';
    this.errno = errno;
    this.syscall = syscall;
  }
}

export interface BatchUdpStats {
  recvPackets: number;
  recvBatches: number;
  /** Datagrams longer than SLOT_BYTES (delivered flagged, to be dropped). */
  recvTruncated: number;
  /** recvmmsg failures other than EAGAIN (e.g. queued ICMP errors). */
  recvErrors: number;
  sendPackets: number;
  /** Datagrams dropped because the send buffer was full (EAGAIN/ENOBUFS). */
  sendDropped: number;
  /** Datagrams the kernel refused (bad address, unreachable…) or with an invalid meta record. */
  sendErrors: number;
  /** errno name of the last failure, or null. */
  lastError: string | null;
}

declare const handleBrand: unique symbol;
type NativeHandle = { readonly [handleBrand]: true };

interface Native {
  ABI: number;
  MAX_BATCH: number;
  SLOT_BYTES: number;
  META_BYTES: number;
  STATS_COUNT: number;
  FLAG_TRUNCATED: number;
  open(family: number, host: string, port: number, v6only: boolean, recvSlab: ArrayBuffer, recvMeta: ArrayBuffer,
    sendSlab: ArrayBuffer, sendMeta: ArrayBuffer, stats: ArrayBuffer, onBatch: (count: number) => void): NativeHandle;
  port(h: NativeHandle): number;
  send(h: NativeHandle, count: number, first: number): number;
  close(h: NativeHandle): void;
}

/** Where scripts/build-native.ts puts the addon. */
export const ADDON_PATH = path.resolve(import.meta.dirname, '../../build/udp_batch.node');

let loaded: { native: Native | null; reason: string | null } | null = null;

function load(): { native: Native | null; reason: string | null } {
  if (loaded !== null) return loaded;
  if (!existsSync(ADDON_PATH)) return (loaded = { native: null, reason: `${ADDON_PATH} not built (node scripts/build-native.ts)` });
  try {
    const n = createRequire(import.meta.url)(ADDON_PATH) as Partial<Native>;
    const layoutOk = n.ABI === ADDON_ABI && n.MAX_BATCH === BATCH_MAX && n.SLOT_BYTES === SLOT_BYTES && n.META_BYTES === META_BYTES &&
      n.STATS_COUNT === STATS_COUNT && n.FLAG_TRUNCATED === FLAG_TRUNCATED && typeof n.open === 'function';
    loaded = layoutOk ? { native: n as Native, reason: null } : { native: null, reason: `${ADDON_PATH} is stale (rebuild it)` };
  } catch (e) {
    loaded = { native: null, reason: `cannot load ${ADDON_PATH}: ${String(e)}` };
  }
  return loaded;
}

/** True when the native batch addon is built and loadable. */
export function batchUdpAvailable(): boolean {
  return load().native !== null;
}

/** Why the addon is unavailable (null when it is available). */
export function batchUdpUnavailableReason(): string | null {
  return load().reason;
}

const errnoNames = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));
const errnoName = (n: number): string => errnoNames.get(n) ?? `errno ${n}`;

/** Converts what the addon threw into a UdpBatchError. */
function typed(e: unknown): UdpBatchError {
  if (e instanceof UdpBatchError) return e;
  const x = e as { code?: unknown; errno?: unknown; syscall?: unknown; message?: unknown };
  const msg = typeof x.message === 'string' ? x.message : String(e);
  if (x.code === UdpBatchErrorCode.Syscall && typeof x.errno === 'number') {
    const name = errnoName(x.errno);
    return new UdpBatchError(UdpBatchErrorCode.Syscall, `${msg} (${name})`, name, typeof x.syscall === 'string' ? x.syscall : null, e);
  }
  if (x.code === UdpBatchErrorCode.BadArgument || x.code === UdpBatchErrorCode.Closed) return new UdpBatchError(x.code, msg, null, null, e);
  return new UdpBatchError(UdpBatchErrorCode.BadArgument, msg, null, null, e);
}

export interface BatchUdpOptions {
  family: 4 | 6;
  /** An IP literal of `family` ('0.0.0.0' / '::' for any). */
  host: string;
  port: number;
  /** IPV6_V6ONLY for a family-6 socket (default false: the kernel's dual-stack default). */
  ipv6Only?: boolean;
  /** Called once per received batch with the number of valid records. */
  onBatch: (sock: BatchUdpSocket, count: number) => void;
}

export class BatchUdpSocket {
  readonly family: 4 | 6;
  readonly recvData: Uint8Array;
  readonly recvMeta: Int32Array;
  readonly recvMetaBytes: Uint8Array;
  readonly sendData: Uint8Array;
  readonly sendMeta: Int32Array;
  readonly sendMetaBytes: Uint8Array;
  readonly #stats: Float64Array;
  readonly #native: Native;
  readonly #handle: NativeHandle;
  readonly #port: number;
  #closed = false;

  /** Binds a socket and starts receiving. Throws UdpBatchError (Unavailable, BadArgument, Syscall). */
  static open(opts: BatchUdpOptions): BatchUdpSocket {
    const { native, reason } = load();
    if (native === null) throw new UdpBatchError(UdpBatchErrorCode.Unavailable, reason ?? 'addon unavailable');
    return new BatchUdpSocket(native, opts);
  }

  private constructor(native: Native, opts: BatchUdpOptions) {
    this.#native = native;
    this.family = opts.family;
    const bufs = [BATCH_MAX * SLOT_BYTES, BATCH_MAX * META_BYTES, BATCH_MAX * SLOT_BYTES, BATCH_MAX * META_BYTES, STATS_COUNT * 8].map(
      (n) => new ArrayBuffer(n),
    ) as [ArrayBuffer, ArrayBuffer, ArrayBuffer, ArrayBuffer, ArrayBuffer];
    this.recvData = new Uint8Array(bufs[0]);
    this.recvMeta = new Int32Array(bufs[1]);
    this.recvMetaBytes = new Uint8Array(bufs[1]);
    this.sendData = new Uint8Array(bufs[2]);
    this.sendMeta = new Int32Array(bufs[3]);
    this.sendMetaBytes = new Uint8Array(bufs[3]);
    this.#stats = new Float64Array(bufs[4]);
    const onBatch = opts.onBatch;
    if (typeof onBatch !== 'function') throw new UdpBatchError(UdpBatchErrorCode.BadArgument, 'onBatch must be a function');
    try {
      this.#handle = native.open(opts.family, opts.host, opts.port, opts.ipv6Only ?? false, ...bufs, (count: number) => onBatch(this, count));
      this.#port = native.port(this.#handle);
    } catch (e) {
      throw typed(e);
    }
  }

  get port(): number {
    return this.#port;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sends send slots [first, first+count) in one sendmmsg; returns how many the kernel accepted (the rest were
   * dropped on a full buffer or refused; see stats()). Throws `udp_batch_closed` after close.
   */
  send(count: number, first = 0): number {
    if (this.#closed) throw new UdpBatchError(UdpBatchErrorCode.Closed, 'socket is closed');
    try {
      return this.#native.send(this.#handle, count, first);
    } catch (e) {
      throw typed(e);
    }
  }

  /** Fills send slot `slot` with `data` to `to` (convenience for tests and tools; the hot path writes the arrays). */
  setSend(slot: number, data: Uint8Array, to: { family: 4 | 6; address: Uint8Array; port: number }): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= BATCH_MAX || data.length > SLOT_BYTES || to.address.length !== (to.family === 4 ? 4 : 16)) {
      throw new UdpBatchError(UdpBatchErrorCode.BadArgument, `bad send slot ${slot} (${data.length} bytes, ${to.address.length}-byte address)`);
    }
    this.sendData.set(data, slot * SLOT_BYTES);
    const m = slot * META_INTS;
    this.sendMeta[m + Meta.Length] = data.length;
    this.sendMeta[m + Meta.Flags] = 0;
    this.sendMeta[m + Meta.Family] = to.family;
    this.sendMeta[m + Meta.Port] = to.port;
    this.sendMetaBytes.set(to.address, slot * META_BYTES + META_ADDR_OFFSET);
  }

  /** A copy of received datagram `i` (valid inside onBatch only). */
  received(i: number): { data: Uint8Array; from: AddrPort; truncated: boolean } {
    const m = i * META_INTS;
    const len = this.recvMeta[m + Meta.Length]!;
    const family = this.recvMeta[m + Meta.Family]!;
    const a = i * META_BYTES + META_ADDR_OFFSET;
    return {
      data: this.recvData.slice(i * SLOT_BYTES, i * SLOT_BYTES + len),
      from: { address: formatIp(this.recvMetaBytes.subarray(a, a + (family === 4 ? 4 : 16))), port: this.recvMeta[m + Meta.Port]! },
      truncated: (this.recvMeta[m + Meta.Flags]! & FLAG_TRUNCATED) !== 0,
    };
  }

  stats(): BatchUdpStats {
    const s = this.#stats;
    return {
      recvPackets: s[Stat.RecvPackets]!, recvBatches: s[Stat.RecvBatches]!, recvTruncated: s[Stat.RecvTruncated]!,
      recvErrors: s[Stat.RecvErrors]!, sendPackets: s[Stat.SendPackets]!, sendDropped: s[Stat.SendDropped]!,
      sendErrors: s[Stat.SendErrors]!, lastError: s[Stat.LastErrno]! === 0 ? null : errnoName(s[Stat.LastErrno]!),
    };
  }

  /** Stops receiving and closes the socket (the fd closes on the next loop turn). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#native.close(this.#handle);
  }
}
