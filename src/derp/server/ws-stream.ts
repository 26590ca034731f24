/**
 * A WebSocket carrying DERP as one byte stream (spec/derp.md §3.4): binary messages are concatenated into a
 * Duplex (frames may span messages, one message may hold several frames), each write becomes one binary message
 * (so each server flush is one message), and a text message closes the socket with status 1003.
 * Backpressure: when the reader is full the WebSocket is paused; it resumes on the next read().
 */
import { Duplex } from 'node:stream';
import type WebSocket from 'ws';

export const WS_CLOSE_NORMAL = 1000;
export const WS_CLOSE_UNSUPPORTED_DATA = 1003;
export const WS_CLOSE_POLICY = 1008;

export function webSocketStream(ws: WebSocket): Duplex {
  const d = new Duplex({
    read() {
      if (ws.isPaused) ws.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      if (ws.readyState !== ws.OPEN) {
        cb(new Error('websocket is not open'));
        return;
      }
      ws.send(chunk, { binary: true }, cb);
    },
    final(cb) {
      if (ws.readyState === ws.OPEN) ws.close(WS_CLOSE_NORMAL);
      cb();
    },
    destroy(err, cb) {
      if (ws.readyState === ws.OPEN) ws.close(WS_CLOSE_NORMAL);
      else if (ws.readyState === ws.CONNECTING) ws.terminate();
      cb(err);
    },
  });
  ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
    if (!isBinary) {
      ws.close(WS_CLOSE_UNSUPPORTED_DATA, 'text messages are not DERP');
      d.destroy();
      return;
    }
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (!d.push(buf)) ws.pause();
  });
  ws.on('close', () => {
    d.push(null);
    d.destroy();
  });
  ws.on('error', (e: Error) => d.destroy(e));
  return d;
}
