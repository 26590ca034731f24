/**
 * `wiremesh portmap` flag handling and output formatting (no network: only paths that fail before any I/O).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatMapping, formatProbe, run } from '../../../src/cli/portmap.ts';

describe('wiremesh portmap CLI', () => {
  it('usage errors exit 2 before touching the network', async () => {
    const quiet = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      assert.equal(await run(['map']), 2, 'missing --port');
      assert.equal(await run(['unmap', '--port', '5000', '--protocol', 'pcp']), 2, 'PCP unmap without nonce');
      assert.equal(await run(['unmap', '--port', '5000', '--protocol', 'pcp', '--nonce', 'xyz']), 2, 'bad nonce');
      assert.equal(await run(['unmap', '--port', '5000', '--protocol', 'sctp']), 2, 'unknown protocol');
      assert.equal(await run(['probe', '--gateway', '10.0.0.1']), 2, '--gateway without --local');
      assert.equal(await run(['frobnicate']), 2);
    } finally {
      process.stderr.write = quiet;
    }
  });
  it('formats a probe report and a mapping as text', () => {
    const text = formatProbe({
      upnp: true, pmp: true, pcp: false, gateway: '10.1.0.1', localAddress: '10.1.0.2', pmpExternalIp: '203.0.113.1',
      pmpEpoch: 12, durationMs: 61.4, rejections: [{ code: 'PORTMAP_OFF_GATEWAY', message: 'from 10.1.0.9' }],
      upnpResponses: [{ location: 'http://10.1.0.1:5000/rootDesc.xml', st: '', usn: '', server: 'MiniUPnPd/2.3.1', igdVersion: 2 }],
    });
    assert.match(text, /^gateway 10\.1\.0\.1 \(local 10\.1\.0\.2\), 61 ms$/m);
    assert.match(text, /PCP: +no/);
    assert.match(text, /NAT-PMP: yes \(external 203\.0\.113\.1, epoch 12\)/);
    assert.match(text, /IGD:2 http:\/\/10\.1\.0\.1:5000\/rootDesc\.xml/);
    assert.match(text, /rejected: PORTMAP_OFF_GATEWAY/);
    assert.equal(formatMapping({
      protocol: 'pcp', gateway: '10.1.0.1', internalAddress: '10.1.0.2', internalPort: 41641, externalIp: '203.0.113.1',
      externalPort: 41641, lifetimeSeconds: 7200, grantedAt: 0, renewAt: 0, nonce: '00112233445566778899aabb',
    }), 'pcp: 203.0.113.1:41641 -> 10.1.0.2:41641 udp (lifetime 7200s) nonce 00112233445566778899aabb\n');
  });
});
