/**
 * The DERP conformance suite (test/conformance/suite.ts) against the real Go derper v1.102.3 (spec/derp.md §19):
 * proves the suite itself right. Plain HTTP on a free loopback port (not 443, certmode not manual), STUN on a free
 * UDP port, a mesh PSK file. Skips only when ~/go/bin/derper is missing.
 */
import { defineDerpConformance } from '../conformance/suite.ts';
import { goDerper, startGoDerper } from '../conformance/targets.ts';

defineDerpConformance({
  name: 'Go derper v1.102.3',
  skip: goDerper === null ? 'Go derper not installed (go install tailscale.com/cmd/derper@v1.102.3)' : false,
  start: startGoDerper,
});
