/** Wires the single node: password file, Maildir, in-process locks, POP3 gateway, LMTP intake. */
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CredentialCache, PasswdFileBackend, type AccountBackend } from '@postern/accounts';
import { DEFAULT_GATEWAY_SETTINGS, startGateway, type Gateway, type GatewaySettings } from '@postern/gateway';
import { startLmtp, type Intake } from '@postern/delivery';
import { MemoryLockManager } from '@postern/locks';
import { MaildirStore, maildirPathFromTemplate } from '@postern/mailstore';
import type { Logger } from '@postern/telemetry';
import { startAdmin, type AdminServer } from './admin.js';
import type { ServerConfig } from './config.js';
import { ensureTlsFiles, loadTlsOptions } from './tls.js';

export interface RunningServer {
  readonly gateway: Gateway;
  readonly intake: Intake | null;
  readonly admin: AdminServer | null;
  readonly accounts: AccountBackend;
  /** Stop accepting, drain sessions up to `drainMs`, then stop everything. */
  stop(drainMs?: number): Promise<void>;
}

export async function startServer(config: Readonly<ServerConfig>, logger: Logger): Promise<RunningServer> {
  await mkdir(config.DATA_DIR, { recursive: true });
  const tlsFiles = await ensureTlsFiles(config.TLS_CERT, config.TLS_KEY, config.DATA_DIR);
  if (tlsFiles.generated) logger.warn({ cert: tlsFiles.cert }, 'generated a self-signed certificate; set TLS_CERT and TLS_KEY for production');
  const tls = await loadTlsOptions(tlsFiles);

  let cache: CredentialCache | null = null;
  const passwd = await PasswdFileBackend.open({
    path: config.PASSWD_FILE,
    onWarning: (w) => logger.warn({ file: w.file, line: w.line }, w.message),
    onReload: (r) => {
      // A changed password takes effect at once, not when the cached verification expires.
      cache?.clear();
      logger.info({ file: r.file, users: r.users, skipped: r.skipped }, 'password file loaded');
    },
  });
  if (config.CREDENTIAL_CACHE_TTL_S > 0) cache = new CredentialCache(passwd, { ttlMs: config.CREDENTIAL_CACHE_TTL_S * 1000 });
  const accounts: AccountBackend = cache ?? passwd;
  const store = new MaildirStore({
    pathFor: (mailbox) => maildirPathFromTemplate(config.MAILDIR, mailbox.username),
    fsync: config.MAILDIR_FSYNC,
    readMode: config.MAILDIR_READ_MODE,
  });
  const locks = new MemoryLockManager();

  const settings: GatewaySettings = {
    ...DEFAULT_GATEWAY_SETTINGS,
    pop3: config.POP3_LISTEN,
    pop3s: config.POP3S_LISTEN,
    tls,
    plaintextAuth: config.PLAINTEXT_AUTH,
    implementation: config.IMPLEMENTATION === '' ? null : config.IMPLEMENTATION,
    saslMechanisms: config.SASL_MECHANISMS,
    maxConnections: config.MAX_CONNECTIONS,
    maxConnectionsPerIp: config.MAX_CONNECTIONS_PER_IP,
    loginTimeoutMs: config.LOGIN_TIMEOUT_MS,
    idleTimeoutMs: config.IDLE_TIMEOUT_MS,
    authFailureDelayMs: config.AUTH_FAILURE_DELAY_MS,
    maxAuthFailures: config.MAX_AUTH_FAILURES,
    maxBadCommands: config.MAX_BAD_COMMANDS,
    loginDelay: config.LOGIN_DELAY ?? null,
    expire: config.EXPIRE ?? null,
  };
  const gateway = await startGateway({ settings, accounts, store, locks, logger });
  let intake: Intake | null = null;
  let admin: AdminServer | null = null;
  let draining = false;
  try {
    if (config.LMTP_LISTEN) {
      intake = await startLmtp({
        settings: {
          listen: config.LMTP_LISTEN,
          maxMessageSize: config.MAX_MESSAGE_SIZE,
          hostname: hostname() || 'localhost',
          spoolDir: join(config.DATA_DIR, 'spool'),
          maxConnections: 100,
        },
        accounts,
        store,
        logger,
      });
    }
    if (config.ADMIN_LISTEN) admin = await startAdmin(config.ADMIN_LISTEN, () => !draining);
  } catch (e) {
    await gateway.close(0);
    await intake?.close();
    throw e;
  }

  return {
    gateway,
    intake,
    admin,
    accounts,
    async stop(drainMs = 0) {
      draining = true;
      await Promise.all([gateway.close(drainMs), intake?.close()]);
      await admin?.close();
      await accounts.close?.();
    },
  };
}
