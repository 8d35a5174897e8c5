/**
 * The store and lock backends a process runs on, chosen by STORE. `maildir` (the embedded
 * default) keeps locks in process (or in the primary, over IPC); `s3` keeps messages in a bucket
 * and the index, leases and LOGIN-DELAY in Redis, shared by every gateway and delivery worker.
 * The cluster code is loaded only when STORE=s3, so the single node never loads the AWS SDK.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { RedisLoginThrottle, type LockManager, type LoginDelayGate, type LoginThrottle, type ThrottleLimits } from '@postern/locks';
import { MaildirStore, maildirPathFromTemplate, type MailStore } from '@postern/mailstore';
import type { Logger, Metrics } from '@postern/telemetry';
import type { ServerConfig } from './config.js';

export interface Backends {
  readonly store: MailStore;
  /** Shared locks (Redis); null: the caller supplies in-process or IPC locks. */
  readonly locks: LockManager | null;
  readonly loginDelayGate: LoginDelayGate | null;
  /** Brute-force counters shared by every gateway (Redis); null: the caller's in-process ones. */
  readonly loginThrottle: LoginThrottle | null;
  /** Null when every backend answered, else why not (for /readyz). */
  check(): Promise<string | null>;
  /** Run the store sweeper every SWEEP_INTERVAL_S (delivery workers). */
  startSweeper(): void;
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
    check: async () => null,
    startSweeper: () => undefined,
    close: async () => undefined,
  };
}

function hostPorts(list: readonly string[]): { host: string; port: number }[] {
  // Validated shapes: host:port or [v6]:port.
  return list.map((entry) => {
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(entry.trim());
    if (!m) throw new Error(`not host:port: ${entry}`);
    return { host: m[1] as string, port: Number(m[2]) };
  });
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
    commandTimeoutMs: Math.max(1_000, Math.floor(config.LOCK_TTL_MS / 3)),
    ...(config.REDIS_PASSWORD !== undefined ? { password: config.REDIS_PASSWORD } : {}),
  };
  const redisSettings =
    config.REDIS_CLUSTER_NODES.length > 0
      ? { ...common, mode: 'cluster' as const, nodes: hostPorts(config.REDIS_CLUSTER_NODES) }
      : config.REDIS_SENTINELS.length > 0
        ? {
            ...common,
            mode: 'sentinel' as const,
            sentinels: hostPorts(config.REDIS_SENTINELS),
            masterName: config.REDIS_SENTINEL_MASTER as string,
            db: 0,
          }
        : { ...common, mode: 'standalone' as const, url: config.REDIS_URL as string, db: 0 };
  const redis = s3store.createRedis(redisSettings);
  redis.on('error', (e: Error) => logger.warn({ err: e.message }, 'redis connection error'));
  const index = new s3store.RedisIndex(redis, { keyPrefix: config.REDIS_KEY_PREFIX, timer: metrics.storeDuration });
  const client = s3store.createS3Client({
    ...(config.S3_ENDPOINT !== undefined ? { endpoint: config.S3_ENDPOINT } : {}),
    bucket: config.S3_BUCKET as string,
    region: config.S3_REGION,
    prefix: config.S3_PREFIX,
    forcePathStyle: config.S3_FORCE_PATH_STYLE,
    maxSockets: config.S3_MAX_SOCKETS,
    connectTimeoutMs: Math.min(config.S3_TIMEOUT_MS, 3_000),
    requestTimeoutMs: config.S3_TIMEOUT_MS,
    retryDeadlineMs: config.S3_TIMEOUT_MS,
  });
  const s3 = new s3store.S3Objects(client, { bucket: config.S3_BUCKET as string, retryDeadlineMs: config.S3_TIMEOUT_MS, timer: metrics.storeDuration });
  const store = new s3store.S3MailStore({
    s3,
    index,
    prefix: config.S3_PREFIX,
    spoolDir,
    sweepGraceMs: config.SWEEP_GRACE_S * 1000,
    readStallTimeoutMs: config.S3_TIMEOUT_MS,
    onDeleteError: (mailboxId, e) =>
      logger.warn({ mailboxId, err: (e as Error).message }, 'deleting committed messages failed; the sweeper will finish it'),
  });
  const locks = new s3store.RedisLockManager(index, {
    ttlMs: config.LOCK_TTL_MS,
    onLost: (key, reason) => logger.warn({ key, reason }, 'maildrop lease lost'),
  });
  const sweeper = new s3store.Sweeper({ store, graceMs: config.SWEEP_GRACE_S * 1000 });
  let sweeping = false;
  return {
    store,
    locks,
    loginDelayGate: new s3store.RedisLoginDelayGate(index),
    loginThrottle: throttleLimits ? new RedisLoginThrottle(redis, { limits: throttleLimits, prefix: `${config.REDIS_KEY_PREFIX}throttle:` }) : null,
    async check() {
      const deadline = AbortSignal.timeout(1_000);
      const results = await Promise.all([
        redis.ping().then(
          () => null,
          (e: Error) => `redis: ${e.message}`,
        ),
        s3.size(store.objectKey('-readiness-', 'probe'), deadline).then(
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
        onReport: (report) => logger.info({ ...report }, 'store sweep finished'),
        onError: (e) => logger.warn({ err: (e as Error).message }, 'store sweep failed; retrying next interval'),
      });
    },
    async close() {
      if (sweeping) await sweeper.stop();
      await store.close?.();
      redis.disconnect();
      client.destroy();
    },
  };
}
