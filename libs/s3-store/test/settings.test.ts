import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SettingsError, parseClusterSettings, parseRedisSettings, parseS3Settings, parseStoreSettings } from '../src/index.js';

function rejectsKey(fn: () => unknown, key: string, text?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SettingsError, String(e));
    assert.equal(e.key, key);
    assert.ok(e.message.startsWith(`${key}: `), e.message);
    if (text) assert.match(e.message, text);
    return true;
  });
}

test('standalone Redis from REDIS_URL, password and database from the URL', () => {
  const s = parseRedisSettings({ REDIS_URL: 'rediss://app:s%40cret@redis.example:6380/2' });
  assert.equal(s.mode, 'standalone');
  assert.equal(s.tls, true);
  assert.equal(s.password, 's@cret');
  assert.equal(s.username, 'app');
  assert.equal(s.keyPrefix, 'postern:');
  assert.equal(s.mode === 'standalone' && s.db, 2);
  assert.equal(parseRedisSettings({ REDIS_URL: 'redis://h:1', REDIS_PASSWORD: 'p' }).password, 'p');
});

test('Sentinel and Cluster settings', () => {
  const s = parseRedisSettings({ REDIS_SENTINELS: '10.0.0.1:26379, [::1]:26380', REDIS_SENTINEL_MASTER: 'mymaster', REDIS_URL: 'redis://:pw@ignored:1' });
  assert.equal(s.mode, 'sentinel');
  assert.deepEqual(s.mode === 'sentinel' && s.sentinels, [
    { host: '10.0.0.1', port: 26379 },
    { host: '::1', port: 26380 },
  ]);
  assert.equal(s.password, 'pw');
  const c = parseRedisSettings({ REDIS_CLUSTER_NODES: 'a:7000,b:7001', REDIS_KEY_PREFIX: 'x:' });
  assert.equal(c.mode, 'cluster');
  assert.equal(c.keyPrefix, 'x:');
});

test('bad Redis settings name their key and never echo a password', () => {
  rejectsKey(() => parseRedisSettings({}), 'REDIS_URL', /required/);
  rejectsKey(() => parseRedisSettings({ REDIS_URL: 'http://h:1' }), 'REDIS_URL', /scheme/);
  rejectsKey(() => parseRedisSettings({ REDIS_URL: 'redis://h:1/x' }), 'REDIS_URL', /database/);
  rejectsKey(() => parseRedisSettings({ REDIS_SENTINELS: 'a:1' }), 'REDIS_SENTINEL_MASTER');
  rejectsKey(() => parseRedisSettings({ REDIS_SENTINELS: 'a', REDIS_SENTINEL_MASTER: 'm' }), 'REDIS_SENTINELS', /host:port/);
  rejectsKey(() => parseRedisSettings({ REDIS_CLUSTER_NODES: 'a:99999' }), 'REDIS_CLUSTER_NODES');
  rejectsKey(() => parseRedisSettings({ REDIS_CLUSTER_NODES: 'a:1', REDIS_SENTINELS: 'b:2' }), 'REDIS_CLUSTER_NODES', /not both/);
  rejectsKey(() => parseRedisSettings({ REDIS_URL: 'redis://h:1', REDIS_KEY_PREFIX: 'a{b}' }), 'REDIS_KEY_PREFIX');
  rejectsKey(() => parseRedisSettings({ REDIS_URL: 'redis://h:1', REDIS_COMMAND_TIMEOUT_MS: '5s' }), 'REDIS_COMMAND_TIMEOUT_MS');
  assert.throws(
    () => parseRedisSettings({ REDIS_URL: 'redis://:topsecret@h:1/x' }),
    (e: unknown) => !(e as Error).message.includes('topsecret'),
  );
});

test('S3 and store settings: defaults, path style with a custom endpoint, errors by key', () => {
  const s = parseS3Settings({ S3_BUCKET: 'mail', S3_ENDPOINT: 'http://127.0.0.1:7070', S3_PREFIX: 'p/' });
  assert.deepEqual(
    { ...s },
    {
      endpoint: 'http://127.0.0.1:7070',
      bucket: 'mail',
      region: 'us-east-1',
      prefix: 'p/',
      forcePathStyle: true,
      maxSockets: 64,
      connectTimeoutMs: 3_000,
      requestTimeoutMs: 30_000,
      retryDeadlineMs: 15_000,
    },
  );
  assert.equal(parseS3Settings({ S3_BUCKET: 'b' }).forcePathStyle, false);
  assert.equal(parseS3Settings({ S3_BUCKET: 'b', S3_MAX_SOCKETS: '8', S3_FORCE_PATH_STYLE: 'yes' }).maxSockets, 8);
  rejectsKey(() => parseS3Settings({}), 'S3_BUCKET');
  rejectsKey(() => parseS3Settings({ S3_BUCKET: 'b', S3_ENDPOINT: 'nope' }), 'S3_ENDPOINT');
  rejectsKey(() => parseS3Settings({ S3_BUCKET: 'b', S3_MAX_SOCKETS: '0' }), 'S3_MAX_SOCKETS');
  rejectsKey(() => parseS3Settings({ S3_BUCKET: 'b', S3_FORCE_PATH_STYLE: 'maybe' }), 'S3_FORCE_PATH_STYLE');
  rejectsKey(() => parseS3Settings({ S3_BUCKET: 'b', S3_PREFIX: '/abs' }), 'S3_PREFIX');
  assert.equal(parseStoreSettings({}).lockTtlMs, 30_000);
  assert.equal(parseStoreSettings({}).sweepGraceS, 3_600);
  rejectsKey(() => parseStoreSettings({ LOCK_TTL_MS: '10' }), 'LOCK_TTL_MS');
  rejectsKey(() => parseStoreSettings({ SWEEP_GRACE_S: '-1' }), 'SWEEP_GRACE_S');
  const all = parseClusterSettings({ REDIS_URL: 'redis://h:1', S3_BUCKET: 'b', LOCK_TTL_MS: '9000' });
  assert.equal(all.store.lockTtlMs, 9_000);
});
