/**
 * How to start each DERP server under test as a child process: the real Go derper v1.102.3 (spec/derp.md §19)
 * and `wiremesh derper`. Both get a free loopback port, STUN on a free/ephemeral UDP port and a mesh PSK file;
 * `tls: true` uses manual cert mode with a generated self-signed IP certificate and no port-80 listener.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { goBinary } from '../support/gobin.ts';
import type { DerpServerHandle, DerpStartOptions } from './helpers.ts';
import { freeTcpPort, freeUdpPort, spawnUntil, tempDirWithMeshKey, waitForTcp, type TempDir } from './spawn.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const goDerper = goBinary('derper');

function commonFlags(opts: DerpStartOptions, tmp: TempDir): string[] {
  const args: string[] = [];
  if (opts.derp === false) args.push('--derp=false');
  if (opts.verifyClientUrl !== undefined) args.push(`--verify-client-url=${opts.verifyClientUrl}`);
  if (opts.verifyClientUrlFailOpen !== undefined) args.push(`--verify-client-url-fail-open=${opts.verifyClientUrlFailOpen}`);
  if (opts.tls === true) args.push('--certmode', 'manual', '--certdir', tmp.dir, '--http-port', '-1');
  return args;
}

async function finish(s: Awaited<ReturnType<typeof spawnUntil>>, tmp: TempDir, host: string, port: number, stunPort: number, opts: DerpStartOptions, profile: 'go' | 'wiremesh'): Promise<DerpServerHandle> {
  await waitForTcp(host, port).catch(async (e: unknown) => {
    await s.stop();
    throw e;
  });
  return {
    url: `${opts.tls === true ? 'https' : 'http'}://${host}:${port}/derp`,
    stunPort,
    meshKey: tmp.meshKey,
    profile,
    ...(opts.tls === true ? { certFile: path.join(tmp.dir, '127.0.0.1.crt') } : {}),
    stop: async () => {
      await s.stop();
      tmp.remove();
    },
  };
}

export async function startGoDerper(opts: DerpStartOptions = {}): Promise<DerpServerHandle> {
  if (goDerper === null) throw new Error('Go derper not installed');
  const tmp = tempDirWithMeshKey('wm-go-derper-');
  try {
    const port = await freeTcpPort();
    const stunPort = await freeUdpPort();
    const args = [
      '-a', `127.0.0.1:${port}`, '-c', path.join(tmp.dir, 'derper.key'), '-stun-port', String(stunPort),
      '-hostname', '127.0.0.1', '-mesh-psk-file', tmp.meshKeyFile, ...commonFlags(opts, tmp),
    ];
    const s = await spawnUntil(goDerper, args, /derper: serving on /);
    return await finish(s, tmp, '127.0.0.1', port, stunPort, opts, 'go');
  } catch (e) {
    tmp.remove();
    throw e;
  }
}

const LISTENING = /derper: listening https?=([0-9.]+):(\d+) stun=(?:[0-9.]+:)?(\d+)/;

export async function startWiremeshDerper(opts: DerpStartOptions = {}): Promise<DerpServerHandle> {
  const tmp = tempDirWithMeshKey('wm-derper-');
  try {
    const args = [
      path.join(root, 'bin/wiremesh.js'), 'derper', '-a', '127.0.0.1:0', '--stun-port', '0', '-c', path.join(tmp.dir, 'derper.key'),
      '--hostname', '127.0.0.1', '--mesh-psk-file', tmp.meshKeyFile, ...commonFlags(opts, tmp),
    ];
    const s = await spawnUntil(path.join(root, 'node_modules/.bin/node'), args, LISTENING, { cwd: root });
    const [, host, port, stunPort] = s.match;
    return await finish(s, tmp, host!, Number(port), Number(stunPort), opts, 'wiremesh');
  } catch (e) {
    tmp.remove();
    throw e;
  }
}
