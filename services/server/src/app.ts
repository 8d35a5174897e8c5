/** Wires a process: accounts, the store and its locks, POP3 gateway, intake, admin (by role). */
import { createHash } from 'node:crypto';
import { constants, readFileSync } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ChainBackend, CredentialCache, PamBackend, PasswdFileBackend, pamOptionsFromConfig, type AccountBackend, type SharedCredentialStore } from '@postern/accounts';
import { LdapBackend, ldapOptionsFromConfig } from '@postern/accounts-ldap';
import { DEFAULT_GATEWAY_SETTINGS, startGateway, type Gateway, type GatewaySettings } from '@postern/gateway';
import { startIntake, type Intake } from '@postern/delivery';
import {
  MemoryLockManager,
  MemoryLoginDelayGate,
  MemoryLoginThrottle,
  ThrottleTable,
  type LockManager,
  type LoginDelayGate,
  type LoginThrottle,
  type ThrottleLimits,
} from '@postern/locks';
import { Metrics, type Logger } from '@postern/telemetry';
import { startAdmin, type AdminServer } from './admin.js';
import { openBackends, type Backends } from './backends.js';
import type { ServerConfig } from './config.js';
import { ensureTlsFiles, loadTlsOptions } from './tls.js';

export interface RunningServer {
  readonly gateway: Gateway | null;
  readonly intake: Intake | null;
  readonly admin: AdminServer | null;
  readonly accounts: AccountBackend;
  readonly metrics: Metrics;
  /** Stop accepting, drain sessions up to `drainMs`, then stop everything. */
  stop(drainMs?: number): Promise<void>;
}

/**
 * Which parts run in this process. `all`: POP3, intake and admin (the single node, tests).
 * `pop3`: POP3 only (a worker process). `intake`: intake and admin (the primary of a
 * multi-process single node). `gateway`: POP3 and admin (`npm run start:gateway`).
 * `delivery`: intake, admin and the store sweeper (`npm run start:delivery`).
 * `admin`: admin only (the primary of a multi-process gateway).
 */
export type ServerRole = 'all' | 'pop3' | 'intake' | 'gateway' | 'delivery' | 'admin';

const RUNS = {
  all: { pop3: true, intake: true, admin: true },
  pop3: { pop3: true, intake: false, admin: false },
  intake: { pop3: false, intake: true, admin: true },
  gateway: { pop3: true, intake: false, admin: true },
  delivery: { pop3: false, intake: true, admin: true },
  admin: { pop3: false, intake: false, admin: true },
} as const satisfies Record<ServerRole, { pop3: boolean; intake: boolean; admin: boolean }>;

export interface StartOptions {
  /**
   * `all`: POP3, LMTP and admin in this process (one process, or tests). With worker
   * processes, the primary runs `intake` (LMTP and admin) and each worker runs `pop3`.
   */
  readonly role?: ServerRole;
  /** Maildrop locks; default in-process. Workers pass an IpcLockManager. */
  readonly locks?: LockManager;
  /** Where LOGIN-DELAY is enforced; default in-process. Workers pass their IpcLockManager. */
  readonly loginDelayGate?: LoginDelayGate;
  /** Brute-force throttle; default in-process from the AUTH_THROTTLE_* keys. Workers pass their IpcLockManager. */
  readonly loginThrottle?: LoginThrottle;
  /** Readiness beyond "not draining" (the primary: at least one worker is up). */
  readonly ready?: () => boolean;
  /** What /metrics serves; default this process's metrics (the primary: all workers' too). */
  readonly metricsText?: (own: Metrics) => () => Promise<string>;
}

