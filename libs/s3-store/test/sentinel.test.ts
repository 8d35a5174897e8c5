/** The conformance suite and the lease suite on Redis Sentinel (master, replica, three sentinels), and a failover. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pollUntil, startRedisSentinel, startS3, type RedisSentinelGroup, type S3Server } from '@postern/testkit';
import { storeConformance } from '@postern/mailstore/conformance';
import type { Redis } from 'ioredis';
import { collect, leaseSuite, text } from './lease-suite.js';
import { conformanceFixture, makeRig, redisFromEnv, type RedisFactory } from './support.js';

let group: RedisSentinelGroup | undefined;
let s3: S3Server | undefined;
let redis: RedisFactory;
before(async () => {
  [group, s3] = await Promise.all([startRedisSentinel({ replicas: 1, sentinels: 3 }), startS3()]);
  redis = redisFromEnv({
    REDIS_SENTINELS: group.sentinels.map((n) => `${n.host}:${n.port}`).join(','),
    REDIS_SENTINEL_MASTER: group.masterName,
  });
});
after(() => Promise.all([group?.stop(), s3?.stop()]));

storeConformance('S3MailStore (versitygw, Redis Sentinel)', async () => conformanceFixture(makeRig(s3!, redis)));

leaseSuite('Redis Sentinel', () => ({ s3: s3!, redis }));

test('after a Sentinel failover the same clients list, read, deliver and commit on the new master', async () => {
  const box = { id: 'failover-box', username: 'failover@example.org' };
  const rig = makeRig(s3!, redis);
  try {
    const uids = [];
    for (let i = 0; i < 3; i++) uids.push((await rig.store.deliver(box, text(`Subject: ${i}\n\n${i}\n`))).uid);
    // Acknowledged by the replica before the failover (Redis replication is asynchronous).
    assert.equal(await (rig.redis as Redis).wait(1, 5_000), 1);
    const before = await group!.currentMaster();
    const after = await group!.failover();
    assert.notDeepEqual(after, before);
    // The client reconnects to the new master on its own; errors until then count as "not yet".
    const lease = await pollUntil('a lease on the new master', 20_000, async () => (await rig.locks.acquire(box.id)) ?? undefined);
    const drop = await rig.store.open(box, lease);
    assert.deepEqual(
      drop.messages.map((m) => m.uid),
      uids,
    );
    assert.equal((await collect(await drop.read(2, { bodyLines: null }))).toString('latin1'), 'Subject: 2\r\n\r\n2\r\n');
    await drop.commit([0]);
    const later = await rig.store.deliver(box, text('Subject: after\n\nx\n'));
    const next = await rig.locks.acquire(box.id);
    assert.deepEqual(
      next!.takeListing()!.map((m) => m.uid),
      [uids[1], uids[2], later.uid],
    );
    await next!.release();
  } finally {
    await rig.close();
  }
});
