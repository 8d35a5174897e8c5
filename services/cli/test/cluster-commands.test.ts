// `postern mailbox rebuild` and `postern store sweep` as an operator runs them, against a real
// Redis and a real S3 server (versitygw), on mail stored by the server's own S3 backend.
import assert from 'node:assert/strict';
import { utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { loadServerConfig, openBackends, type Backends } from '@postern/server';
import { Metrics, createLogger } from '@postern/telemetry';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { cli } from './support/cli.js';
import { redisCommand, s3Client, startRedis, startS3, type RedisServer, type S3Server } from '@postern/testkit';

describe('cluster store commands (real Redis and S3)', () => {
  let redis: RedisServer;
  let s3: S3Server;
  let env: Record<string, string>;
  let backends: Backends;

  before(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
    env = { ...s3.env, REDIS_URL: redis.url, SWEEP_GRACE_S: '60', DATA_DIR: join(s3.dir, 'cli-data') };
    // The in-process store takes credentials from the standard AWS chain, like the server does.
    process.env.AWS_ACCESS_KEY_ID = s3.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey;
    const config = loadServerConfig({ env });
    backends = await openBackends(config, createLogger({ service: 'test', level: 'silent' }), new Metrics({ processMetrics: false }), null);
  });
  after(async () => {
    await backends?.close();
    await Promise.all([redis?.stop(), s3?.stop()]);
  });

  const deliver = (mailbox: string, text: string) =>
    backends.store.deliver({ id: mailbox, username: mailbox }, Readable.from([Buffer.from(`Subject: ${text}\r\n\r\n${text}\r\n`)]));

  it('mailbox rebuild restores a lost index from the bucket listing', async () => {
    const delivered = [await deliver('rita', 'one'), await deliver('rita', 'two'), await deliver('rita', 'three')];
    await redisCommand(redis, ['FLUSHALL']);
    assert.deepEqual(await backends.store.stat({ id: 'rita', username: 'rita' }), { count: 0, octets: 0 });
    const result = await cli(['mailbox', 'rebuild', 'rita'], { env });
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as { listed: number; added: number; count: number; octets: number };
    assert.equal(report.listed, 3);
    assert.equal(report.added, 3);
    const octets = delivered.reduce((n, d) => n + d.size, 0);
    assert.deepEqual(await backends.store.stat({ id: 'rita', username: 'rita' }), { count: 3, octets });
  });

  it('mailbox rebuild is refused while a session holds the maildrop', async () => {
    const lease = await backends.locks?.acquire('maildrop:rita');
    assert.ok(lease);
    try {
      const result = await cli(['mailbox', 'rebuild', 'rita'], { env });
      assert.equal(result.code, 1);
      assert.match(result.stderr, /in use/);
    } finally {
      await lease.release();
    }
  });

  it('store sweep removes an orphan object older than the grace period and keeps indexed ones', async () => {
    const kept = await deliver('sam', 'indexed');
    // The orphan: an object stored but never indexed (a delivery that crashed between the two).
    const client = s3Client(s3);
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'sam/orphan-1', Body: 'Subject: orphan\r\n\r\n' }));
    client.destroy();
    // Both objects look two hours old to the S3 server (versitygw keeps objects as files).
    const old = new Date(Date.now() - 2 * 3600_000);
    for (const uid of [kept.uid, 'orphan-1']) await utimes(join(s3.dir, s3.bucket, 'sam', uid), old, old);
    const result = await cli(['store', 'sweep'], { env });
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as { orphansDeleted: number };
    assert.equal(report.orphansDeleted, 1);
    assert.equal((await backends.store.stat({ id: 'sam', username: 'sam' })).count, 1);
    const listing = await s3Client(s3).send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'sam/' }));
    assert.deepEqual(listing.Contents?.map((o) => o.Key), [`sam/${kept.uid}`]);
    const lease = await backends.locks!.acquire('maildrop:sam');
    assert.ok(lease);
    const drop = await backends.store.open({ id: 'sam', username: 'sam' }, lease);
    const chunks: Buffer[] = [];
    for await (const c of await drop.read(0, { bodyLines: null })) chunks.push(c as Buffer);
    assert.match(Buffer.concat(chunks).toString(), /indexed/);
    await drop.close();
  });

  it('says which setting is missing when the store is not S3', async () => {
    const result = await cli(['store', 'sweep'], { env: { DATA_DIR: join(s3.dir, 'cli-data'), STORE: 'maildir' } });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /needs STORE=s3/);
  });
});