async function openAccounts(
  config: Readonly<ServerConfig>,
  logger: Logger,
  metrics: Metrics,
  shared: SharedCredentialStore | null,
): Promise<AccountBackend> {
  let cache: CredentialCache | null = null;
  let passwdGeneration = '';
  const opened: AccountBackend[] = [];
  try {
    // AUTH: the backends in the order they are asked (ChainBackend when more than one).
    for (const kind of config.AUTH) {
      if (kind === 'ldap') {
        opened.push(new LdapBackend(ldapOptionsFromConfig(config)));
        continue;
      }
      if (kind === 'pam') {
        opened.push(new PamBackend({ ...pamOptionsFromConfig(config), onWarning: (m) => logger.warn(m) }));
        continue;
      }
      opened.push(
        await PasswdFileBackend.open({
          path: config.PASSWD_FILE,
          onWarning: (w) => logger.warn({ file: w.file, line: w.line }, w.message),
          onReload: (r) => {
            // A changed password takes effect at once, not when the cached verification expires
            // (in every process: the file's digest is part of the shared cache keys).
            passwdGeneration = fileDigest(config.PASSWD_FILE);
            cache?.clear();
            logger.info({ file: r.file, users: r.users, skipped: r.skipped }, 'password file loaded');
          },
        }),
      );
    }
  } catch (e) {
    await Promise.allSettled(opened.map((b) => b.close?.()));
    throw e;
  }
  const accounts = opened.length === 1 ? (opened[0] as AccountBackend) : new ChainBackend(opened);
  if (config.CREDENTIAL_CACHE_TTL_S > 0) {
    const secret = config.CREDENTIAL_CACHE_SECRET;
    cache = new CredentialCache(accounts, {
      ttlMs: config.CREDENTIAL_CACHE_TTL_S * 1000,
      generation: () => passwdGeneration,
      onLookup: (result) => metrics.credentialCache.inc({ result }),
      ...(shared && secret ? { shared: { store: shared, secret: Buffer.from(secret, 'utf8') } } : {}),
    });
    if (shared && !secret) logger.info('credential cache is per process; set CREDENTIAL_CACHE_SECRET to share it in Redis');
  }
  return cache ?? accounts;
}

/** SHA-256 of a file's bytes, or '' when it cannot be read. */
function fileDigest(path: string): string {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('base64');
  } catch {
    return '';
  }
}

/** The certificate files, generating a self-signed pair on first run. */
export async function prepareTls(config: Readonly<ServerConfig>, logger: Logger) {
  await mkdir(config.DATA_DIR, { recursive: true });
  const files = await ensureTlsFiles(config.TLS_CERT, config.TLS_KEY, config.DATA_DIR);
  if (files.generated) logger.warn({ cert: files.cert }, 'generated a self-signed certificate; set TLS_CERT and TLS_KEY for production');
  return files;
}

/** The AUTH_THROTTLE_* keys as throttle limits; null when both limits are off. */
export function throttleLimits(config: Readonly<ServerConfig>): ThrottleLimits | null {
  if (config.AUTH_THROTTLE_IP_FAILURES === 0 && config.AUTH_THROTTLE_USER_FAILURES === 0) return null;
  return {
    ipFailures: config.AUTH_THROTTLE_IP_FAILURES,
    userFailures: config.AUTH_THROTTLE_USER_FAILURES,
    windowMs: config.AUTH_THROTTLE_WINDOW_S * 1000,
    blockMs: config.AUTH_THROTTLE_BLOCK_S * 1000,
    trustMs: config.AUTH_THROTTLE_TRUST_S * 1000,
    maxDelayMs: config.AUTH_THROTTLE_MAX_DELAY_MS,
  };
}

export function gatewaySettings(config: Readonly<ServerConfig>, tls: GatewaySettings['tls']): GatewaySettings {
  return {
    ...DEFAULT_GATEWAY_SETTINGS,
    pop3: config.POP3_LISTEN,
    pop3s: config.POP3S_LISTEN,
    tls,
    plaintextAuth: config.PLAINTEXT_AUTH,
    implementation: config.IMPLEMENTATION === '' ? null : config.IMPLEMENTATION,
    saslMechanisms: config.SASL_MECHANISMS,
    maxConnections: config.MAX_CONNECTIONS,
    maxConnectionsPerIp: config.MAX_CONNECTIONS_PER_IP,
    maxConnectionsPerIpPerMinute: config.MAX_CONNECTIONS_PER_IP_PER_MINUTE,
    loginTimeoutMs: config.LOGIN_TIMEOUT_MS,
    idleTimeoutMs: config.IDLE_TIMEOUT_MS,
    authFailureDelayMs: config.AUTH_FAILURE_DELAY_MS,
    maxAuthFailures: config.MAX_AUTH_FAILURES,
    maxBadCommands: config.MAX_BAD_COMMANDS,
    loginDelay: config.LOGIN_DELAY ?? null,
    expire: config.EXPIRE ?? null,
    proxyTrustedNetworks: config.PROXY_TRUSTED_NETWORKS,
  };
}

function inProcessThrottle(config: Readonly<ServerConfig>): LoginThrottle | undefined {
  const limits = throttleLimits(config);
  return limits ? new MemoryLoginThrottle(new ThrottleTable(limits)) : undefined;
}

