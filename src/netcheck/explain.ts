/**
 * `wiremesh netcheck --explain`: turns a report into guidance a person can act on (issue #3 item 5), from the
 * firewall-compatibility facts in spec/field-notes.md and Tailscale's firewall notes: which products behave as
 * "hard NAT", what each one's workaround is, what UDP-blocked, TLS-intercepting and captive networks mean.
 * Pure: report (+ DERP map for names) in, text out. Rules are listed in docs/netcheck.md.
 */
import type { DerpMap } from '../derpmap/derpmap.ts';
import { formatLatency, type Report } from './report.ts';

/** One explanation: what was measured, what it means, what to try (empty when nothing needs doing). */
export interface Explanation {
  verdict: 'direct' | 'direct-likely' | 'hard-nat' | 'relay-only' | 'captive-portal' | 'no-connectivity' | 'unknown';
  measured: string[];
  meaning: string[];
  tryThis: string[];
}

/** Hard-NAT workarounds per firewall family (field notes + Tailscale's firewall notes). */
export const HARD_NAT_WORKAROUNDS: readonly string[] = [
  'pfSense / OPNsense: enable NAT-PMP or UPnP on the router, or add a static-port outbound NAT rule (static NAT port mapping) for this machine\'s UDP port (41641 by default).',
  'Barracuda: allow more UDP sessions per client and open (forward) one UDP port to this machine.',
  'Cisco (ASA / Firepower / Meraki): open a UDP port to this machine (static NAT / port forward).',
  'Fortinet FortiGate with many clients on the default port: set `randomizeClientPort` in the tailnet policy so each client uses its own port.',
  'Palo Alto Networks: use a NAT policy with "Persistent Dynamic IP and Port" (DIPP) for this machine.',
  'Ubiquiti UniFi: allow peer-to-peer traffic in Threat Detection / IPS (it blocks P2P by default at high levels).',
];

function portMapList(r: Report): string[] {
  const got: string[] = [];
  if (r.upnp === true) got.push('UPnP');
  if (r.pmp === true) got.push('NAT-PMP');
  if (r.pcp === true) got.push('PCP');
  return got;
}

function nearest(r: Report, dm: DerpMap | null): string {
  if (r.preferredDERP === 0) return 'none';
  const reg = dm?.Regions[String(r.preferredDERP)];
  const lat = r.regionLatencyMs.get(r.preferredDERP);
  const name = reg === undefined ? `region ${r.preferredDERP}` : `${reg.RegionName} (${reg.RegionCode})`;
  return lat === undefined ? name : `${name}, ${formatLatency(lat)}`;
}

