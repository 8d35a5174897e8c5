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

/**
 * A second cache level shared by every process of a cluster (Redis). Values are opaque strings
 * with a time to live; errors are the caller's to swallow (the shared level is an optimisation).
 */
export interface SharedCredentialStore {
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ttlMs: number): Promise<void>;
}

export interface CredentialCacheOptions {
  /**
   * Share verification results between processes. `secret` (the same in every process, kept out
   * of the shared store) keys the entries: HMAC-SHA256(secret, username NUL password), so the
   * store holds neither passwords nor anything that can be checked against one without it.
   */
  readonly shared?: { readonly store: SharedCredentialStore; readonly secret: Buffer };
  /**
   * Part of every key: when it changes, earlier entries (local and shared) are never used again.
   * The server passes a digest of the password file, so an edited file takes effect at once in
   * every process, not when the shared entries expire.
   */
  readonly generation?: () => string;
  /** Called once per lookup with where the answer came from (for a metric). */
  readonly onLookup?: (result: 'hit' | 'negative_hit' | 'shared_hit' | 'miss') => void;
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
  /** Local misses answered by the shared level. */
  readonly sharedHits: number;
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
  private readonly key: Buffer;
  private readonly sharedStore: SharedCredentialStore | null;
  private readonly generation: () => string;
  private readonly onLookup: (result: 'hit' | 'negative_hit' | 'shared_hit' | 'miss') => void;
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;
  private readonly now: () => number;
  private readonly positive: TtlLru<AuthResult>;
  private readonly negative: TtlLru<AuthResult>;
  private readonly inflight = new Map<string, Flight>();
  private counters = { hits: 0, negativeHits: 0, misses: 0, sharedHits: 0 };
  /** Present when the wrapped backend has it (ChainBackend relies on it). */
  readonly hasLogin?: (username: string, signal?: AbortSignal) => Promise<boolean>;

  constructor(backend: AccountBackend, options: CredentialCacheOptions = {}) {
    this.backend = backend;
    this.ttlMs = options.ttlMs ?? 60_000;
    this.negativeTtlMs = options.negativeTtlMs ?? 10_000;
    this.positive = new TtlLru(options.maxEntries ?? 100_000);
    this.negative = new TtlLru(options.maxNegativeEntries ?? 10_000);
    this.now = options.now ?? Date.now;
    this.key = options.shared?.secret ?? randomBytes(32);
    this.sharedStore = options.shared?.store ?? null;
    this.generation = options.generation ?? (() => '');
    this.onLookup = options.onLookup ?? (() => undefined);
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
    const key = createHmac('sha256', this.key).update(`${this.generation()}\0${username}\0${password}`, 'utf8').digest('base64');
    const now = this.now();
    const hit = this.positive.get(key, now);
    if (hit !== undefined) {
      this.counters.hits++;
      this.onLookup('hit');
      return hit;
    }
    const miss = this.negative.get(key, now);
    if (miss !== undefined) {
      this.counters.negativeHits++;
      this.onLookup('negative_hit');
      return miss;
    }
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
      const promise = this.fromShared(key).then(async (known) => {
        if (known !== null) {
          this.onLookup('shared_hit');
          return known;
        }
        this.counters.misses++;
        this.onLookup('miss');
        const result = await this.backend.verifyPassword(credentials, controller.signal);
        this.remember(key, result);
        this.share(key, result);
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

  /** The shared level's answer, remembered locally; null on a miss or any error. */
  private async fromShared(key: string): Promise<AuthResult | null> {
    if (this.sharedStore === null) return null;
    let text: string | null;
    try {
      text = await this.sharedStore.get(key);
    } catch {
      return null;
    }
    const result = text === null ? null : parseShared(text);
    if (result === null) return null;
    this.counters.sharedHits++;
    this.remember(key, result);
    return result;
  }

  private share(key: string, result: AuthResult): void {
    if (this.sharedStore === null || (!result.ok && result.failure === 'temporary')) return;
    const ttl = result.ok ? this.ttlMs : this.negativeTtlMs;
    this.sharedStore.set(key, JSON.stringify(result), ttl).catch(() => undefined);
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

/** A shared entry back to a result; anything unexpected is a miss, never a login. */
function parseShared(text: string): AuthResult | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const v = value as { ok?: unknown; account?: Record<string, unknown>; failure?: unknown; reason?: unknown };
  if (v.ok === true && v.account && typeof v.account.username === 'string' && typeof v.account.mailboxId === 'string' && typeof v.account.backend === 'string') {
    return { ok: true, account: v.account as unknown as Account };
  }
  if (v.ok === false && (v.failure === 'invalid' || v.failure === 'refused')) {
    return { ok: false, failure: v.failure, reason: `${typeof v.reason === 'string' ? v.reason : 'failed'} (shared cache)` };
  }
  return null;
}
