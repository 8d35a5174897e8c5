/**
 * The store and lock backends a process runs on, chosen by STORE. `maildir` (the embedded
 * default) keeps locks in process (or in the primary, over IPC); `s3` keeps messages in a bucket
 * and the index, leases and LOGIN-DELAY in Redis, shared by every gateway and delivery worker.
 * The cluster code is loaded only when STORE=s3, so the single node never loads the AWS SDK.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SharedCredentialStore } from '@postern/accounts';
import { RedisLoginThrottle, type LockManager, type LoginDelayGate, type LoginThrottle, type ThrottleLimits } from '@postern/locks';
import { MaildirStore, maildirPathFromTemplate, type MailStore } from '@postern/mailstore';
import type { Logger, Metrics } from '@postern/telemetry';
import type { ServerConfig } from './config.js';

export interface Backends {
  readonly store: MailStore;
  /** Shared locks (Redis); null: the caller supplies in-process or IPC locks. */
  readonly locks: LockManager | null;
  readonly loginDelayGate: LoginDelayGate | null;
  /** Where verified credentials are shared between processes (Redis); null: per process only. */
  readonly credentialStore: SharedCredentialStore | null;
  /** Brute-force counters shared by every gateway (Redis); null: the caller's in-process ones. */
  readonly loginThrottle: LoginThrottle | null;
  /** Null when every backend answered, else why not (for /readyz). */
  check(): Promise<string | null>;
  /** Run the store sweeper every SWEEP_INTERVAL_S (delivery workers). */
  startSweeper(): void;
  /** One sweep now (`postern store sweep`); null for stores that need none. */
  sweepOnce(): Promise<Record<string, number> | null>;
  /** Rebuild a mailbox index from the object listing (`postern mailbox rebuild`); null where there is no index. */
  rebuild(mailboxId: string): Promise<Record<string, unknown> | null>;
  close(): Promise<void>;
}

export async function openBackends(
  config: Readonly<ServerConfig>,
  logger: Logger,
  metrics: Metrics,
  throttleLimits: ThrottleLimits | null,
): Promise<Backends> {
  if (config.STORE === 's3') return openCluster(config, logger, metrics, throttleLimits);
  const store = new MaildirStore({
    pathFor: (mailbox) => maildirPathFromTemplate(config.MAILDIR, mailbox.username),
    fsync: config.MAILDIR_FSYNC,
    readMode: config.MAILDIR_READ_MODE,
    saveCrlf: config.MAILDIR_SAVE_CRLF,
  });
  return {
    store,
    locks: null,
    loginDelayGate: null,
    loginThrottle: null,
    credentialStore: null,
    check: async () => null,
    startSweeper: () => undefined,
    sweepOnce: async () => null,
    rebuild: async () => null,
    close: async () => undefined,
  };
}

