/**
 * Port-mapping constants (RFC 6886 NAT-PMP, RFC 6887 PCP, UPnP IGD WANIPConnection:1/2; spec/nat-traversal.md §8),
 * each with its reason, plus the stable error codes every portmap rejection carries.
 */

/** UDP port a NAT-PMP / PCP server listens on (RFC 6886 §3.1, RFC 6887 §19.1). */
export const PMP_PCP_SERVER_PORT = 5351;
/** SSDP port and IPv4 multicast group (UPnP Device Architecture 1.1 §1.1.2). */
export const SSDP_PORT = 1900;
export const SSDP_MULTICAST_V4 = '239.255.255.250';

/** NAT-PMP version byte (RFC 6886 §3). */
export const PMP_VERSION = 0;
/** PCP version byte (RFC 6887 §7). */
export const PCP_VERSION = 2;

/** NAT-PMP opcodes; responses add 128 (RFC 6886 §3.2, §3.3). */
export const PmpOpcode = {
  ExternalAddress: 0,
  MapUdp: 1,
  MapTcp: 2,
} as const;
export const PMP_RESPONSE_BIT = 0x80;

/** NAT-PMP result codes (RFC 6886 §3.5). */
export const PmpResult = {
  Success: 0,
  UnsupportedVersion: 1,
  NotAuthorized: 2,
  NetworkFailure: 3,
  OutOfResources: 4,
  UnsupportedOpcode: 5,
} as const;

/** NAT-PMP message sizes (RFC 6886 §3.2, §3.3). */
export const PMP_EXTERNAL_ADDRESS_RESPONSE_LEN = 12;
export const PMP_MAP_REQUEST_LEN = 12;
export const PMP_MAP_RESPONSE_LEN = 16;
/** A NAT-PMP error reply may be as short as the 8-byte common part (RFC 6886 §3.5 says "at least"). */
export const PMP_MIN_RESPONSE_LEN = 8;

/** PCP opcodes; responses set the R bit 0x80 (RFC 6887 §7.1, §14, §11). */
export const PcpOpcode = {
  Announce: 0,
  Map: 1,
  Peer: 2,
} as const;
export const PCP_RESPONSE_BIT = 0x80;

/** PCP result codes (RFC 6887 §7.4). */
export const PcpResult = {
  Success: 0,
  UnsuppVersion: 1,
  NotAuthorized: 2,
  MalformedRequest: 3,
  UnsuppOpcode: 4,
  UnsuppOption: 5,
  MalformedOption: 6,
  NetworkFailure: 7,
  NoResources: 8,
  UnsuppProtocol: 9,
  UserExQuota: 10,
  CannotProvideExternal: 11,
  AddressMismatch: 12,
  ExcessiveRemotePeers: 13,
} as const;

/** PCP common header (RFC 6887 §7.1, §7.2) and MAP body (§11.1) lengths. */
export const PCP_HEADER_LEN = 24;
export const PCP_MAP_BODY_LEN = 36;
export const PCP_MAP_LEN = PCP_HEADER_LEN + PCP_MAP_BODY_LEN;
/** MAP nonce length (RFC 6887 §11.1). */
export const PCP_NONCE_LEN = 12;
/** Largest PCP message (RFC 6887 §7: "MUST NOT exceed 1100 octets"); longer datagrams are rejected. */
export const PCP_MAX_MESSAGE_LEN = 1100;
/** IANA protocol number for UDP, used in the PCP MAP body. */
export const IPPROTO_UDP = 17;

