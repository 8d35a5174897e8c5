/** The single node's settings. Names are public interface: operators' scripts use them. */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { ldapOptionsFromConfig } from '@postern/accounts-ldap';
import { boolean, integer, list, listenAddress, loadConfig, z, type LoadOptions } from '@postern/config';
import { trustedNetworks } from '@postern/gateway';
import { LOG_FORMATS, LOG_LEVELS } from '@postern/telemetry';

export const serverSchema = z.object({
  POP3_LISTEN: listenAddress.prefault('127.0.0.1:1110'),
  POP3S_LISTEN: listenAddress.prefault('127.0.0.1:1995'),
  LMTP_LISTEN: listenAddress.prefault('127.0.0.1:2424'),
  /** SMTP intake for local mailboxes only (no AUTH, no relay); off unless set. */
  SMTP_LISTEN: listenAddress.prefault('off'),
  /** Open LMTP/SMTP connections per process (each listener); beyond it new ones are refused. */
  MAX_INTAKE_CONNECTIONS: integer(1, 100_000).default(100),
  /** Domains SMTP accepts mail for (others: 550 5.7.1); empty: any address of a known user. */
  SMTP_DOMAINS: list.default([]),
  /** Default mailbox quota (canonical octets, messages); 0: no limit. The passwd-file's quota_rule overrides it. */
  QUOTA_MAX_OCTETS: integer(0).default(0),
  QUOTA_MAX_MESSAGES: integer(0).default(0),
  /** Deliveries in flight per process; more wait up to DELIVERY_SLOT_WAIT_MS, then get 451 4.3.2. */
  DELIVERY_CONCURRENCY: integer(1, 10_000).default(32),
  DELIVERY_SLOT_WAIT_MS: integer(0, 170_000).default(60_000),
  ADMIN_LISTEN: listenAddress.prefault('127.0.0.1:9110'),
  DATA_DIR: z.string().min(1).default('./var'),
  PASSWD_FILE: z.string().min(1).optional(),
  MAILDIR: z
    .string()
    .min(1)
    .refine((t) => t.includes('%u') || t.includes('%n'), 'must contain %u or %n so each user gets their own Maildir')
    .optional(),
  TLS_CERT: z.string().min(1).optional(),
  TLS_KEY: z.string().min(1).optional(),
  PLAINTEXT_AUTH: z.enum(['loopback', 'always', 'never']).default('loopback'),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  /** `json`, `pretty`, or `auto`: pretty only when stdout is a terminal. */
  LOG_FORMAT: z.enum(LOG_FORMATS).default('auto'),
  /** `off`: no metric is recorded and /metrics says so (for measuring their cost). */
  METRICS: z.enum(['on', 'off']).default('on'),
  /** Name in the greeting and CAPA IMPLEMENTATION; empty hides it. */
  IMPLEMENTATION: z.string().default('Postern'),
  SASL_MECHANISMS: list.pipe(z.array(z.enum(['PLAIN', 'LOGIN']))).default(['PLAIN', 'LOGIN']),
  MAX_CONNECTIONS: integer(1).default(10_000),
  MAX_CONNECTIONS_PER_IP: integer(1).default(50),
  /** New POP3 connections from one address per minute; 0: no limit. */
  MAX_CONNECTIONS_PER_IP_PER_MINUTE: integer(0).default(0),
  LOGIN_TIMEOUT_MS: integer(1_000).default(60_000),
  IDLE_TIMEOUT_MS: integer(600_000).default(600_000),
  AUTH_FAILURE_DELAY_MS: integer(0, 60_000).default(1_000),
  MAX_AUTH_FAILURES: integer(1, 100).default(3),
  /** Brute-force throttle (docs/decisions.md): failures per client address / per account before refusal; 0: no limit. */
  AUTH_THROTTLE_IP_FAILURES: integer(0, 1_000_000).default(50),
  AUTH_THROTTLE_USER_FAILURES: integer(0, 1_000_000).default(4),
  /** Failures are forgotten this long after the latest one. */
  AUTH_THROTTLE_WINDOW_S: integer(1, 30 * 86_400).default(1_800),
  /** A reached limit refuses logins for at least this long. */
  AUTH_THROTTLE_BLOCK_S: integer(0, 30 * 86_400).default(1_800),
  /** A successful login exempts its (address, account) pair from the account limit this long; 0: never. */
  AUTH_THROTTLE_TRUST_S: integer(0, 365 * 86_400).default(604_800),
  /** Delay before verifying, growing with the failures up to this just below a limit. */
  AUTH_THROTTLE_MAX_DELAY_MS: integer(0, 60_000).default(4_000),
  MAX_BAD_COMMANDS: integer(1, 1_000).default(10),
  LOGIN_DELAY: integer(0).optional(),
  EXPIRE: z.union([z.literal('NEVER'), integer(0)]).optional(),
  MAX_MESSAGE_SIZE: integer(1_024).default(50 * 1024 * 1024),
  CREDENTIAL_CACHE_TTL_S: integer(0, 86_400).default(60),
  /**
   * Cluster mode: the secret (at least 32 characters, the same in every process) that keys the
   * credential cache shared in Redis. Unset: each process caches for itself.
   */
  CREDENTIAL_CACHE_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  /** Account backends asked in this order: `passwd-file`, `ldap` (e.g. `ldap,passwd-file`). */
  AUTH: list.pipe(z.array(z.enum(['passwd-file', 'ldap', 'pam'])).min(1, 'name at least one backend')).default(['passwd-file']),
  /** LDAP / Active Directory (AUTH includes ldap): see libs/accounts-ldap/README.md. */
  LDAP_URLS: list.default([]),
  LDAP_MODE: z.enum(['search-bind', 'direct-bind']).default('search-bind'),
  LDAP_BIND_DN: z.string().min(1).optional(),
  LDAP_BIND_PASSWORD: z.string().min(1).optional(),
  LDAP_BIND_PASSWORD_FILE: z.string().min(1).optional(),
  LDAP_BASE_DN: z.string().min(1).optional(),
  LDAP_USER_FILTER: z.string().min(1).default('(&(objectClass=inetOrgPerson)(uid=%u))'),
  LDAP_BIND_TEMPLATE: z.string().min(1).optional(),
  LDAP_STARTTLS: boolean.default(false),
  LDAP_CA_FILE: z.string().min(1).optional(),
  LDAP_ALLOW_PLAINTEXT: boolean.default(false),
  LDAP_REQUIRED_GROUP: z.string().min(1).optional(),
  LDAP_REQUIRED_GROUP_NESTED: boolean.default(false),
  LDAP_MAILBOX_ATTRIBUTE: z.string().min(1).default('entryUUID'),
  LDAP_MAIL_ATTRIBUTES: list.default(['mail']),
  LDAP_CONNECT_TIMEOUT_MS: integer(100, 60_000).default(2_000),
  LDAP_TIMEOUT_MS: integer(100, 60_000).default(5_000),
  LDAP_POOL_SIZE: integer(1, 256).default(8),
  /** Linux system accounts (AUTH includes pam): see libs/accounts/README.md. */
  PAM_SERVICE: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'a PAM service name (a file in /etc/pam.d)').default('postern'),
  PAM_MIN_UID: integer(1).default(1_000),
  PAM_FAILURE_DELAY_MS: integer(0, 60_000).default(2_000),
  PAM_TIMEOUT_MS: integer(100, 120_000).default(10_000),
  PAM_CONCURRENCY: integer(1, 1_024).optional(),
  MAILDIR_FSYNC: boolean.default(true),
  MAILDIR_READ_MODE: z.enum(['sync', 'async']).default('sync'),
  MAILDIR_SAVE_CRLF: boolean.default(true),
  DRAIN_TIMEOUT_MS: integer(0).default(30_000),
  /** Load balancers (addresses or CIDR networks) that send a HAProxy PROXY header; empty: off. */
  PROXY_TRUSTED_NETWORKS: list.default([]).superRefine((cidrs, ctx) => {
    try {
      trustedNetworks(cidrs);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  }),
  /** Message store: `maildir` (the embedded default) or `s3` (cluster mode: needs S3_BUCKET and Redis). */
  STORE: z.enum(['maildir', 's3']).default('maildir'),
  S3_ENDPOINT: z.url().optional(),
  S3_BUCKET: z.string().min(3).max(63).optional(),
  S3_REGION: z.string().min(1).default('us-east-1'),
  /** Prepended to every object key (`<prefix><mailbox id>/<message id>`). */
  S3_PREFIX: z.string().default(''),
  S3_FORCE_PATH_STYLE: boolean.default(false),
  /** Keep-alive sockets per process to the S3 endpoint. */
  S3_MAX_SOCKETS: integer(1, 65_536).default(256),
  /** Deadline for one S3 operation including its retries; then [SYS/TEMP] / 451 4.3.0. */
  S3_TIMEOUT_MS: integer(100, 600_000).default(10_000),
  /** Standalone Redis (`redis://[:password@]host:port[/db]`, `rediss://` for TLS). */
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').optional(),
  /** Sentinel: `host:port` list, with REDIS_SENTINEL_MASTER. */
  REDIS_SENTINELS: list.default([]),
  REDIS_SENTINEL_MASTER: z.string().min(1).optional(),
  /** Redis Cluster: `host:port` seed nodes. */
  REDIS_CLUSTER_NODES: list.default([]),
  /** Password for Sentinel- or Cluster-managed Redis nodes (a standalone URL carries its own). */
  REDIS_PASSWORD: z.string().optional(),
  REDIS_KEY_PREFIX: z.string().default('postern:'),
  /** Maildrop lease lifetime in Redis; renewed every third of it. A crashed gateway's lock frees within it. */
  LOCK_TTL_MS: integer(1_000, 600_000).default(30_000),
  /** Delivery worker: how often the sweeper finishes pending deletions and removes orphans (0: never). */
  SWEEP_INTERVAL_S: integer(0).default(300),
  /** Orphan objects (stored but never indexed) younger than this are left alone. */
  SWEEP_GRACE_S: integer(60).default(3_600),
  /** POP3 worker processes: a number, or `auto` (one per CPU but one, at least 1, at most 4). 1 runs everything in one process. */
  WORKERS: z.union([z.literal('auto'), integer(1, 64)]).default('auto'),
}).superRefine((c, ctx) => {
  if (c.AUTH.includes('ldap')) {
    try {
      ldapOptionsFromConfig(c);
    } catch (e) {
      // The message starts with the key ("LDAP_BASE_DN: required ...").
      const text = (e as Error).message;
      const key = /^(LDAP_[A-Z_]+)/.exec(text)?.[1] ?? 'AUTH';
      ctx.addIssue({ code: 'custom', path: [key], message: text.startsWith(`${key}: `) ? text.slice(key.length + 2) : text });
    }
  }
  const redisModes = [c.REDIS_URL !== undefined, c.REDIS_SENTINELS.length > 0, c.REDIS_CLUSTER_NODES.length > 0].filter(Boolean).length;
  if (redisModes > 1) {
    ctx.addIssue({ code: 'custom', path: ['REDIS_URL'], message: 'set only one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES' });
  }
  if (c.REDIS_SENTINELS.length > 0 && c.REDIS_SENTINEL_MASTER === undefined) {
    ctx.addIssue({ code: 'custom', path: ['REDIS_SENTINEL_MASTER'], message: 'required with REDIS_SENTINELS (the monitored master name)' });
  }
  if (c.STORE === 's3') {
    if (c.S3_BUCKET === undefined) ctx.addIssue({ code: 'custom', path: ['S3_BUCKET'], message: 'required when STORE=s3' });
    if (redisModes === 0) {
      ctx.addIssue({ code: 'custom', path: ['REDIS_URL'], message: 'STORE=s3 needs Redis: set REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES' });
    }
  }
});

