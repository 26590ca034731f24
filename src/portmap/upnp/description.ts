/**
 * UPnP device description parsing (UPnP Device Architecture 1.1 §2.3; spec/nat-traversal.md §8.4): finds the
 * WAN connection services (WANIPConnection:2 > WANIPConnection:1 > WANPPPConnection:1) and their absolute control
 * URLs, re-pointed at the gateway address. Bounded and pure.
 */
import { WiremeshError } from '../../errors.ts';
import {
  PortmapErrorCode, UPNP_MAX_DESCRIPTION_LEN, UPNP_MAX_FIELD_LEN, UPNP_MAX_SERVICES, UPNP_SERVICE_PREFERENCE,
} from '../constants.ts';
import { elements, firstText } from './xml.ts';

export interface IgdService {
  serviceType: string;
  /** Absolute http URL of the SOAP control endpoint. */
  controlUrl: string;
}

/**
 * Returns the WAN connection services in preference order. `location` is the description URL (base for relative
 * control URLs unless the document has a URLBase); when `gateway` is given, every URL's host is replaced by it
 * (spec §8.4: a Location pointing elsewhere is re-pointed at the gateway, so we only ever talk to the gateway).
 * Throws PORTMAP_TOO_LARGE for an oversized document and PORTMAP_NO_SERVICE when none is found.
 */
export function parseDeviceDescription(xml: string, location: string, gateway?: string): IgdService[] {
  if (xml.length > UPNP_MAX_DESCRIPTION_LEN) {
    throw new WiremeshError(PortmapErrorCode.TooLarge, `device description of ${xml.length} characters`);
  }
  const base = firstText(xml, 'URLBase') ?? location;
  const found: IgdService[] = [];
  for (const block of elements(xml, 'service', UPNP_MAX_SERVICES)) {
    const serviceType = firstText(block, 'serviceType');
    const control = firstText(block, 'controlURL');
    if (serviceType === null || control === null || !UPNP_SERVICE_PREFERENCE.includes(serviceType)) continue;
    if (control.length > UPNP_MAX_FIELD_LEN) continue;
    let url: URL;
    try {
      url = new URL(control, new URL(base, location));
    } catch {
      continue;
    }
    if (url.protocol !== 'http:') continue;
    if (gateway !== undefined) url.hostname = gateway;
    found.push({ serviceType, controlUrl: url.href });
  }
  if (found.length === 0) {
    throw new WiremeshError(PortmapErrorCode.NoService, 'device description has no WANIPConnection/WANPPPConnection service');
  }
  return found.sort((a, b) => UPNP_SERVICE_PREFERENCE.indexOf(a.serviceType) - UPNP_SERVICE_PREFERENCE.indexOf(b.serviceType));
}
