/**
 * NAT-PMP codec (RFC 6886 §3; spec/nat-traversal.md §8.3): the external-address request and the UDP/TCP map
 * request, and a parser for their responses. Pure: no sockets, no clock. Parsers return null for "not NAT-PMP"
 * (version byte ≠ 0, e.g. a PCP reply on the same port) and throw a typed WiremeshError for malformed input.
 */
import { WiremeshError } from '../errors.ts';
import {
  PMP_EXTERNAL_ADDRESS_RESPONSE_LEN, PMP_MAP_REQUEST_LEN, PMP_MAP_RESPONSE_LEN, PMP_MIN_RESPONSE_LEN,
  PMP_RESPONSE_BIT, PMP_VERSION, PmpOpcode, PmpResult, PortmapErrorCode,
} from './constants.ts';
import { formatIp } from '../net/ip.ts';

export type PmpProtocol = 'udp' | 'tcp';

export interface PmpExternalAddressResponse {
  kind: 'externalAddress';
  /** Seconds since the gateway's port-mapping table was (re)initialised. */
  epoch: number;
  externalIp: string;
}

export interface PmpMapResponse {
  kind: 'map';
  protocol: PmpProtocol;
  epoch: number;
  internalPort: number;
  externalPort: number;
  /** Granted lifetime in seconds (0 = the mapping was deleted). */
  lifetime: number;
}

export type PmpResponse = PmpExternalAddressResponse | PmpMapResponse;

/** `00 00`: ask for the external address. */
export function encodePmpExternalAddressRequest(): Uint8Array {
  return Uint8Array.of(PMP_VERSION, PmpOpcode.ExternalAddress);
}

export interface PmpMapRequest {
  protocol: PmpProtocol;
  internalPort: number;
  /** Suggested external port (the previous one when renewing), 0 = any. */
  externalPort: number;
  /** Requested lifetime in seconds; 0 deletes the mapping (RFC 6886 §3.4). */
  lifetime: number;
}

function checkPort(name: string, p: number, allowZero: boolean): void {
  if (!Number.isInteger(p) || p < (allowZero ? 0 : 1) || p > 65535) {
    throw new WiremeshError(PortmapErrorCode.Malformed, `bad ${name} ${p}`);
  }
}

/** 12 bytes: ver 0, op 1|2, reserved u16, internal port, suggested external port, lifetime u32. */
export function encodePmpMapRequest(req: PmpMapRequest): Uint8Array {
  checkPort('internal port', req.internalPort, false);
  checkPort('external port', req.externalPort, true);
  if (!Number.isInteger(req.lifetime) || req.lifetime < 0 || req.lifetime > 0xffffffff) {
    throw new WiremeshError(PortmapErrorCode.Malformed, `bad lifetime ${req.lifetime}`);
  }
  const out = new Uint8Array(PMP_MAP_REQUEST_LEN);
  const v = new DataView(out.buffer);
  out[0] = PMP_VERSION;
  out[1] = req.protocol === 'udp' ? PmpOpcode.MapUdp : PmpOpcode.MapTcp;
  v.setUint16(4, req.internalPort);
  v.setUint16(6, req.externalPort);
  v.setUint32(8, req.lifetime);
  return out;
}

/** Human-readable name of a NAT-PMP result code. */
export function pmpResultName(code: number): string {
  for (const [k, v] of Object.entries(PmpResult)) if (v === code) return k;
  return `Result${code}`;
}

/**
 * Parses a NAT-PMP response. Returns null when the version byte is not 0 (not NAT-PMP). Throws
 * PORTMAP_TRUNCATED, PORTMAP_UNEXPECTED_OPCODE (a request, or an unknown opcode), PORTMAP_RESULT_CODE (the
 * server refused; `.message` names the code) or PORTMAP_MALFORMED.
 */
export function parsePmpResponse(data: Uint8Array): PmpResponse | null {
  if (data.length === 0) throw new WiremeshError(PortmapErrorCode.Truncated, 'empty NAT-PMP datagram');
  if (data[0] !== PMP_VERSION) return null;
  if (data.length < PMP_MIN_RESPONSE_LEN) {
    throw new WiremeshError(PortmapErrorCode.Truncated, `NAT-PMP response of ${data.length} bytes`);
  }
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const op = data[1] ?? 0;
  if ((op & PMP_RESPONSE_BIT) === 0 || (op & ~PMP_RESPONSE_BIT) > PmpOpcode.MapTcp) {
    throw new WiremeshError(PortmapErrorCode.UnexpectedOpcode, `NAT-PMP opcode 0x${op.toString(16)} is not a response`);
  }
  const result = v.getUint16(2);
  if (result !== PmpResult.Success) {
    throw new WiremeshError(PortmapErrorCode.ResultCode, `NAT-PMP result ${result} (${pmpResultName(result)})`);
  }
  const epoch = v.getUint32(4);
  const base = op & ~PMP_RESPONSE_BIT;
  if (base === PmpOpcode.ExternalAddress) {
    if (data.length < PMP_EXTERNAL_ADDRESS_RESPONSE_LEN) {
      throw new WiremeshError(PortmapErrorCode.Truncated, `NAT-PMP address response of ${data.length} bytes`);
    }
    return { kind: 'externalAddress', epoch, externalIp: formatIp(data.subarray(8, 12)) };
  }
  if (data.length < PMP_MAP_RESPONSE_LEN) {
    throw new WiremeshError(PortmapErrorCode.Truncated, `NAT-PMP map response of ${data.length} bytes`);
  }
  const internalPort = v.getUint16(8);
  if (internalPort === 0) throw new WiremeshError(PortmapErrorCode.Malformed, 'NAT-PMP map response for port 0');
  return {
    kind: 'map',
    protocol: base === PmpOpcode.MapUdp ? 'udp' : 'tcp',
    epoch,
    internalPort,
    externalPort: v.getUint16(10),
    lifetime: v.getUint32(12),
  };
}
