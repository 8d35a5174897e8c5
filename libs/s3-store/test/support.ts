/** Shared test wiring: real redis-server and versitygw from the testkit, one store per test. */
import { startRedis, startS3, type RedisServer, type S3Server } from '@postern/testkit';
import {
  RedisIndex,
  RedisLockManager,
  S3MailStore,
  S3Objects,
  createRedis,
  createS3Client,
  parseRedisSettings,
  parseS3Settings,
  type RedisClient,
} from '../src/index.js';

let counter = 0;

export interface Backends {
  readonly redisServer: RedisServer;
  readonly s3Server: S3Server;
}

export async function startBackends(): Promise<Backends> {
  const [redisServer, s3Server] = await Promise.all([startRedis(), startS3()]);
  return { redisServer, s3Server };
}

export async function stopBackends(b: Backends | undefined): Promise<void> {
  await Promise.all([b?.redisServer.stop(), b?.s3Server.stop()]);
}

export interface Rig {
  /** Key prefix and S3 prefix of this rig's data. */
  readonly namespace: string;
  readonly redis: RedisClient;
  readonly index: RedisIndex;
  readonly s3: S3Objects;
  readonly store: S3MailStore;
  readonly locks: RedisLockManager;
  /** Another client, index, store and lock manager over the same data (a second process). */
  another(): Rig;
  close(): Promise<void>;
}

export interface RigOptions {
  readonly ttlMs?: number;
  readonly retryDeadlineMs?: number;
  readonly requestTimeoutMs?: number;
  readonly readStallTimeoutMs?: number;
  readonly sweepGraceMs?: number;
  readonly spoolMemoryBytes?: number;
  /** Key prefix and S3 prefix; default a fresh one per rig. */
  readonly namespace?: string;
}

export type RedisFactory = () => RedisClient;

/** A client made the way production makes it: settings parsed from environment variables. */
export function redisFromEnv(env: Record<string, string>): RedisFactory {
  const settings = parseRedisSettings({ REDIS_COMMAND_TIMEOUT_MS: '2000', ...env });
  return () => createRedis(settings);
}

export function standaloneRedis(server: RedisServer): RedisFactory {
  return redisFromEnv({ REDIS_URL: server.url });
}

export function makeRig(s3Server: S3Server, redisFactory: RedisFactory, options: RigOptions = {}): Rig {
  const namespace = options.namespace ?? `t${process.pid}-${++counter}-${Date.now().toString(36)}`;
  const build = (): Rig => {
    const redis = redisFactory();
    const index = new RedisIndex(redis, { keyPrefix: `${namespace}:` });
    const settings = parseS3Settings({
      ...s3Server.env,
      S3_RETRY_DEADLINE_MS: String(options.retryDeadlineMs ?? 3_000),
      S3_REQUEST_TIMEOUT_MS: String(options.requestTimeoutMs ?? 30_000),
    });
    const client = createS3Client(settings, { accessKeyId: s3Server.accessKeyId, secretAccessKey: s3Server.secretAccessKey });
    const s3 = new S3Objects(client, { bucket: settings.bucket, retryDeadlineMs: settings.retryDeadlineMs, requestTimeoutMs: settings.requestTimeoutMs });
    const store = new S3MailStore({
      s3,
      index,
      prefix: `${namespace}/`,
      ...(options.sweepGraceMs !== undefined ? { sweepGraceMs: options.sweepGraceMs } : {}),
      ...(options.spoolMemoryBytes !== undefined ? { spoolMemoryBytes: options.spoolMemoryBytes } : {}),
      ...(options.readStallTimeoutMs !== undefined ? { readStallTimeoutMs: options.readStallTimeoutMs } : {}),
    });
    const locks = new RedisLockManager(index, { ttlMs: options.ttlMs ?? 30_000 });
    return {
      namespace,
      redis,
      index,
      s3,
      store,
      locks,
      another: build,
      async close() {
        await store.close();
        await index.close();
        client.destroy();
      },
    };
  };
  return build();
}

/** A rig as the store conformance suite wants it: `reopen` is a second process on the same data. */
export function conformanceFixture(rig: Rig) {
  const others: Rig[] = [];
  return {
    store: rig.store,
    locks: rig.locks,
    cleanup: async () => {
      for (const o of others) await o.close();
      await rig.close();
    },
    reopen: async () => {
      const other = rig.another();
      others.push(other);
      return other.store;
    },
  };
}
