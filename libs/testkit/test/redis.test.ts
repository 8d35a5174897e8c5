import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { Cluster, Redis } from 'ioredis';
import { redisCommand, startRedis, startRedisCluster, startRedisSentinel, type RedisServer } from '../src/index.js';

describe('startRedis', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis({ appendonly: true });
  });
  after(() => redis.stop());

  test('serves on loopback at the URL it reports', async () => {
    assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
    assert.equal(await redisCommand(redis, ['PING']), 'PONG');
  });

  test('runs without RDB snapshots, with AOF when asked', async () => {
    assert.deepEqual(await redisCommand(redis, ['CONFIG', 'GET', 'save']), ['save', '']);
    assert.deepEqual(await redisCommand(redis, ['CONFIG', 'GET', 'appendonly']), ['appendonly', 'yes']);
    assert.deepEqual(await redisCommand(redis, ['CONFIG', 'GET', 'protected-mode']), ['protected-mode', 'no']);
  });

  test('restart comes back on the same port with the data', async () => {
    await redisCommand(redis, ['SET', 'k', 'v1']);
    const pid = redis.proc.pid;
    await redis.proc.restart();
    assert.notEqual(redis.proc.pid, pid);
    assert.equal(await redisCommand(redis, ['GET', 'k']), 'v1');
  });

  test('a crash (SIGKILL) and start keep acknowledged writes', async () => {
    await redisCommand(redis, ['SET', 'crash', 'acked']);
    await redis.proc.kill();
    await assert.rejects(redisCommand(redis, ['PING']), /ECONNREFUSED/);
    await redis.proc.start();
    assert.equal(await redisCommand(redis, ['GET', 'crash']), 'acked');
  });

  test('SIGSTOP pauses it (commands time out) and SIGCONT resumes it', async () => {
    redis.proc.signal('SIGSTOP');
    await assert.rejects(redisCommand(redis, ['PING'], 300), /no reply/);
    redis.proc.signal('SIGCONT');
    assert.equal(await redisCommand(redis, ['PING']), 'PONG');
  });

  test('an error reply rejects', async () => {
    await assert.rejects(redisCommand(redis, ['NO-SUCH-COMMAND']), /unknown command/);
  });
});

test('startRedis without appendonly loses data on restart, and stop() removes its directory', async () => {
  const redis = await startRedis();
  try {
    await redisCommand(redis, ['SET', 'k', 'v']);
    await redis.proc.restart();
    assert.equal(await redisCommand(redis, ['GET', 'k']), null);
  } finally {
    await redis.stop();
  }
  assert.equal(existsSync(redis.dir), false);
  await assert.rejects(redisCommand(redis, ['PING']), /ECONNREFUSED/);
});

describe('startRedisCluster', () => {
  let cluster: Awaited<ReturnType<typeof startRedisCluster>>;
  let client: Cluster;
  before(async () => {
    cluster = await startRedisCluster();
    client = new Cluster(cluster.nodes);
  });
  after(async () => {
    client.disconnect();
    await cluster.stop();
  });

  test('three masters own all 16384 slots', async () => {
    assert.equal(cluster.nodes.length, 3);
    const slots = (await redisCommand(cluster.nodes[0]!, ['CLUSTER', 'SLOTS'])) as [number, number][];
    const owned = slots.reduce((n, [from, to]) => n + (to - from + 1), 0);
    assert.equal(owned, 16384);
  });

  test('keys hashing to every node can be written and read back', async () => {
    const keys = Array.from({ length: 200 }, (_, i) => `key-${i}`);
    for (const k of keys) await client.set(k, k.toUpperCase());
    for (const k of keys) assert.equal(await client.get(k), k.toUpperCase());
    // every master holds some of them
    for (const node of cluster.nodes) {
      const n = (await redisCommand(node, ['DBSIZE'])) as number;
      assert.ok(n > 0, `node ${node.port} holds no keys`);
    }
  });
});

describe('startRedisSentinel', () => {
  let group: Awaited<ReturnType<typeof startRedisSentinel>>;
  before(async () => {
    group = await startRedisSentinel();
  });
  after(() => group.stop());

  test('sentinels report the master; failover promotes the replica', async () => {
    const before = await group.currentMaster();
    assert.equal(before.port, group.master.port);
    await redisCommand(group.master, ['SET', 'survives', 'yes']);
    await redisCommand(group.master, ['WAIT', '1', '5000']);
    const after = await group.failover();
    assert.notEqual(after.port, before.port);
    assert.equal(after.port, group.replicas[0]!.port);
    const role = (await redisCommand(after, ['ROLE'])) as string[];
    assert.equal(role[0], 'master');
    assert.equal(await redisCommand(after, ['GET', 'survives']), 'yes');
  });

  test('an ioredis sentinel client follows the master', async () => {
    const client = new Redis({ sentinels: group.sentinels, name: group.masterName, lazyConnect: true });
    try {
      await client.connect();
      await client.set('via-sentinel', '1');
      const current = await group.currentMaster();
      assert.equal(await redisCommand(current, ['GET', 'via-sentinel']), '1');
    } finally {
      client.disconnect();
    }
  });
});
