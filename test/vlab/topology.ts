/**
 * Ready-made vlab topologies for tests (spec/lab.md §1 in memory): an "internet" with two DERP/STUN servers in
 * two regions (different latencies) and one client host behind a router profile. Profiles cover the Linux lab's
 * (easy, hard, UDP blocked, stateful firewall, double NAT, captive portal), the NAT types Linux cannot build, and
 * a dual-stack host (IPv6 routed through a stateful firewall).
 */
import type { DerpMap } from '../../src/derpmap/derpmap.ts';
import { OPEN_FIREWALL, type FirewallConfig } from './firewall.ts';
import { makeCaptivePortal, serveDerpHttp } from './http.ts';
import { Filtering, Mapping, natConfig, PortAssignment, type NatConfig } from './nat.ts';
import { Network, type Host, type Router } from './network.ts';
import { startStunServer } from './stunserver.ts';

export const PROFILES = [
  'full-cone', 'restricted-cone', 'easy', 'easy-random-port', 'address-dependent', 'hard', 'udp-blocked',
  'stateful-firewall', 'double-nat', 'captive-portal', 'public', 'dual-stack',
] as const;
export type Profile = (typeof PROFILES)[number];

export const SERVER1 = '203.0.113.10';
export const SERVER2 = '198.51.100.10';
export const SERVER1_V6 = '2001:db8:ff::10';
export const SERVER2_V6 = '2001:db8:ff::20';

export interface World {
  net: Network;
  client: Host;
  router: Router | null;
  derpMap: DerpMap;
}

/** The DERP map of the vlab internet: region 1 (203.0.113.10, near) and region 2 (198.51.100.10, far). */
export function vlabDerpMap(): DerpMap {
  return {
    Regions: {
      '1': { RegionID: 1, RegionCode: 'lab', RegionName: 'Lab Near', Nodes: [{ Name: '1a', RegionID: 1, HostName: SERVER1, IPv4: SERVER1, IPv6: SERVER1_V6, CanPort80: true }] },
      '2': { RegionID: 2, RegionCode: 'far', RegionName: 'Lab Far', Nodes: [{ Name: '2a', RegionID: 2, HostName: SERVER2, IPv4: SERVER2, IPv6: SERVER2_V6, CanPort80: true }] },
    },
  };
}

function routerFor(net: Network, profile: Profile): { router: Router | null; client: Host } {
  const fw = (c: Partial<FirewallConfig>): FirewallConfig => ({ ...OPEN_FIREWALL, ...c });
  const natted = (nat: NatConfig, firewall: FirewallConfig = OPEN_FIREWALL): { router: Router; client: Host } => {
    const router = net.addRouter('r1', { wanIp: '203.0.113.1', lanIp: '10.1.0.1', nat, firewall });
    return { router, client: router.addHost('a1', '10.1.0.2') };
  };
  switch (profile) {
    case 'public':
      return { router: null, client: net.addHost('a1', '203.0.113.50') };
    case 'dual-stack': {
      // Easy NAT for IPv4; IPv6 routed (no NAT) through a stateful firewall, like a typical home router.
      const router = net.addRouter('r1', {
        wanIp: '203.0.113.1', lanIp: '10.1.0.1', nat: natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent),
        firewall: fw({ stateful: true }), ipv6: { wanIp: '2001:db8::1', lanIp: '2001:db8:1::1', lanPrefix: '2001:db8:1::' },
      });
      return { router, client: router.addHost('a1', '10.1.0.2', '2001:db8:1::2') };
    }
    case 'full-cone':
      return natted(natConfig(Mapping.EndpointIndependent, Filtering.EndpointIndependent));
    case 'restricted-cone':
      return natted(natConfig(Mapping.EndpointIndependent, Filtering.AddressDependent));
    case 'easy':
      return natted(natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent));
    case 'easy-random-port':
      return natted(natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent, { portAssignment: PortAssignment.Random }));
    case 'address-dependent':
      return natted(natConfig(Mapping.AddressDependent, Filtering.AddressDependent));
    case 'hard':
      return natted(natConfig(Mapping.AddressAndPortDependent, Filtering.AddressAndPortDependent));
    case 'udp-blocked':
      return natted(natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent), fw({ udpBlocked: true }));
    case 'captive-portal': {
      const w = natted(natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent), fw({ udpBlocked: true }));
      makeCaptivePortal(w.router);
      return w;
    }
    case 'stateful-firewall': {
      const router = net.addRouter('r1', { wanIp: '203.0.113.1', lanIp: '192.0.2.1', lanPrefix: '192.0.2.', nat: null, firewall: fw({ stateful: true }) });
      return { router, client: router.addHost('a1', '192.0.2.2') };
    }
    case 'double-nat': {
      const cgnat = net.addRouter('cgnat', { wanIp: '203.0.113.1', lanIp: '100.64.0.1', nat: natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent) });
      const home = net.addRouter('home', { wanIp: '100.64.0.2', lanIp: '10.1.0.1', parent: cgnat.lan, nat: natConfig(Mapping.EndpointIndependent, Filtering.AddressAndPortDependent) });
      return { router: home, client: home.addHost('a1', '10.1.0.2') };
    }
  }
}

/** Builds the internet (two regions, 5 ms and 30 ms away) and a client behind `profile`. */
export function buildWorld(profile: Profile, seed = 1): World {
  const net = new Network({ seed });
  for (const [ip, ip6, latencyMs] of [[SERVER1, SERVER1_V6, 5], [SERVER2, SERVER2_V6, 30]] as const) {
    const h = net.addHost(`derp-${ip}`, ip, { latencyMs, ip6 });
    startStunServer(h, 3478);
    startStunServer(h, 3478, 6);
    serveDerpHttp(h);
  }
  const { router, client } = routerFor(net, profile);
  return { net, client, router, derpMap: vlabDerpMap() };
}
