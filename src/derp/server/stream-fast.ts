/**
 * Optional fast paths a connection's stream may offer the DERP server (spec/node-performance.md §1: per-record
 * overhead is what a relay pays). src/net/tls-native.ts's NativeTlsSocket has both; any other Duplex has neither
 * and is used through 'data' and write() only.
 */
import type { Duplex } from 'node:stream';
import type { RawHost } from './fast-relay.ts';

export interface DirectStream {
  /**
   * Takes `buf[start, end)` now (the caller may reuse `buf` at once). Returns the bytes not yet taken by the
   * kernel ('drain' follows), -1 when closed, or null: nothing was taken, use write() instead.
   */
  writeDirect(buf: Uint8Array, start: number, end: number): number | null;
  /**
   * Receive chunks (`buf[0, length)`) by direct call while the stream flows with nothing buffered (null removes).
   * With `transient` true, `buf` is a read buffer the stream reuses once `fn` returns: copy what is kept.
   */
  setDirectReader(fn: ((buf: Buffer, length: number, transient: boolean) => void) | null): void;
}

export function directStream(s: Duplex): DirectStream | null {
  const d = s as Duplex & Partial<DirectStream>;
  return typeof d.writeDirect === 'function' && typeof d.setDirectReader === 'function' ? (d as Duplex & DirectStream) : null;
}

/** A stream whose bytes the relay's fast path (fast-relay.ts) may read and write around it, by host and id. */
export interface RawEndpoint {
  readonly rawHost: RawHost;
  readonly rawId: number;
}

export function rawEndpoint(s: Duplex): RawEndpoint | null {
  const d = s as Duplex & Partial<RawEndpoint>;
  return d.rawHost !== undefined && typeof d.rawId === 'number' ? { rawHost: d.rawHost, rawId: d.rawId } : null;
}
