/**
 * PCP codec (RFC 6887 §7 common header, §14 ANNOUNCE, §11 MAP; spec/nat-traversal.md §8.3): requests and a response
 * parser, plus the checks a MAP response must pass (result code, nonce, protocol, internal port). Pure: the nonce
 * is passed in by the caller. Parsers return null for "not PCP" (version byte ≠ 2) and throw typed errors otherwise.
 */
import { WiremeshError } from '../errors.ts';
import {
  IPPROTO_UDP, PCP_HEADER_LEN, PCP_MAP_LEN, PCP_MAX_MESSAGE_LEN, PCP_NONCE_LEN, PCP_RESPONSE_BIT, PCP_VERSION,
  PcpOpcode, PcpResult, PortmapErrorCode,
} from './constants.ts';
import { formatIp, parseIPv4, v4Mapped } from '../net/ip.ts';

/** 16 bytes `::ffff:a.b.c.d` for a dotted IPv4 address (RFC 6887 §5); throws PORTMAP_MALFORMED otherwise. */
function v4MappedBytes(address: string): Uint8Array {
  const v4 = parseIPv4(address);
  if (v4 === null) throw new WiremeshError(PortmapErrorCode.Malformed, `not an IPv4 address: ${JSON.stringify(address)}`);
  return v4Mapped(v4);
}

export interface PcpMapFields {
  nonce: Uint8Array;
  /** IANA protocol number (17 = UDP). */
  protocol: number;
  internalPort: number;
  /** Suggested (request) or assigned (response) external port. */
  externalPort: number;
  /** Suggested (request) or assigned (response) external address; `0.0.0.0` = no preference. */
  externalIp: string;
}

export interface PcpResponse {
  opcode: number;
  result: number;
  /** Granted lifetime, seconds. */
  lifetime: number;
  /** Server epoch, seconds since its mapping state was (re)initialised (RFC 6887 §8.5). */
  epoch: number;
  /** Present for MAP responses. */
  map?: PcpMapFields;
}

function header(opcode: number, lifetime: number, clientIp: string, total: number): Uint8Array {
  if (!Number.isInteger(lifetime) || lifetime < 0 || lifetime > 0xffffffff) {
    throw new WiremeshError(PortmapErrorCode.Malformed, `bad lifetime ${lifetime}`);
  }
  const out = new Uint8Array(total);
  out[0] = PCP_VERSION;
  out[1] = opcode;
  new DataView(out.buffer).setUint32(4, lifetime);
  out.set(v4MappedBytes(clientIp), 8);
  return out;
}

/** 24-byte ANNOUNCE request (lifetime 0), used by the probe to learn whether a PCP server answers. */
export function encodePcpAnnounceRequest(clientIp: string): Uint8Array {
  return header(PcpOpcode.Announce, 0, clientIp, PCP_HEADER_LEN);
}

export interface PcpMapRequest {
  clientIp: string;
  /** 0 deletes the mapping; the nonce must be the one that created it (RFC 6887 §15). */
  lifetime: number;
  nonce: Uint8Array;
  protocol?: number;
  internalPort: number;
  externalPort: number;
  externalIp?: string;
}

/** 60-byte MAP request. */
export function encodePcpMapRequest(req: PcpMapRequest): Uint8Array {
  if (req.nonce.length !== PCP_NONCE_LEN) {
    throw new WiremeshError(PortmapErrorCode.Malformed, `PCP nonce must be ${PCP_NONCE_LEN} bytes`);
  }
  for (const [n, p, min] of [['internal port', req.internalPort, 1], ['external port', req.externalPort, 0]] as const) {
    if (!Number.isInteger(p) || p < min || p > 65535) throw new WiremeshError(PortmapErrorCode.Malformed, `bad ${n} ${p}`);
  }
  const out = header(PcpOpcode.Map, req.lifetime, req.clientIp, PCP_MAP_LEN);
  const v = new DataView(out.buffer);
  out.set(req.nonce, 24);
  out[36] = req.protocol ?? IPPROTO_UDP;
  v.setUint16(40, req.internalPort);
  v.setUint16(42, req.externalPort);
  out.set(v4MappedBytes(req.externalIp ?? '0.0.0.0'), 44);
  return out;
}

