/**
 * PortMapper engine against in-memory fakes (a NAT-PMP/PCP/SSDP gateway on a fake PacketConn, an IGD behind a fake
 * HTTP seam) on a ManualClock: protocol preference, renewal at half-life, reboot detection (epoch going back, UPnP
 * rule gone), release on close, and rejection of off-gateway and wrong-nonce replies with typed codes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WiremeshError } from '../../../src/errors.ts';
import type { AddrPort, PacketConn, PacketHandler } from '../../../src/net/packet.ts';
import { ManualClock } from '../../../src/time/clock.ts';
import { PortMapper, epochWentBack, type Mapping } from '../../../src/portmap/client.ts';
import { PortmapErrorCode } from '../../../src/portmap/constants.ts';
import { exchange } from '../../../src/portmap/exchange.ts';
import { encodePcpMapRequest } from '../../../src/portmap/pcp.ts';
import { parseProcNetRoute, pickLocalAddress } from '../../../src/portmap/route.ts';
import type { HttpRequest } from '../../../src/portmap/upnp/igd.ts';

const GW = '192.168.1.1';
const ME = '192.168.1.20';
const EXT = '198.51.100.7';

/** A home router: answers NAT-PMP, PCP and SSDP on a fake socket, and an IGD over a fake HTTP seam. */
class FakeRouter implements PacketConn {
  handlers = new Set<PacketHandler>();
  epochBase = 0; // clock ms at which the epoch was 0
  pmp = true;
  pcp = true;
  upnp = true;
  sent: Array<{ to: AddrPort; data: Uint8Array }> = [];
  /** internal port → { external port, nonce, proto } */
  table = new Map<number, { ext: number; nonce: string; by: string }>();
  upnpRules = new Map<number, number>(); // ext → internal
  /** Extra datagrams to deliver before the real answer (attacks). */
  inject: Array<{ from: AddrPort; data: Uint8Array }> = [];
  readonly clock: ManualClock;
  constructor(clock: ManualClock) {
    this.clock = clock;
  }
  epoch(): number {
    return Math.floor((this.clock.now() - this.epochBase) / 1000);
  }
  reboot(): void {
    this.epochBase = this.clock.now();
    this.table.clear();
    this.upnpRules.clear();
  }
  deliver(data: Uint8Array, from: AddrPort): void {
    for (const h of [...this.handlers]) h(data, from);
  }
  send(data: Uint8Array, to: AddrPort): void {
    this.sent.push({ to, data });
    for (const x of this.inject.splice(0)) this.deliver(x.data, x.from);
    const reply = this.answer(data, to);
    if (reply !== null) this.deliver(reply, { address: GW, port: to.port });
  }
  answer(d: Uint8Array, to: AddrPort): Uint8Array | null {
    const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
    if (to.port === 1900) {
      if (!this.upnp) return null;
      return new TextEncoder().encode(`HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\nLOCATION: http://${GW}:5000/rootDesc.xml\r\nSERVER: fake\r\n\r\n`);
    }
    if (to.address !== GW || to.port !== 5351) return null;
    if (d[0] === 0 && this.pmp) {
      const out = new Uint8Array(d[1] === 0 ? 12 : 16);
      const o = new DataView(out.buffer);
      out[1] = 0x80 + (d[1] ?? 0);
      o.setUint32(4, this.epoch());
      if (d[1] === 0) out.set([198, 51, 100, 7], 8);
      else {
        const ip = v.getUint16(4);
        const life = v.getUint32(8);
        const ext = v.getUint16(6) || ip;
        if (life === 0) this.table.delete(ip);
        else this.table.set(ip, { ext, nonce: '', by: 'pmp' });
        o.setUint16(8, ip);
        o.setUint16(10, life === 0 ? 0 : ext);
        o.setUint32(12, life);
      }
      return out;
    }
    if (d[0] === 2 && this.pcp) {
      const out = new Uint8Array(d.length);
      out.set(d);
      const o = new DataView(out.buffer);
      out[1] = 0x80 + (d[1] ?? 0);
      o.setUint32(8, this.epoch());
      out.fill(0, 12, 24);
      if (d[1] === 1) {
        const nonce = Buffer.from(d.slice(24, 36)).toString('hex');
        const ip = v.getUint16(40);
        const life = v.getUint32(4);
        const have = this.table.get(ip);
        if (have !== undefined && have.nonce !== nonce) {
          out[3] = 2; // NOT_AUTHORIZED
          return out;
        }
        const ext = v.getUint16(42) || 40000 + ip % 1000;
        if (life === 0) this.table.delete(ip);
        else this.table.set(ip, { ext, nonce, by: 'pcp' });
        o.setUint16(42, ext);
        out.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7], 44);
      }
      return out;
    }
    return null;
  }
  onMessage(h: PacketHandler): () => void {
    this.handlers.add(h);
    return () => this.handlers.delete(h);
  }
  localAddr(): AddrPort {
    return { address: ME, port: 40001 };
  }
  close(): void {}

  http = async (req: HttpRequest): Promise<{ status: number; body: string }> => {
    assert.equal(new URL(req.url).hostname, GW, 'UPnP only talks to the gateway');
    if (req.method === 'GET') {
      return { status: 200, body: '<root><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><controlURL>/ctl/IPConn</controlURL></service></root>' };
    }
    const action = /#(\w+)"/.exec(req.headers.SOAPAction ?? '')![1]!;
    const arg = (n: string): string => new RegExp(`<${n}>([^<]*)</${n}>`).exec(req.body ?? '')?.[1] ?? '';
    const ok = (inner: string): { status: number; body: string } =>
      ({ status: 200, body: `<s:Envelope><s:Body><u:${action}Response xmlns:u="x">${inner}</u:${action}Response></s:Body></s:Envelope>` });
    const fault = (code: number): { status: number; body: string } =>
      ({ status: 500, body: `<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>${code}</errorCode><errorDescription>e</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>` });
    const ext = Number(arg('NewExternalPort'));
    switch (action) {
      case 'AddAnyPortMapping':
        this.upnpRules.set(ext, Number(arg('NewInternalPort')));
        return ok(`<NewReservedPort>${ext}</NewReservedPort>`);
      case 'GetExternalIPAddress':
        return ok(`<NewExternalIPAddress>${EXT}</NewExternalIPAddress>`);
      case 'GetSpecificPortMappingEntry':
        return this.upnpRules.has(ext) ? ok(`<NewInternalPort>${this.upnpRules.get(ext)}</NewInternalPort><NewInternalClient>${ME}</NewInternalClient>`) : fault(714);
      case 'DeletePortMapping':
        if (!this.upnpRules.delete(ext)) return fault(714);
        return ok('');
      default:
        return fault(401);
    }
  };
}

