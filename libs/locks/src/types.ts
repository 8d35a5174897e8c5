/** A held maildrop lock. */
export interface Lease {
  readonly key: string;
  /** Random token proving ownership. */
  readonly token: string;
  /** Monotonic per-key fencing token (0 where the backend has none). */
  readonly fence: number;
  /** Aborted when the lease is lost (renewal failed, lapsed, released). */
  readonly signal: AbortSignal;
  /** True while the lease is believed held. */
  held(): boolean;
  /** Give the lock up. Idempotent. */
  release(): Promise<void>;
}

export interface LockManager {
  readonly kind: string;
  /** Take the lock on `key`, or resolve `null` at once when someone else holds it. */
  acquire(key: string): Promise<Lease | null>;
  close?(): Promise<void>;
}
