/** The conformance suite and the lease suite on a three-master Redis Cluster. */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { startRedisCluster, startS3, type RedisCluster, type S3Server } from '@postern/testkit';
import { storeConformance } from '@postern/mailstore/conformance';
import { Sweeper } from '../src/index.js';
import { leaseSuite, objectKeys } from './lease-suite.js';
import { conformanceFixture, makeRig, redisFromEnv, type RedisFactory } from './support.js';

let cluster: RedisCluster | undefined;
let s3: S3Server | undefined;
let redis: RedisFactory;
before(async () => {
  [cluster, s3] = await Promise.all([startRedisCluster({ masters: 3 }), startS3()]);
  redis = redisFromEnv({ REDIS_CLUSTER_NODES: cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',') });
});
after(() => Promise.all([cluster?.stop(), s3?.stop()]));

storeConformance('S3MailStore (versitygw, Redis Cluster of 3 masters)', async () => conformanceFixture(makeRig(s3!, redis)));

leaseSuite('Redis Cluster', () => ({ s3: s3!, redis }));

test('the sweeper finds pending deletions on every master', async () => {
  const rig = makeRig(s3!, redis);
  try {
    const mailboxes = Array.from({ length: 12 }, (_, i) => ({ id: `spread-${i}`, username: `spread-${i}@example.org` }));
    for (const box of mailboxes) {
      await rig.store.deliver(box, Readable.from([Buffer.from(`Subject: ${box.id}\n\nx\n`)]));
      // Committed without the deletion that normally follows (a gateway that crashed after +OK).
      const lease = await rig.locks.acquire(box.id);
      const uid = lease!.takeListing()![0]!.uid;
      assert.equal(await rig.index.commit(box.id, lease!.token, lease!.fence, [uid]), 'applied');
      lease!.releasedByCommit();
    }
    const owners = new Set<string>();
    for (const box of mailboxes) {
      const slot = Number(await rig.redis.cluster('KEYSLOT', rig.index.keys(box.id).pending));
      const shards = (await rig.redis.cluster('SLOTS')) as unknown as Array<[number, number, [string, number]]>;
      const owner = shards.find(([from, to]) => slot >= from && slot <= to)!;
      owners.add(`${owner[2][0]}:${owner[2][1]}`);
    }
    assert.ok(owners.size >= 2, `pending sets on ${owners.size} master(s)`);
    const report = await new Sweeper({ store: rig.store, graceMs: 3_600_000 }).sweepPending();
    assert.deepEqual(report, { pendingMailboxes: 12, pendingDeleted: 12, pendingFailed: 0 });
    for (const box of mailboxes) {
      assert.deepEqual(await objectKeys(rig, box.id), []);
      assert.equal(await rig.redis.exists(rig.index.keys(box.id).pending), 0);
    }
  } finally {
    await rig.close();
  }
});
