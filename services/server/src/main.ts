#!/usr/bin/env node
/**
 * `npm start`: the single-node service on the embedded default.
 * `npm run start:gateway` (`main.js gateway`): POP3 and admin only, for a cluster of gateways.
 * `npm run start:delivery` (`main.js delivery`): LMTP/SMTP intake, admin and the store sweeper.
 *
 * With WORKERS > 1 the primary process runs LMTP intake, the admin endpoints and the maildrop
 * lock table, and forks POP3 worker processes that share the listening sockets (node:cluster).
 * A worker that dies loses its locks at once and is replaced.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { hashPassword } from '@postern/accounts';
import { ConfigError } from '@postern/config';
import { IpcLockManager, LockTable, LoginHistory, ThrottleTable, serveLocks } from '@postern/locks';
import { clusterMetricsText, createLogger, exposeToClusterPrimary, type Logger } from '@postern/telemetry';
import { prepareTls, startServer, throttleLimits, type RunningServer, type ServerRole } from './app.js';
import { loadServerConfig, workerCount, type ServerConfig } from './config.js';
import { applyReload } from './reload.js';

async function firstRunDemoUser(passwdFile: string): Promise<{ user: string; password: string } | null> {
  if (existsSync(passwdFile)) return null;
  const user = 'demo';
  const password = randomBytes(9).toString('base64url');
  const hash = await hashPassword(password, 'SHA512-CRYPT');
  await mkdir(dirname(passwdFile), { recursive: true });
  await writeFile(passwdFile, `# user:{SCHEME}hash  (manage with: npm run postern -- user add NAME)\n${user}:${hash}\n`, {
    mode: 0o600,
    flag: 'wx',
  });
  return { user, password };
}


function addr(a: { host: string; port: number } | null | undefined): string {
  return a ? `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}` : 'off';
}

/** What `main.js [mode]` runs: the whole node, a POP3 gateway, or a delivery worker. */
export type Mode = 'node' | 'gateway' | 'delivery';

function parseMode(arg: string | undefined): Mode {
  if (arg === undefined || arg === 'node') return 'node';
  if (arg === 'gateway' || arg === 'delivery') return arg;
  throw new ConfigError(`unknown mode "${arg}": use no argument (the whole node), "gateway" or "delivery"`);
}

/**
 * The startup line. Addresses are the bound ones where this process bound them (port 0 shows the
 * port the system chose), else the configured ones (POP3 of worker processes).
 */
function announce(config: Readonly<ServerConfig>, mode: Mode, workers: number, demo: { user: string; password: string } | null, server: RunningServer): void {
  const pop3 = mode === 'delivery' ? null : (server.gateway?.pop3 ?? config.POP3_LISTEN);
  const pop3s = server.gateway?.pop3s ?? config.POP3S_LISTEN;
  const lmtp = server.intake ? server.intake.lmtp : config.LMTP_LISTEN;
  const smtp = server.intake ? server.intake.smtp : config.SMTP_LISTEN;
  const intake = [`LMTP on ${addr(lmtp)}`, ...(smtp ? [`SMTP on ${addr(smtp)}`] : [])];
  const parts = mode === 'delivery' ? intake : [`POP3 on ${addr(pop3)}`, `POP3S on ${addr(pop3s)}`, ...(mode === 'node' ? intake : [])];
  const where = config.STORE === 's3' ? `store s3://${config.S3_BUCKET}/${config.S3_PREFIX}` : `users in ${config.PASSWD_FILE}`;
  process.stderr.write(
    `postern${mode === 'node' ? '' : ` ${mode}`}: ${parts.join(', ')}` +
      (mode === 'delivery' ? '' : `, ${workers} POP3 process${workers === 1 ? '' : 'es'}`) +
      `; ${where}\n`,
  );
  if (demo && pop3) {
    process.stderr.write(
      `postern: first run: created user "${demo.user}" with password "${demo.password}"\n` +
        `  read mail:    curl -v pop3://${addr(pop3)}/ -u '${demo.user}:${demo.password}'\n` +
        (lmtp ? `  deliver mail: see README ("Send yourself a message"), LMTP on ${addr(lmtp)}\n` : ''),
    );
  }
}

