/**
 * CredentialCache: remembers recent verification results so that clients polling every
 * minute, and storms of polls with a wrong password, do not each cost a slow hash.
 *
 * Entries are keyed by HMAC-SHA256(random per-process key, username NUL password): the
 * password itself is never stored, a different password for the same user is a different key,
 * and the keys mean nothing outside this process. Successes live `ttlMs`, definite failures
 * ('invalid', 'refused') `negativeTtlMs`; 'temporary' results and errors are never cached.
 * Concurrent verifications of the same credentials share one backend call.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { abortReason } from './errors.js';
import { TtlLru } from './ttl-lru.js';
import type { Account, AccountBackend, ApopCredentials, AuthResult, PasswordCredentials } from './types.js';

export interface CredentialCacheOptions {
  /** How long a successful verification is reused. Default 60 000 ms. */
  readonly ttlMs?: number;
  /** Most successful verifications kept (least recently used go first). Default 100 000. */
  readonly maxEntries?: number;
  /** How long an 'invalid' or 'refused' result is reused. Default 10 000 ms. */
  readonly negativeTtlMs?: number;
  /** Most failures kept. Default 10 000. */
  readonly maxNegativeEntries?: number;
  /** Clock (tests). */
  readonly now?: () => number;
}

export interface CredentialCacheStats {
  readonly entries: number;
  readonly negativeEntries: number;
  readonly hits: number;
  readonly negativeHits: number;
  readonly misses: number;
}

interface Flight {
  readonly promise: Promise<AuthResult>;
  readonly controller: AbortController;
  waiters: number;
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

export class CredentialCache implements AccountBackend {
  readonly backend: AccountBackend;
  private readonly key = randomBytes(32);
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;
  private readonly now: () => number;
  private readonly positive: TtlLru<AuthResult>;
  private readonly negative: TtlLru<AuthResult>;
  private readonly inflight = new Map<string, Flight>();
  private counters = { hits: 0, negativeHits: 0, misses: 0 };
  /** Present when the wrapped backend has it (ChainBackend relies on it). */
  readonly hasLogin?: (username: string, signal?: AbortSignal) => Promise<boolean>;

  constructor(backend: AccountBackend, options: CredentialCacheOptions = {}) {
    this.backend = backend;
    this.ttlMs = options.ttlMs ?? 60_000;
    this.negativeTtlMs = options.negativeTtlMs ?? 10_000;
    this.positive = new TtlLru(options.maxEntries ?? 100_000);
    this.negative = new TtlLru(options.maxNegativeEntries ?? 10_000);
    this.now = options.now ?? Date.now;
    const inner = backend.hasLogin?.bind(backend);
    if (inner !== undefined) this.hasLogin = inner;
  }

  get name(): string {
    return this.backend.name;
  }

  get stats(): CredentialCacheStats {
    return { entries: this.positive.size, negativeEntries: this.negative.size, ...this.counters };
  }

  /** Forget everything (e.g. after the password file changed). */
  clear(): void {
    this.positive.clear();
    this.negative.clear();
  }

  async verifyPassword(credentials: PasswordCredentials, signal?: AbortSignal): Promise<AuthResult> {
    if (signal?.aborted) throw abortReason(signal);
    const { username, password } = credentials;
    // Nothing to gain for empty passwords; a NUL in the name would make the key ambiguous.
    if (password.length === 0 || username.includes('\0')) return this.backend.verifyPassword(credentials, signal);
    const key = createHmac('sha256', this.key).update(`${username}\0${password}`, 'utf8').digest('base64');
    const now = this.now();
    const hit = this.positive.get(key, now);
    if (hit !== undefined) {
      this.counters.hits++;
      return hit;
    }
    const miss = this.negative.get(key, now);
    if (miss !== undefined) {
      this.counters.negativeHits++;
      return miss;
    }
    this.counters.misses++;
    return this.shared(key, credentials, signal);
  }

  supportsApop(): boolean {
    return this.backend.supportsApop();
  }

  /** Not cached: each APOP digest is bound to a fresh banner timestamp. */
  verifyApop(credentials: ApopCredentials, signal?: AbortSignal): Promise<AuthResult> {
    return this.backend.verifyApop(credentials, signal);
  }

  lookup(address: string, signal?: AbortSignal): Promise<Account | null> {
    return this.backend.lookup(address, signal);
  }

  async close(): Promise<void> {
    this.clear();
    await this.backend.close?.();
  }

  private async shared(key: string, credentials: PasswordCredentials, signal: AbortSignal | undefined): Promise<AuthResult> {
    let flight = this.inflight.get(key);
    if (flight === undefined) {
      const controller = new AbortController();
      const promise = this.backend.verifyPassword(credentials, controller.signal).then((result) => {
        this.remember(key, result);
        return result;
      });
      const created: Flight = { promise, controller, waiters: 0 };
      // Nobody may be waiting when it settles (all aborted): do not leave a rejection unhandled.
      promise
        .catch(() => undefined)
        .finally(() => {
          if (this.inflight.get(key) === created) this.inflight.delete(key);
        });
      this.inflight.set(key, created);
      flight = created;
    }
    const current = flight;
    current.waiters++;
    try {
      return await raceAbort(current.promise, signal);
    } finally {
      current.waiters--;
      if (current.waiters === 0 && signal?.aborted) {
        // The last caller gave up: stop the backend work and let the next caller start afresh.
        if (this.inflight.get(key) === current) this.inflight.delete(key);
        current.controller.abort(signal.reason);
      }
    }
  }

  private remember(key: string, result: AuthResult): void {
    const now = this.now();
    if (result.ok) {
      this.positive.set(key, result, now + this.ttlMs);
      this.negative.delete(key);
    } else if (result.failure !== 'temporary') {
      this.negative.set(key, result, now + this.negativeTtlMs);
    }
  }
}
