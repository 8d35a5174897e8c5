/**
 * Brute-force protection for logins: failed-login counters per client address and per account.
 *
 * Rules (the same for every implementation; see docs/decisions.md):
 * - A failure counts for the client address and for the account (the user name as typed,
 *   lower-cased). Counters never hold a password. A counter is forgotten `windowMs` after its
 *   latest failure (a sliding window, like Active Directory's lockout observation window).
 * - Below the limit, each attempt waits a delay growing with the counter (up to `maxDelayMs` at
 *   the limit). At the limit the subject is refused without verifying anything, for at least
 *   `blockMs` after the failure that reached it (and `windowMs` after the latest failure).
 * - A successful login resets the account's counter (the directory resets its own on success
 *   too) but not the address's, and makes the pair (address, account) trusted for `trustMs`: a
 *   trusted pair ignores the account's counter, so an attacker spraying one account from other
 *   addresses cannot lock out the owner's usual client. The address counter still applies.
 * - IPv4-mapped IPv6 addresses count as IPv4; other IPv6 addresses count per /64 (one customer
 *   gets a whole /64). Loopback clients have no address counter (see countsAddress).
 */

import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';

export interface ThrottleLimits {
  /** Failures from one client address before its logins are refused; 0: no address limit. */
  readonly ipFailures: number;
  /** Failures for one account before its logins (from untrusted addresses) are refused; 0: no limit. */
  readonly userFailures: number;
  /** A counter is forgotten this long after its latest failure. */
  readonly windowMs: number;
  /** Once a limit is reached, refuse for at least this long. */
  readonly blockMs: number;
  /** A successful login trusts its (address, account) pair this long; 0: no trust. */
  readonly trustMs: number;
  /** Delay before verifying when a counter is one short of its limit; lower counts wait less. */
  readonly maxDelayMs: number;
}

export const DEFAULT_THROTTLE_LIMITS: ThrottleLimits = Object.freeze({
  ipFailures: 50,
  userFailures: 4,
  windowMs: 30 * 60_000,
  blockMs: 30 * 60_000,
  trustMs: 7 * 86_400_000,
  maxDelayMs: 4_000,
});

export interface LoginAttempt {
  /** The client address (after the PROXY protocol). */
  readonly ip: string;
  /** The user name as the client typed it. */
  readonly username: string;
}

export type ThrottleReason = 'ip' | 'user';

export type ThrottleVerdict =
  | { readonly allowed: true; /** Wait this long before verifying. */ readonly delayMs: number }
  | {
      readonly allowed: false;
      /** Wait this long before answering (a refusal costs the client as much as a failure). */
      readonly delayMs: number;
      readonly reason: ThrottleReason;
      /** When the refusal ends at the earliest (for the log). */
      readonly retryAfterMs: number;
    };

/** Ask before verifying credentials; report the result after. */
export interface LoginThrottle {
  checkLogin(attempt: LoginAttempt): Promise<ThrottleVerdict>;
  /** Wrong password, unknown user, or an account that may not log in. */
  recordFailure(attempt: LoginAttempt): Promise<void>;
  recordSuccess(attempt: LoginAttempt): Promise<void>;
  close?(): Promise<void>;
}

/** Check that limits make sense; throws a RangeError naming the field. */
export function validateThrottleLimits(limits: ThrottleLimits): ThrottleLimits {
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`throttle limit ${key} must be a whole number >= 0, got ${value}`);
  }
  if (limits.windowMs === 0) throw new RangeError('throttle limit windowMs must be > 0');
  return Object.freeze({ ...limits });
}

