import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { pollUntil, startRedis, startRedisCluster, type RedisCluster, type RedisServer } from '@postern/testkit';
import {
  IpcLockManager,
  LockTable,
  MemoryLoginThrottle,
  RedisLoginThrottle,
  ThrottleTable,
  accountKey,
  addressKey,
  serveLocks,
  type LoginThrottle,
  type ThrottleLimits,
} from '../src/index.js';
import { channelPair } from './channel.js';

const LIMITS: ThrottleLimits = { ipFailures: 6, userFailures: 3, windowMs: 600_000, blockMs: 900_000, trustMs: 3_600_000, maxDelayMs: 3_000 };

let unique = 0;
/** Names unique per case, so implementations backed by one shared server do not see each other. */
function names(): { user: string; ip: (n: number) => string } {
  unique += 1;
  const tag = `${process.pid}x${unique}`;
  return { user: `user${tag}`, ip: (n) => `10.${unique % 250}.${n}.${process.pid % 250}` };
}

/** The behaviour every implementation must have, with long windows (no expiry during the test). */
function conformance(label: string, make: () => LoginThrottle | Promise<LoginThrottle>): void {
  describe(`${label}: shared rules`, () => {
    it('account failures from one address: growing delays, then refusal (reason user)', async () => {
      const t = await make();
      const { user, ip } = names();
      const attempt = { ip: ip(1), username: user };
      assert.deepEqual(await t.checkLogin(attempt), { allowed: true, delayMs: 0 });
      const delays: number[] = [];
      for (let i = 0; i < LIMITS.userFailures; i++) {
        await t.recordFailure(attempt);
        const v = await t.checkLogin(attempt);
        if (v.allowed) delays.push(v.delayMs);
        else {
          assert.equal(v.reason, 'user');
          assert.equal(v.delayMs, LIMITS.maxDelayMs);
          assert.ok(v.retryAfterMs > LIMITS.windowMs && v.retryAfterMs <= LIMITS.blockMs, `retryAfter ${v.retryAfterMs}`);
        }
      }
      assert.deepEqual(delays, [1_000, 2_000]);
      const last = await t.checkLogin(attempt);
      assert.equal(last.allowed, false);
      // The name counts case-insensitively; another account from another address is not affected.
      assert.equal((await t.checkLogin({ ip: ip(2), username: user.toUpperCase() })).allowed, false);
      assert.deepEqual(await t.checkLogin({ ip: ip(2), username: `${user}-other` }), { allowed: true, delayMs: 0 });
    });

    it('address failures over many accounts: refusal for every account from that address only', async () => {
      const t = await make();
      const { user, ip } = names();
      for (let i = 0; i < LIMITS.ipFailures; i++) await t.recordFailure({ ip: ip(1), username: `${user}-${i}` });
      const v = await t.checkLogin({ ip: ip(1), username: `${user}-fresh` });
      assert.equal(v.allowed, false);
      assert.equal(!v.allowed && v.reason, 'ip');
      assert.deepEqual(await t.checkLogin({ ip: ip(2), username: `${user}-fresh` }), { allowed: true, delayMs: 0 });
    });

    it('loopback clients have no address counter; their account failures still count', async () => {
      const t = await make();
      const { user } = names();
      for (let i = 0; i < LIMITS.ipFailures + 2; i++) await t.recordFailure({ ip: '127.0.0.1', username: `${user}-${i}` });
      assert.deepEqual(await t.checkLogin({ ip: '127.0.0.1', username: `${user}-fresh` }), { allowed: true, delayMs: 0 });
      assert.deepEqual(await t.checkLogin({ ip: '::1', username: `${user}-fresh` }), { allowed: true, delayMs: 0 });
      for (let i = 0; i < LIMITS.userFailures; i++) await t.recordFailure({ ip: '::ffff:127.0.0.1', username: user });
      assert.equal((await t.checkLogin({ ip: '127.0.0.1', username: user })).allowed, false);
    });

    it('a success resets the account counter, not the address counter, and trusts the pair', async () => {
      const t = await make();
      const { user, ip } = names();
      const home = { ip: ip(1), username: user };
      await t.recordFailure(home);
      await t.recordFailure(home);
      await t.recordSuccess(home);
      // Account counter gone; the address's two failures still delay.
      assert.deepEqual(await t.checkLogin({ ip: ip(2), username: user }), { allowed: true, delayMs: 0 });
      assert.deepEqual(await t.checkLogin({ ip: ip(1), username: `${user}-x` }), { allowed: true, delayMs: 1_000 });
    });

    it('spraying one account from other addresses does not refuse its trusted address', async () => {
      const t = await make();
      const { user, ip } = names();
      const owner = { ip: ip(1), username: user };
      await t.recordSuccess(owner);
      for (let i = 0; i < LIMITS.userFailures; i++) await t.recordFailure({ ip: ip(10 + i), username: user });
      const attacker = await t.checkLogin({ ip: ip(99), username: user });
      assert.equal(attacker.allowed, false);
      assert.deepEqual(await t.checkLogin(owner), { allowed: true, delayMs: 0 });
      // The owner's address is still subject to its own address counter.
      for (let i = 0; i < LIMITS.ipFailures; i++) await t.recordFailure({ ip: ip(1), username: `${user}-guess${i}` });
      const blocked = await t.checkLogin(owner);
      assert.equal(!blocked.allowed && blocked.reason, 'ip');
    });
  });
}

