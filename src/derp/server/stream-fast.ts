/**
 * Optional fast paths a connection's stream may offer the DERP server (spec/node-performance.md §1: per-record
 * overhead is what a relay pays). src/net/tls-native.ts's NativeTlsSocket has both; any other Duplex has neither
 * and is used through 'data' and write() only.
 */
import type { Duplex } from 'node:stream';

export interface DirectStream {
  /** Bytes not yet taken by the kernel ('drain' follows), -1 when closed, null: use write() instead. */
  writeDirect(chunk: Uint8Array): number | null;
  /** Receive chunks by direct call while the stream flows with nothing buffered (null removes). */
  setDirectReader(fn: ((chunk: Buffer) => void) | null): void;
}

export function directStream(s: Duplex): DirectStream | null {
  const d = s as Duplex & Partial<DirectStream>;
  return typeof d.writeDirect === 'function' && typeof d.setDirectReader === 'function' ? (d as Duplex & DirectStream) : null;
}
