// The vlab itself, per RFC 4787: mapping (EIM/ADM/APDM), filtering (EIF/ADF/APDF), port preservation vs random,
// mapping timeouts and refresh, hairpinning, UDP blocked, stateful firewall (incl. simultaneous open), double NAT.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AddrPort, PacketConn } from '../../src/net/packet.ts';
import { OPEN_FIREWALL } from './firewall.ts';
import { Filtering, Mapping, natConfig, NatTable, PortAssignment, seededRandom, type NatConfig } from './nat.ts';
import { drive, Network, type Host } from './network.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Internet servers that answer with the source address they saw ("what is my address"). */
function whoami(net: Network, ip: string, ports: number[]): Host {
  const h = net.addHost(`srv-${ip}`, ip);
  for (const p of ports) {
    const c = h.udp(p);
    c.onMessage((_d, from) => c.send(enc.encode(`${from.address}:${from.port}`), from));
  }
  return h;
}

function collect(conn: PacketConn): { got: { data: string; from: string }[] } {
  const out = { got: [] as { data: string; from: string }[] };
  conn.onMessage((d, from) => out.got.push({ data: dec.decode(d), from: `${from.address}:${from.port}` }));
  return out;
}

function natWorld(nat: NatConfig, seed = 1): { net: Network; a: Host; conn: PacketConn; rx: ReturnType<typeof collect> } {
  const net = new Network({ seed });
  whoami(net, '203.0.113.10', [3478, 3479]);
  whoami(net, '198.51.100.10', [3478]);
  const r = net.addRouter('r1', { wanIp: '203.0.113.1', lanIp: '10.1.0.1', nat });
  const a = r.addHost('a1', '10.1.0.2');
  const conn = a.udp(40000);
  return { net, a, conn, rx: collect(conn) };
}

const S1: AddrPort = { address: '203.0.113.10', port: 3478 };
const S1b: AddrPort = { address: '203.0.113.10', port: 3479 };
const S2: AddrPort = { address: '198.51.100.10', port: 3478 };

async function mappedVia(nat: NatConfig): Promise<string[]> {
  const w = natWorld(nat);
  for (const s of [S1, S1b, S2]) w.conn.send(enc.encode('probe'), s);
  await drive(w.net.clock, Promise.resolve(), { maxMs: 0 });
  w.net.clock.advance(50);
  return w.rx.got.map((g) => g.data);
}

test('EIM keeps one external port for every destination and preserves the internal port', async () => {
  const seen = await mappedVia(natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent));
  assert.deepEqual(seen.sort(), ['203.0.113.1:40000', '203.0.113.1:40000', '203.0.113.1:40000']);
});

test('ADM: same port for the same destination IP, a new one per IP', async () => {
  const seen = await mappedVia(natConfig(Mapping.AddressDependent, Filtering.AddressDependent));
  assert.equal(seen.length, 3);
  assert.equal(new Set(seen).size, 2, seen.join(' '));
});

test('APDM ("hard"): a new random port per destination ip:port', async () => {
  const seen = await mappedVia(natConfig(Mapping.AddressAndPortDependent, Filtering.AddressAndPortDependent));
  assert.equal(new Set(seen).size, 3, seen.join(' '));
  assert.ok(seen.every((s) => !s.endsWith(':40000')), 'random ports, not preserved');
});

test('EIM with random port assignment: one port, but not the internal one', async () => {
  const seen = await mappedVia(natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent, { portAssignment: PortAssignment.Random }));
  assert.equal(new Set(seen).size, 1);
  assert.ok(!seen[0]!.endsWith(':40000'));
});

/** After a1 sent to S1 only, who else can reach its mapping? */
async function admitted(filtering: (typeof Filtering)[keyof typeof Filtering]): Promise<string[]> {
  const w = natWorld(natConfig(Mapping.EndpointIndependent, filtering));
  w.conn.send(enc.encode('open'), S1);
  w.net.clock.advance(50);
  const owner = (ip: string): Host => w.net.internet.ifaces.get(ip)!.owner as Host;
  // Unsolicited senders: S1's IP from another port, and another IP.
  owner('203.0.113.10').udp(5000).send(enc.encode('from S1 other port'), { address: '203.0.113.1', port: 40000 });
  owner('198.51.100.10').udp(5000).send(enc.encode('from S2'), { address: '203.0.113.1', port: 40000 });
  w.net.clock.advance(50);
  return w.rx.got.map((g) => g.data).filter((d) => d.startsWith('from'));
}

test('EIF admits anyone once a mapping exists (full cone)', async () => {
  assert.deepEqual((await admitted(Filtering.EndpointIndependent)).sort(), ['from S1 other port', 'from S2']);
});

