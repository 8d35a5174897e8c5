/**
 * Settings of the cluster backends, parsed from an environment-like record. Every error names
 * the key that is wrong (and never echoes a password).
 */

export type Env = Readonly<Record<string, string | undefined>>;

/** A bad setting; `key` is the environment variable to fix. */
export class SettingsError extends Error {
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.name = 'SettingsError';
    this.key = key;
  }
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export type RedisSettings = {
  /** Prefix of every key (default `postern:`). */
  readonly keyPrefix: string;
  readonly username?: string;
  readonly password?: string;
  /** TLS to every node (a `rediss://` REDIS_URL). */
  readonly tls: boolean;
  /** Per-command timeout, ms (a stalled Redis fails the command instead of hanging the session). */
  readonly commandTimeoutMs: number;
} & (
  | { readonly mode: 'standalone'; readonly url: string; readonly db: number }
  | { readonly mode: 'sentinel'; readonly sentinels: readonly HostPort[]; readonly masterName: string; readonly sentinelPassword?: string; readonly db: number }
  | { readonly mode: 'cluster'; readonly nodes: readonly HostPort[] }
);

export interface S3Settings {
  /** Custom endpoint URL (versitygw, SeaweedFS, ...); unset for AWS. */
  readonly endpoint?: string;
  readonly bucket: string;
  readonly region: string;
  /** Prepended to every object key, e.g. `mail/`. */
  readonly prefix: string;
  readonly forcePathStyle: boolean;
  /** Most pooled keep-alive sockets to the S3 endpoint per process. */
  readonly maxSockets: number;
  /** Connect timeout of one attempt, ms. */
  readonly connectTimeoutMs: number;
  /** Most time one attempt may take until the response headers (a PUT's upload included), ms. */
  readonly requestTimeoutMs: number;
  /** Transient errors are retried with jittered backoff until this deadline, ms. */
  readonly retryDeadlineMs: number;
}

export interface StoreSettings {
  /** Maildrop lease TTL, ms; renewed every third of it. */
  readonly lockTtlMs: number;
  /** Orphan sweep grace period, seconds: younger objects are never swept. */
  readonly sweepGraceS: number;
  /** Interval of the sweeper loop, seconds. */
  readonly sweepIntervalS: number;
  /** Where deliveries larger than `spoolMemoryBytes` are spooled before the PUT. */
  readonly spoolDir?: string;
  readonly spoolMemoryBytes: number;
  /** RETR/TOP fail when S3 sends nothing for this long while the client reads (default 10 s). */
  readonly readStallTimeoutMs?: number;
}

export interface ClusterSettings {
  readonly redis: RedisSettings;
  readonly s3: S3Settings;
  readonly store: StoreSettings;
}