let seed = 1;
const random = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff);

/** Advances the manual clock in small steps until the promise settles. */
async function drive<T>(clock: ManualClock, p: Promise<T>, stepMs = 10, maxSteps = 2000): Promise<T> {
  let done = false;
  const q = p.then((v) => { done = true; return { ok: true as const, v }; }, (e: unknown) => { done = true; return { ok: false as const, e }; });
  for (let i = 0; i < maxSteps && !done; i++) {
    await new Promise((r) => setImmediate(r));
    if (!done) clock.advance(stepMs);
  }
  const r = await q;
  if (!r.ok) throw r.e;
  return r.v;
}

function setup(o: { protocols?: Array<'pcp' | 'pmp' | 'upnp'> } = {}) {
  const clock = new ManualClock(1_000_000);
  const router = new FakeRouter(clock);
  router.epochBase = clock.now() - 5000_000;
  const changes: Array<{ why: string; m: Mapping | null }> = [];
  const mapper = new PortMapper({
    clock, random, conn: router, http: router.http, gateway: GW, localAddress: ME, checkIntervalMs: 30_000,
    ...(o.protocols ? { protocols: o.protocols } : {}), onChange: (m, why) => changes.push({ why, m }),
  });
  return { clock, router, mapper, changes };
}

describe('PortMapper', () => {
  it('probes all three in parallel within 250 ms and prefers PCP', async () => {
    const { clock, router, mapper } = setup();
    const r = await drive(clock, mapper.probe());
    assert.deepEqual([r.pcp, r.pmp, r.upnp], [true, true, true]);
    assert.ok(r.durationMs <= 250, `probe took ${r.durationMs}`);
    const m = await drive(clock, mapper.map(41641));
    assert.equal(m.protocol, 'pcp');
    assert.equal(m.externalIp, EXT);
    assert.equal(router.table.get(41641)?.by, 'pcp');
  });

  it('falls back to NAT-PMP, then UPnP, when the better ones are absent', async () => {
    const a = setup();
    a.router.pcp = false;
    assert.equal((await drive(a.clock, a.mapper.map(5000))).protocol, 'pmp');
    const b = setup();
    b.router.pcp = false;
    b.router.pmp = false;
    const m = await drive(b.clock, b.mapper.map(5000));
    assert.equal(m.protocol, 'upnp');
    assert.equal(b.router.upnpRules.get(5000), 5000);
  });

  it('PCP: renews at half-life with the same nonce and port, notices a reboot by epoch, releases on close', async () => {
    const { clock, router, mapper, changes } = setup();
    const m = await drive(clock, mapper.map(41641));
    const nonce = router.table.get(41641)!.nonce;
    assert.equal(m.nonce, nonce);
    router.sent = [];
    clock.advance(3599_000);
    await new Promise((r) => setImmediate(r));
    assert.equal(mapper.stats.renewed, 0, 'not before half-life');
    await drive(clock, Promise.resolve().then(() => clock.advance(1000)).then(() => mapper.mapping));
    await drive(clock, new Promise((r) => setImmediate(r)));
    assert.equal(mapper.stats.renewed, 1);
    assert.equal(router.table.get(41641)?.nonce, nonce, 'renewed with the same nonce');
    assert.equal(mapper.mapping?.externalPort, m.externalPort);

    router.reboot();
    assert.equal(router.table.size, 0);
    assert.equal(await drive(clock, mapper.check()), 'remapped');
    assert.equal(mapper.stats.reboots, 1);
    assert.equal(router.table.get(41641)?.ext, m.externalPort, 'asked for the previous external port');
    assert.ok(changes.some((c) => c.why === 'remapped'));

    await drive(clock, mapper.close());
    assert.equal(router.table.size, 0, 'released at the router');
    assert.equal(mapper.stats.released, 1);
    assert.equal(clock.pending, 0, 'no timers left');
  });

  it('NAT-PMP: map, renew, reboot, release with lifetime 0', async () => {
    const { clock, router, mapper } = setup({ protocols: ['pmp'] });
    const m = await drive(clock, mapper.map(7777));
    assert.equal(m.protocol, 'pmp');
    assert.equal(m.lifetimeSeconds, 7200);
    clock.advance(3600_000);
    await drive(clock, new Promise((r) => setImmediate(r)));
    assert.equal(mapper.stats.renewed, 1);
    router.reboot();
    assert.equal(await drive(clock, mapper.check()), 'remapped');
    assert.equal(router.table.get(7777)?.by, 'pmp');
    await drive(clock, mapper.close());
    assert.equal(router.table.size, 0);
  });

  it('UPnP: notices a lost rule and maps again; releases with DeletePortMapping', async () => {
    const { clock, router, mapper } = setup({ protocols: ['upnp'] });
    const m = await drive(clock, mapper.map(41641));
    assert.equal(m.upnpServiceType, 'urn:schemas-upnp-org:service:WANIPConnection:2');
    assert.equal(await drive(clock, mapper.check()), 'ok');
    router.upnpRules.clear();
    assert.equal(await drive(clock, mapper.check()), 'remapped');
    assert.equal(mapper.stats.lost, 1);
    assert.equal(router.upnpRules.get(41641), 41641);
    await drive(clock, mapper.close());
    assert.equal(router.upnpRules.size, 0);
  });

  it('ignores off-gateway and wrong-nonce replies, and counts them', async () => {
    const { clock, router, mapper } = setup({ protocols: ['pcp'] });
    await drive(clock, mapper.probe());
    const evil = new Uint8Array(60);
    evil.set([2, 0x81]);
    evil.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 6, 6, 6, 6], 44);
    router.inject.push({ from: { address: '192.168.1.66', port: 5351 }, data: evil });
    router.inject.push({ from: { address: GW, port: 5351 }, data: evil }); // right source, wrong nonce
    const m = await drive(clock, mapper.map(41641));
    assert.equal(m.externalIp, EXT, 'took the genuine answer');
    assert.equal(mapper.stats.rejected, 2);
  });

  it('exchange rejects with the typed code of the last bad reply, or PORTMAP_TIMEOUT', async () => {
    const clock = new ManualClock();
    const handlers = new Set<PacketHandler>();
    let reply: { data: Uint8Array; from: AddrPort } | null = null;
    const conn: PacketConn = {
      send: () => { if (reply) for (const h of handlers) h(reply.data, reply.from); },
      onMessage: (h) => { handlers.add(h); return () => handlers.delete(h); },
      localAddr: () => ({ address: ME, port: 1 }), close: () => {},
    };
    const req = { clientIp: ME, lifetime: 60, nonce: new Uint8Array(12).fill(1), internalPort: 9, externalPort: 0 };
    const run = (): Promise<unknown> => exchange({
      conn, clock, gateway: GW, request: encodePcpMapRequest(req), timeoutMs: 250, attempts: 3,
      accept: () => { throw new WiremeshError(PortmapErrorCode.NonceMismatch, 'wrong nonce'); },
    });
    const codeOf = async (p: Promise<unknown>): Promise<string> => {
      try {
        await drive(clock, p);
        return 'resolved';
      } catch (e) {
        return (e as WiremeshError).code;
      }
    };
    assert.equal(await codeOf(run()), PortmapErrorCode.Timeout);
    reply = { data: new Uint8Array(60), from: { address: '10.0.0.99', port: 5351 } };
    assert.equal(await codeOf(run()), PortmapErrorCode.OffGateway);
    reply = { data: new Uint8Array(60), from: { address: GW, port: 9999 } };
    assert.equal(await codeOf(run()), PortmapErrorCode.OffGateway, 'wrong source port');
    reply = { data: new Uint8Array(60), from: { address: GW, port: 5351 } };
    assert.equal(await codeOf(run()), PortmapErrorCode.NonceMismatch);
  });

  it('regression: a reply delivered inside send() leaves no retransmission timer behind', async () => {
    const clock = new ManualClock();
    const handlers = new Set<PacketHandler>();
    let sends = 0;
    const conn: PacketConn = {
      send: () => { sends++; for (const h of handlers) h(Uint8Array.of(1), { address: GW, port: 5351 }); },
      onMessage: (h) => { handlers.add(h); return () => handlers.delete(h); },
      localAddr: () => ({ address: ME, port: 1 }), close: () => {},
    };
    const v = await exchange({ conn, clock, gateway: GW, request: Uint8Array.of(0, 0), timeoutMs: 250, attempts: 3, accept: (d) => d[0] });
    assert.equal(v, 1);
    clock.advance(10_000);
    assert.equal(sends, 1, 'no retransmission after the answer');
    assert.equal(clock.pending, 0);
  });

  it('fails with PORTMAP_UNAVAILABLE when nothing answers', async () => {
    const { clock, router, mapper } = setup();
    router.pcp = router.pmp = router.upnp = false;
    await assert.rejects(drive(clock, mapper.map(1234)), (e: unknown) => (e as WiremeshError).code === PortmapErrorCode.Unavailable);
  });
});