test('ADF admits only IPs the host has sent to (restricted cone)', async () => {
  assert.deepEqual(await admitted(Filtering.AddressDependent), ['from S1 other port']);
});

test('APDF admits only the exact ip:port (port-restricted cone)', async () => {
  assert.deepEqual(await admitted(Filtering.AddressAndPortDependent), []);
});

test('mappings expire after the idle timeout; outbound traffic refreshes them', () => {
  const t = new NatTable(natConfig(Mapping.EndpointIndependent, Filtering.EndpointIndependent, { mappingTimeoutMs: 30_000 }), seededRandom(1));
  const inside = { address: '10.1.0.2', port: 40000 };
  assert.equal(t.outbound('udp', inside, S1, 0), 40000);
  assert.deepEqual(t.inbound('udp', 40000, S2, 29_000), inside);
  t.outbound('udp', inside, S1, 29_000); // refresh
  assert.deepEqual(t.inbound('udp', 40000, S2, 58_000), inside, 'refreshed by outbound at 29 s');
  assert.equal(t.inbound('udp', 40000, S2, 59_000), null, 'expired 30 s after the last outbound');
  assert.equal(t.mappings().length, 0);
});

test('inbound traffic does not refresh a mapping unless configured', () => {
  const t = new NatTable(natConfig(Mapping.EndpointIndependent, Filtering.EndpointIndependent, { mappingTimeoutMs: 10_000 }), seededRandom(1));
  const inside = { address: '10.1.0.2', port: 1 };
  t.outbound('udp', inside, S1, 0);
  t.inbound('udp', 1, S1, 9_000);
  assert.equal(t.inbound('udp', 1, S1, 10_000), null);
  const t2 = new NatTable(natConfig(Mapping.EndpointIndependent, Filtering.EndpointIndependent, { mappingTimeoutMs: 10_000, inboundRefresh: true }), seededRandom(1));
  t2.outbound('udp', inside, S1, 0);
  t2.inbound('udp', 1, S1, 9_000);
  assert.deepEqual(t2.inbound('udp', 1, S1, 10_000), inside);
});

test('a clash on the preserved port gets another port (two LAN hosts, same source port)', () => {
  const t = new NatTable(natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent), seededRandom(3));
  assert.equal(t.outbound('udp', { address: '10.1.0.2', port: 41641 }, S1, 0), 41641);
  assert.notEqual(t.outbound('udp', { address: '10.1.0.3', port: 41641 }, S1, 0), 41641);
});

function hairpinWorld(hairpinning: boolean): { net: Network; a: PacketConn; rxB: ReturnType<typeof collect> } {
  const net = new Network();
  whoami(net, '203.0.113.10', [3478]);
  const r = net.addRouter('r1', { wanIp: '203.0.113.1', lanIp: '10.1.0.1', nat: natConfig(Mapping.EndpointIndependent, Filtering.EndpointIndependent, { hairpinning }) });
  const a = r.addHost('a1', '10.1.0.2').udp(40000);
  const b = r.addHost('b1', '10.1.0.3').udp(40001);
  const rxB = collect(b);
  b.send(enc.encode('open'), S1); // creates b's mapping 203.0.113.1:40001
  net.clock.advance(20);
  a.send(enc.encode('hello via public address'), { address: '203.0.113.1', port: 40001 });
  net.clock.advance(20);
  return { net, a, rxB };
}

test('hairpinning: a LAN host reaches another through the public address, seen from the public mapping', () => {
  const { rxB } = hairpinWorld(true);
  const got = rxB.got.filter((g) => g.data.startsWith('hello'));
  assert.deepEqual(got, [{ data: 'hello via public address', from: '203.0.113.1:40000' }]);
});

test('without hairpinning the packet is dropped', () => {
  const { rxB, net } = hairpinWorld(false);
  assert.equal(rxB.got.filter((g) => g.data.startsWith('hello')).length, 0);
  assert.equal(net.stats.dropReasons.get('r1: no hairpinning'), 1);
});

test('UDP blocked: UDP is dropped, "tcp" requests still get answers', async () => {
  const net = new Network();
  const srv = whoami(net, '203.0.113.10', [3478]);
  srv.serveTcp(443, () => enc.encode('tcp-ok'));
  const r = net.addRouter('r1', { wanIp: '203.0.113.1', lanIp: '10.1.0.1', nat: natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent), firewall: { ...OPEN_FIREWALL, udpBlocked: true } });
  const a = r.addHost('a1', '10.1.0.2');
  const rx = collect(a.udp(40000));
  a.udp(40001).send(enc.encode('x'), S1);
  const answer = await drive(net.clock, a.requestTcp({ address: '203.0.113.10', port: 443 }, enc.encode('GET'), 500));
  assert.equal(dec.decode(answer!), 'tcp-ok');
  assert.equal(rx.got.length, 0);
  assert.equal(net.stats.dropReasons.get('r1: firewall blocked outbound udp'), 1);
});

