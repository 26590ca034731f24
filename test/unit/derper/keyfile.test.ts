// The derper key file (spec/derp.md §2): JSON {"PrivateKey":"privkey:<hex>"}, tab-indented, 0600, created if
// missing; and the mesh key format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { decodeKeyFile, encodeKeyFile, loadOrCreateKeyFile, parseMeshKey } from '../../../src/derper/keyfile.ts';
import { clamp, generatePrivate, toHex } from '../../../src/types/key.ts';

test('key file: created with 0600 and Go formatting, then read back unchanged', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'derper-key-'));
  try {
    const file = path.join(dir, 'a', 'b', 'derper.key');
    const first = await loadOrCreateKeyFile(file);
    assert.equal(first.created, true);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const text = readFileSync(file, 'utf8');
    assert.equal(text, `{\n\t"PrivateKey": "privkey:${toHex(first.key)}"\n}`);
    const second = await loadOrCreateKeyFile(file);
    assert.equal(second.created, false);
    assert.deepEqual(second.key, first.key);
    // A file written by Go's derper (same shape) is accepted, keys matched case-insensitively.
    writeFileSync(file, `{"privatekey": "privkey:${'11'.repeat(32)}"}`);
    assert.equal(toHex((await loadOrCreateKeyFile(file)).key), '11'.repeat(32));
    writeFileSync(file, '{"PrivateKey": "nodekey:00"}');
    await assert.rejects(loadOrCreateKeyFile(file), { code: 'invalid_key' });
    writeFileSync(file, 'not json');
    await assert.rejects(loadOrCreateKeyFile(file), { code: 'keyfile_json' });
    writeFileSync(file, '{}');
    await assert.rejects(loadOrCreateKeyFile(file), { code: 'keyfile_no_key' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('key file: property — encode/decode round trip', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (b) => {
    const k = clamp(b);
    return toHex(decodeKeyFile(encodeKeyFile(k))) === toHex(k);
  }));
  const k = generatePrivate();
  assert.deepEqual(JSON.parse(encodeKeyFile(k)), { PrivateKey: `privkey:${toHex(k)}` });
});

test('mesh key: 64 hex digits, trimmed; anything else is "invalid mesh key"', () => {
  assert.equal(Buffer.from(parseMeshKey(`  ${'AB'.repeat(32)}\n`)).toString('hex'), 'ab'.repeat(32));
  for (const bad of ['', 'ab'.repeat(31), 'ab'.repeat(33), 'zz'.repeat(32), `${'ab'.repeat(16)} ${'ab'.repeat(16)}`]) {
    assert.throws(() => parseMeshKey(bad), /invalid mesh key/);
  }
});
