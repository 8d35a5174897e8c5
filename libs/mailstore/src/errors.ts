export type StoreErrorCode =
  | 'not-found'
  | 'too-large'
  | 'over-quota'
  | 'lock-lost'
  | 'backend'
  | 'invalid';

/** Errors from a store carry a stable code and whether a retry may succeed. */
export class StoreError extends Error {
  readonly code: StoreErrorCode;
  readonly temporary: boolean;
  constructor(code: StoreErrorCode, message: string, options: { cause?: unknown; temporary?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.name = 'StoreError';
    this.code = code;
    this.temporary = options.temporary ?? (code === 'backend' || code === 'lock-lost');
  }
}