/** Not draining, the POP3 processes up, and the backends reachable within a second. */
async function readiness(config: Readonly<ServerConfig>, backends: Backends, draining: () => boolean, up: () => boolean): Promise<string | null> {
  if (draining()) return 'draining';
  if (!up()) return 'no POP3 process is up';
  const checks = [
    config.AUTH.includes('passwd-file')
      ? access(config.PASSWD_FILE, constants.R_OK).then(
          () => null,
          (e: NodeJS.ErrnoException) => `password file ${config.PASSWD_FILE}: ${e.code ?? e.message}`,
        )
      : Promise.resolve(null),
    access(config.DATA_DIR, constants.W_OK).then(
      () => null,
      (e: NodeJS.ErrnoException) => `data directory ${config.DATA_DIR}: ${e.code ?? e.message}`,
    ),
    backends.check(),
  ];
  const deadline = new Promise<string>((resolve) => setTimeout(() => resolve('backends did not answer within 1 s'), 1_000).unref());
  const results = await Promise.race([Promise.all(checks), deadline.then((r) => [r])]);
  return results.find((r) => r !== null) ?? null;
}

export async function startServer(config: Readonly<ServerConfig>, logger: Logger, options: StartOptions = {}): Promise<RunningServer> {
  const role = options.role ?? 'all';
  const runs = RUNS[role];
  const tlsFiles = await prepareTls(config, logger);
  const tls = await loadTlsOptions(tlsFiles);
  // The primary of a multi-process node reports process metrics through its workers' sum only.
  const metrics = new Metrics({ processMetrics: role !== 'intake' && role !== 'admin', withoutDelivery: !runs.intake, disabled: config.METRICS === 'off' });
  const backends = await openBackends(config, logger, metrics, throttleLimits(config));
  let accounts: AccountBackend;
  try {
    accounts = await openAccounts(config, logger, metrics, backends.credentialStore);
  } catch (e) {
    await backends.close();
    throw e;
  }
  const store = backends.store;
  const locks = options.locks ?? backends.locks ?? new MemoryLockManager();

  let gateway: Gateway | null = null;
  let intake: Intake | null = null;
  let admin: AdminServer | null = null;
  let draining = false;
  try {
    if (runs.pop3) {
      const loginDelayGate = options.loginDelayGate ?? backends.loginDelayGate ?? new MemoryLoginDelayGate();
      gateway = await startGateway({ settings: gatewaySettings(config, tls), accounts, store, locks, logger, metrics, loginDelayGate, loginThrottle: options.loginThrottle ?? backends.loginThrottle ?? inProcessThrottle(config) });
    }
    if (runs.intake && (config.LMTP_LISTEN || config.SMTP_LISTEN)) {
      intake = await startIntake({
        settings: {
          lmtp: config.LMTP_LISTEN,
          smtp: config.SMTP_LISTEN,
          maxMessageSize: config.MAX_MESSAGE_SIZE,
          hostname: hostname() || 'localhost',
          spoolDir: join(config.DATA_DIR, 'spool'),
          maxConnections: config.MAX_INTAKE_CONNECTIONS,
          concurrency: config.DELIVERY_CONCURRENCY,
          slotWaitMs: config.DELIVERY_SLOT_WAIT_MS,
          quota: { maxOctets: config.QUOTA_MAX_OCTETS, maxMessages: config.QUOTA_MAX_MESSAGES },
          smtpDomains: config.SMTP_DOMAINS,
          tls,
        },
        accounts,
        store,
        logger,
        metrics,
      });
    }
    if (runs.admin && config.ADMIN_LISTEN) {
      const ready = options.ready ?? (() => true);
      const text = options.metricsText?.(metrics) ?? (() => metrics.text());
      admin = await startAdmin(config.ADMIN_LISTEN, () => readiness(config, backends, () => draining, ready), text);
    }
    if (role === 'delivery') backends.startSweeper();
  } catch (e) {
    await gateway?.close(0);
    await intake?.close();
    await accounts.close?.();
    await backends.close();
    throw e;
  }

  return {
    gateway,
    intake,
    admin,
    accounts,
    metrics,
    async stop(drainMs = 0) {
      draining = true;
      await Promise.all([gateway?.close(drainMs), intake?.close()]);
      await admin?.close();
      await accounts.close?.();
      await backends.close();
    },
  };
}
