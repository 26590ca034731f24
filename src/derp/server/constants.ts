/**
 * Bounds and timings of the DERP server engine (spec/derp.md §4, §6, §9, §10, §12). Every limit the server enforces
 * is named here with its reason, and listed in docs/LIMITS.md ("DERP server").
 */
import { KEY_LEN, MAX_PACKET_SIZE } from '../constants.ts';

/** 10 s to send ServerKey, then a fresh 10 s window to receive ClientInfo and finish admission (Go derper). */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Per-write deadline for ordinary clients (`--tcp-write-timeout`, default 2 s; 0 disables). */
export const DEFAULT_WRITE_TIMEOUT_MS = 2_000;
/** Mesh-key holders get a longer write deadline, as in Go. */
export const MESH_WRITE_TIMEOUT_MS = 30_000;
/** Depth of each of the two per-connection send queues (disco and other), as Go's default. */
export const DEFAULT_QUEUE_DEPTH = 32;
/** Enqueue attempts on a full queue; each failed attempt drops the oldest packet (`queue_head`). */
export const ENQUEUE_ATTEMPTS = 3;
/** PeerGone(NotHere) replies per sending connection: 1 per second ... */
export const NOT_HERE_PER_SECOND = 1;
/** ... with a burst of 3 (Go's rate.NewLimiter(rate.Every(time.Second), 3)). */
export const NOT_HERE_BURST = 3;
/** Writer batch: frames for one destination are copied into a buffer of at most this size per write. */
export const WRITE_BATCH_BYTES = 64 * 1024;
/** Smallest new batch buffer when the writer sizes it itself (below 4 KiB Buffer.allocUnsafe uses Node's pool). */
export const WRITE_BATCH_MIN_BYTES = 2 * 1024;
/** Shared buffer that batches for native TLS connections are carved from (writer.ts BatchArena); one per server. */
export const BATCH_ARENA_BYTES = 512 * 1024;
/**
 * Bytes written to one connection's stream but not yet finished beyond which the writer counts as blocked: its
 * queues then fill and head-drop (Go drops at the same point, when its socket buffers are full). Large enough that
 * TLS's asynchronous write completion of two full batches is not mistaken for a slow receiver.
 */
export const WRITE_BUFFER_LIMIT = 256 * 1024;
/**
 * Pending PeerGone frames per connection (NotHere replies + Disconnected notices). Go blocks its sender instead;
 * we cannot block, so beyond this the notice is dropped (counted) rather than buffered without bound.
 */
export const MAX_PENDING_PEER_GONE = 1024;
/**
 * Pending watcher updates (PeerPresent/PeerGone) per mesh watcher. A watcher this far behind is closed: its mesh
 * client reconnects and gets a fresh full snapshot, which is cheaper than unbounded buffering.
 */
export const MAX_PENDING_WATCHER_UPDATES = 65_536;
/** NotePreferred changes within this long after connecting don't count as home moves (Go). */
export const HOME_MOVE_GRACE_MS = 5_000;
/** Largest SendPacket frame: destination key + MAX_PACKET_SIZE. */
export const MAX_SEND_PACKET_FRAME = KEY_LEN + MAX_PACKET_SIZE;
/** Largest ForwardPacket frame: source key + destination key + MAX_PACKET_SIZE. */
export const MAX_FORWARD_PACKET_FRAME = 2 * KEY_LEN + MAX_PACKET_SIZE;
/**
 * Frames the server does not act on (unknown types, Pong, KeepAlive, ClientInfo after the handshake) are
 * discarded as they stream in, never buffered, so no length cap is needed to bound memory (Go: no cap either).
 */
export const SKIPPED_FRAMES_BUFFERED = 0;
/**
 * When a destination already has this many packets queued (its socket isn't keeping up), a newly queued payload
 * is copied out of the sender's read chunk so a small packet does not pin a whole 64 KiB chunk while it waits.
 */
export const COPY_WHEN_BACKLOG_AT_LEAST = 4;
/** What the server seals in ServerInfo: exactly this JSON (spec §5). */
export const SERVER_INFO_JSON = '{"version":2}';
/**
 * Largest WebSocket message accepted on the `derp` subprotocol (larger closes with 1009). A Go client sends one
 * message per flush of at most a few frames; 1 MiB is far above that and bounds what `ws` buffers per message.
 */
export const WS_MAX_MESSAGE_BYTES = 1 << 20;
/**
 * Per-client receive limit (`--rate-config`, §12): one frame costs its payload length capped at this (a full
 * SendPacket: 32-byte key + 64 KiB), and a configured burst is raised to at least this so any frame can pass.
 */
export const RECEIVE_LIMIT_FRAME_COST_CAP = MAX_SEND_PACKET_FRAME;
