/**
 * Mail intake: an LMTP listener (RFC 2033, one reply per recipient after DATA) and an SMTP
 * listener (one recipient per transaction, so its single DATA reply is that recipient's), sharing
 * recipient checks, quotas and a bound on deliveries in flight. 250 only once the store has the
 * message durably. Replies: unknown user 550 5.1.1, another domain (SMTP) 550 5.7.1, mailbox full
 * 552 5.2.2, too big 552 5.3.4, disk full 452 4.3.1, busy 451 4.3.2, other failures 451 4.3.0.
 * See the package README and docs/decisions.md.
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { SecureContextOptions } from 'node:tls';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import type { Account, AccountBackend } from '@postern/accounts';
import { hasQuota, quotaFull, type MailboxRef, type MailStore, type Quota } from '@postern/mailstore';
import { Metrics, type Logger } from '@postern/telemetry';
import { REPLIES, keepOwnStatusCodes, storeFailure, type Outcome, type Reply } from './replies.js';
import { DeliverySlots } from './slots.js';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export type Protocol = 'lmtp' | 'smtp';

export interface IntakeSettings {
  /** LMTP listener; null: none. */
  readonly lmtp: ListenAddress | null;
  /** SMTP listener (port 25 style: no AUTH, no relay); null: none. */
  readonly smtp: ListenAddress | null;
  /** Largest message accepted, in octets (advertised as SIZE). */
  readonly maxMessageSize: number;
  /** Name in the greeting. */
  readonly hostname: string;
  /** Where a message for several LMTP recipients is spooled while it is stored for each. */
  readonly spoolDir: string;
  /** Connections per listener. */
  readonly maxConnections: number;
  /** Deliveries (DATA phases) in flight in this process. */
  readonly concurrency: number;
  /** How long a DATA phase waits for a free delivery slot before `451 4.3.2`; 0: answer at once. */
  readonly slotWaitMs: number;
  /** Default mailbox quota; an account's own limits override it limit by limit. */
  readonly quota: Quota;
  /** Domains the SMTP listener accepts mail for (others: 550 5.7.1); empty: any known user's address. */
  readonly smtpDomains: readonly string[];
  /** Certificate for STARTTLS on the SMTP listener; null: no STARTTLS. */
  readonly tls: SecureContextOptions | null;
}