/** The address key: IPv4 as is (also when IPv4-mapped), IPv6 by its /64 prefix. */
export function addressKey(ip: string): string {
  const a = ip.toLowerCase().startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
  if (isIPv4(a) || !isIPv6(a)) return a;
  const [head = '', tail = ''] = a.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  if (right.length > 0 && isIPv4(right[right.length - 1]!)) right.splice(-1, 1, '0', '0');
  const groups = a.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/**
 * Whether failures from this address count against it: not for loopback clients, which are
 * local programs (webmail, monitoring) speaking for many users. The account counter still applies.
 */
export function countsAddress(ip: string): boolean {
  const a = addressKey(ip);
  return !(a.startsWith('127.') || a === '0:0:0:0::/64');
}

/**
 * The account key: the name as typed, lower-cased. Names that are long or hold characters that
 * would break a Redis hash tag or a log line are replaced by their SHA-256, so keys stay short.
 */
export function accountKey(username: string): string {
  const lower = username.toLowerCase();
  if (lower.length <= 128 && /^[\x21-\x7a|~]+$/.test(lower)) return lower;
  return `sha256:${createHash('sha256').update(lower, 'utf8').digest('hex')}`;
}

/** What one subject's counter says: the failures remembered and how long until they are forgotten. */
export interface CounterState {
  readonly count: number;
  readonly ttlMs: number;
}

const NONE: CounterState = Object.freeze({ count: 0, ttlMs: 0 });

/** The decision, from the two counters and whether the pair is trusted (shared by every implementation). */
export function throttleVerdict(limits: ThrottleLimits, ip: CounterState, user: CounterState, trusted: boolean): ThrottleVerdict {
  const userState = trusted ? NONE : user;
  const over = (state: CounterState, limit: number): boolean => limit > 0 && state.count >= limit;
  if (over(ip, limits.ipFailures)) return { allowed: false, delayMs: limits.maxDelayMs, reason: 'ip', retryAfterMs: ip.ttlMs };
  if (over(userState, limits.userFailures)) {
    return { allowed: false, delayMs: limits.maxDelayMs, reason: 'user', retryAfterMs: userState.ttlMs };
  }
  const delay = (state: CounterState, limit: number): number =>
    limit > 0 && state.count > 0 ? Math.round((limits.maxDelayMs * state.count) / limit) : 0;
  return { allowed: true, delayMs: Math.max(delay(ip, limits.ipFailures), delay(userState, limits.userFailures)) };
}

/** How long a counter lives after a failure that brought it to `count`. */
export function counterTtl(limits: ThrottleLimits, count: number, limit: number): number {
  return limit > 0 && count >= limit ? Math.max(limits.windowMs, limits.blockMs) : limits.windowMs;
}

/**
 * A capped map whose entries expire, in two generations: writes go to the current one; when it
 * holds half the capacity it becomes the previous one and the old previous one is dropped whole.
 * Every operation is O(1) (no scan for the oldest entry), at most `capacity` entries are kept,
 * and what goes first is what was written longest ago.
 */
class ExpiringMap<V> {
  #current = new Map<string, { value: V; expires: number }>();
  #previous = new Map<string, { value: V; expires: number }>();
  readonly #half: number;
  constructor(capacity: number) {
    this.#half = Math.max(1, Math.floor(capacity / 2));
  }

  get(key: string, now: number): { value: V; expires: number } | undefined {
    const e = this.#current.get(key) ?? this.#previous.get(key);
    if (e !== undefined && e.expires <= now) {
      this.delete(key);
      return undefined;
    }
    return e;
  }

  set(key: string, value: V, expires: number): void {
    this.#previous.delete(key);
    this.#current.set(key, { value, expires });
    if (this.#current.size >= this.#half) {
      this.#previous = this.#current;
      this.#current = new Map();
    }
  }

  delete(key: string): void {
    this.#current.delete(key);
    this.#previous.delete(key);
  }

  get size(): number {
    return this.#current.size + this.#previous.size;
  }
}

export interface ThrottleTableOptions {
  /** Most entries per table (address counters, account counters, trusted pairs). Default 100 000. */
  readonly maxEntries?: number;
  readonly now?: () => number;
}

/**
 * The counters in one process: synchronous, bounded (a capped map per kind, oldest written
 * first out, expired entries dropped as they are met or with their generation). The primary of
 * a multi-process node keeps one for all its workers. When full, flooding it with new names can
 * push out an old counter early; the cap is sized so that takes far more attempts than the
 * address limit allows.
 */
export class ThrottleTable {
  readonly limits: ThrottleLimits;
  readonly #ips: ExpiringMap<number>;
  readonly #users: ExpiringMap<number>;
  readonly #trusted: ExpiringMap<true>;
  readonly #now: () => number;

  constructor(limits: ThrottleLimits = DEFAULT_THROTTLE_LIMITS, options: ThrottleTableOptions = {}) {
    this.limits = validateThrottleLimits(limits);
    const max = options.maxEntries ?? 100_000;
    this.#ips = new ExpiringMap(max);
    this.#users = new ExpiringMap(max);
    this.#trusted = new ExpiringMap(max);
    this.#now = options.now ?? Date.now;
  }

  check(attempt: LoginAttempt): ThrottleVerdict {
    const now = this.#now();
    const ip = addressKey(attempt.ip);
    const user = accountKey(attempt.username);
    const state = (map: ExpiringMap<number>, key: string): CounterState => {
      const e = map.get(key, now);
      return e === undefined ? NONE : { count: e.value, ttlMs: e.expires - now };
    };
    const trusted = this.#trusted.get(`${user}\n${ip}`, now) !== undefined;
    const ipState = countsAddress(attempt.ip) ? state(this.#ips, ip) : NONE;
    return throttleVerdict(this.limits, ipState, state(this.#users, user), trusted);
  }

  recordFailure(attempt: LoginAttempt): void {
    const now = this.#now();
    const bump = (map: ExpiringMap<number>, key: string, limit: number): void => {
      const count = (map.get(key, now)?.value ?? 0) + 1;
      map.set(key, count, now + counterTtl(this.limits, count, limit));
    };
    if (countsAddress(attempt.ip)) bump(this.#ips, addressKey(attempt.ip), this.limits.ipFailures);
    bump(this.#users, accountKey(attempt.username), this.limits.userFailures);
  }

  recordSuccess(attempt: LoginAttempt): void {
    const now = this.#now();
    const user = accountKey(attempt.username);
    this.#users.delete(user);
    if (this.limits.trustMs > 0) {
      this.#trusted.set(`${user}\n${addressKey(attempt.ip)}`, true, now + this.limits.trustMs);
    }
  }

  /** Entries held (address counters, account counters, trusted pairs), for tests and metrics. */
  get size(): { ips: number; users: number; trusted: number } {
    return { ips: this.#ips.size, users: this.#users.size, trusted: this.#trusted.size };
  }
}

/** In-process throttle for one process. */
export class MemoryLoginThrottle implements LoginThrottle {
  readonly table: ThrottleTable;
  constructor(table: ThrottleTable = new ThrottleTable()) {
    this.table = table;
  }
  async checkLogin(attempt: LoginAttempt): Promise<ThrottleVerdict> {
    return this.table.check(attempt);
  }
  async recordFailure(attempt: LoginAttempt): Promise<void> {
    this.table.recordFailure(attempt);
  }
  async recordSuccess(attempt: LoginAttempt): Promise<void> {
    this.table.recordSuccess(attempt);
  }
}
