/**
 * The differential DERP conformance suite (spec/derp.md "Conformance checklist" 1–36 and 38–40): black-box tests
 * over real sockets, run unchanged against the Go derper (test/interop/go-derper-conformance.test.ts) and
 * wiremesh's derper (test/conformance/wiremesh.test.ts). The only allowed profile difference is STUN item 39
 * (wiremesh also answers plain RFC 5389 binding requests). The two slow items, handshake deadline (15, 10 s)
 * and KeepAlive (27, 60–65 s), start in before() and are asserted last, so they overlap the rest.
 */
import { after, afterEach, before, describe } from 'node:test';
import { handshakeDeadline, handshakeDeadlineTest, handshakeTests } from './handshake-tests.ts';
import { httpTests } from './http-tests.ts';
import { makeContext, type DerpServerHandle, type DerpTarget } from './helpers.ts';
import { meshTests } from './mesh-tests.ts';
import { keepAliveTest, keepAliveWatch, packetTests } from './packet-tests.ts';
import { stunTests } from './stun-tests.ts';

export type { DerpServerHandle, DerpStartOptions, DerpTarget } from './helpers.ts';

type Deadline = Awaited<ReturnType<typeof handshakeDeadline>>;
type KeepAlive = Awaited<ReturnType<typeof keepAliveWatch>>;

export function defineDerpConformance(target: DerpTarget): void {
  describe(`DERP conformance: ${target.name}`, { skip: target.skip ?? false, timeout: 300_000 }, () => {
    let server: DerpServerHandle | null = null;
    let deadline: Promise<Deadline> = Promise.reject(new Error('server not started'));
    let keepAlive: Promise<KeepAlive> = Promise.reject(new Error('server not started'));
    deadline.catch(() => {});
    keepAlive.catch(() => {});
    const ctx = makeContext(target, () => {
      if (server === null) throw new Error(`${target.name}: server not started`);
      return server;
    });

    before(async () => {
      server = await target.start();
      deadline = handshakeDeadline(server.url);
      keepAlive = keepAliveWatch(server.url);
      deadline.catch(() => {});
      keepAlive.catch(() => {});
    });
    afterEach(() => ctx.closeAll());
    after(async () => {
      ctx.closeAll();
      await server?.stop();
    });

    httpTests(ctx);
    handshakeTests(ctx);
    packetTests(ctx);
    meshTests(ctx);
    stunTests(ctx);
    handshakeDeadlineTest(() => deadline);
    keepAliveTest(() => keepAlive);
  });
}