export interface IntakeDeps {
  readonly settings: IntakeSettings;
  readonly accounts: AccountBackend;
  readonly store: MailStore;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

export interface Intake {
  /** The LMTP listener's address, else the SMTP listener's. */
  readonly address: ListenAddress;
  readonly lmtp: ListenAddress | null;
  readonly smtp: ListenAddress | null;
  /** Deliveries in flight and waiting for a slot, now. */
  readonly load: { readonly inFlight: number; readonly waiting: number };
  close(): Promise<void>;
}

interface Recipient {
  readonly account: Account;
  readonly quota: Quota;
}

type Result = string | Reply;

/** The account's limits where it sets them, the defaults elsewhere. */
export function effectiveQuota(defaults: Quota, own: Quota | undefined): Quota {
  return {
    maxOctets: own?.maxOctets ?? defaults.maxOctets ?? 0,
    maxMessages: own?.maxMessages ?? defaults.maxMessages ?? 0,
  };
}

const mailboxOf = (account: Account): MailboxRef => ({ id: account.mailboxId, username: account.username });

export async function startIntake(deps: IntakeDeps): Promise<Intake> {
  const { settings, logger, metrics } = deps;
  if (!settings.lmtp && !settings.smtp) throw new Error('startIntake: neither an LMTP nor an SMTP listener is configured');
  const slots = new DeliverySlots(settings.concurrency);
  const domains = new Set(settings.smtpDomains.map((d) => d.toLowerCase()));
  // Recipients accepted so far in a transaction, by lower-cased address: a repeated RCPT replaces
  // the earlier one in place, as smtp-server does in the envelope, so LMTP replies stay one each.
  const transactions = new WeakMap<object, Map<string, Recipient>>();
  const count = (protocol: Protocol, result: Outcome, n = 1): void => metrics.deliveries.inc({ protocol, result }, n);

  async function checkRecipient(address: string, protocol: Protocol, log: Logger): Promise<Recipient> {
    if (protocol === 'smtp' && domains.size > 0) {
      const at = address.lastIndexOf('@');
      if (at < 0 || !domains.has(address.slice(at + 1).toLowerCase())) {
        count(protocol, 'relay_denied');
        throw REPLIES.relayDenied(address);
      }
    }
    let account: Account | null;
    try {
      account = await deps.accounts.lookup(address);
    } catch (e) {
      log.warn({ rcpt: address, err: (e as Error).message }, 'recipient lookup failed');
      throw REPLIES.lookupFailed();
    }
    if (!account) {
      count(protocol, 'unknown_recipient');
      throw REPLIES.unknownUser(address);
    }
    const quota = effectiveQuota(settings.quota, account.quota);
    if (hasQuota(quota)) {
      let usage: { count: number; octets: number };
      try {
        const mailbox = mailboxOf(account);
        usage = await (deps.store.quotaUsage?.(mailbox) ?? deps.store.stat(mailbox));
      } catch (e) {
        log.warn({ user: account.username, err: (e as Error).message }, 'mailbox usage unavailable');
        throw storeFailure(e).reply;
      }
      if (quotaFull(usage, quota)) {
        count(protocol, 'over_quota');
        log.info({ user: account.username, ...usage, quota }, 'recipient refused: mailbox full');
        throw REPLIES.mailboxFull();
      }
    }
    return { account, quota };
  }

  async function deliverOne(recipient: Recipient, source: Readable, protocol: Protocol, log: Logger): Promise<Result> {
    const { account, quota } = recipient;
    const started = process.hrtime.bigint();
    try {
      // The canonical size is never below the octets received, so whatever smtp-server refuses
      // as too big (rejectOversized) is refused here too, before anything is stored.
      const r = await deps.store.deliver(mailboxOf(account), source, { maxSize: settings.maxMessageSize, quota });
      count(protocol, 'accepted');
      metrics.deliveryOctets.inc({ protocol }, r.size);
      metrics.deliveryDuration.observe({ protocol }, Metrics.since(started));
      log.info({ user: account.username, uid: r.uid, size: r.size }, 'delivered');
      return `Ok: delivered to ${account.username} as ${r.uid}`;
    } catch (e) {
      const { reply, outcome } = storeFailure(e);
      count(protocol, outcome);
      const level = outcome === 'failed' || outcome === 'no_space' ? 'warn' : 'info';
      log[level]({ user: account.username, result: outcome, err: (e as Error).message }, 'delivery refused');
      return reply;
    }
  }

  /** One result per recipient, in RCPT order. */
  async function deliverAll(stream: Readable, recipients: readonly Recipient[], protocol: Protocol, log: Logger): Promise<Result[]> {
    if (recipients.length === 1) return [await deliverOne(recipients[0] as Recipient, stream, protocol, log)];
    // Several recipients (LMTP): spool once, then store a copy for each.
    await mkdir(settings.spoolDir, { recursive: true });
    const spool = join(settings.spoolDir, `${protocol}-${process.pid}-${randomBytes(8).toString('hex')}`);
    try {
      try {
        await pipeline(stream, createWriteStream(spool, { mode: 0o600 }));
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'spooling failed');
        const { reply, outcome } = storeFailure(e);
        count(protocol, outcome, recipients.length);
        return recipients.map(() => reply);
      }
      const results: Result[] = [];
      for (const r of recipients) results.push(await deliverOne(r, createReadStream(spool, { highWaterMark: 65_536 }), protocol, log));
      return results;
    } finally {
      await rm(spool, { force: true });
    }
  }

  async function onData(stream: SMTPServerDataStream, session: SMTPServerSession, protocol: Protocol): Promise<Result[]> {
    const recipients = [...(transactions.get(session.envelope)?.values() ?? [])];
    const log = logger.child({ session: session.id, ip: session.remoteAddress, protocol });
    // A client that goes away while waiting for a slot gives up its place.
    const gone = new AbortController();
    const giveUp = (): void => gone.abort();
    stream.once('close', giveUp);
    stream.once('error', giveUp);
    try {
      const release = await slots.acquire(settings.slotWaitMs, gone.signal);
      if (release === null) {
        count(protocol, 'busy', recipients.length);
        log.warn({ inFlight: slots.inFlight, waiting: slots.waiting, limit: slots.limit }, 'no delivery slot free: answered 451 4.3.2');
        return recipients.map(() => REPLIES.busy());
      }
      try {
        return await deliverAll(stream, recipients, protocol, log);
      } finally {
        release();
      }
    } finally {
      stream.off('close', giveUp);
      stream.off('error', giveUp);
    }
  }

