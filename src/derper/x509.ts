/**
 * Self-signed X.509 v3 certificates built as DER and signed with node:crypto (spec/derp.md §3.3, §16.1):
 * - the Ed25519 **meta cert** (CN `derpkey<64 hex>`, serial 2, validity now−30 d..now+30 d, BasicConstraints)
 *   that derper appends to its TLS chain so Go clients learn the server key and use fast start;
 * - the ECDSA P-256 **IP certificate** derper generates in manual cert mode for an IP hostname (1 year, CN = IP,
 *   IP SAN), whose SHA-256 goes into a DERPNode's `CertName: "sha256-raw:<hex>"`.
 * No I/O: callers pass the time, keys and serial; the `generate*` helpers draw fresh keys from node:crypto.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { PROTOCOL_VERSION } from '../derp/constants.ts';
import { WiremeshError } from '../errors.ts';
import { parseIp } from '../net/ip.ts';
import { toHex, type NodePublic } from '../types/key.ts';
import * as der from './asn1.ts';
import { IP_CERT_VALIDITY_MS, META_CERT_SKEW_MS } from './constants.ts';

/** Object identifiers used below. */
export const OID = {
  commonName: '2.5.4.3',
  ed25519: '1.3.101.112',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

/** CN prefix of the meta cert; the rest is the untyped hex server key. */
export const META_CERT_CN_PREFIX = 'derpkey';

export interface Extension {
  oid: string;
  critical: boolean;
  /** DER of the extension value (wrapped in the OCTET STRING here). */
  value: Uint8Array;
}

export interface CertificateTemplate {
  /** Unsigned big-endian serial magnitude (must be non-zero, ≤ 20 bytes). */
  serial: Uint8Array;
  commonName: string;
  notBeforeMs: number;
  notAfterMs: number;
  publicKey: KeyObject;
  /** The issuer's signing key; self-signed, so issuer = subject. */
  privateKey: KeyObject;
  extensions: readonly Extension[];
}

function algorithmFor(key: KeyObject): { algId: Uint8Array; digest: string | null } {
  if (key.asymmetricKeyType === 'ed25519') return { algId: der.sequence(der.oid(OID.ed25519)), digest: null };
  if (key.asymmetricKeyType === 'ec') return { algId: der.sequence(der.oid(OID.ecdsaWithSha256)), digest: 'sha256' };
  throw new WiremeshError('x509_key_type', `unsupported signing key type ${String(key.asymmetricKeyType)}`);
}

const nameCN = (cn: string): Uint8Array => der.sequence(der.setOf(der.sequence(der.oid(OID.commonName), der.directoryString(cn))));

function encodeExtension(e: Extension): Uint8Array {
  const parts = [der.oid(e.oid)];
  if (e.critical) parts.push(der.boolean(true));
  parts.push(der.octetString(e.value));
  return der.sequence(...parts);
}

/** The TBSCertificate DER (RFC 5280 §4.1). */
export function encodeTbs(t: CertificateTemplate): Uint8Array {
  if (t.serial.every((b) => b === 0) || t.serial.length > 20) throw new WiremeshError('x509_serial', 'serial must be non-zero and ≤ 20 bytes');
  const { algId } = algorithmFor(t.privateKey);
  const spki = new Uint8Array(t.publicKey.export({ type: 'spki', format: 'der' }));
  const fields = [
    der.explicit(0, der.smallInteger(2)), // v3
    der.unsignedInteger(t.serial),
    algId,
    nameCN(t.commonName),
    der.sequence(der.time(t.notBeforeMs), der.time(t.notAfterMs)),
    nameCN(t.commonName),
    spki,
  ];
  if (t.extensions.length > 0) fields.push(der.explicit(3, der.sequence(...t.extensions.map(encodeExtension))));
  return der.sequence(...fields);
}

/** Builds and self-signs a certificate; returns its DER. */
export function buildCertificate(t: CertificateTemplate): Uint8Array {
  const tbs = encodeTbs(t);
  const { algId, digest } = algorithmFor(t.privateKey);
  const sig = new Uint8Array(sign(digest, tbs, t.privateKey));
  return der.sequence(tbs, algId, der.bitString(sig));
}

/** BasicConstraints for an end-entity cert: an empty SEQUENCE (cA defaults to false), critical as Go writes it. */
export const basicConstraintsLeaf = (): Extension => ({ oid: OID.basicConstraints, critical: true, value: der.sequence() });

/** KeyUsage digitalSignature (bit 0), critical. */
export const keyUsageDigitalSignature = (): Extension => ({
  oid: OID.keyUsage,
  critical: true,
  value: der.tlv(der.Tag.BitString, Uint8Array.of(7, 0x80)),
});

export const extKeyUsageServerAuth = (): Extension => ({ oid: OID.extKeyUsage, critical: false, value: der.sequence(der.oid(OID.serverAuth)) });

/** subjectAltName with iPAddress ([7], 4 or 16 bytes) and dNSName ([2], IA5String) GeneralNames. */
export function subjectAltName(names: { ips?: readonly string[]; dns?: readonly string[] }): Extension {
  const items = [
    ...(names.dns ?? []).map((d) => der.implicitPrimitive(2, new TextEncoder().encode(d))),
    ...(names.ips ?? []).map((ip) => der.implicitPrimitive(7, ipBytes(ip))),
  ];
  return { oid: OID.subjectAltName, critical: false, value: der.sequence(...items) };
}

export const subjectAltNameIp = (ip: string): Extension => subjectAltName({ ips: [ip] });

/** 4 bytes for IPv4, 16 for IPv6 (the iPAddress SAN form, RFC 5280 §4.2.1.6). */
export function ipBytes(ip: string): Uint8Array {
  const b = parseIp(ip);
  if (b === null) throw new WiremeshError('x509_bad_ip', `not an IP address: ${ip}`);
  return b;
}

export interface GeneratedCert {
  der: Uint8Array;
  certPem: string;
  keyPem: string;
  privateKey: KeyObject;
}

export function derToPem(d: Uint8Array): string {
  const b64 = Buffer.from(d).toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

function finish(derBytes: Uint8Array, privateKey: KeyObject): GeneratedCert {
  return { der: derBytes, certPem: derToPem(derBytes), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), privateKey };
}

/** The meta cert for a server key, signed by a fresh Ed25519 key (§3.3). */
export function generateMetaCert(serverKey: NodePublic, nowMs: number): GeneratedCert {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const d = buildCertificate({
    serial: Uint8Array.of(PROTOCOL_VERSION),
    commonName: META_CERT_CN_PREFIX + toHex(serverKey),
    notBeforeMs: nowMs - META_CERT_SKEW_MS,
    notAfterMs: nowMs + META_CERT_SKEW_MS,
    publicKey,
    privateKey,
    extensions: [basicConstraintsLeaf()],
  });
  return finish(d, privateKey);
}

/** The self-signed ECDSA P-256 certificate for an IP hostname in manual cert mode (§16.1). */
export function generateIpCert(ip: string, nowMs: number, serial: Uint8Array = randomBytes(16)): GeneratedCert {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const d = buildCertificate({
    serial,
    commonName: ip,
    notBeforeMs: nowMs,
    notAfterMs: nowMs + IP_CERT_VALIDITY_MS,
    publicKey,
    privateKey,
    extensions: [keyUsageDigitalSignature(), extKeyUsageServerAuth(), basicConstraintsLeaf(), subjectAltNameIp(ip)],
  });
  return finish(d, privateKey);
}

/** `sha256-raw:<hex>`: the CertName that pins this DER in a DERP map (§14). */
export function certNamePin(derBytes: Uint8Array): string {
  return 'sha256-raw:' + createHash('sha256').update(derBytes).digest('hex');
}