describe('ThrottleTable rules over time', () => {
  it('the window slides from the latest failure; a reached limit holds for the block time', () => {
    let now = 0;
    const table = new ThrottleTable({ ...LIMITS, windowMs: 1_000, blockMs: 5_000 }, { now: () => now });
    const a = { ip: '192.0.2.1', username: 'alice' };
    table.recordFailure(a);
    now += 900;
    table.recordFailure(a);
    now += 900; // 1.8 s after the first, 0.9 s after the latest: still remembered
    assert.deepEqual(table.check(a), { allowed: true, delayMs: 2_000 });
    now += 1_000; // forgotten
    assert.deepEqual(table.check(a), { allowed: true, delayMs: 0 });
    for (let i = 0; i < 3; i++) table.recordFailure(a);
    now += 4_999;
    assert.equal(table.check(a).allowed, false);
    now += 1;
    assert.deepEqual(table.check(a), { allowed: true, delayMs: 0 });
  });

  it('trust expires', () => {
    let now = 0;
    const table = new ThrottleTable({ ...LIMITS, trustMs: 1_000 }, { now: () => now });
    table.recordSuccess({ ip: '192.0.2.1', username: 'alice' });
    for (let i = 0; i < 3; i++) table.recordFailure({ ip: `198.51.100.${i}`, username: 'alice' });
    assert.equal(table.check({ ip: '192.0.2.1', username: 'alice' }).allowed, true);
    now += 1_000;
    assert.equal(table.check({ ip: '192.0.2.1', username: 'alice' }).allowed, false);
  });

  it('memory stays bounded: a flood of names keeps at most maxEntries per table', () => {
    const table = new ThrottleTable(LIMITS, { maxEntries: 100 });
    for (let i = 0; i < 10_000; i++) table.recordFailure({ ip: `10.0.${i >> 8}.${i & 255}`, username: `u${i}` });
    for (let i = 0; i < 10_000; i++) table.recordSuccess({ ip: `10.1.${i >> 8}.${i & 255}`, username: `v${i}` });
    for (const n of Object.values(table.size)) assert.ok(n >= 50 && n <= 100, `entries ${JSON.stringify(table.size)}`);
    // The newest entries are kept.
    assert.equal(table.check({ ip: '10.0.39.15', username: 'u9999' }).delayMs, 1_000);
  });

  it('limits of 0 turn a counter off', () => {
    const table = new ThrottleTable({ ...LIMITS, ipFailures: 0, userFailures: 0 });
    for (let i = 0; i < 20; i++) table.recordFailure({ ip: '192.0.2.1', username: 'alice' });
    assert.deepEqual(table.check({ ip: '192.0.2.1', username: 'alice' }), { allowed: true, delayMs: 0 });
  });

  it('bad limits are refused with the field named', () => {
    assert.throws(() => new ThrottleTable({ ...LIMITS, windowMs: 0 }), /windowMs/);
    assert.throws(() => new ThrottleTable({ ...LIMITS, userFailures: -1 }), /userFailures/);
  });
});

describe('subject keys', () => {
  it('addresses: IPv4-mapped IPv6 is IPv4; IPv6 counts per /64', () => {
    assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(addressKey('192.0.2.7'), '192.0.2.7');
    assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:DB8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(addressKey('::1'), '0:0:0:0::/64');
  });

  it('accounts: lower-cased; names with braces, spaces or great length are hashed', () => {
    assert.equal(accountKey('Alice@Example.COM'), 'alice@example.com');
    assert.match(accountKey('a}b{c'), /^sha256:[0-9a-f]{64}$/);
    assert.match(accountKey('with space'), /^sha256:/);
    assert.match(accountKey('x'.repeat(200)), /^sha256:/);
    assert.equal(accountKey('ÄBC'), accountKey('äbc'));
  });
});