  async function listen(protocol: Protocol, at: ListenAddress): Promise<{ server: SMTPServer; address: ListenAddress }> {
    const smtp = protocol === 'smtp';
    const starttls = smtp && settings.tls !== null;
    const options: SMTPServerOptions = {
      lmtp: !smtp,
      name: settings.hostname,
      banner: smtp ? 'Postern SMTP ready' : 'Postern LMTP ready',
      size: settings.maxMessageSize,
      // Over `size`: 552 5.3.4 for every recipient, whatever onData answered.
      rejectOversized: true,
      // The client's host name is not used; a reverse lookup only delays every greeting (up to 1.5 s).
      disableReverseLookup: true,
      hideENHANCEDSTATUSCODES: false,
      // SMTP is the final hop and sends no delivery reports, so it does not offer DSN.
      hideDSN: smtp,
      disabledCommands: starttls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      ...(starttls ? { key: settings.tls?.key, cert: settings.tls?.cert, minVersion: settings.tls?.minVersion ?? 'TLSv1.2' } : {}),
      authOptional: true,
      // SMTP has one DATA reply for the whole transaction: one recipient each (452 4.5.3 for more).
      ...(smtp ? { maxRecipients: 1 } : {}),
      maxClients: settings.maxConnections,
      logger: false,
      onRcptTo(address, session, callback) {
        const log = logger.child({ session: session.id, ip: session.remoteAddress, protocol });
        checkRecipient(address.address, protocol, log).then(
          (recipient) => {
            let list = transactions.get(session.envelope);
            if (!list) transactions.set(session.envelope, (list = new Map()));
            list.set(address.address.toLowerCase(), recipient);
            callback();
          },
          (e: Error) => callback(e),
        );
      },
      onData(stream, session, callback) {
        onData(stream, session, protocol).then(
          (results) => {
            // Read whatever a refusal left unread, so the reply follows the end of DATA.
            if (stream.readable) stream.resume();
            if (smtp) {
              const only = results[0];
              if (only === undefined || typeof only !== 'string') callback(only ?? REPLIES.localError());
              else callback(null, only);
            } else {
              callback(null, results);
            }
          },
          (e: Error) => {
            if (stream.readable) stream.resume();
            logger.error({ protocol, err: e.message }, 'DATA handling failed');
            callback(REPLIES.localError());
          },
        );
      },
    };
    const server = new SMTPServer(options);
    keepOwnStatusCodes(server);
    server.on('error', (e) => logger.warn({ protocol, err: e.message }, 'intake listener error'));
    server.listen(at.port, at.host);
    await once(server.server, 'listening');
    const a = server.server.address();
    const address = a && typeof a === 'object' ? { host: a.address, port: a.port } : at;
    logger.info({ [protocol]: address }, `${protocol.toUpperCase()} listening`);
    return { server, address };
  }

  const started: { server: SMTPServer; address: ListenAddress }[] = [];
  const closeAll = (): Promise<void> =>
    Promise.all(started.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve())))).then(() => undefined);
  let lmtp: ListenAddress | null = null;
  let smtp: ListenAddress | null = null;
  try {
    if (settings.lmtp) {
      const l = await listen('lmtp', settings.lmtp);
      started.push(l);
      lmtp = l.address;
    }
    if (settings.smtp) {
      const l = await listen('smtp', settings.smtp);
      started.push(l);
      smtp = l.address;
    }
  } catch (e) {
    await closeAll();
    throw e;
  }
  return {
    address: (lmtp ?? smtp) as ListenAddress,
    lmtp,
    smtp,
    get load() {
      return { inFlight: slots.inFlight, waiting: slots.waiting };
    },
    close: closeAll,
  };
}
