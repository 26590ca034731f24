/**
 * UPnP codecs: SSDP responses, device descriptions and SOAP bodies — golden examples shaped like miniupnpd 2.3.1's,
 * typed rejections, bounds, and fast-check fuzzing of each parser.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PortmapErrorCode, UpnpService } from '../../../src/portmap/constants.ts';
import { parseDeviceDescription } from '../../../src/portmap/upnp/description.ts';
import { UpnpSoapError, addPortMappingArgs, encodeSoapRequest, parseSoapResponse } from '../../../src/portmap/upnp/soap.ts';
import { encodeMSearch, parseSsdpResponse } from '../../../src/portmap/upnp/ssdp.ts';
import { decodeXmlText, elements } from '../../../src/portmap/upnp/xml.ts';
import { returnsOrThrowsTyped, throwsCode } from '../typed-errors.ts';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

const SSDP_OK = 'HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\n' +
  'USN: uuid:3f4ad9a5-1b2c-4d5e-8f70-0123456789ab::urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\nEXT:\r\n' +
  'SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://10.1.0.1:5000/rootDesc.xml\r\nOPT: "http://schemas.upnp.org/upnp/1/0/"; ns=01\r\n\r\n';

describe('SSDP', () => {
  it('encodes M-SEARCH with MAN and MX', () => {
    const s = new TextDecoder().decode(encodeMSearch('ssdp:all', '10.1.0.1:1900'));
    assert.equal(s, 'M-SEARCH * HTTP/1.1\r\nHOST: 10.1.0.1:1900\r\nST: ssdp:all\r\nMAN: "ssdp:discover"\r\nMX: 2\r\n\r\n');
  });
  it('parses an IGD:2 response (golden)', () => {
    const r = parseSsdpResponse(enc(SSDP_OK));
    assert.deepEqual(r, {
      location: 'http://10.1.0.1:5000/rootDesc.xml', st: 'urn:schemas-upnp-org:device:InternetGatewayDevice:2',
      usn: 'uuid:3f4ad9a5-1b2c-4d5e-8f70-0123456789ab::urn:schemas-upnp-org:device:InternetGatewayDevice:2',
      server: 'Debian/12 UPnP/1.1 MiniUPnPd/2.3.1', igdVersion: 2,
    });
  });
  it('ignores non-IGD and non-200 datagrams', () => {
    assert.equal(parseSsdpResponse(enc(SSDP_OK.replaceAll('InternetGatewayDevice', 'MediaServer'))), null);
    assert.equal(parseSsdpResponse(enc(SSDP_OK.replace('200 OK', '404 Not Found'))), null);
    assert.equal(parseSsdpResponse(enc('M-SEARCH * HTTP/1.1\r\nST: urn:x:InternetGatewayDevice:1\r\n\r\n')), null);
  });
  it('rejects a missing or non-http Location, and oversized datagrams', () => {
    throwsCode(() => parseSsdpResponse(enc(SSDP_OK.replace(/LOCATION:[^\r]*\r\n/, ''))), PortmapErrorCode.Malformed);
    throwsCode(() => parseSsdpResponse(enc(SSDP_OK.replace('http://10.1.0.1', 'file:///etc'))), PortmapErrorCode.Malformed);
    throwsCode(() => parseSsdpResponse(enc(SSDP_OK + 'X'.repeat(2100))), PortmapErrorCode.TooLarge);
  });
  it('fuzz: never throws anything but a WiremeshError', () => {
    fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 2100 }), fc.string({ maxLength: 600 }).map((s) => enc('HTTP/1.1 200 OK\r\n:InternetGatewayDevice:\r\n' + s))), (b) => void returnsOrThrowsTyped(() => parseSsdpResponse(b))), { numRuns: 1500 });
  });
});

const DESC = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" configId="1337"><specVersion><major>1</major><minor>1</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType><friendlyName>wiremesh portmap lab</friendlyName>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><serviceId>urn:upnp-org:serviceId:L3Forwarding1</serviceId>
<controlURL>/ctl/L3F</controlURL><eventSubURL>/evt/L3F</eventSubURL><SCPDURL>/L3F.xml</SCPDURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType><serviceList><service>
<serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType><controlURL>/ctl/CmnIfCfg</controlURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType><serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ctl/IPConn1</controlURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL><SCPDURL>/WANIPCn.xml</SCPDURL></service>
</serviceList></device></deviceList></device></deviceList></device></root>`;

describe('device description', () => {
  it('finds WAN connection services in preference order with absolute URLs (golden)', () => {
    assert.deepEqual(parseDeviceDescription(DESC, 'http://10.1.0.1:5000/rootDesc.xml'), [
      { serviceType: UpnpService.WANIPConnection2, controlUrl: 'http://10.1.0.1:5000/ctl/IPConn' },
      { serviceType: UpnpService.WANIPConnection1, controlUrl: 'http://10.1.0.1:5000/ctl/IPConn1' },
    ]);
  });
  it('re-points URLs at the gateway, also through URLBase', () => {
    const d = DESC.replace('<specVersion>', '<URLBase>http://198.51.100.7:80/</URLBase><specVersion>');
    const s = parseDeviceDescription(d, 'http://10.1.0.1:5000/rootDesc.xml', '10.1.0.1');
    assert.equal(s[0]!.controlUrl, 'http://10.1.0.1/ctl/IPConn');
  });
  it('handles namespace prefixes and entities', () => {
    const d = '<r:root xmlns:r="x"><r:service><r:serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</r:serviceType>' +
      '<r:controlURL>/ctl?a=1&amp;b=2</r:controlURL></r:service></r:root>';
    assert.deepEqual(parseDeviceDescription(d, 'http://10.0.0.1:49000/d.xml'), [
      { serviceType: UpnpService.WANPPPConnection1, controlUrl: 'http://10.0.0.1:49000/ctl?a=1&b=2' },
    ]);
  });
  it('rejects descriptions without a WAN service, non-http control URLs, and oversized ones', () => {
    throwsCode(() => parseDeviceDescription(DESC.replaceAll('WANIPConnection', 'WANFoo'), 'http://10.1.0.1/'), PortmapErrorCode.NoService);
    throwsCode(() => parseDeviceDescription(DESC.replaceAll('/ctl/IPConn', 'ftp://x/ctl'), 'http://10.1.0.1/'), PortmapErrorCode.NoService);
    throwsCode(() => parseDeviceDescription(DESC + ' '.repeat(70000), 'http://10.1.0.1/'), PortmapErrorCode.TooLarge);
  });
  it('is linear on pathological input (many unclosed tags)', () => {
    const t = Date.now();
    assert.throws(() => parseDeviceDescription('<service>'.repeat(7000), 'http://10.1.0.1/'));
    assert.ok(Date.now() - t < 500);
  });
  it('fuzz: never throws anything but a WiremeshError', () => {
    const frag = fc.constantFrom('<service>', '</service>', '<serviceType>', '</serviceType>', UpnpService.WANIPConnection1,
      '<controlURL>', '</controlURL>', '/ctl', 'http://[::1', '<URLBase>', '</URLBase>', '&amp;', '&#x41;', '<', '>');
    fc.assert(fc.property(fc.array(fc.oneof(frag, fc.string({ maxLength: 8 })), { maxLength: 60 }), (parts) =>
      void returnsOrThrowsTyped(() => parseDeviceDescription(parts.join(''), 'http://10.1.0.1:5000/rootDesc.xml'))), { numRuns: 1500 });
  });
});

describe('SOAP', () => {
  it('encodes AddAnyPortMapping with escaped arguments and the SOAPAction header', () => {
    const r = encodeSoapRequest(UpnpService.WANIPConnection2, 'AddAnyPortMapping',
      addPortMappingArgs({ externalPort: 41641, internalPort: 41641, internalClient: '10.1.0.2', leaseDuration: 7200, description: 'a<b' }));
    assert.equal(r.soapAction, '"urn:schemas-upnp-org:service:WANIPConnection:2#AddAnyPortMapping"');
    assert.match(r.body, /<u:AddAnyPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2"><NewRemoteHost><\/NewRemoteHost><NewExternalPort>41641<\/NewExternalPort><NewProtocol>UDP<\/NewProtocol>/);
    assert.match(r.body, /<NewPortMappingDescription>a&lt;b<\/NewPortMappingDescription><NewLeaseDuration>7200<\/NewLeaseDuration><\/u:AddAnyPortMapping>/);
  });
  it('parses a response (golden, miniupnpd style)', () => {
    const x = '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
      '<s:Body><u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2"><NewExternalIPAddress>203.0.113.1</NewExternalIPAddress>' +
      '</u:GetExternalIPAddressResponse></s:Body></s:Envelope>\r\n';
    assert.equal(parseSoapResponse(x, 'GetExternalIPAddress').get('NewExternalIPAddress'), '203.0.113.1');
    const empty = '<s:Envelope><s:Body><u:DeletePortMappingResponse xmlns:u="x"/></s:Body></s:Envelope>';
    assert.equal(parseSoapResponse(empty, 'DeletePortMapping').size, 0);
    const e2 = '<s:Envelope><s:Body><u:DeletePortMappingResponse xmlns:u="x"></u:DeletePortMappingResponse></s:Body></s:Envelope>';
    assert.equal(parseSoapResponse(e2, 'DeletePortMapping').size, 0);
  });
  it('turns a UPnPError fault into UpnpSoapError with the code', () => {
    const f = '<s:Envelope><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>' +
      '<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>714</errorCode><errorDescription>NoSuchEntryInArray</errorDescription>' +
      '</UPnPError></detail></s:Fault></s:Body></s:Envelope>';
    assert.throws(() => parseSoapResponse(f, 'GetSpecificPortMappingEntry'),
      (e: unknown) => e instanceof UpnpSoapError && e.upnpCode === 714 && e.code === PortmapErrorCode.SoapFault);
  });
  it('rejects a body for another action, and oversized bodies', () => {
    throwsCode(() => parseSoapResponse('<u:AddPortMappingResponse></u:AddPortMappingResponse>', 'DeletePortMapping'), PortmapErrorCode.Malformed);
    throwsCode(() => parseSoapResponse('x'.repeat(17000), 'DeletePortMapping'), PortmapErrorCode.TooLarge);
  });
  it('decodes entities and numeric references', () => {
    assert.equal(decodeXmlText('a&amp;b&lt;&#65;&#x42;&quot;'), 'a&b<AB"');
    assert.deepEqual(elements('<a>1</a><x:a k="v">2</x:a><a>3', 'a', 10), ['1', '2']);
  });
  it('fuzz: never throws anything but a WiremeshError', () => {
    const frag = fc.constantFrom('<s:Fault>', '</s:Fault>', '<errorCode>', '</errorCode>', '725', '<u:AddPortMappingResponse>',
      '</u:AddPortMappingResponse>', '<NewReservedPort>', '</NewReservedPort>', '<a/>', '&#9999999;', '&amp;', '<', '>');
    fc.assert(fc.property(fc.array(fc.oneof(frag, fc.string({ maxLength: 8 })), { maxLength: 60 }), (parts) => void returnsOrThrowsTyped(() => parseSoapResponse(parts.join(''), 'AddPortMapping'))), { numRuns: 1500 });
  });
});
