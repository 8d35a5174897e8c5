/**
 * Maildrop leases in Redis: a random token set with NX PX, a fencing token from INCR kept in the
 * mailbox index, renewal every third of the TTL by compare-and-PEXPIRE, release by
 * compare-and-delete. Acquiring also returns the index listing, so opening the maildrop costs no
 * further round trip.
 */
import { randomBytes } from 'node:crypto';
import type { Lease, LockManager, LoginDelayGate } from '@postern/locks';
import type { MessageMeta } from '@postern/mailstore';
import type { RedisIndex } from './redis.js';

export interface RedisLockManagerOptions {
  /** Lease TTL, ms (LOCK_TTL_MS; default 30000). Renewed every third of it. */
  readonly ttlMs?: number;
  /**
   * The mailbox a lock key names. Default: the key without a leading `maildrop:` (the gateway
   * locks `maildrop:<mailboxId>`; the store conformance suite locks `<mailboxId>`).
   */
  readonly mailboxOf?: (key: string) => string;
  /** Called once per lease lost to a failed or late renewal (for a metric or a log line). */
  readonly onLost?: (key: string, reason: string) => void;
}

const MAILDROP = 'maildrop:';

function defaultMailboxOf(key: string): string {
  return key.startsWith(MAILDROP) ? key.slice(MAILDROP.length) : key;
}

/** A lease held in Redis. `S3MailStore.open` takes its listing instead of reading the index. */
export class RedisLease implements Lease {
  readonly key: string;
  readonly mailboxId: string;
  readonly token: string;
  readonly fence: number;
  readonly signal: AbortSignal;
  /** The index this lease lives in (the store checks that it is its own). */
  readonly index: RedisIndex;
  readonly #controller = new AbortController();
  readonly #ttlMs: number;
  readonly #onLost: ((key: string, reason: string) => void) | undefined;
  #listing: MessageMeta[] | null;
  #held = true;
  /** The lock is already gone in Redis (a commit released it): release() has nothing to do. */
  #releasedRemotely = false;
  #expiresAt: number;
  #renewTimer: NodeJS.Timeout | undefined;
  #lapseTimer: NodeJS.Timeout | undefined;

  constructor(init: {
    key: string;
    mailboxId: string;
    token: string;
    fence: number;
    listing: MessageMeta[];
    index: RedisIndex;
    ttlMs: number;
    acquiredAt: number;
    onLost?: (key: string, reason: string) => void;
  }) {
    this.key = init.key;
    this.mailboxId = init.mailboxId;
    this.token = init.token;
    this.fence = init.fence;
    this.index = init.index;
    this.signal = this.#controller.signal;
    this.#listing = init.listing;
    this.#ttlMs = init.ttlMs;
    this.#onLost = init.onLost;
    this.#expiresAt = init.acquiredAt + this.#safeTtl();
    this.#armLapse();
    this.#scheduleRenewal(Math.floor(this.#ttlMs / 3));
  }

  /** Local expiry, a little before Redis's own (the request started before Redis set the TTL). */
  #safeTtl(): number {
    return this.#ttlMs - Math.min(Math.floor(this.#ttlMs / 20), 1_000);
  }

  held(): boolean {
    return this.#held && Date.now() < this.#expiresAt;
  }

  /** The listing read when the lock was taken, once (null the second time). */
  takeListing(): MessageMeta[] | null {
    const l = this.#listing;
    this.#listing = null;
    return l;
  }

  /** A commit script released the lock in Redis: stop renewing; release() will do nothing remote. */
  releasedByCommit(): void {
    this.#releasedRemotely = true;
    this.#stop('released');
  }

  /** The lock was found not ours (commit refused): the lease is lost. */
  lost(reason: string): void {
    if (!this.#held) return;
    this.#stop(reason);
    this.#onLost?.(this.key, reason);
  }

  async release(): Promise<void> {
    const wasHeld = this.#held;
    this.#stop('released');
    if (this.#releasedRemotely) return;
    this.#releasedRemotely = true;
    // Also after a local lapse: if Redis still has our token (clock margin), free it now.
    if (wasHeld || Date.now() < this.#expiresAt + this.#ttlMs) await this.index.release(this.mailboxId, this.token);
  }

  #stop(reason: string): void {
    this.#held = false;
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#lapseTimer);
    if (!this.#controller.signal.aborted) this.#controller.abort(new Error(`maildrop lease ${reason}`));
  }

  #armLapse(): void {
    clearTimeout(this.#lapseTimer);
    const wait = Math.max(0, this.#expiresAt - Date.now());
    this.#lapseTimer = setTimeout(() => this.lost('lapsed before renewal'), wait);
    this.#lapseTimer.unref();
  }

  #scheduleRenewal(delay: number): void {
    this.#renewTimer = setTimeout(() => void this.#renew(), delay);
    this.#renewTimer.unref();
  }

  async #renew(): Promise<void> {
    if (!this.#held) return;
    const started = Date.now();
    let ok: boolean;
    try {
      ok = await this.index.renew(this.mailboxId, this.token, this.#ttlMs);
    } catch {
      // Redis unreachable: try again soon; the lapse timer ends the lease if this goes on.
      if (this.#held) this.#scheduleRenewal(Math.max(50, Math.floor(this.#ttlMs / 10)));
      return;
    }
    if (!this.#held) return;
    if (!ok) {
      this.lost('taken over or expired');
      return;
    }
    this.#expiresAt = started + this.#safeTtl();
    this.#armLapse();
    this.#scheduleRenewal(Math.floor(this.#ttlMs / 3));
  }
}

/** The cluster `LockManager`: maildrop leases in Redis, fenced, renewed, with the listing attached. */
export class RedisLockManager implements LockManager {
  readonly kind = 'redis';
  readonly index: RedisIndex;
  readonly ttlMs: number;
  readonly #mailboxOf: (key: string) => string;
  readonly #onLost: ((key: string, reason: string) => void) | undefined;

  constructor(index: RedisIndex, options: RedisLockManagerOptions = {}) {
    this.index = index;
    this.ttlMs = options.ttlMs ?? 30_000;
    if (!Number.isInteger(this.ttlMs) || this.ttlMs < 30) throw new RangeError(`lock TTL must be at least 30 ms, got ${this.ttlMs}`);
    this.#mailboxOf = options.mailboxOf ?? defaultMailboxOf;
    this.#onLost = options.onLost;
  }

  /** One round trip: the lock, a new fencing token and the mailbox listing; null when taken. */
  async acquire(key: string): Promise<RedisLease | null> {
    const mailboxId = this.#mailboxOf(key);
    const token = randomBytes(16).toString('base64url');
    const acquiredAt = Date.now();
    const got = await this.index.acquire(mailboxId, token, this.ttlMs);
    if (got === null) return null;
    return new RedisLease({
      key,
      mailboxId,
      token,
      fence: got.fence,
      listing: got.messages,
      index: this.index,
      ttlMs: this.ttlMs,
      acquiredAt,
      ...(this.#onLost ? { onLost: this.#onLost } : {}),
    });
  }
}

/** RFC 2449 LOGIN-DELAY across the cluster: one `SET NX PX` per login. */
export class RedisLoginDelayGate implements LoginDelayGate {
  readonly #index: RedisIndex;
  constructor(index: RedisIndex) {
    this.#index = index;
  }
  admit(mailboxId: string, delayMs: number): Promise<boolean> {
    return this.#index.admitLogin(mailboxId, delayMs);
  }
}
