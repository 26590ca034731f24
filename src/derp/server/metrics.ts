/**
 * DERP server counters (spec/derp.md §16.4): named as derper's expvar set `derp` so the derper command can export
 * them unchanged (Prometheus: `derp_<name>` with `gauge_`/`counter_` stripped), plus the drop counters
 * `derp_packets_dropped{reason,kind}` / `derp_bytes_dropped{reason,kind}` (§9.3).
 */

export const DropReason = {
  UnknownDest: 'unknown_dest',
  UnknownDestOnFwd: 'unknown_dest_on_fwd',
  GoneDisconnected: 'gone_disconnected',
  QueueHead: 'queue_head',
  QueueTail: 'queue_tail',
  WriteError: 'write_error',
  DupClient: 'dup_client',
} as const;
export type DropReasonValue = (typeof DropReason)[keyof typeof DropReason];
export type DropKind = 'disco' | 'other';

export type DropCounts = Record<DropReasonValue, Record<DropKind, number>>;

/** A snapshot of every counter and gauge; keys are derper's expvar names. */
export interface DerpMetrics {
  gauge_current_connections: number;
  gauge_current_home_connections: number;
  gauge_current_notideal_connections: number;
  gauge_watchers: number;
  gauge_clients_total: number;
  gauge_clients_local: number;
  gauge_clients_remote: number;
  gauge_current_dup_client_keys: number;
  gauge_current_dup_client_conns: number;
  accepts: number;
  counter_total_dup_client_conns: number;
  bytes_received: number;
  bytes_sent: number;
  packets_received: number;
  packets_sent: number;
  counter_packets_received_kind: Record<DropKind, number>;
  unknown_frames: number;
  got_ping: number;
  sent_pong: number;
  peer_gone_disconnected_frames: number;
  peer_gone_not_here_frames: number;
  home_moves_in: number;
  home_moves_out: number;
  packets_forwarded_out: number;
  packets_forwarded_in: number;
  multiforwarder_created: number;
  multiforwarder_deleted: number;
  sclient_write_timeouts: number;
  /** Times a client's reads were paused by the `--rate-config` receive limit (ours; Go exports limiter waits). */
  counter_rate_limit_per_client_throttles: number;
  /** Connections closed for bad input or a failed handshake, by WiremeshError code (ours, not derper's). */
  closes_by_code: Record<string, number>;
  packets_dropped: DropCounts;
  bytes_dropped: DropCounts;
  websocket_accepts: number;
  /** Packets relayed by the fast path for connections on the native addon (ours; fast-relay.ts). */
  counter_packets_fast_path: number;
}

function emptyDrops(): DropCounts {
  const out = {} as DropCounts;
  for (const r of Object.values(DropReason)) out[r] = { disco: 0, other: 0 };
  return out;
}

/** The mutable counters the engine bumps; gauges are computed by the server at snapshot time. */
export class Counters {
  accepts = 0;
  totalDupClientConns = 0;
  bytesReceived = 0;
  bytesSent = 0;
  packetsReceived = 0;
  packetsSent = 0;
  receivedDisco = 0;
  receivedOther = 0;
  unknownFrames = 0;
  gotPing = 0;
  sentPong = 0;
  peerGoneDisconnected = 0;
  peerGoneNotHere = 0;
  homeMovesIn = 0;
  homeMovesOut = 0;
  packetsForwardedOut = 0;
  packetsForwardedIn = 0;
  multiforwarderCreated = 0;
  multiforwarderDeleted = 0;
  writeTimeouts = 0;
  receiveThrottles = 0;
  websocketAccepts = 0;
  fastPathPackets = 0;
  readonly closesByCode: Record<string, number> = {};
  readonly packetsDropped: DropCounts = emptyDrops();
  readonly bytesDropped: DropCounts = emptyDrops();

  drop(reason: DropReasonValue, disco: boolean, bytes: number): void {
    const kind: DropKind = disco ? 'disco' : 'other';
    this.packetsDropped[reason][kind]++;
    this.bytesDropped[reason][kind] += bytes;
  }

  closed(code: string): void {
    this.closesByCode[code] = (this.closesByCode[code] ?? 0) + 1;
  }
}

export interface Gauges {
  connections: number;
  home: number;
  notIdeal: number;
  watchers: number;
  clientsTotal: number;
  clientsLocal: number;
  clientsRemote: number;
  dupKeys: number;
  dupConns: number;
}

const copyDrops = (d: DropCounts): DropCounts => {
  const out = emptyDrops();
  for (const r of Object.values(DropReason)) out[r] = { ...d[r] };
  return out;
};

export function snapshot(c: Counters, g: Gauges): DerpMetrics {
  return {
    gauge_current_connections: g.connections,
    gauge_current_home_connections: g.home,
    gauge_current_notideal_connections: g.notIdeal,
    gauge_watchers: g.watchers,
    gauge_clients_total: g.clientsTotal,
    gauge_clients_local: g.clientsLocal,
    gauge_clients_remote: g.clientsRemote,
    gauge_current_dup_client_keys: g.dupKeys,
    gauge_current_dup_client_conns: g.dupConns,
    accepts: c.accepts,
    counter_total_dup_client_conns: c.totalDupClientConns,
    bytes_received: c.bytesReceived,
    bytes_sent: c.bytesSent,
    packets_received: c.packetsReceived,
    packets_sent: c.packetsSent,
    counter_packets_received_kind: { disco: c.receivedDisco, other: c.receivedOther },
    unknown_frames: c.unknownFrames,
    got_ping: c.gotPing,
    sent_pong: c.sentPong,
    peer_gone_disconnected_frames: c.peerGoneDisconnected,
    peer_gone_not_here_frames: c.peerGoneNotHere,
    home_moves_in: c.homeMovesIn,
    home_moves_out: c.homeMovesOut,
    packets_forwarded_out: c.packetsForwardedOut,
    packets_forwarded_in: c.packetsForwardedIn,
    multiforwarder_created: c.multiforwarderCreated,
    multiforwarder_deleted: c.multiforwarderDeleted,
    sclient_write_timeouts: c.writeTimeouts,
    counter_rate_limit_per_client_throttles: c.receiveThrottles,
    closes_by_code: { ...c.closesByCode },
    packets_dropped: copyDrops(c.packetsDropped),
    bytes_dropped: copyDrops(c.bytesDropped),
    websocket_accepts: c.websocketAccepts,
    counter_packets_fast_path: c.fastPathPackets,
  };
}