/** Requested lifetime for every protocol (spec §8.2: 7200 s, as Tailscale). */
export const DEFAULT_LIFETIME_SECONDS = 7200;
/** Whole probe budget (spec §8.1: 250 ms, run inside netcheck). */
export const PROBE_TIMEOUT_MS = 250;
/** After the first UPnP reply, wait this long for more replies (spec §8.1). */
export const PROBE_UPNP_EXTRA_WAIT_MS = 50;
/** A probe younger than this is reused by map() instead of probing again (spec §8.2: 5 s). */
export const PROBE_REUSE_MS = 5000;
/** How long to wait for a NAT-PMP / PCP map reply before trying the next protocol (spec §8.2). */
export const MAP_REPLY_TIMEOUT_MS = 250;
/** Retransmissions of a NAT-PMP / PCP request before giving up (RFC 6886 §3.1 retries; bounded here). */
export const MAP_ATTEMPTS = 3;
/** HTTP timeout for the device description and each SOAP call (spec §8.4: 1 s description fetch). */
export const UPNP_HTTP_TIMEOUT_MS = 2000;
/** Mapping description shown in the router's UI. */
export const UPNP_DESCRIPTION = 'wiremesh-portmap';
/** How often the client checks a PMP/PCP epoch or a UPnP rule between renewals (reboot detection). */
export const CHECK_INTERVAL_MS = 60_000;
/** Wait before retrying a renewal or remap that failed (router rebooting, link down). */
export const RENEW_RETRY_MS = 10_000;
/** Slack allowed by RFC 6886 §3.6 when comparing epochs: 7/8 of elapsed time minus 2 s. */
export const EPOCH_SLACK_SECONDS = 2;

/** Bounds on what UPnP parsers read (DESIGN.md "Bad input and limits"). */
export const SSDP_MAX_RESPONSE_LEN = 2048;
export const SSDP_MAX_KEPT_RESPONSES = 10;
/** A device description larger than this is refused (miniupnpd's rootDesc.xml is ~4 KiB). */
export const UPNP_MAX_DESCRIPTION_LEN = 65536;
/** A SOAP response larger than this is refused. */
export const UPNP_MAX_SOAP_RESPONSE_LEN = 16384;
/** Most services looked at in one description (real IGDs have 3–6). */
export const UPNP_MAX_SERVICES = 32;
/** Longest URL or element text accepted from a description / SOAP reply. */
export const UPNP_MAX_FIELD_LEN = 1024;

/** UPnP service types, in order of preference (spec §8.4). */
export const UpnpService = {
  WANIPConnection2: 'urn:schemas-upnp-org:service:WANIPConnection:2',
  WANIPConnection1: 'urn:schemas-upnp-org:service:WANIPConnection:1',
  WANPPPConnection1: 'urn:schemas-upnp-org:service:WANPPPConnection:1',
} as const;
export const UPNP_SERVICE_PREFERENCE: readonly string[] = [
  UpnpService.WANIPConnection2,
  UpnpService.WANIPConnection1,
  UpnpService.WANPPPConnection1,
];

/** UPnP SOAP error codes acted on (WANIPConnection:2 §2.4.16, spec §8.4). */
export const UpnpError = {
  InvalidArgs: 402,
  NoSuchEntryInArray: 714,
  ConflictInMappingEntry: 718,
  OnlyPermanentLeasesSupported: 725,
} as const;

/** Stable error codes (WiremeshError.code) for every portmap rejection. */
export const PortmapErrorCode = {
  Truncated: 'PORTMAP_TRUNCATED',
  Malformed: 'PORTMAP_MALFORMED',
  UnexpectedOpcode: 'PORTMAP_UNEXPECTED_OPCODE',
  ResultCode: 'PORTMAP_RESULT_CODE',
  NonceMismatch: 'PORTMAP_NONCE_MISMATCH',
  OffGateway: 'PORTMAP_OFF_GATEWAY',
  Timeout: 'PORTMAP_TIMEOUT',
  TooLarge: 'PORTMAP_TOO_LARGE',
  SoapFault: 'PORTMAP_SOAP_FAULT',
  NoService: 'PORTMAP_NO_SERVICE',
  NoGateway: 'PORTMAP_NO_GATEWAY',
  Unavailable: 'PORTMAP_UNAVAILABLE',
  Closed: 'PORTMAP_CLOSED',
} as const;