function str(env: Env, key: string): string | undefined {
  const v = env[key];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function int(env: Env, key: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = str(env, key);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new SettingsError(key, `expected a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new SettingsError(key, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function bool(env: Env, key: string, fallback: boolean): boolean {
  const raw = str(env, key)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new SettingsError(key, `expected true or false, got "${raw}"`);
}

/** `host:port,host:port` (IPv6 as `[::1]:port`). */
export function parseHostPorts(key: string, value: string): HostPort[] {
  const out: HostPort[] = [];
  for (const part of value.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(item);
    const port = m ? Number(m[3]) : 0;
    if (!m || port < 1 || port > 65535) throw new SettingsError(key, `expected host:port[,host:port...], got "${item}"`);
    out.push({ host: (m[1] ?? m[2]) as string, port });
  }
  if (out.length === 0) throw new SettingsError(key, 'lists no host:port');
  return out;
}

/**
 * Redis settings: standalone from `REDIS_URL`; Sentinel when `REDIS_SENTINELS` is set (with
 * `REDIS_SENTINEL_MASTER`); Cluster when `REDIS_CLUSTER_NODES` is set. Password from the URL or
 * `REDIS_PASSWORD`; TLS when the URL is `rediss://`.
 */
export function parseRedisSettings(env: Env): RedisSettings {
  const rawUrl = str(env, 'REDIS_URL');
  let url: URL | undefined;
  if (rawUrl !== undefined) {
    try {
      url = new URL(rawUrl);
    } catch {
      throw new SettingsError('REDIS_URL', 'is not a URL (expected redis://[user:password@]host:port[/db] or rediss://...)');
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      throw new SettingsError('REDIS_URL', `scheme must be redis:// or rediss://, got ${url.protocol}//`);
    }
  }
  const dbPath = url?.pathname.replace(/^\//, '') ?? '';
  if (dbPath !== '' && !/^\d+$/.test(dbPath)) throw new SettingsError('REDIS_URL', `database must be a number, got "/${dbPath}"`);
  const db = dbPath === '' ? 0 : Number(dbPath);
  const keyPrefix = env.REDIS_KEY_PREFIX ?? 'postern:';
  if (/[{}\s]/.test(keyPrefix)) throw new SettingsError('REDIS_KEY_PREFIX', 'must not contain braces or spaces');
  const password = str(env, 'REDIS_PASSWORD') ?? (url?.password ? decodeURIComponent(url.password) : undefined);
  const username = url?.username ? decodeURIComponent(url.username) : undefined;
  const common = {
    keyPrefix,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    tls: url?.protocol === 'rediss:',
    commandTimeoutMs: int(env, 'REDIS_COMMAND_TIMEOUT_MS', 5_000, 50, 600_000),
  };
  const sentinels = str(env, 'REDIS_SENTINELS');
  const clusterNodes = str(env, 'REDIS_CLUSTER_NODES');
  if (sentinels !== undefined && clusterNodes !== undefined) {
    throw new SettingsError('REDIS_CLUSTER_NODES', 'set either REDIS_SENTINELS or REDIS_CLUSTER_NODES, not both');
  }
  if (clusterNodes !== undefined) {
    if (db !== 0) throw new SettingsError('REDIS_URL', 'Redis Cluster has only database 0');
    return { ...common, mode: 'cluster', nodes: parseHostPorts('REDIS_CLUSTER_NODES', clusterNodes) };
  }
  if (sentinels !== undefined) {
    const masterName = str(env, 'REDIS_SENTINEL_MASTER');
    if (masterName === undefined) throw new SettingsError('REDIS_SENTINEL_MASTER', 'is required with REDIS_SENTINELS');
    const sentinelPassword = str(env, 'REDIS_SENTINEL_PASSWORD');
    return {
      ...common,
      mode: 'sentinel',
      sentinels: parseHostPorts('REDIS_SENTINELS', sentinels),
      masterName,
      ...(sentinelPassword !== undefined ? { sentinelPassword } : {}),
      db,
    };
  }
  if (url === undefined || rawUrl === undefined) {
    throw new SettingsError('REDIS_URL', 'is required (or REDIS_SENTINELS / REDIS_CLUSTER_NODES)');
  }
  return { ...common, mode: 'standalone', url: rawUrl, db };
}

/** S3 settings; credentials come from the standard AWS variables (AWS_ACCESS_KEY_ID, ...). */
export function parseS3Settings(env: Env): S3Settings {
  const bucket = str(env, 'S3_BUCKET');
  if (bucket === undefined) throw new SettingsError('S3_BUCKET', 'is required');
  const endpoint = str(env, 'S3_ENDPOINT');
  if (endpoint !== undefined) {
    let u: URL;
    try {
      u = new URL(endpoint);
    } catch {
      throw new SettingsError('S3_ENDPOINT', `is not a URL: "${endpoint}"`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new SettingsError('S3_ENDPOINT', 'must be http:// or https://');
  }
  const prefix = env.S3_PREFIX ?? '';
  if (prefix.startsWith('/')) throw new SettingsError('S3_PREFIX', 'must not start with "/"');
  return {
    ...(endpoint !== undefined ? { endpoint } : {}),
    bucket,
    region: str(env, 'S3_REGION') ?? str(env, 'AWS_REGION') ?? 'us-east-1',
    prefix,
    forcePathStyle: bool(env, 'S3_FORCE_PATH_STYLE', endpoint !== undefined),
    maxSockets: int(env, 'S3_MAX_SOCKETS', 64, 1, 65_535),
    connectTimeoutMs: int(env, 'S3_CONNECT_TIMEOUT_MS', 3_000, 10),
    requestTimeoutMs: int(env, 'S3_REQUEST_TIMEOUT_MS', 30_000, 10),
    retryDeadlineMs: int(env, 'S3_RETRY_DEADLINE_MS', 15_000, 0),
  };
}

export function parseStoreSettings(env: Env): StoreSettings {
  const spoolDir = str(env, 'SPOOL_DIR');
  return {
    lockTtlMs: int(env, 'LOCK_TTL_MS', 30_000, 300, 3_600_000),
    sweepGraceS: int(env, 'SWEEP_GRACE_S', 3_600, 1),
    sweepIntervalS: int(env, 'SWEEP_INTERVAL_S', 300, 1),
    ...(spoolDir !== undefined ? { spoolDir } : {}),
    spoolMemoryBytes: int(env, 'SPOOL_MEMORY_BYTES', 256 * 1024, 0, 64 * 1024 * 1024),
  };
}

/** All of the above. */
export function parseClusterSettings(env: Env): ClusterSettings {
  return { redis: parseRedisSettings(env), s3: parseS3Settings(env), store: parseStoreSettings(env) };
}
