/**
 * What a DERP client receives (spec/derp.md §4.1, §8, §14): a typed union of server messages and the pure
 * decoder from a frame to a message. Tolerant like the Go client: short optional fields take their defaults,
 * and unknown frame types become `{type:'unknown'}` rather than errors.
 */
import { WiremeshError } from '../errors.ts';
import { nodePublicFromBytes, type NodePublic } from '../types/key.ts';
import type { AddrPort } from '../net/packet.ts';
import { FrameType, KEY_LEN } from './constants.ts';
import { decodePeerGone, decodePeerPresent, decodeRestarting } from './frame.ts';

export type DerpMessage =
  | { type: 'recvPacket'; source: NodePublic; data: Uint8Array }
  | { type: 'peerGone'; key: NodePublic; reason: number }
  | { type: 'peerPresent'; key: NodePublic; ipPort: AddrPort | null; flags: number }
  | { type: 'keepAlive' }
  | { type: 'ping'; data: Uint8Array }
  | { type: 'pong'; data: Uint8Array }
  | { type: 'health'; problem: string }
  | { type: 'restarting'; reconnectInMs: number; tryForMs: number }
  | { type: 'unknown'; frameType: number; length: number };

/** Textual IP of a 16-byte address: IPv4-mapped addresses are unmapped; all zeros means unknown (null). */
export function ip16ToString(ip: Uint8Array): string | null {
  if (ip.every((b) => b === 0)) return null;
  const mapped = ip.subarray(0, 10).every((b) => b === 0) && ip[10] === 0xff && ip[11] === 0xff;
  if (mapped) return `${ip[12]}.${ip[13]}.${ip[14]}.${ip[15]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((ip[i]! << 8) | ip[i + 1]!).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Decodes one post-handshake frame received from a server. */
export function decodeServerFrame(type: number, payload: Uint8Array): DerpMessage {
  switch (type) {
    case FrameType.RecvPacket: {
      if (payload.length < KEY_LEN) throw new WiremeshError('short_recv_packet', `RecvPacket of ${payload.length} bytes`);
      return { type: 'recvPacket', source: nodePublicFromBytes(payload.subarray(0, KEY_LEN)), data: Uint8Array.from(payload.subarray(KEY_LEN)) };
    }
    case FrameType.PeerGone: {
      const g = decodePeerGone(payload);
      return { type: 'peerGone', key: nodePublicFromBytes(g.key), reason: g.reason };
    }
    case FrameType.PeerPresent: {
      const p = decodePeerPresent(payload);
      const address = p.ip16 === null ? null : ip16ToString(p.ip16);
      return { type: 'peerPresent', key: nodePublicFromBytes(p.key), ipPort: address === null ? null : { address, port: p.port }, flags: p.flags };
    }
    case FrameType.KeepAlive:
      return { type: 'keepAlive' };
    case FrameType.Ping:
    case FrameType.Pong: {
      if (payload.length < 8) throw new WiremeshError('short_ping', `${type === FrameType.Ping ? 'Ping' : 'Pong'} of ${payload.length} bytes`);
      return { type: type === FrameType.Ping ? 'ping' : 'pong', data: Uint8Array.from(payload.subarray(0, 8)) };
    }
    case FrameType.Health:
      return { type: 'health', problem: Buffer.from(payload).toString('utf8') };
    case FrameType.Restarting: {
      const r = decodeRestarting(payload);
      return { type: 'restarting', reconnectInMs: r.reconnectInMs, tryForMs: r.tryForMs };
    }
    default:
      return { type: 'unknown', frameType: type, length: payload.length };
  }
}
