/**
 * LMTP intake (RFC 2033): one reply per recipient after DATA. 250 only once the store has the
 * message durably; unknown user 550 5.1.1, too big 552 5.3.4, store failure 451 4.3.0.
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession, type SMTPServerDataResult } from 'smtp-server';
import type { Account, AccountBackend } from '@postern/accounts';
import type { MailStore } from '@postern/mailstore';
import { Metrics, type Logger } from '@postern/telemetry';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface IntakeSettings {
  readonly listen: ListenAddress;
  /** Largest message accepted, in octets. */
  readonly maxMessageSize: number;
  /** Name in the greeting. */
  readonly hostname: string;
  /** Where a message for several recipients is spooled while it is stored for each. */
  readonly spoolDir: string;
  readonly maxConnections: number;
}

export interface IntakeDeps {
  readonly settings: IntakeSettings;
  readonly accounts: AccountBackend;
  readonly store: MailStore;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

export interface Intake {
  readonly address: ListenAddress;
  close(): Promise<void>;
}

/** An SMTP reply error: smtp-server sends `responseCode` and adds the enhanced status code. */
function reply(code: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode: code });
}

export async function startLmtp(deps: IntakeDeps): Promise<Intake> {
  const { settings, logger } = deps;
  const recipients = new WeakMap<object, Account[]>();

  async function deliverAll(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<SMTPServerDataResult[]> {
    const accounts = recipients.get(session.envelope) ?? [];
    const log = logger.child({ session: session.id, ip: session.remoteAddress });
    const store = (mailboxIndex: number, source: Readable): Promise<SMTPServerDataResult> => {
      const account = accounts[mailboxIndex] as Account;
      const started = process.hrtime.bigint();
      const { metrics } = deps;
      return deps.store
        // The canonical size is never below the octets received, so whatever smtp-server refuses
        // as too big (rejectOversized) is refused here too, before anything is stored.
        .deliver({ id: account.mailboxId, username: account.username }, source, { maxSize: settings.maxMessageSize })
        .then(
          (r) => {
            metrics.deliveries.inc({ protocol: 'lmtp', result: 'accepted' });
            metrics.deliveryOctets.inc({ protocol: 'lmtp' }, r.size);
            metrics.deliveryDuration.observe({ protocol: 'lmtp' }, Metrics.since(started));
            log.info({ user: account.username, uid: r.uid, size: r.size }, 'delivered');
            return `Ok: delivered to ${account.username} as ${r.uid}`;
          },
          (e: Error & { code?: string }) => {
            if (e.code === 'too-large') {
              metrics.deliveries.inc({ protocol: 'lmtp', result: 'too_large' });
              return reply(552, 'Message too big');
            }
            metrics.deliveries.inc({ protocol: 'lmtp', result: 'failed' });
            log.warn({ user: account.username, err: e.message }, 'delivery failed');
            return reply(451, 'Local error in processing, try again later');
          },
        );
    };
    if (accounts.length === 1) {
      const result = await store(0, stream);
      if (stream.readable) stream.resume();
      return [result];
    }
    // Several recipients: spool once, then store a copy for each.
    await mkdir(settings.spoolDir, { recursive: true });
    const spool = join(settings.spoolDir, `lmtp-${process.pid}-${randomBytes(8).toString('hex')}`);
    try {
      try {
        await pipeline(stream, createWriteStream(spool, { mode: 0o600 }));
      } catch (e) {
        if (stream.readable) stream.resume();
        log.warn({ err: (e as Error).message }, 'spooling failed');
        return accounts.map(() => reply(451, 'Local error in processing, try again later'));
      }
      const results: SMTPServerDataResult[] = [];
      for (let i = 0; i < accounts.length; i++) results.push(await store(i, createReadStream(spool, { highWaterMark: 65_536 })));
      return results;
    } finally {
      await rm(spool, { force: true });
    }
  }

  const server = new SMTPServer({
    lmtp: true,
    name: settings.hostname,
    banner: 'Postern LMTP ready',
    size: settings.maxMessageSize,
    // Over `size`: 552 5.3.4 for every recipient, whatever onData answered (our own 552 would get 5.2.2).
    rejectOversized: true,
    // The client's host name is not used; a reverse lookup only delays every greeting (up to 1.5 s).
    disableReverseLookup: true,
    hideENHANCEDSTATUSCODES: false,
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    maxClients: settings.maxConnections,
    logger: false,
    onRcptTo(address, session, callback) {
      deps.accounts.lookup(address.address).then(
        (account) => {
          if (!account) {
            deps.metrics.deliveries.inc({ protocol: 'lmtp', result: 'unknown_recipient' });
            callback(reply(550, `<${address.address}>: User unknown`));
            return;
          }
          const list = recipients.get(session.envelope) ?? [];
          list.push(account);
          recipients.set(session.envelope, list);
          callback();
        },
        (e: Error) => {
          logger.warn({ rcpt: address.address, err: e.message }, 'recipient lookup failed');
          callback(reply(451, 'Temporary lookup failure, try again later'));
        },
      );
    },
    onData(stream, session, callback) {
      deliverAll(stream, session).then(
        (results) => callback(null, results),
        (e: Error) => {
          if (stream.readable) stream.resume();
          logger.error({ err: e.message }, 'LMTP data handling failed');
          callback(reply(451, 'Local error in processing, try again later'));
        },
      );
    },
  });
  server.on('error', (e) => logger.warn({ err: e.message }, 'LMTP server error'));
  server.listen(settings.listen.port, settings.listen.host);
  await once(server.server, 'listening');
  const a = server.server.address();
  const address = a && typeof a === 'object' ? { host: a.address, port: a.port } : settings.listen;
  logger.info({ lmtp: address }, 'LMTP listening');
  return {
    address,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
