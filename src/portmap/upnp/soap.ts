/**
 * UPnP SOAP codec for WANIPConnection:1/2 (UPnP-gw-WANIPConnection v1 §2.4, v2 §2.5; spec/nat-traversal.md §8.4):
 * builds action requests (GetExternalIPAddress, AddPortMapping, AddAnyPortMapping, DeletePortMapping,
 * GetSpecificPortMappingEntry) and parses responses and UPnPError faults. Bounded and pure.
 */
import { WiremeshError } from '../../errors.ts';
import { PortmapErrorCode, UPNP_MAX_SOAP_RESPONSE_LEN } from '../constants.ts';
import { elements, encodeXmlText, firstText, leafChildren } from './xml.ts';

/** A SOAP fault carrying a UPnP error code (e.g. 718 ConflictInMappingEntry, 725 OnlyPermanentLeasesSupported). */
export class UpnpSoapError extends WiremeshError {
  readonly upnpCode: number;
  constructor(upnpCode: number, description: string) {
    super(PortmapErrorCode.SoapFault, `UPnP error ${upnpCode}: ${description}`);
    this.upnpCode = upnpCode;
  }
}

export interface SoapRequest {
  /** Value of the SOAPAction header, quotes included. */
  soapAction: string;
  body: string;
}

export type SoapArgs = ReadonlyArray<readonly [string, string | number]>;

export function encodeSoapRequest(serviceType: string, action: string, args: SoapArgs): SoapRequest {
  const argXml = args.map(([k, v]) => `<${k}>${encodeXmlText(String(v))}</${k}>`).join('');
  const body =
    '<?xml version="1.0"?>\r\n' +
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
    `<s:Body><u:${action} xmlns:u="${encodeXmlText(serviceType)}">${argXml}</u:${action}></s:Body></s:Envelope>\r\n`;
  return { soapAction: `"${serviceType}#${action}"`, body };
}

/** Arguments of the add-mapping actions, as WANIPConnection names them. */
export interface AddPortMappingArgs {
  externalPort: number;
  internalPort: number;
  internalClient: string;
  /** Seconds; 0 = permanent (only after error 725). */
  leaseDuration: number;
  description: string;
}

export function addPortMappingArgs(a: AddPortMappingArgs): SoapArgs {
  return [
    ['NewRemoteHost', ''],
    ['NewExternalPort', a.externalPort],
    ['NewProtocol', 'UDP'],
    ['NewInternalPort', a.internalPort],
    ['NewInternalClient', a.internalClient],
    ['NewEnabled', 1],
    ['NewPortMappingDescription', a.description],
    ['NewLeaseDuration', a.leaseDuration],
  ];
}

export function portMappingKeyArgs(externalPort: number): SoapArgs {
  return [['NewRemoteHost', ''], ['NewExternalPort', externalPort], ['NewProtocol', 'UDP']];
}

/**
 * Parses a SOAP response body for `action`. Returns the output arguments of `<u:{action}Response>` (name → text).
 * Throws UpnpSoapError (PORTMAP_SOAP_FAULT) for a fault with a UPnPError code, PORTMAP_TOO_LARGE over 16 KiB and
 * PORTMAP_MALFORMED when neither a response element nor a fault is present.
 */
export function parseSoapResponse(xml: string, action: string): Map<string, string> {
  if (xml.length > UPNP_MAX_SOAP_RESPONSE_LEN) {
    throw new WiremeshError(PortmapErrorCode.TooLarge, `SOAP response of ${xml.length} characters`);
  }
  const fault = elements(xml, 'Fault', 1)[0];
  if (fault !== undefined) {
    const code = Number(firstText(fault, 'errorCode') ?? 'NaN');
    const desc = firstText(fault, 'errorDescription') ?? firstText(fault, 'faultstring') ?? 'SOAP fault';
    if (Number.isInteger(code)) throw new UpnpSoapError(code, desc);
    throw new WiremeshError(PortmapErrorCode.SoapFault, `SOAP fault without a UPnP error code: ${desc}`);
  }
  const resp = elements(xml, `${action}Response`, 1)[0];
  if (resp === undefined) {
    const selfClosing = new RegExp(`<(?:[A-Za-z_][\\w.-]*:)?${action}Response(?:\\s[^<>]*)?/>`);
    if (/^[A-Za-z]+$/.test(action) && selfClosing.test(xml)) return new Map();
    throw new WiremeshError(PortmapErrorCode.Malformed, `SOAP body has no ${action}Response`);
  }
  return leafChildren(resp, 32);
}
