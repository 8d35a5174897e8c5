#!/usr/bin/env node
/** `npm start`: the single-node service on the embedded default. */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import { hashPassword } from '@postern/accounts';
import { ConfigError } from '@postern/config';
import { createLogger } from '@postern/telemetry';
import { startServer } from './app.js';
import { loadServerConfig } from './config.js';

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

async function main(): Promise<void> {
  let config;
  try {
    config = loadServerConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`postern: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const logger = createLogger({ service: 'postern', level: config.LOG_LEVEL });
  const demo = await firstRunDemoUser(config.PASSWD_FILE);
  let server;
  try {
    server = await startServer(config, logger);
  } catch (e) {
    const message = (e as Error).message;
    process.stderr.write(`postern: cannot start: ${message}\n`);
    process.exit(e instanceof ConfigError ? 2 : 1);
  }
  const pop3 = server.gateway.pop3;
  const lmtp = server.intake?.address;
  process.stderr.write(
    `postern: POP3 on ${pop3 ? `${pop3.host}:${pop3.port}` : 'off'}, POP3S on ${
      server.gateway.pop3s ? `${server.gateway.pop3s.host}:${server.gateway.pop3s.port}` : 'off'
    }, LMTP on ${lmtp ? `${lmtp.host}:${lmtp.port}` : 'off'}; users in ${config.PASSWD_FILE}\n`,
  );
  if (demo && pop3) {
    process.stderr.write(
      [
        `postern: first run: created user "${demo.user}" with password "${demo.password}"`,
        `  read mail:    curl -v pop3://${pop3.host}:${pop3.port}/ -u '${demo.user}:${demo.password}'`,
        lmtp ? `  deliver mail: see README ("Send yourself a message"), LMTP on ${lmtp.host}:${lmtp.port}` : '',
        '',
      ]
        .filter((l) => l !== null)
        .join('\n'),
    );
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal, exiting now');
      process.exit(0);
    }
    stopping = true;
    logger.info({ signal, drainMs: config.DRAIN_TIMEOUT_MS }, 'draining');
    server.stop(config.DRAIN_TIMEOUT_MS).then(
      () => {
        logger.info('stopped');
        logger.flush();
        setImmediate(() => process.exit(0));
      },
      (e: Error) => {
        logger.error({ err: e.message }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((e: Error) => {
  process.stderr.write(`postern: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