/** SIGTERM/SIGINT: drain, then exit 0; a second signal exits at once. */
function onStopSignals(logger: Logger, stop: (signal: string) => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal, exiting now');
      process.exit(0);
    }
    stopping = true;
    stop(signal).then(
      () => {
        logger.flush();
        setImmediate(() => process.exit(0));
      },
      (e: Error) => {
        logger.error({ err: e.message }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}

/**
 * SIGHUP: read the configuration again and apply what can change safely in a running process
 * (the log level, POP3 limits and timeouts; see reload.ts). Anything else needs a restart and is
 * logged as such; a configuration that no longer validates changes nothing.
 */
function onReloadSignal(logger: Logger, running: Readonly<ServerConfig>, server: RunningServer | null, forward?: () => void): void {
  const reload = (): void => {
    try {
      applyReload(logger, running, loadServerConfig(), server);
    } catch (e) {
      logger.error({ err: (e as Error).message }, 'configuration reload refused; keeping the running configuration');
    }
    forward?.();
  };
  onSighup = reload;
  if (reloadPending) {
    reloadPending = false;
    reload();
  }
}

/**
 * One SIGHUP listener for the life of the process, installed first thing in main(). A signal that
 * comes while the process is still starting (its listeners may already be up, so the primary
 * forwards it) is remembered and applied once the reload handler is in place. Without a listener
 * the signal's default action ends the process; and the listener is never swapped, because
 * removing a signal's last listener stops its watcher and drops a signal already queued for it.
 */
let onSighup: (() => void) | null = null;
let reloadPending = false;
function sighup(): void {
  if (onSighup) onSighup();
  else reloadPending = true;
}

async function runSingle(config: Readonly<ServerConfig>, logger: Logger, mode: Mode): Promise<void> {
  const demo = mode === 'node' ? await firstRunDemoUser(config.PASSWD_FILE) : null;
  const role: ServerRole = mode === 'node' ? 'all' : mode;
  const server = await startServer(config, logger, { role });
  announce(config, mode, 1, demo, server);
  onReloadSignal(logger, config, server);
  onStopSignals(logger, async (signal) => {
    logger.info({ signal, drainMs: config.DRAIN_TIMEOUT_MS }, 'draining');
    await server.stop(config.DRAIN_TIMEOUT_MS);
    logger.info('stopped');
  });
}

async function runPrimary(config: Readonly<ServerConfig>, logger: Logger, mode: Mode, count: number): Promise<void> {
  const demo = mode === 'node' ? await firstRunDemoUser(config.PASSWD_FILE) : null;
  await prepareTls(config, logger); // before forking, so workers never race to generate it
  const table = new LockTable();
  const logins = new LoginHistory();
  // Brute-force counters for all workers (they ask over IPC, like the locks).
  const limits = throttleLimits(config);
  const throttle = limits ? new ThrottleTable(limits) : undefined;
  const online = new Set<Worker>();
  /**
   * Workers that have bound their listeners, so they are past the start of main(), where SIGHUP
   * is caught. One still loading its modules would die of the signal; it reads the configuration
   * itself when it gets there.
   */
  const listening = new Set<Worker>();
  let reloads = 0;
  let stopping = false;
  let restarts = 0;

  const fork = (): void => {
    const worker = cluster.fork();
    const owner = `worker-${worker.id}`;
    serveLocks(table, owner, worker, logins, throttle);
    worker.on('online', () => online.add(worker));
    const forkedAt = reloads;
    worker.on('listening', () => {
      if (listening.has(worker)) return;
      listening.add(worker);
      // A reload since this worker was forked may have come before it read the configuration.
      if (reloads !== forkedAt) worker.process.kill('SIGHUP');
    });
    worker.on('exit', (code, signal) => {
      online.delete(worker);
      listening.delete(worker);
      const dropped = table.releaseOwner(owner);
      if (stopping) return;
      logger.error({ worker: worker.id, code, signal, locksReleased: dropped }, 'POP3 worker died, replacing it');
      // Back off when workers die in a loop (bad config found late, a crash on every start).
      const delay = Math.min(100 * 2 ** Math.min(restarts++, 6), 5_000);
      setTimeout(fork, delay).unref();
    });
  };

  const server: RunningServer = await startServer(config, logger, {
    role: mode === 'node' ? 'intake' : 'admin',
    ready: () => online.size > 0,
    metricsText: clusterMetricsText,
  });
  for (let i = 0; i < count; i++) fork();
  announce(config, mode, count, demo, server);
  onReloadSignal(logger, config, server, () => {
    reloads++;
    for (const w of listening) w.process.kill('SIGHUP');
  });
  onStopSignals(logger, async (signal) => {
    stopping = true;
    logger.info({ signal, drainMs: config.DRAIN_TIMEOUT_MS }, 'draining');
    const exits = [...Object.values(cluster.workers ?? {})].map((w) =>
      w && !w.isDead() ? new Promise<void>((resolve) => w.once('exit', () => resolve())) : Promise.resolve(),
    );
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    await Promise.all([server.stop(config.DRAIN_TIMEOUT_MS), ...exits]);
    logger.info('stopped');
  });
}

async function runWorker(config: Readonly<ServerConfig>, logger: Logger): Promise<void> {
  // With a shared store the locks live in Redis; otherwise in the primary's table.
  const locks = config.STORE === 's3' ? null : new IpcLockManager(process as unknown as Parameters<typeof serveLocks>[2]);
  const server = await startServer(config, logger, { role: 'pop3', ...(locks ? { locks, loginDelayGate: locks, ...(throttleLimits(config) ? { loginThrottle: locks } : {}) } : {}) });
  exposeToClusterPrimary(server.metrics);
  onReloadSignal(logger, config, server);
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await server.stop(config.DRAIN_TIMEOUT_MS);
  };
  // The primary is gone: no lock service, so no new logins can be safe. Drain and leave.
  process.on('disconnect', () => {
    locks?.disconnected();
    stop().then(() => process.exit(0));
  });
  onStopSignals(logger, stop);
}

async function main(): Promise<void> {
  process.on('SIGHUP', sighup);
  let config: Readonly<ServerConfig>;
  let mode: Mode;
  try {
    mode = parseMode(process.argv[2]);
    config = loadServerConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`postern: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const workers = mode === 'delivery' ? 1 : workerCount(config.WORKERS);
  const logger = createLogger({
    service: mode === 'node' ? 'postern' : `postern-${mode}`,
    level: config.LOG_LEVEL,
    format: config.LOG_FORMAT,
    ...(cluster.isWorker ? { bindings: { worker: cluster.worker?.id } } : {}),
  });
  try {
    if (cluster.isWorker) await runWorker(config, logger);
    else if (workers > 1) await runPrimary(config, logger, mode, workers);
    else await runSingle(config, logger, mode);
  } catch (e) {
    process.stderr.write(`postern: cannot start: ${(e as Error).message}\n`);
    process.exit(e instanceof ConfigError ? 2 : 1);
  }
}

main().catch((e: Error) => {
  process.stderr.write(`postern: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
