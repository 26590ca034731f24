/**
 * The DERP handshake bodies as a client sees them (spec/derp.md §5, §6): the sealed ClientInfo frame (JSON keys in
 * the exact casing and order Go clients send) and opening + lenient parsing of ServerInfo (case-insensitive
 * keys, unknown keys ignored). Failing to open or parse ServerInfo is fatal to the connection (§14).
 */
import { WiremeshError } from '../errors.ts';
import { publicFromPrivate, toHex } from '../types/key.ts';
import type { DerpClientOptions } from './client.ts';
import { boxBeforeNm, openBox, sealBox } from './box.ts';
import { FrameType, KEY_LEN, MAX_INFO_LEN, NONCE_LEN } from './constants.ts';
import { encodeFrame } from './frame.ts';
import { CLIENT_INFO_VERSION } from './client-constants.ts';

export interface ServerInfo {
  version: number;
  tokenBucketBytesPerSecond?: number;
  tokenBucketBytesBurst?: number;
}

const protocolError = (message: string): WiremeshError => new WiremeshError('derp_protocol', message);

/** Builds the ClientInfo frame: our public key ∥ box(JSON) sealed to the server key (spec §5, §6). */
export function encodeClientInfo(opts: Pick<DerpClientOptions, 'privateKey' | 'meshKey' | 'canAckPings' | 'isProber'>, serverKey: Uint8Array): Buffer {
  const info: Record<string, unknown> = {};
  if (opts.meshKey !== undefined) {
    if (opts.meshKey.length !== KEY_LEN) throw new WiremeshError('invalid_mesh_key', 'invalid mesh key: want 32 bytes');
    info.meshKey = toHex(opts.meshKey);
  }
  info.version = CLIENT_INFO_VERSION;
  info.CanAckPings = opts.canAckPings === true;
  if (opts.isProber === true) info.IsProber = true;
  const sealed = sealBox(boxBeforeNm(opts.privateKey, serverKey), Buffer.from(JSON.stringify(info), 'utf8'));
  return encodeFrame(FrameType.ClientInfo, publicFromPrivate(opts.privateKey), sealed);
}

export function parseServerInfo(json: string): ServerInfo {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    throw protocolError('ServerInfo is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw protocolError('ServerInfo is not a JSON object');
  const o = v as Record<string, unknown>;
  const num = (name: string): number | undefined => {
    const key = Object.keys(o).find((k) => k.toLowerCase() === name.toLowerCase());
    const x = key === undefined ? undefined : o[key];
    return typeof x === 'number' && Number.isFinite(x) ? x : undefined;
  };
  const info: ServerInfo = { version: num('version') ?? 0 };
  const rate = num('TokenBucketBytesPerSecond');
  const burst = num('TokenBucketBytesBurst');
  if (rate !== undefined && rate > 0) info.tokenBucketBytesPerSecond = rate;
  if (burst !== undefined && burst > 0) info.tokenBucketBytesBurst = burst;
  return info;
}

/** Opens a ServerInfo payload (nonce ∥ box) from `serverKey` to us and parses it; throws on any failure. */
export function openServerInfo(privateKey: Uint8Array, serverKey: Uint8Array, payload: Uint8Array): ServerInfo {
  if (payload.length < NONCE_LEN) throw protocolError(`ServerInfo of ${payload.length} bytes`);
  if (payload.length - NONCE_LEN > MAX_INFO_LEN) throw protocolError('ServerInfo too long');
  const plain = openBox(boxBeforeNm(privateKey, serverKey), payload);
  return parseServerInfo(Buffer.from(plain).toString('utf8'));
}