export function pcpResultName(code: number): string {
  for (const [k, v] of Object.entries(PcpResult)) if (v === code) return k;
  return `Result${code}`;
}

/**
 * Parses a PCP response. Null when the version byte is not 2. Throws PORTMAP_TRUNCATED (< 24 bytes, or a MAP
 * response < 60), PORTMAP_TOO_LARGE (> 1100), PORTMAP_MALFORMED (length not a multiple of 4) or
 * PORTMAP_UNEXPECTED_OPCODE (R bit clear, or an opcode we never send). A non-zero result code is returned,
 * not thrown: the caller decides (see verifyPcpMapResponse).
 */
export function parsePcpResponse(data: Uint8Array): PcpResponse | null {
  if (data.length === 0) throw new WiremeshError(PortmapErrorCode.Truncated, 'empty PCP datagram');
  if (data[0] !== PCP_VERSION) return null;
  if (data.length > PCP_MAX_MESSAGE_LEN) {
    throw new WiremeshError(PortmapErrorCode.TooLarge, `PCP message of ${data.length} bytes`);
  }
  if (data.length < PCP_HEADER_LEN) {
    throw new WiremeshError(PortmapErrorCode.Truncated, `PCP response of ${data.length} bytes`);
  }
  if (data.length % 4 !== 0) {
    throw new WiremeshError(PortmapErrorCode.Malformed, `PCP length ${data.length} is not a multiple of 4`);
  }
  const op = data[1] ?? 0;
  const opcode = op & ~PCP_RESPONSE_BIT;
  if ((op & PCP_RESPONSE_BIT) === 0 || (opcode !== PcpOpcode.Announce && opcode !== PcpOpcode.Map)) {
    throw new WiremeshError(PortmapErrorCode.UnexpectedOpcode, `PCP opcode 0x${op.toString(16)} is not a response we expect`);
  }
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const resp: PcpResponse = { opcode, result: data[3] ?? 0, lifetime: v.getUint32(4), epoch: v.getUint32(8) };
  if (opcode === PcpOpcode.Map) {
    if (data.length < PCP_MAP_LEN) {
      throw new WiremeshError(PortmapErrorCode.Truncated, `PCP MAP response of ${data.length} bytes`);
    }
    resp.map = {
      nonce: data.slice(24, 24 + PCP_NONCE_LEN),
      protocol: data[36] ?? 0,
      internalPort: v.getUint16(40),
      externalPort: v.getUint16(42),
      externalIp: formatIp(data.subarray(44, 60), true),
    };
  }
  return resp;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return d === 0;
}

/**
 * Checks a MAP response against the request it answers (RFC 6887 §11.3): PORTMAP_RESULT_CODE if the result is
 * not SUCCESS, PORTMAP_NONCE_MISMATCH if the nonce differs, PORTMAP_MALFORMED if protocol / internal port differ
 * or a successful non-delete grant carries external port 0. Returns the MAP fields.
 */
export function verifyPcpMapResponse(resp: PcpResponse, req: PcpMapRequest): PcpMapFields {
  if (resp.opcode !== PcpOpcode.Map || resp.map === undefined) {
    throw new WiremeshError(PortmapErrorCode.UnexpectedOpcode, `expected a PCP MAP response, got opcode ${resp.opcode}`);
  }
  if (!equalBytes(resp.map.nonce, req.nonce)) {
    throw new WiremeshError(PortmapErrorCode.NonceMismatch, 'PCP MAP response nonce does not match the request');
  }
  if (resp.result !== PcpResult.Success) {
    throw new WiremeshError(PortmapErrorCode.ResultCode, `PCP result ${resp.result} (${pcpResultName(resp.result)})`);
  }
  if (resp.map.protocol !== (req.protocol ?? IPPROTO_UDP) || resp.map.internalPort !== req.internalPort) {
    throw new WiremeshError(PortmapErrorCode.Malformed, 'PCP MAP response is for another protocol or internal port');
  }
  if (req.lifetime > 0 && resp.map.externalPort === 0) {
    throw new WiremeshError(PortmapErrorCode.Malformed, 'PCP MAP response grants external port 0');
  }
  return resp.map;
}
