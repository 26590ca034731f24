/**
 * A STUN server on a vlab host (spec/nat-traversal.md §7.4; RFC 5389 Binding): answers every Binding request
 * with the reflexive address it saw, using the project's codec (src/stun/codec.ts), so netcheck and magicsock
 * tests on the vlab exercise the real wire format.
 */
import type { PacketConn } from '../../src/net/packet.ts';
import { buildResponse, parseRequest } from '../../src/stun/codec.ts';
import type { Host } from './network.ts';

export interface VlabStunServer {
  conn: PacketConn;
  /** Requests answered so far. */
  readonly answered: number;
  close(): void;
}

/** Listens on `host:port` (3478 by default) of the family and answers Binding requests. */
export function startStunServer(host: Host, port = 3478, family: 4 | 6 = 4): VlabStunServer {
  const conn = host.udp(port, family);
  let answered = 0;
  conn.onMessage((data, from) => {
    const req = parseRequest(data);
    if (req === null) return;
    answered++;
    conn.send(buildResponse(req.txid, from, { fingerprint: req.kind === 'rfc5389' && req.fingerprint }), from);
  });
  return {
    conn,
    get answered() {
      return answered;
    },
    close: () => conn.close(),
  };
}