export function explain(r: Report, dm: DerpMap | null = null): Explanation {
  const measured: string[] = [];
  const meaning: string[] = [];
  const tryThis: string[] = [];
  const pm = portMapList(r);
  const pmChecked = r.upnp !== null || r.pmp !== null || r.pcp !== null;

  measured.push(`UDP: ${r.udp ? 'works (STUN servers answered)' : 'no STUN answer from any DERP region'}`);
  if (r.globalV4 !== '') measured.push(`Public IPv4 address as seen by STUN: ${r.globalV4}`);
  if (r.globalV6 !== '') measured.push(`Public IPv6 address: ${r.globalV6}`);
  if (r.mappingVariesByDestIP !== null) {
    measured.push(`Public port varies by destination (MappingVariesByDestIP): ${r.mappingVariesByDestIP ? 'yes' : 'no'}`);
  } else if (r.udp) {
    measured.push('Public port varies by destination: unknown (fewer than two STUN servers answered over IPv4)');
  }
  measured.push(`Port mapping (UPnP / NAT-PMP / PCP): ${!pmChecked ? 'not checked' : pm.length === 0 ? 'none offered by the router' : pm.join(', ')}`);
  if (r.captivePortal !== null) measured.push(`Captive portal: ${r.captivePortal ? 'yes, a web page answered instead of the DERP server' : 'no'}`);
  if (r.doubleNAT !== null) measured.push(`Routers with private addresses before the internet: ${r.routerHops.length === 0 ? 'none seen' : r.routerHops.join(', ')}`);
  measured.push(`Nearest DERP relay: ${nearest(r, dm)}${r.udp || r.regionLatencyMs.size === 0 ? '' : ' (measured over HTTPS and ICMP, because UDP failed)'}`);

  let verdict: Explanation['verdict'];
  if (!r.udp && r.captivePortal === true) {
    verdict = 'captive-portal';
    meaning.push('This network holds traffic behind a captive portal (a login or terms page, as on hotel, airport and guest Wi-Fi). Until you get past it, nothing but the portal page works reliably.');
    tryThis.push('Open any http:// web page in a browser, complete the portal\'s login or accept its terms, then run netcheck again.');
  } else if (!r.udp && r.regionLatencyMs.size > 0) {
    verdict = 'relay-only';
    meaning.push('Outbound UDP is blocked on this network (firewalls such as Cisco Umbrella do this). Direct peer-to-peer connections need UDP, so every connection will go through a DERP relay over HTTPS: it works, but with extra latency and lower throughput.');
    tryThis.push('Ask the network administrator to allow outbound UDP (at least to UDP 3478 for STUN and to high UDP ports for peers, e.g. 41641), or use another network.');
    tryThis.push('If connecting to the control server fails with a certificate error, a TLS-intercepting firewall (e.g. FortiGate deep packet inspection) is rewriting HTTPS: exempt the control and DERP servers from SSL inspection.');
  } else if (!r.udp) {
    verdict = 'no-connectivity';
    meaning.push('Neither UDP (STUN) nor HTTPS reached any DERP server: there is no working path to the relays, so peers cannot be reached at all.');
    tryThis.push('Check that outbound TCP 443 to the DERP servers is allowed and that this machine has a working internet connection.');
    tryThis.push('A certificate error on HTTPS points at a TLS-intercepting firewall (e.g. FortiGate deep packet inspection): exempt the control and DERP servers from SSL inspection.');
  } else if (r.mappingVariesByDestIP === true) {
    verdict = 'hard-nat';
    meaning.push('Your NAT gives this machine a different public port for every destination ("hard NAT", endpoint-dependent mapping). OPNsense/pfSense, Barracuda, Cisco and Fortinet (with many clients on the default port) behave this way. Peers cannot predict the port, so direct connections mostly fail: to peers behind another hard NAT it will always be the DERP relay, to easy-NAT peers usually too.');
    if (pm.length > 0) {
      meaning.push(`Your router offers ${pm.join(', ')}: wiremesh asks it for a fixed public port automatically, which makes this machine reachable directly. Nothing else needs doing.`);
    } else {
      tryThis.push('Enable NAT-PMP, PCP or UPnP on the router if it has them (then no further change is needed), or apply the fix for your firewall:');
      for (const w of HARD_NAT_WORKAROUNDS) tryThis.push(`  - ${w}`);
      tryThis.push('Peer relays or IPv6 (no NAT) also give direct-quality paths when available.');
    }
  } else if (r.mappingVariesByDestIP === false) {
    verdict = 'direct';
    meaning.push('Your NAT keeps the same public port for every destination ("easy NAT", endpoint-independent mapping), as Sophos and Check Point firewalls and most home routers do. Direct connections to peers should work through hole punching; only peers that are themselves behind a hard NAT may need the relay.');
  } else {
    verdict = 'direct-likely';
    meaning.push('UDP works, but only one STUN server answered over IPv4, so whether the NAT keeps the same port per destination is unknown. Direct connections are likely to work.');
    tryThis.push('Run netcheck again with a DERP map holding at least two regions (two STUN servers) for a complete answer.');
  }
  if (r.doubleNAT === true) {
    meaning.push(`There are two layers of NAT (double NAT or carrier-grade NAT): routers ${r.routerHops.join(' and ')} both use private addresses. Port mapping on your own router cannot open the outer NAT, and direct connections depend on how the outer NAT behaves.`);
    tryThis.push('If you control both routers, put the inner one in bridge/access-point mode, or the outer one in DMZ/IP-passthrough toward the inner one; otherwise ask the ISP for a public IPv4 address or use IPv6.');
  }
  if (r.udp && r.globalV6 !== '') meaning.push('IPv6 works: peers with IPv6 can connect directly without any NAT traversal.');
  if (tryThis.length === 0) tryThis.push('Nothing needs doing.');
  return { verdict, measured, meaning, tryThis };
}

/** The explanation as text for the terminal. */
export function formatExplanation(e: Explanation): string {
  const out = ['', 'What was measured:', ...e.measured.map((l) => `  * ${l}`), '', 'What it means:', ...e.meaning.map((l) => `  ${l}`), '', 'What to try:'];
  for (const l of e.tryThis) out.push(l.startsWith('  - ') ? `  ${l}` : `  * ${l}`);
  return out.join('\n') + '\n';
}
