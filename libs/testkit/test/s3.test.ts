import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { GetObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { s3Client, startS3, type S3Server } from '../src/index.js';

describe('startS3 (versitygw, POSIX backend)', () => {
  let s3: S3Server;
  let client: S3Client;
  before(async () => {
    s3 = await startS3();
    client = s3Client(s3);
  });
  after(async () => {
    client.destroy();
    await s3.stop();
  });

  test('reports the environment the S3 store reads, and nothing else', () => {
    assert.deepEqual(Object.keys(s3.env).sort(), [
      'AWS_ACCESS_KEY_ID',
      'AWS_SECRET_ACCESS_KEY',
      'S3_BUCKET',
      'S3_ENDPOINT',
      'S3_FORCE_PATH_STYLE',
      'S3_REGION',
      'STORE',
    ]);
    assert.equal(s3.env.STORE, 's3');
    assert.equal(s3.env.S3_ENDPOINT, s3.endpoint);
    assert.equal(s3.env.S3_FORCE_PATH_STYLE, 'true');
    assert.equal(s3.region, 'us-east-1');
    assert.match(s3.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  test('the secret is not on the command line', () => {
    const cmdline = readFileSync(`/proc/${s3.proc.pid}/cmdline`, 'utf8');
    assert.ok(!cmdline.includes(s3.secretAccessKey));
  });

  test('put then get returns the same bytes; the object is a file in the bucket directory', async () => {
    const body = Buffer.from('From: a@example.org\r\n\r\nhello\r\n');
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'u/1.eml', Body: body }));
    const got = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'u/1.eml' }));
    assert.deepEqual(Buffer.from(await got.Body!.transformToByteArray()), body);
    assert.ok(existsSync(`${s3.dir}/${s3.bucket}/u/1.eml`));
  });

  test('conditional put (If-None-Match: *) refuses an existing key with 412', async () => {
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'once', Body: 'first', IfNoneMatch: '*' }));
    await assert.rejects(
      client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'once', Body: 'second', IfNoneMatch: '*' })),
      (e: unknown) => e instanceof S3ServiceException && e.$metadata.httpStatusCode === 412,
    );
    const got = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'once' }));
    assert.equal(await got.Body!.transformToString(), 'first');
  });

  test('range GET returns exactly the requested bytes', async () => {
    const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 256));
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'ranged', Body: body }));
    const got = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'ranged', Range: 'bytes=100-199' }));
    assert.equal(got.$metadata.httpStatusCode, 206);
    assert.equal(got.ContentRange, 'bytes 100-199/1000');
    assert.deepEqual(Buffer.from(await got.Body!.transformToByteArray()), body.subarray(100, 200));
    const tail = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'ranged', Range: 'bytes=-10' }));
    assert.deepEqual(Buffer.from(await tail.Body!.transformToByteArray()), body.subarray(990));
  });

  test('a wrong secret is refused', async () => {
    const bad = s3Client({ ...s3, secretAccessKey: 'wrong' });
    try {
      await assert.rejects(
        bad.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'once' })),
        (e: unknown) => e instanceof S3ServiceException && e.$metadata.httpStatusCode === 403,
      );
    } finally {
      bad.destroy();
    }
  });
});

test('stop() ends versitygw and removes its directory', async () => {
  const s3 = await startS3({ bucket: 'other' });
  assert.equal(s3.bucket, 'other');
  await s3.stop();
  assert.equal(s3.proc.pid, null);
  assert.equal(existsSync(s3.dir), false);
});
