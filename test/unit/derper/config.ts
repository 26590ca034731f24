/** A loopback derper configuration for in-process tests (ephemeral port, no STUN, no port-80 listener). */
import type { DerperConfig } from '../../../src/derper/derper.ts';
import { generatePrivate } from '../../../src/types/key.ts';

export function testDerperConfig(over: Partial<DerperConfig> = {}): DerperConfig {
  return {
    host: '127.0.0.1', port: 0, tls: null, httpPort: -1, stunPort: null, derp: true, privateKey: generatePrivate(), meshKey: null,
    home: '', hostname: '127.0.0.1', bootstrapDnsNames: [], verifyClientUrl: '', verifyClientUrlFailOpen: true,
    tcpWriteTimeoutMs: 2000, tcpKeepAliveMs: 0, ...over,
  };
}
