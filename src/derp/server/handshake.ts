/**
 * The server half of the DERP handshake as pure functions (spec/derp.md §5, §6): open and validate a ClientInfo
 * frame, decide mesh privilege, and seal ServerInfo. Errors are WiremeshErrors with stable codes; the caller
 * closes the connection silently on any of them.
 */
import { WiremeshError } from '../../errors.ts';
import { boxBeforeNm, openBox, sealBox } from '../box.ts';
import { KEY_LEN, MAX_CLIENT_INFO_LEN, MIN_CLIENT_INFO_LEN } from '../constants.ts';
import { constantTimeEqual, isZeroKey, nodePublicFromBytes, type NodePrivate, type NodePublic } from '../../types/key.ts';
import { SERVER_INFO_JSON } from './constants.ts';

export interface ClientInfo {
  /** The mesh key presented, or null when absent. */
  meshKey: Uint8Array | null;
  version: number;
  canAckPings: boolean;
  isProber: boolean;
  appName: string;
}

export interface OpenedClientInfo {
  key: NodePublic;
  /** crypto_box shared key between the server and this client (for sealing ServerInfo). */
  shared: Uint8Array;
  info: ClientInfo;
}

const fail = (code: string, message: string, cause?: unknown): WiremeshError =>
  new WiremeshError(code, message, cause === undefined ? undefined : { cause });

/** Validates the length of a ClientInfo frame from its header, before the payload is read. */
export function checkClientInfoHeader(type: number, length: number): void {
  if (type !== 0x02) throw fail('bad_frame_type', `first frame has type 0x${type.toString(16)}, want ClientInfo`);
  if (length < MIN_CLIENT_INFO_LEN) throw fail('short_client_info', `ClientInfo of ${length} bytes`);
  if (length > MAX_CLIENT_INFO_LEN) throw fail('long_client_info', `ClientInfo of ${length} bytes`);
}

function parseMeshKey(v: unknown): Uint8Array {
  if (typeof v !== 'string' || !/^[0-9a-fA-F]{64}$/.test(v)) throw fail('bad_mesh_key', 'invalid mesh key in ClientInfo');
  return Uint8Array.from(Buffer.from(v, 'hex'));
}

/** Parses ClientInfo JSON as Go's encoding/json would: keys case-insensitive, unknown keys ignored, types strict. */
export function parseClientInfoJson(text: string): ClientInfo {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw fail('bad_client_info', 'ClientInfo is not valid JSON', e);
  }
  const info: ClientInfo = { meshKey: null, version: 0, canAckPings: false, isProber: false, appName: '' };
  if (v === null) return info;
  if (typeof v !== 'object' || Array.isArray(v)) throw fail('bad_client_info', 'ClientInfo is not a JSON object');
  const type = (name: string, got: unknown): WiremeshError => fail('bad_client_info', `ClientInfo ${name} has the wrong type (${typeof got})`);
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    switch (k.toLowerCase()) {
      case 'meshkey':
        info.meshKey = parseMeshKey(val);
        break;
      case 'version':
        if (val === null) break;
        if (typeof val !== 'number' || !Number.isSafeInteger(val)) throw type(k, val);
        info.version = val;
        break;
      case 'canackpings':
        if (val === null) break;
        if (typeof val !== 'boolean') throw type(k, val);
        info.canAckPings = val;
        break;
      case 'isprober':
        if (val === null) break;
        if (typeof val !== 'boolean') throw type(k, val);
        info.isProber = val;
        break;
      case 'appname':
        if (val === null) break;
        if (typeof val !== 'string') throw type(k, val);
        info.appName = val;
        break;
      default:
        break;
    }
  }
  return info;
}

/** Opens a ClientInfo payload: client key(32) ∥ nonce(24) ∥ box(JSON), sealed to the server key. */
export function openClientInfo(serverPrivate: NodePrivate, payload: Uint8Array): OpenedClientInfo {
  if (payload.length < MIN_CLIENT_INFO_LEN) throw fail('short_client_info', `ClientInfo of ${payload.length} bytes`);
  const keyBytes = payload.subarray(0, KEY_LEN);
  if (isZeroKey(keyBytes)) throw fail('zero_client_key', 'ClientInfo with an all-zero client key');
  const key = nodePublicFromBytes(keyBytes);
  const shared = boxBeforeNm(serverPrivate, key);
  const plain = openBox(shared, payload.subarray(KEY_LEN));
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(plain);
  } catch (e) {
    throw fail('bad_client_info', 'ClientInfo is not UTF-8', e);
  }
  return { key, shared, info: parseClientInfoJson(text) };
}

/** True when the presented mesh key is non-zero and equals the server's (constant time). */
export function isMeshPeer(presented: Uint8Array | null, serverMeshKey: Uint8Array | null): boolean {
  if (presented === null || serverMeshKey === null || isZeroKey(presented)) return false;
  return constantTimeEqual(presented, serverMeshKey);
}

/** What ServerInfo announces of the per-client receive limit (§5, §12): Go clients then pace themselves. */
export interface TokenBucketAnnouncement {
  bytesPerSecond: number;
  burstBytes: number;
}

/**
 * The ServerInfo payload: nonce(24) ∥ box(`{"version":2}`) sealed to the client. With a token bucket the JSON also
 * carries `TokenBucketBytesPerSecond`/`TokenBucketBytesBurst` (Go's struct fields; the Go server never sets them).
 */
export function sealServerInfo(shared: Uint8Array, nonce: Uint8Array, bucket?: TokenBucketAnnouncement): Uint8Array {
  const json = bucket === undefined
    ? SERVER_INFO_JSON
    : `${SERVER_INFO_JSON.slice(0, -1)},"TokenBucketBytesPerSecond":${Math.floor(bucket.bytesPerSecond)},"TokenBucketBytesBurst":${Math.floor(bucket.burstBytes)}}`;
  return sealBox(shared, new TextEncoder().encode(json), nonce);
}