describe('epoch and gateway helpers', () => {
  it('epochWentBack follows RFC 6886 §3.6', () => {
    assert.equal(epochWentBack(1000, 0, 1100, 100_000), false);
    assert.equal(epochWentBack(1000, 0, 1000 + 87, 100_000), false, 'within 7/8 − 2 s');
    assert.equal(epochWentBack(1000, 0, 1000 + 80, 100_000), true, 'too slow: reset');
    assert.equal(epochWentBack(1000, 0, 5, 1000), true, 'went back');
  });
  it('parses /proc/net/route and picks the local address on the gateway subnet', () => {
    const text = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n' +
      'eth0\t0001010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n' +
      'eth0\t00000000\t0101010A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n';
    assert.deepEqual(parseProcNetRoute(text), { iface: 'eth0', gateway: '10.1.1.1', metric: 0 });
    assert.equal(parseProcNetRoute(text.split('\n').slice(0, 2).join('\n')), null);
    assert.equal(pickLocalAddress([
      { address: 'fe80::1', netmask: 'ffff::', family: 'IPv6' },
      { address: '172.16.0.2', netmask: '255.255.0.0', family: 'IPv4' },
      { address: '10.1.1.20', netmask: '255.255.255.0', family: 'IPv4' },
    ], '10.1.1.1'), '10.1.1.20');
  });
});