async function openCluster(
  config: Readonly<ServerConfig>,
  logger: Logger,
  metrics: Metrics,
  throttleLimits: ThrottleLimits | null,
): Promise<Backends> {
  const s3store = await import('@postern/s3-store');
  const spoolDir = join(config.DATA_DIR, 'spool');
  await mkdir(spoolDir, { recursive: true });
  const common = {
    keyPrefix: config.REDIS_KEY_PREFIX,
    tls: config.REDIS_URL?.startsWith('rediss://') ?? false,
    // A stalled Redis fails the command well inside the lease, so the session ends cleanly.
    commandTimeoutMs: Math.max(500, Math.floor(config.LOCK_TTL_MS / 3)),
    ...(config.REDIS_PASSWORD !== undefined ? { password: config.REDIS_PASSWORD } : {}),
  };
  const redis =
    config.REDIS_CLUSTER_NODES.length > 0
      ? { ...common, mode: 'cluster' as const, nodes: s3store.parseHostPorts('REDIS_CLUSTER_NODES', config.REDIS_CLUSTER_NODES.join(',')) }
      : config.REDIS_SENTINELS.length > 0
        ? { ...common, mode: 'sentinel' as const, sentinels: s3store.parseHostPorts('REDIS_SENTINELS', config.REDIS_SENTINELS.join(',')), masterName: config.REDIS_SENTINEL_MASTER as string, db: 0 }
        : { ...common, mode: 'standalone' as const, url: config.REDIS_URL as string, db: 0 };
  const cluster = s3store.createClusterBackends(
    {
      redis,
      s3: {
        ...(config.S3_ENDPOINT !== undefined ? { endpoint: config.S3_ENDPOINT } : {}),
        bucket: config.S3_BUCKET as string,
        region: config.S3_REGION,
        prefix: config.S3_PREFIX,
        forcePathStyle: config.S3_FORCE_PATH_STYLE,
        maxSockets: config.S3_MAX_SOCKETS,
        connectTimeoutMs: Math.min(config.S3_TIMEOUT_MS, 3_000),
        requestTimeoutMs: config.S3_TIMEOUT_MS,
        retryDeadlineMs: config.S3_TIMEOUT_MS,
      },
      store: {
        lockTtlMs: config.LOCK_TTL_MS,
        sweepGraceS: config.SWEEP_GRACE_S,
        sweepIntervalS: config.SWEEP_INTERVAL_S,
        spoolDir,
        spoolMemoryBytes: 256 * 1024,
        readStallTimeoutMs: config.S3_TIMEOUT_MS,
      },
    },
    {
      timer: metrics.backendDuration,
      onLeaseLost: (key, reason) => logger.warn({ key, reason }, 'maildrop lease lost'),
      onRedisError: (e) => logger.warn({ err: e.message }, 'redis connection error'),
      onDeleteError: (mailboxId, e) =>
        logger.warn({ mailboxId, err: (e as Error).message }, 'deleting committed messages failed; the sweeper will finish it'),
    },
  );
  const sweeper = cluster.sweeper();
  let sweeping = false;
  return {
    store: cluster.store,
    locks: cluster.locks,
    loginDelayGate: cluster.loginDelay,
    loginThrottle: throttleLimits
      ? new RedisLoginThrottle(cluster.redis, { limits: throttleLimits, prefix: `${config.REDIS_KEY_PREFIX}throttle:` })
      : null,
    credentialStore: {
      get: (key) => cluster.redis.get(`${config.REDIS_KEY_PREFIX}cred:${key}`),
      set: async (key, value, ttlMs) => {
        await cluster.redis.set(`${config.REDIS_KEY_PREFIX}cred:${key}`, value, 'PX', ttlMs);
      },
    },
    async check() {
      const results = await Promise.all([
        cluster.redis.ping().then(
          () => null,
          (e: Error) => `redis: ${e.message}`,
        ),
        cluster.s3.size(cluster.store.objectKey('-readiness-', 'probe'), AbortSignal.timeout(1_000)).then(
          () => null,
          (e: Error) => `s3: ${e.message}`,
        ),
      ]);
      return results.find((r) => r !== null) ?? null;
    },
    startSweeper() {
      if (config.SWEEP_INTERVAL_S === 0 || sweeping) return;
      sweeping = true;
      sweeper.start(config.SWEEP_INTERVAL_S * 1000, {
        onReport: (report) => {
          metrics.sweepRuns.inc({ result: 'ok' });
          metrics.sweepObjects.inc({ result: 'pending_deleted' }, report.pendingDeleted);
          metrics.sweepObjects.inc({ result: 'pending_failed' }, report.pendingFailed);
          metrics.sweepObjects.inc({ result: 'orphan_deleted' }, report.orphansDeleted);
          logger.info({ ...report }, 'store sweep finished');
        },
        onError: (e) => {
          metrics.sweepRuns.inc({ result: 'error' });
          logger.warn({ err: (e as Error).message }, 'store sweep failed; retrying next interval');
        },
      });
    },
    sweepOnce: async () => ({ ...(await sweeper.runOnce()) }),
    rebuild: async (mailboxId) => ({ ...(await cluster.rebuild(mailboxId)) }),
    async close() {
      if (sweeping) await sweeper.stop();
      await cluster.close();
    },
  };
}
