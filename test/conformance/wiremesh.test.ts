/**
 * The DERP conformance suite (test/conformance/suite.ts) against wiremesh's own derper, started as a child
 * process exactly as a user would: `wiremesh derper -a 127.0.0.1:0 --stun-port 0 …`, ready when it prints
 * `derper: listening http=HOST:PORT stun=PORT`. Never skipped: if the derper cannot start, this fails loudly.
 */
import { defineDerpConformance } from './suite.ts';
import { startWiremeshDerper } from './targets.ts';

defineDerpConformance({ name: 'wiremesh derper', start: startWiremeshDerper });
