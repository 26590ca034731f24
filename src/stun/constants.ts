/**
 * STUN constants (RFC 5389 §6, §15; spec/derp.md §15; spec/nat-traversal.md §7.4), each with its reason.
 * Names follow the RFC: message types, attribute types, address families.
 */

/** Fixed header: type(2) ∥ length(2) ∥ magic cookie(4) ∥ transaction ID(12). */
export const HEADER_LEN = 20;
/** RFC 5389 magic cookie `21 12 a4 42`; also the XOR key for ports and IPv4 addresses. */
export const MAGIC_COOKIE = 0x2112a442;
export const MAGIC_COOKIE_BYTES = Uint8Array.from([0x21, 0x12, 0xa4, 0x42]);
/** RFC 5389 96-bit transaction ID. */
export const TXID_LEN = 12;
/** Attribute header: type(2) ∥ length(2); values are padded to a multiple of 4. */
export const ATTR_HEADER_LEN = 4;
/** FINGERPRINT = CRC-32(IEEE) of the message up to it, XOR this value ("STUN" in ASCII). */
export const FINGERPRINT_XOR = 0x5354554e;
/** Bytes a FINGERPRINT attribute occupies at the end of a message (header 4 + CRC 4). */
export const FINGERPRINT_ATTR_LEN = 8;
/** The SOFTWARE value every Tailscale client sends and derper insists on. */
export const TAILNODE_SOFTWARE = 'tailnode';
/** Length of a Tailscale client's request: header + SOFTWARE(4+8) + FINGERPRINT(4+4). */
export const TAILNODE_REQUEST_LEN = 40;
/**
 * At most this many distinct unknown comprehension-required attribute types are collected from one request
 * (and echoed in a 420's UNKNOWN-ATTRIBUTES); keeps the per-packet work linear in the datagram size.
 */
export const MAX_UNKNOWN_ATTRIBUTES = 16;
/** Largest SOFTWARE value we put in a generic request (RFC 5389 §15.10: fewer than 128 characters). */
export const MAX_SOFTWARE_LEN = 763;

/** Message types: method 0x001 (Binding) combined with class bits. */
export const MessageType = {
  BindingRequest: 0x0001,
  BindingIndication: 0x0011,
  BindingSuccessResponse: 0x0101,
  BindingErrorResponse: 0x0111,
} as const;

/** Attribute types used here (RFC 5389 §18.2, plus the non-standard 0x8020 some servers send). */
export const Attr = {
  MappedAddress: 0x0001,
  Username: 0x0006,
  MessageIntegrity: 0x0008,
  ErrorCode: 0x0009,
  UnknownAttributes: 0x000a,
  Realm: 0x0014,
  Nonce: 0x0015,
  XorMappedAddress: 0x0020,
  /** Pre-RFC draft code point, still sent by some servers; Tailscale's client accepts it. */
  XorMappedAddressAlt: 0x8020,
  Software: 0x8022,
  AlternateServer: 0x8023,
  Fingerprint: 0x8028,
} as const;

/** Address family byte inside (XOR-)MAPPED-ADDRESS. */
export const AddressFamily = {
  IPv4: 0x01,
  IPv6: 0x02,
} as const;

/** Error codes in a Tailscale-compatible STUN codec (WiremeshError.code). */
export const StunErrorCode = {
  /** Not a STUN message: too short, top bits set, or no magic cookie. */
  NotStun: 'stun_not_stun',
  /** A STUN message but not a Binding success response. */
  NotSuccessResponse: 'stun_not_success_response',
  /** Attributes overrun the message, or a mapped-address attribute is truncated. */
  MalformedAttrs: 'stun_malformed_attrs',
  /** A success response without any usable (XOR-)MAPPED-ADDRESS. */
  NoAddress: 'stun_no_address',
  /** Bad argument to an encoder (transaction ID length, address text). */
  BadArgument: 'stun_bad_argument',
  /** A client query got no answer in time. */
  Timeout: 'stun_timeout',
  /** A client query was cancelled (signal aborted or transactions closed). */
  Aborted: 'stun_aborted',
} as const;
