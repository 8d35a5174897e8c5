/**
 * Cluster backends: the S3 message store, the Redis index, fenced maildrop leases, LOGIN-DELAY in
 * Redis, the sweeper and the index rebuild. `createClusterBackends(parseClusterSettings(env))`
 * makes all of them over one Redis client and one S3 client.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { RedisLockManager, RedisLoginDelayGate } from './locks.js';
import { createRedis, RedisIndex, RoundTrips, type OperationTimer, type RedisClient } from './redis.js';
import { rebuildIndex, type RebuildReport } from './rebuild.js';
import { createS3Client, S3Objects, type S3Credentials } from './s3.js';
import type { ClusterSettings } from './settings.js';
import { S3MailStore } from './store.js';
import { Sweeper } from './sweeper.js';

export {
  parseClusterSettings,
  parseRedisSettings,
  parseS3Settings,
  parseStoreSettings,
  parseHostPorts,
  SettingsError,
  type ClusterSettings,
  type Env,
  type HostPort,
  type RedisSettings,
  type S3Settings,
  type StoreSettings,
} from './settings.js';
export { createRedis, RedisIndex, RoundTrips, type CommitOutcome, type MailboxKeys, type OperationTimer, type RedisClient, type RedisIndexOptions } from './redis.js';
export { RedisLease, RedisLockManager, RedisLoginDelayGate, type RedisLockManagerOptions } from './locks.js';
export { createS3Client, isTransient, S3Objects, type S3Credentials, type S3Listing, type S3ObjectsOptions, type S3Stats } from './s3.js';
export { S3MailStore, S3Maildrop, objectKey, parseObjectKey, TOP_FIRST_RANGE, type S3MailStoreOptions } from './store.js';
export { Sweeper, type SweepLoopHandlers, type SweepReport, type SweeperOptions } from './sweeper.js';
export { rebuildIndex, type RebuildReport } from './rebuild.js';
export { SCRIPTS, type ScriptDefinition, type ScriptName } from './scripts.js';
export { Spool, removeStaleSpoolFiles } from './spool.js';

export interface ClusterBackendOptions {
  /** Latency of every S3 request and Redis round trip (telemetry `Metrics.backendDuration`). */
  readonly timer?: OperationTimer;
  /** Explicit S3 credentials; default: the standard AWS chain (AWS_ACCESS_KEY_ID, ...). */
  readonly credentials?: S3Credentials;
  /** Lease lost to a failed or late renewal (a metric, a log line). */
  readonly onLeaseLost?: (key: string, reason: string) => void;
  /** A Redis connection error (commands waiting on it fail on their own; a log line, rate-limited). */
  readonly onRedisError?: (error: Error) => void;
  /** Deleting committed objects failed; the sweeper retries (a log line). */
  readonly onDeleteError?: (mailboxId: string, error: unknown) => void;
}

/** Everything a gateway, a delivery worker or the sweeper needs, over one Redis and one S3 client. */
export interface ClusterBackends {
  readonly redis: RedisClient;
  readonly s3Client: S3Client;
  readonly index: RedisIndex;
  readonly s3: S3Objects;
  readonly store: S3MailStore;
  readonly locks: RedisLockManager;
  readonly loginDelay: RedisLoginDelayGate;
  /** Redis round trips of this process (the benchmark prints commands per poll and per session). */
  readonly roundTrips: RoundTrips;
  readonly settings: ClusterSettings;
  /** A sweeper with SWEEP_GRACE_S; `runOnce()` or `start(SWEEP_INTERVAL_S * 1000)`. */
  sweeper(): Sweeper;
  /** Rebuild one mailbox index from the S3 listing (refused while its maildrop is in use). */
  rebuild(mailboxId: string): Promise<RebuildReport>;
  /** Waits for background deletions, then closes both clients. */
  close(): Promise<void>;
}

export function createClusterBackends(settings: ClusterSettings, options: ClusterBackendOptions = {}): ClusterBackends {
  const redis = createRedis(settings.redis, options.onRedisError);
  const roundTrips = new RoundTrips();
  const index = new RedisIndex(redis, {
    keyPrefix: settings.redis.keyPrefix,
    roundTrips,
    // Scripts arriving in the last fifth of the command timeout, or later, change nothing: by then
    // the caller may have given up and answered its client.
    lateAfterMs: Math.floor(settings.redis.commandTimeoutMs * 0.8),
    ...(options.timer ? { timer: options.timer } : {}),
  });
  const s3Client = createS3Client(settings.s3, options.credentials);
  const s3 = new S3Objects(s3Client, {
    bucket: settings.s3.bucket,
    retryDeadlineMs: settings.s3.retryDeadlineMs,
    requestTimeoutMs: settings.s3.requestTimeoutMs,
    ...(options.timer ? { timer: options.timer } : {}),
  });
  const store = new S3MailStore({
    s3,
    index,
    prefix: settings.s3.prefix,
    spoolMemoryBytes: settings.store.spoolMemoryBytes,
    ...(settings.store.readStallTimeoutMs !== undefined ? { readStallTimeoutMs: settings.store.readStallTimeoutMs } : {}),
    ...(settings.store.spoolDir !== undefined ? { spoolDir: settings.store.spoolDir } : {}),
    sweepGraceMs: settings.store.sweepGraceS * 1000,
    ...(options.onDeleteError ? { onDeleteError: options.onDeleteError } : {}),
  });
  const locks = new RedisLockManager(index, {
    ttlMs: settings.store.lockTtlMs,
    ...(options.onLeaseLost ? { onLost: options.onLeaseLost } : {}),
  });
  return {
    redis,
    s3Client,
    index,
    s3,
    store,
    locks,
    loginDelay: new RedisLoginDelayGate(index),
    roundTrips,
    settings,
    sweeper: () => new Sweeper({ store, graceMs: settings.store.sweepGraceS * 1000 }),
    rebuild: (mailboxId) => rebuildIndex(store, locks, mailboxId),
    async close() {
      await store.close();
      await index.close();
      s3Client.destroy();
    },
  };
}
