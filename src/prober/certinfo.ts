/**
 * Reads the few X.509 fields the `tls` probe needs that node:crypto does not expose (spec/derp.md §18): the
 * Subject Key Identifier, the Authority Key Identifier's keyIdentifier, and whether a CRL distribution point is
 * present (RFC 5280 §4.2.1.1, §4.2.1.2, §4.2.1.13). Pure: a bounds-checked DER walk over certificate bytes;
 * malformed input throws WiremeshError('cert_der').
 */
import { WiremeshError } from '../errors.ts';

export interface CertKeyIds {
  /** Subject Key Identifier bytes, hex; '' when absent. */
  subjectKeyId: string;
  /** Authority Key Identifier keyIdentifier bytes, hex; '' when absent. */
  authorityKeyId: string;
  /** The certificate names a CRL distribution point. */
  hasCrlDistributionPoint: boolean;
}

interface Tlv {
  tag: number;
  start: number;
  end: number;
  next: number;
}

const derError = (msg: string): WiremeshError => new WiremeshError('cert_der', `certificate DER: ${msg}`);

/** Reads one TLV at `off` within [off, limit). */
function readTlv(b: Uint8Array, off: number, limit: number): Tlv {
  if (off + 2 > limit) throw derError('truncated header');
  const tag = b[off]!;
  if ((tag & 0x1f) === 0x1f) throw derError('multi-byte tags unsupported');
  let len = b[off + 1]!;
  let p = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw derError('bad length');
    if (p + n > limit) throw derError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[p + i]!;
    p += n;
  }
  if (p + len > limit) throw derError('value overruns its container');
  return { tag, start: p, end: p + len, next: p + len };
}

function children(b: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let off = parent.start; off < parent.end; ) {
    const t = readTlv(b, off, parent.end);
    out.push(t);
    off = t.next;
  }
  return out;
}

const hex = (b: Uint8Array, t: Tlv): string => Buffer.from(b.subarray(t.start, t.end)).toString('hex');

const OID_SKID = '551d0e';
const OID_AKID = '551d23';
const OID_CRL_DP = '551d1f';

/** Extracts key identifiers and CRL-DP presence from a DER certificate. */
export function certKeyIds(der: Uint8Array): CertKeyIds {
  const out: CertKeyIds = { subjectKeyId: '', authorityKeyId: '', hasCrlDistributionPoint: false };
  const cert = readTlv(der, 0, der.length);
  if (cert.tag !== 0x30) throw derError('not a SEQUENCE');
  const tbs = children(der, cert)[0];
  if (tbs === undefined || tbs.tag !== 0x30) throw derError('no tbsCertificate');
  const extsWrapper = children(der, tbs).find((t) => t.tag === 0xa3);
  if (extsWrapper === undefined) return out;
  const exts = children(der, extsWrapper)[0];
  if (exts === undefined || exts.tag !== 0x30) throw derError('bad extensions');
  for (const ext of children(der, exts)) {
    if (ext.tag !== 0x30) throw derError('bad extension');
    const parts = children(der, ext);
    const oid = parts[0];
    const value = parts[parts.length - 1];
    if (oid === undefined || oid.tag !== 0x06 || value === undefined || value.tag !== 0x04) throw derError('bad extension');
    const id = hex(der, oid);
    if (id === OID_SKID) {
      const inner = readTlv(der, value.start, value.end);
      if (inner.tag !== 0x04) throw derError('bad subjectKeyIdentifier');
      out.subjectKeyId = hex(der, inner);
    } else if (id === OID_AKID) {
      const seq = readTlv(der, value.start, value.end);
      if (seq.tag !== 0x30) throw derError('bad authorityKeyIdentifier');
      const kid = children(der, seq).find((t) => t.tag === 0x80);
      if (kid !== undefined) out.authorityKeyId = hex(der, kid);
    } else if (id === OID_CRL_DP) {
      out.hasCrlDistributionPoint = true;
    }
  }
  return out;
}