test('stateful firewall (no NAT): unsolicited inbound dropped, replies and simultaneous open pass', () => {
  const net = new Network();
  const peer = net.addHost('peer', '198.51.100.20');
  const r = net.addRouter('fw', { wanIp: '203.0.113.1', lanIp: '192.0.2.1', lanPrefix: '192.0.2.', nat: null, firewall: { ...OPEN_FIREWALL, stateful: true } });
  const inside = r.addHost('a1', '192.0.2.2').udp(41641);
  const outside = peer.udp(41641);
  const rxIn = collect(inside);
  const rxOut = collect(outside);
  outside.send(enc.encode('unsolicited'), { address: '192.0.2.2', port: 41641 });
  net.clock.advance(20);
  assert.equal(rxIn.got.length, 0, 'unsolicited inbound is dropped');
  inside.send(enc.encode('punch'), { address: '198.51.100.20', port: 41641 });
  net.clock.advance(20);
  outside.send(enc.encode('reply'), { address: '192.0.2.2', port: 41641 });
  net.clock.advance(20);
  assert.deepEqual(rxOut.got.map((g) => g.data), ['punch']);
  assert.deepEqual(rxIn.got.map((g) => `${g.data} from ${g.from}`), ['reply from 198.51.100.20:41641'], 'routed: no translation');
});

test('double NAT: two translations, the outer address is what the internet sees', async () => {
  const net = new Network();
  whoami(net, '203.0.113.10', [3478]);
  const cgnat = net.addRouter('cgnat', { wanIp: '203.0.113.1', lanIp: '100.64.0.1', nat: natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent) });
  const home = net.addRouter('home', { wanIp: '100.64.0.2', lanIp: '10.1.0.1', parent: cgnat.lan, nat: natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent) });
  const host = home.addHost('a1', '10.1.0.2');
  const c = host.udp(40002);
  const rx2 = collect(c);
  c.send(enc.encode('probe'), S1);
  net.clock.advance(50);
  assert.deepEqual(rx2.got.map((g) => g.data), ['203.0.113.1:40002']);
  assert.deepEqual(host.routerHops(), ['10.1.0.1', '100.64.0.1']);
  assert.equal(home.nat!.mappings()[0]!.externalPort, 40002);
  assert.equal(cgnat.nat!.mappings()[0]!.internal.address, '100.64.0.2');
});

test('the vlab is deterministic: the same seed gives the same ports', async () => {
  const a = await mappedVia(natConfig(Mapping.AddressAndPortDependent, Filtering.AddressAndPortDependent));
  const b = await mappedVia(natConfig(Mapping.AddressAndPortDependent, Filtering.AddressAndPortDependent));
  assert.deepEqual(a, b);
});

test('IPv6 is routed, not translated, and the stateful firewall still drops unsolicited inbound', () => {
  const net = new Network();
  const peer = net.addHost('peer', '198.51.100.20', { ip6: '2001:db8:ff::20' });
  const r = net.addRouter('r1', {
    wanIp: '203.0.113.1', lanIp: '10.1.0.1', nat: natConfig(Mapping.AddressAndPortDependent, Filtering.AddressAndPortDependent),
    firewall: { ...OPEN_FIREWALL, stateful: true }, ipv6: { wanIp: '2001:db8::1', lanIp: '2001:db8:1::1', lanPrefix: '2001:db8:1::' },
  });
  const inside = r.addHost('a1', '10.1.0.2', '2001:db8:1::2').udp(41641, 6);
  const outside = peer.udp(41641, 6);
  const rxIn = collect(inside);
  const rxOut = collect(outside);
  outside.send(enc.encode('unsolicited'), { address: '2001:db8:1::2', port: 41641 });
  net.clock.advance(20);
  assert.equal(rxIn.got.length, 0);
  inside.send(enc.encode('out'), { address: '2001:db8:ff::20', port: 41641 });
  net.clock.advance(20);
  outside.send(enc.encode('reply'), { address: '2001:db8:1::2', port: 41641 });
  net.clock.advance(20);
  assert.deepEqual(rxOut.got, [{ data: 'out', from: '2001:db8:1::2:41641' }], 'source address and port unchanged');
  assert.deepEqual(rxIn.got.map((g) => g.data), ['reply']);
  assert.equal(r.nat!.mappings().length, 0, 'no NAT state for IPv6');
  inside.send(enc.encode('x'), { address: '198.51.100.20', port: 1 });
  assert.equal(net.stats.dropReasons.get('a1: address family mismatch'), 1);
});
