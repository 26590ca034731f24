/** Environment → derper flags (src/derper/env.ts): a table of variables and the flags they become. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FLAG_NAMES, parseDerperFlags } from '../../../src/cli/derper.ts';
import { envNameForFlag, flagsFromEnv } from '../../../src/derper/env.ts';
import type { FlagNames } from '../../../src/derper/flags.ts';

const NAMES: FlagNames = {
  bools: new Set(['stun', 'derp', 'verify-clients', 'dev', 'version']),
  values: new Set(['addr', 'hostname', 'certmode', 'certdir', 'stun-port', 'http-port', 'config']),
  shorts: new Map([['a', 'addr']]),
};

test('envNameForFlag', () => {
  assert.equal(envNameForFlag('stun-port'), 'DERP_STUN_PORT');
  assert.equal(envNameForFlag('addr'), 'DERP_ADDR');
  assert.equal(envNameForFlag('verify-client-url-fail-open'), 'DERP_VERIFY_CLIENT_URL_FAIL_OPEN');
});

const TABLE: Array<{ env: Record<string, string>; args: string[]; unknown?: string[] }> = [
  { env: {}, args: [] },
  { env: { DERP_ADDR: ':8443' }, args: ['--addr=:8443'] },
  { env: { DERP_CERTMODE: 'manual', DERP_HOSTNAME: 'derp.example.com' }, args: ['--certmode=manual', '--hostname=derp.example.com'] },
  { env: { DERP_STUN_PORT: '3479', DERP_STUN: 'false' }, args: ['--stun=false', '--stun-port=3479'] },
  { env: { DERP_VERIFY_CLIENTS: 'false' }, args: ['--verify-clients=false'] },
  // community-image spellings
  { env: { DERP_DOMAIN: 'd.example', DERP_CERT_MODE: 'manual', DERP_CERT_DIR: '/certs' }, args: ['--certdir=/certs', '--certmode=manual', '--hostname=d.example'] },
  // the canonical name beats an alias
  { env: { DERP_DOMAIN: 'alias.example', DERP_HOSTNAME: 'canon.example' }, args: ['--hostname=canon.example'] },
  // empty values are ignored; HOSTNAME equal to the machine's own name is not a flag; DERP_VERSION is a build arg
  { env: { DERP_ADDR: '', HOSTNAME: 'container-id', DERP_VERSION: 'v1.2.3' }, args: [] },
  // bare container names (issue #6) are read with the lowest precedence
  { env: { ADDR: ':1', CERTMODE: 'manual', STUN_PORT: '3479', VERIFY_CLIENTS: 'false' }, args: ['--addr=:1', '--certmode=manual', '--stun-port=3479', '--verify-clients=false'] },
  { env: { ADDR: ':1', DERP_ADDR: ':2' }, args: ['--addr=:2'] },
  { env: { HOSTNAME: 'derp.example.com' }, args: ['--hostname=derp.example.com'] },
  // typos are reported, Go's runtime knobs are not
  { env: { DERP_STUNPORT: '1', DERP_DEBUG_LOGS: '1' }, args: [], unknown: ['DERP_STUNPORT'] },
];

for (const row of TABLE) {
  test(`flagsFromEnv ${JSON.stringify(row.env)}`, () => {
    const r = flagsFromEnv(row.env, NAMES, 'container-id');
    assert.deepEqual(r.args, row.args);
    assert.deepEqual(r.unknown, row.unknown ?? []);
  });
}

test('environment flags feed the real derper parser, and the command line wins', () => {
  const env = { DERP_ADDR: '127.0.0.1:8443', DERP_STUN_PORT: '4000', DERP_HTTP_PORT: '-1', DERP_STUN: 'false', DERP_CERTMODE: 'manual', DERP_HOSTNAME: 'h.example' };
  const { args } = flagsFromEnv(env, FLAG_NAMES);
  const f = parseDerperFlags([...args]);
  assert.equal(f.addr, '127.0.0.1:8443');
  assert.equal(f.stunPort, 4000);
  assert.equal(f.httpPort, -1);
  assert.equal(f.stun, false);
  assert.equal(f.certmode, 'manual');
  assert.equal(f.hostname, 'h.example');
  const g = parseDerperFlags([...args, '-a', ':9000', '-stun', '--stun-port=5000']);
  assert.equal(g.addr, ':9000');
  assert.equal(g.stun, true);
  assert.equal(g.stunPort, 5000);
});

test('a bad boolean in the environment is a usage error, not silently ignored', () => {
  const { args } = flagsFromEnv({ DERP_STUN: 'maybe' }, FLAG_NAMES);
  assert.throws(() => parseDerperFlags(args), /invalid boolean value "maybe" for -stun/);
});

test('property: every flag round-trips through its DERP_ variable', () => {
  const flags = [...NAMES.values];
  fc.assert(
    fc.property(fc.constantFrom(...flags), fc.string({ minLength: 1, maxLength: 20 }), (flag, value) => {
      const r = flagsFromEnv({ [envNameForFlag(flag)]: value }, NAMES);
      assert.deepEqual(r.args, [`--${flag}=${value}`]);
    }),
  );
});
