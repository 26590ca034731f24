// RouteCache and writeKey (src/derp/server/route-cache.ts): a cached destination matches only the exact 32 key bytes
// at the asked offset (a difference in any byte of any word misses), survives a change of buffer between calls, and
// writeKey writes a key's bytes where asked, including after the key changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RouteCache, writeKey } from '../../../src/derp/server/route-cache.ts';

const key = (seed: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (seed * 31 + i * 7) & 0xff);

test('an empty cache misses', () => {
  const c = new RouteCache<string>();
  assert.equal(c.lookup(Buffer.alloc(64), 0), undefined);
});

test('the remembered key hits at any offset and in any buffer holding it; one changed byte misses', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.nat(40), fc.nat(40), fc.nat(31), (k, at, at2, flip) => {
      const c = new RouteCache<string>();
      const a = Buffer.alloc(80);
      a.set(k, at);
      c.remember(a, at, 'dst', 3);
      assert.equal(c.gen, 3);
      const b = Buffer.alloc(80);
      b.set(k, at2);
      assert.equal(c.lookup(b, at2), 'dst');
      assert.equal(c.lookup(a, at), 'dst');
      b[at2 + flip] = b[at2 + flip]! ^ 0x01;
      assert.equal(c.lookup(b, at2), undefined);
      assert.equal(c.lookup(a, at), 'dst');
    }),
  );
});

test('a view with a byte offset is read at its own offsets', () => {
  const c = new RouteCache<number>();
  const backing = Buffer.alloc(100);
  backing.set(key(1), 20);
  const view = backing.subarray(10); // key at view offset 10
  c.remember(view, 10, 7, 0);
  assert.equal(c.lookup(backing, 20), 7);
  assert.equal(c.lookup(view, 10), 7);
  assert.equal(c.lookup(view, 11), undefined);
});

test('writeKey writes each key where asked, also when keys and buffers alternate', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(3), fc.nat(1), fc.nat(60)), { minLength: 1, maxLength: 20 }), (steps) => {
      const keys = [key(1), key(2), key(3), key(4)];
      const bufs = [Buffer.alloc(100), Buffer.alloc(100).subarray(5)];
      for (const [ki, bi, at] of steps) {
        writeKey(bufs[bi]!, at, keys[ki]!);
        assert.deepEqual([...bufs[bi]!.subarray(at, at + 32)], [...keys[ki]!]);
      }
    }),
  );
});
