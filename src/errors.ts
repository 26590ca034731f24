/**
 * Typed errors with stable codes (DESIGN.md "Bad input and limits"): every rejection of bad input is a
 * WiremeshError whose `code` names what was wrong, so logs, metrics and tests can match on it.
 */
export class WiremeshError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WiremeshError';
    this.code = code;
  }
}

/** Creates an error factory bound to one code, for terse call sites: `throw shortFrame('...')`. */
export function errorCode(code: string): (message: string, cause?: unknown) => WiremeshError {
  return (message, cause) => new WiremeshError(code, message, cause === undefined ? undefined : { cause });
}

/** True when `e` is a WiremeshError with the given code. */
export function hasCode(e: unknown, code: string): boolean {
  return e instanceof WiremeshError && e.code === code;
}
