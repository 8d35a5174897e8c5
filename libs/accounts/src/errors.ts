export type AccountsErrorCode =
  /** The verification pool's queue is full: shed load, the client gets [SYS/TEMP]. */
  | 'busy'
  /** The pool or backend was closed. */
  | 'closed'
  /** A verification worker died or a backend could not be read. */
  | 'unavailable'
  /** The stored hash names a scheme this library does not implement. */
  | 'unsupported-scheme'
  /** The stored hash does not parse for its scheme. */
  | 'malformed-hash'
  /** A password that may not be hashed (empty, contains NUL). */
  | 'invalid-password'
  /** A user name that cannot be stored in a passwd-file. */
  | 'invalid-username'
  | 'user-exists'
  | 'no-such-user'
  /** Another writer holds the passwd-file lock. */
  | 'lock-timeout';

/** Errors from the accounts library carry a stable code and whether a retry may succeed. */
export class AccountsError extends Error {
  readonly code: AccountsErrorCode;
  readonly temporary: boolean;
  constructor(code: AccountsErrorCode, message: string, options: { cause?: unknown; temporary?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.name = 'AccountsError';
    this.code = code;
    this.temporary =
      options.temporary ?? (code === 'busy' || code === 'closed' || code === 'unavailable' || code === 'lock-timeout');
  }
}

/** The reason an AbortSignal carries, or a standard AbortError when it carries none. */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}
