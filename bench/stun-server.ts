/**
 * Standalone runner of our STUN server for the STUN benchmark (spec/derp.md §15): `new StunServer()` on
 * 127.0.0.1 port 0, prints `stun: listening port=P` once bound, closes on SIGTERM/SIGINT.
 */
import { StunServer } from '../src/stun/server.ts';

const server = new StunServer();
await server.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`stun: listening port=${server.port}\n`);
const stop = (): void => void server.close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
