/**
 * What the server accepts from an established client, decided from the frame header alone (spec/derp.md §7,
 * §11.1): length bounds per type and the mesh-key privilege, checked before any payload byte is buffered.
 * Pure: throws a WiremeshError with a stable code, or says whether to read the payload or discard it.
 */
import { WiremeshError } from '../../errors.ts';
import { FrameType, KEY_LEN, MAX_PING_LEN, PING_LEN } from '../constants.ts';
import { MAX_FORWARD_PACKET_FRAME, MAX_SEND_PACKET_FRAME } from './constants.ts';

/** `read` the payload, `skip` a frame the server ignores, or `unknown` (a type the protocol doesn't define). */
export type LiveVerdict = 'read' | 'skip' | 'unknown';

const err = (code: string, message: string): WiremeshError => new WiremeshError(code, message);

export function checkLiveHeader(type: number, length: number, canMesh: boolean): LiveVerdict {
  switch (type) {
    case FrameType.SendPacket:
      if (length < KEY_LEN) throw err('short_send_packet', `SendPacket of ${length} bytes`);
      if (length > MAX_SEND_PACKET_FRAME) throw err('frame_too_large', `SendPacket of ${length} bytes`);
      return 'read';
    case FrameType.ForwardPacket:
      if (!canMesh) throw err('insufficient_permissions', 'ForwardPacket from a client without the mesh key');
      if (length < 2 * KEY_LEN) throw err('short_forward_packet', `ForwardPacket of ${length} bytes`);
      if (length > MAX_FORWARD_PACKET_FRAME) throw err('frame_too_large', `ForwardPacket of ${length} bytes`);
      return 'read';
    case FrameType.NotePreferred:
      if (length !== 1) throw err('bad_note_preferred', `NotePreferred of ${length} bytes`);
      return 'read';
    case FrameType.Ping:
      if (length < PING_LEN || length > MAX_PING_LEN) throw err('bad_ping', `Ping of ${length} bytes`);
      return 'read';
    case FrameType.WatchConns:
      if (length !== 0) throw err('bad_watch_conns', `WatchConns of ${length} bytes`);
      if (!canMesh) throw err('insufficient_permissions', 'WatchConns from a client without the mesh key');
      return 'read';
    case FrameType.ClosePeer:
      if (length !== KEY_LEN) throw err('bad_close_peer', `ClosePeer of ${length} bytes`);
      if (!canMesh) throw err('insufficient_permissions', 'ClosePeer from a client without the mesh key');
      return 'read';
    case FrameType.Pong:
    case FrameType.KeepAlive:
    case FrameType.ClientInfo:
    case FrameType.ServerKey:
    case FrameType.ServerInfo:
    case FrameType.RecvPacket:
    case FrameType.PeerGone:
    case FrameType.PeerPresent:
    case FrameType.Health:
    case FrameType.Restarting:
      return 'skip';
    default:
      return 'unknown';
  }
}
