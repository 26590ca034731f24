/**
 * UPnP IGD engine (spec/nat-traversal.md §8.4): fetches a root description through an injected HTTP seam, picks
 * the WAN connection service, and runs the SOAP actions a port mapper needs. The seam is implemented over
 * node:http in src/portmap/adapters.ts and by in-memory fakes in tests.
 */
import { WiremeshError } from '../../errors.ts';
import {
  PortmapErrorCode, UPNP_DESCRIPTION, UPNP_HTTP_TIMEOUT_MS, UPNP_MAX_DESCRIPTION_LEN, UPNP_MAX_SOAP_RESPONSE_LEN,
  UpnpError, UpnpService,
} from '../constants.ts';
import { parseIPv4 } from '../../net/ip.ts';
import { parseDeviceDescription, type IgdService } from './description.ts';
import {
  UpnpSoapError, addPortMappingArgs, encodeSoapRequest, parseSoapResponse, portMappingKeyArgs, type SoapArgs,
} from './soap.ts';

export interface HttpRequest {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: string;
  timeoutMs: number;
  /** The adapter must fail with PORTMAP_TOO_LARGE beyond this many body bytes. */
  maxBytes: number;
}
export interface HttpResponse {
  status: number;
  body: string;
}
export type HttpClient = (req: HttpRequest) => Promise<HttpResponse>;

/** Fetches and parses the description at `location`, re-pointing every URL at `gateway`. */
export async function loadIgd(http: HttpClient, location: string, gateway: string): Promise<IgdClient> {
  const url = new URL(location);
  url.hostname = gateway;
  const res = await http({ method: 'GET', url: url.href, headers: {}, timeoutMs: UPNP_HTTP_TIMEOUT_MS, maxBytes: UPNP_MAX_DESCRIPTION_LEN });
  if (res.status !== 200) {
    throw new WiremeshError(PortmapErrorCode.Unavailable, `device description ${url.href}: HTTP ${res.status}`);
  }
  const services = parseDeviceDescription(res.body, url.href, gateway);
  return new IgdClient(http, services[0]!);
}

export interface UpnpGrant {
  externalPort: number;
  /** Lease actually in force: 0 = permanent (the router only supports permanent leases). */
  leaseSeconds: number;
}

export class IgdClient {
  readonly service: IgdService;
  readonly #http: HttpClient;

  constructor(http: HttpClient, service: IgdService) {
    this.#http = http;
    this.service = service;
  }

  get isV2(): boolean {
    return this.service.serviceType === UpnpService.WANIPConnection2;
  }

  async call(action: string, args: SoapArgs): Promise<Map<string, string>> {
    const req = encodeSoapRequest(this.service.serviceType, action, args);
    const res = await this.#http({
      method: 'POST',
      url: this.service.controlUrl,
      headers: { 'Content-Type': 'text/xml; charset="utf-8"', SOAPAction: req.soapAction },
      body: req.body,
      timeoutMs: UPNP_HTTP_TIMEOUT_MS,
      maxBytes: UPNP_MAX_SOAP_RESPONSE_LEN,
    });
    const out = parseSoapResponse(res.body, action);
    if (res.status !== 200) throw new WiremeshError(PortmapErrorCode.SoapFault, `${action}: HTTP ${res.status}`);
    return out;
  }

  /** GetExternalIPAddress; rejects 0.0.0.0, loopback and non-IPv4 answers (spec §8.4). */
  async externalIp(): Promise<string> {
    const ip = (await this.call('GetExternalIPAddress', [])).get('NewExternalIPAddress') ?? '';
    if (parseIPv4(ip) === null || ip === '0.0.0.0' || ip.startsWith('127.')) {
      throw new WiremeshError(PortmapErrorCode.Malformed, `unusable external IP ${JSON.stringify(ip)}`);
    }
    return ip;
  }

  /**
   * Maps UDP externalPort → internalClient:internalPort. WANIPConnection:2 uses AddAnyPortMapping (the router may
   * grant another port), others AddPortMapping. On 402/725 retries once with a permanent lease (spec §8.4).
   */
  async addMapping(a: { externalPort: number; internalPort: number; internalClient: string; leaseSeconds: number }): Promise<UpnpGrant> {
    const attempt = async (lease: number): Promise<UpnpGrant> => {
      const args = addPortMappingArgs({ ...a, leaseDuration: lease, description: UPNP_DESCRIPTION });
      if (this.isV2) {
        const out = await this.call('AddAnyPortMapping', args);
        const port = Number(out.get('NewReservedPort'));
        if (!Number.isInteger(port) || port < 1 || port > 65535) {
          throw new WiremeshError(PortmapErrorCode.Malformed, `AddAnyPortMapping reserved port ${out.get('NewReservedPort')}`);
        }
        return { externalPort: port, leaseSeconds: lease };
      }
      await this.call('AddPortMapping', args);
      return { externalPort: a.externalPort, leaseSeconds: lease };
    };
    try {
      return await attempt(a.leaseSeconds);
    } catch (e) {
      if (e instanceof UpnpSoapError && a.leaseSeconds !== 0 &&
          (e.upnpCode === UpnpError.OnlyPermanentLeasesSupported || e.upnpCode === UpnpError.InvalidArgs)) {
        return attempt(0);
      }
      throw e;
    }
  }

  async deleteMapping(externalPort: number): Promise<void> {
    await this.call('DeletePortMapping', portMappingKeyArgs(externalPort));
  }

  /** True when the router still has our UDP rule for externalPort → internalClient:internalPort. */
  async hasMapping(externalPort: number, internalClient: string, internalPort: number): Promise<boolean> {
    try {
      const out = await this.call('GetSpecificPortMappingEntry', portMappingKeyArgs(externalPort));
      return out.get('NewInternalClient') === internalClient && Number(out.get('NewInternalPort')) === internalPort;
    } catch (e) {
      if (e instanceof UpnpSoapError && e.upnpCode === UpnpError.NoSuchEntryInArray) return false;
      throw e;
    }
  }
}
