/**
 * DERP client constants (spec/derp.md §3.2, §4, §14), each with its reason. Protocol-wide constants (frame
 * types, packet size) live in ./constants.ts; these are the bounds and timings the client side chooses.
 */

/** Whole connect budget (DNS + TCP + TLS + HTTP upgrade + DERP handshake), as the Go client's 10 s. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** Longest HTTP response head (status line + headers) the client buffers while waiting for the 101. */
export const MAX_RESPONSE_HEAD_LEN = 16 * 1024;
/** `derphttp.Client.Ping` waits at most this long for the matching Pong. */
export const PING_TIMEOUT_MS = 5_000;
/** Received messages queued for a consumer before the socket is paused (backpressure, never unbounded). */
export const RECV_QUEUE_HIGH_WATER = 256;
/** The socket is resumed once the consumer has drained the queue down to this many messages. */
export const RECV_QUEUE_LOW_WATER = 64;
/** Queued received payload bytes that also pause the socket (whichever of count/bytes trips first). */
export const RECV_QUEUE_HIGH_BYTES = 4 * 1024 * 1024;
/** Largest WebSocket message accepted; a message may carry several frames, each ≤ CLIENT_MAX_FRAME_LEN. */
export const WS_MAX_MESSAGE_LEN = 4 * 1024 * 1024;
/**
 * Largest WebSocket message the client sends: the Go derper's WebSocket library (coder/websocket) closes a
 * connection whose message exceeds its default 32 KiB read limit, so longer writes are split across messages.
 */
export const WS_MAX_SEND_MESSAGE_LEN = 32 * 1024;
/** Outgoing bytes buffered in the socket beyond which `writable` reports backpressure to senders. */
export const SEND_HIGH_WATER_BYTES = 1024 * 1024;
/** ClientInfo `version` the Go clients send (the server ignores it). */
export const CLIENT_INFO_VERSION = 2;
/** The request header that suppresses the server's 101 (fast start, spec §3.3). */
export const FAST_START_HEADER = 'Derp-Fast-Start';
/** User-Agent sent on the upgrade request (Go sends Go-http-client/1.1; the server ignores it). */
export const USER_AGENT = 'wiremesh-derp-client/0.1';
/** Cost of a SendPacket frame for the client-side token bucket: header(5) + key(32) + payload. */
export const TOKEN_BUCKET_FRAME_OVERHEAD = 5 + 32;
