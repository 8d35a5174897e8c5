/**
 * The login throttle in Redis (cluster mode): the same rules as ThrottleTable (see throttle.ts),
 * shared by every pod.
 *
 * Keys (all of one subject share a hash tag, so each script stays in one Cluster slot):
 *   <prefix>{ip:<address>}            failures from an address (INCR, PEXPIRE sliding window)
 *   <prefix>{u:<account>}             failures for an account
 *   <prefix>{u:<account>}:t:<address> the pair logged in successfully (trusted until it expires)
 * A check is two short Lua scripts (address subject, account subject) sent together without
 * waiting: one round trip on a single server, and in a Cluster two requests in parallel.
 */
import type { Cluster, Redis } from 'ioredis';
import {
  DEFAULT_THROTTLE_LIMITS,
  accountKey,
  addressKey,
  countsAddress,
  throttleVerdict,
  validateThrottleLimits,
  type CounterState,
  type LoginAttempt,
  type LoginThrottle,
  type ThrottleLimits,
  type ThrottleVerdict,
} from './throttle.js';

/** KEYS: counter [, trusted pair]. Returns {count, ttl ms, trusted 0/1}. */
const CHECK = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = 0
if n > 0 then ttl = redis.call('PTTL', KEYS[1]) end
local t = 0
if KEYS[2] then t = redis.call('EXISTS', KEYS[2]) end
return {n, ttl, t}`;

/** KEYS: counter. ARGV: window ms, block ms, limit. Returns the new count. Same rule as counterTtl(). */
const FAILURE = `
local n = redis.call('INCR', KEYS[1])
local ttl = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
if limit > 0 and n >= limit then ttl = math.max(ttl, tonumber(ARGV[2])) end
redis.call('PEXPIRE', KEYS[1], ttl)
return n`;

/** KEYS: account counter, trusted pair. ARGV: trust ms. */
const SUCCESS = `
redis.call('DEL', KEYS[1])
if tonumber(ARGV[1]) > 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[1]) end
return 1`;

interface ThrottleCommands {
  posternThrottleCheck(...args: (string | number)[]): Promise<[number, number, number]>;
  posternThrottleFailure(...args: (string | number)[]): Promise<number>;
  posternThrottleSuccess(...args: (string | number)[]): Promise<number>;
}

export interface RedisLoginThrottleOptions {
  /** Key prefix; default `postern:throttle:`. */
  readonly prefix?: string;
  readonly limits?: ThrottleLimits;
}

export class RedisLoginThrottle implements LoginThrottle {
  readonly limits: ThrottleLimits;
  readonly #redis: ThrottleCommands;
  readonly #prefix: string;

  /** `redis` stays the caller's: `close()` does not quit it. */
  constructor(redis: Redis | Cluster, options: RedisLoginThrottleOptions = {}) {
    this.limits = validateThrottleLimits(options.limits ?? DEFAULT_THROTTLE_LIMITS);
    this.#prefix = options.prefix ?? 'postern:throttle:';
    // defineCommand sends EVALSHA and falls back to EVAL once per connection (NOSCRIPT).
    redis.defineCommand('posternThrottleCheck', { lua: CHECK, readOnly: true });
    redis.defineCommand('posternThrottleFailure', { lua: FAILURE, numberOfKeys: 1 });
    redis.defineCommand('posternThrottleSuccess', { lua: SUCCESS, numberOfKeys: 2 });
    this.#redis = redis as unknown as ThrottleCommands;
  }

  #keys(attempt: LoginAttempt): { ip: string; user: string; trusted: string } {
    const ip = addressKey(attempt.ip);
    const user = `${this.#prefix}{u:${accountKey(attempt.username)}}`;
    return { ip: `${this.#prefix}{ip:${ip}}`, user, trusted: `${user}:t:${ip}` };
  }

  async checkLogin(attempt: LoginAttempt): Promise<ThrottleVerdict> {
    const k = this.#keys(attempt);
    const counted = countsAddress(attempt.ip);
    const [ip, user] = await Promise.all([
      counted ? this.#redis.posternThrottleCheck(1, k.ip) : ([0, 0, 0] as [number, number, number]),
      this.#redis.posternThrottleCheck(2, k.user, k.trusted),
    ]);
    const state = (r: [number, number, number]): CounterState => ({ count: Number(r[0]), ttlMs: Math.max(0, Number(r[1])) });
    return throttleVerdict(this.limits, state(ip), state(user), Number(user[2]) === 1);
  }

  async recordFailure(attempt: LoginAttempt): Promise<void> {
    const k = this.#keys(attempt);
    const { windowMs, blockMs, ipFailures, userFailures } = this.limits;
    await Promise.all([
      countsAddress(attempt.ip) ? this.#redis.posternThrottleFailure(k.ip, windowMs, blockMs, ipFailures) : null,
      this.#redis.posternThrottleFailure(k.user, windowMs, blockMs, userFailures),
    ]);
  }

  async recordSuccess(attempt: LoginAttempt): Promise<void> {
    const k = this.#keys(attempt);
    await this.#redis.posternThrottleSuccess(k.user, k.trusted, this.limits.trustMs);
  }
}