export type ServerConfigInput = z.output<typeof serverSchema>;

export interface ServerConfig extends Omit<ServerConfigInput, 'PASSWD_FILE' | 'MAILDIR'> {
  readonly PASSWD_FILE: string;
  readonly MAILDIR: string;
}

/** Load, validate and fill the defaults that depend on DATA_DIR. */
export function loadServerConfig(options: LoadOptions = {}): Readonly<ServerConfig> {
  const c = loadConfig(serverSchema, options);
  const dataDir = resolve(c.DATA_DIR);
  return Object.freeze({
    ...c,
    DATA_DIR: dataDir,
    PASSWD_FILE: resolve(c.PASSWD_FILE ?? `${dataDir}/passwd`),
    MAILDIR: c.MAILDIR ?? `${dataDir}/mail/%u/Maildir`,
  });
}

/**
 * `auto`: one POP3 worker per CPU but one, at least 1 and at most 4. The other CPU is for what
 * is not a worker: the primary (intake, the lock and throttle tables, admin), the kernel's
 * network work, and on a small box its MTA. On 2 CPUs that means one process, which served 1.35x
 * the sessions of two workers there (docs/decisions.md, "WORKERS=auto").
 */
export function workerCount(workers: ServerConfig['WORKERS'], cpus = availableParallelism()): number {
  return workers === 'auto' ? Math.max(1, Math.min(cpus - 1, 4)) : workers;
}