conformance('MemoryLoginThrottle', () => new MemoryLoginThrottle(new ThrottleTable(LIMITS)));

describe('IPC', () => {
  const table = new ThrottleTable(LIMITS);
  const locks = new LockTable();
  const workers = [1, 2].map((n) => {
    const [primary, worker] = channelPair();
    serveLocks(locks, `w${n}`, primary, undefined, table);
    return new IpcLockManager(worker);
  });
  let turn = 0;
  /** Alternate workers on every call: the counters must be the primary's, shared by both. */
  const alternating: LoginThrottle = {
    checkLogin: (a) => workers[turn++ % 2]!.checkLogin(a),
    recordFailure: (a) => workers[turn++ % 2]!.recordFailure(a),
    recordSuccess: (a) => workers[turn++ % 2]!.recordSuccess(a),
  };
  conformance('IpcLockManager (two workers, one primary)', () => alternating);

  it('a primary without a throttle answers with an error, not a verdict', async () => {
    const [primary, worker] = channelPair();
    serveLocks(new LockTable(), 'w', primary);
    await assert.rejects(new IpcLockManager(worker).checkLogin({ ip: '192.0.2.1', username: 'a' }), /no login throttle/);
  });
});

describe('RedisLoginThrottle on a real redis-server', () => {
  let server: RedisServer;
  let redis: Redis;
  before(async () => {
    server = await startRedis();
    redis = new Redis({ host: server.host, port: server.port, lazyConnect: true });
    await redis.connect();
  });
  after(async () => {
    redis?.disconnect();
    await server?.stop();
  });
  conformance('RedisLoginThrottle (single server)', () => new RedisLoginThrottle(redis, { limits: LIMITS }));

  it('keys: one hash tag per subject, window and block as PTTL, no password anywhere', async () => {
    const t = new RedisLoginThrottle(redis, { limits: LIMITS, prefix: 'keys-test:' });
    const a = { ip: '::ffff:203.0.113.5', username: 'Carol' };
    await t.recordFailure(a);
    await t.recordSuccess({ ip: '203.0.113.9', username: 'Dave' });
    const keys = (await redis.keys('keys-test:*')).sort();
    assert.deepEqual(keys, ['keys-test:{ip:203.0.113.5}', 'keys-test:{u:carol}', 'keys-test:{u:dave}:t:203.0.113.9']);
    const ttl = await redis.pttl('keys-test:{u:carol}');
    assert.ok(ttl > LIMITS.windowMs - 5_000 && ttl <= LIMITS.windowMs, `window ttl ${ttl}`);
    for (let i = 0; i < 2; i++) await t.recordFailure(a);
    const blocked = await redis.pttl('keys-test:{u:carol}');
    assert.ok(blocked > LIMITS.windowMs && blocked <= LIMITS.blockMs, `block ttl ${blocked}`);
    assert.equal(await redis.get('keys-test:{u:carol}'), '3');
  });

  it('a refusal lifts when the window passes (real expiry)', async () => {
    const t = new RedisLoginThrottle(redis, { limits: { ...LIMITS, windowMs: 300, blockMs: 300 }, prefix: 'expiry-test:' });
    const a = { ip: '203.0.113.7', username: 'erin' };
    for (let i = 0; i < LIMITS.userFailures; i++) await t.recordFailure(a);
    assert.equal((await t.checkLogin(a)).allowed, false);
    const v = await pollUntil('refusal lifted', 5_000, async () => ((await t.checkLogin(a)).allowed ? true : undefined));
    assert.equal(v, true);
  });

  it('Redis down: checks reject (the gateway answers [SYS/TEMP])', async () => {
    const dead = new Redis({ host: '127.0.0.1', port: 1, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
    const t = new RedisLoginThrottle(dead);
    await assert.rejects(t.checkLogin({ ip: '203.0.113.1', username: 'x' }));
    dead.disconnect();
  });
});

describe('RedisLoginThrottle on a real Redis Cluster', () => {
  let cluster: RedisCluster;
  let client: Cluster;
  before(async () => {
    cluster = await startRedisCluster({ masters: 3 });
    client = new Cluster(cluster.nodes, { lazyConnect: true });
    await client.connect();
  });
  after(async () => {
    client?.disconnect();
    await cluster?.stop();
  });
  conformance('RedisLoginThrottle (cluster)', () => new RedisLoginThrottle(client, { limits: LIMITS }));
});
