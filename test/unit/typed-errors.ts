/**
 * Test helpers for the typed-error contract (DESIGN.md: every failure is `WiremeshError(code, message)` from
 * src/errors.ts): "parse or throw only a WiremeshError" for fuzzing parsers with fast-check, and "throws this code".
 */
import assert from 'node:assert/strict';
import { WiremeshError } from '../../src/errors.ts';

/**
 * Runs `fn`, which may return or throw; a throw must be a WiremeshError (with `code`, when given), anything else
 * fails the test. Returns what `fn` returned, or undefined after an allowed throw.
 */
export function returnsOrThrowsTyped<T>(fn: () => T, code?: string): T | undefined {
  try {
    return fn();
  } catch (e) {
    assert.ok(e instanceof WiremeshError && (code === undefined || e.code === code), String(e));
    return undefined;
  }
}

/** Asserts that `fn` throws a WiremeshError with `code`. */
export function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof WiremeshError && e.code === code, `expected ${code}`);
}
