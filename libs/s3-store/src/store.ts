/**
 * The cluster mail store: one S3 object per message (its canonical CRLF bytes, so the object
 * length is the LIST size), listed by the Redis index. See the package README for the protocol.
 */
import { Readable } from 'node:stream';
import type { Lease } from '@postern/locks';
import {
  CanonicalEncoder,
  LeasedDrop,
  StoreError,
  consumeSource,
  guardSource,
  lockLost,
  messageStream,
  timeOrderedId,
  tooLarge,
  type DeliverOptions,
  type DeliveryResult,
  type MailboxRef,
  type MailStore,
  type MessageMeta,
  type ReadOptions,
} from '@postern/mailstore';
import { RedisLease } from './locks.js';
import type { CommitOutcome, RedisIndex } from './redis.js';
import type { S3Objects } from './s3.js';
import { Spool, removeStaleSpoolFiles } from './spool.js';

/** First byte range TOP asks for; each further range is four times larger (up to 4 MiB). */
export const TOP_FIRST_RANGE = 64 * 1024;
const TOP_MAX_RANGE = 4 * 1024 * 1024;

export interface S3MailStoreOptions {
  readonly s3: S3Objects;
  /** Share it with the `RedisLockManager`, so `open` can take the listing from the lease. */
  readonly index: RedisIndex;
  /** S3_PREFIX: prepended to every object key. */
  readonly prefix?: string;
  /** Deliveries up to this many canonical octets are spooled in memory, larger ones to a file. */
  readonly spoolMemoryBytes?: number;
  readonly spoolDir?: string;
  /**
   * The sweeper's grace period, ms. A delivery whose PUT finished longer ago than half of it is
   * not indexed (it fails temporarily), so the sweeper can never delete an object being indexed.
   */
  readonly sweepGraceMs?: number;
  /**
   * RETR/TOP fail (the gateway drops the session) when S3 sends nothing for this long while the
   * client is reading: a dead or partitioned endpoint may never close the connection. Default 10 s.
   */
  readonly readStallTimeoutMs?: number;
  /** Called when the deletion of committed objects fails (the sweeper finishes it later). */
  readonly onDeleteError?: (mailboxId: string, error: unknown) => void;
}

/** S3 object key of a message: `<prefix><encoded mailbox id>/<message id>`. */
export function objectKey(prefix: string, mailboxId: string, uid: string): string {
  return `${prefix}${mailboxPrefixPart(mailboxId)}${uid}`;
}

function mailboxPrefixPart(mailboxId: string): string {
  // Encoded so that a '/' in an id cannot nest one mailbox inside another's prefix.
  return `${encodeURIComponent(mailboxId)}/`;
}

/** The mailbox id and message id of an object key under `prefix`, or null for a foreign key. */
export function parseObjectKey(prefix: string, key: string): { mailboxId: string; uid: string } | null {
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length);
  const slash = rest.indexOf('/');
  if (slash <= 0 || rest.indexOf('/', slash + 1) !== -1) return null;
  const uid = rest.slice(slash + 1);
  if (!/^[\x21-\x7e]{1,70}$/.test(uid)) return null;
  try {
    return { mailboxId: decodeURIComponent(rest.slice(0, slash)), uid };
  } catch {
    return null;
  }
}

function limit(n: number | undefined): number {
  return n !== undefined && n > 0 ? n : Number.POSITIVE_INFINITY;
}

function overQuota(): StoreError {
  return new StoreError('over-quota', 'mailbox quota exceeded', { temporary: false });
}


export class S3MailStore implements MailStore {
  readonly kind = 's3';
  readonly s3: S3Objects;
  readonly index: RedisIndex;
  readonly prefix: string;
  readonly readStallTimeoutMs: number;
  readonly #spoolMemoryBytes: number;
  readonly #spoolDir: string | undefined;
  readonly #maxIndexDelayMs: number;
  readonly #onDeleteError: ((mailboxId: string, error: unknown) => void) | undefined;
  readonly #background = new Set<Promise<void>>();

  constructor(options: S3MailStoreOptions) {
    this.s3 = options.s3;
    this.index = options.index;
    this.prefix = options.prefix ?? '';
    this.readStallTimeoutMs = options.readStallTimeoutMs ?? 10_000;
    this.#spoolMemoryBytes = options.spoolMemoryBytes ?? 256 * 1024;
    this.#spoolDir = options.spoolDir;
    // Files a crashed process left mid-delivery; a day is far beyond any delivery.
    if (this.#spoolDir !== undefined) void removeStaleSpoolFiles(this.#spoolDir, 24 * 3_600_000);
    this.#maxIndexDelayMs = (options.sweepGraceMs ?? 3_600_000) / 2;
    this.#onDeleteError = options.onDeleteError;
  }

  objectKey(mailboxId: string, uid: string): string {
    return objectKey(this.prefix, mailboxId, uid);
  }

  /** The S3 key prefix of one mailbox (for listings). */
  mailboxPrefix(mailboxId: string): string {
    return `${this.prefix}${mailboxPrefixPart(mailboxId)}`;
  }

  async open(mailbox: MailboxRef, lease: Lease, signal?: AbortSignal): Promise<S3Maildrop> {
    if (signal?.aborted) throw new StoreError('backend', 'open aborted', { cause: signal.reason, temporary: true });
    if (!lease.held()) throw lockLost();
    const ours = this.#fenced(lease, mailbox.id);
    // The listing came with the lease (same round trip as the lock); otherwise read it now.
    const messages = (ours ? ours.takeListing() : null) ?? (await this.index.listing(mailbox.id));
    return new S3Maildrop(this, mailbox.id, messages, lease);
  }

  /** The lease as a fenced Redis lease of this index and mailbox, or null (another lock manager). */
  #fenced(lease: Lease, mailboxId: string): RedisLease | null {
    if (!(lease instanceof RedisLease) || lease.mailboxId !== mailboxId) return null;
    if (lease.index !== this.index && (lease.index.client !== this.index.client || lease.index.keyPrefix !== this.index.keyPrefix)) return null;
    return lease;
  }

  async deliver(mailbox: MailboxRef, source: Readable, options: DeliverOptions = {}): Promise<DeliveryResult> {
    const { maxSize, signal, quota } = options;
    const limited = quota !== undefined && (limit(quota.maxMessages) !== Infinity || limit(quota.maxOctets) !== Infinity);
    // With a quota, one Redis round trip first: a full mailbox is refused before the message is
    // read, and a message that cannot fit stops being read once it passes the room left. The
    // index script checks again, atomically, after the PUT.
    const unguard = guardSource(source);
    const encoder = new CanonicalEncoder();
    const spool = new Spool(this.#spoolMemoryBytes, this.#spoolDir);
    let room = Number.POSITIVE_INFINITY;
    const add = async (bytes: Buffer): Promise<void> => {
      if (maxSize !== undefined && encoder.size > maxSize) throw tooLarge(maxSize);
      if (encoder.size > room) throw overQuota();
      await spool.write(bytes);
    };
    try {
      try {
        if (limited) {
          const usage = await this.index.totals(mailbox.id);
          if (usage.count + 1 > limit(quota.maxMessages) || usage.octets >= limit(quota.maxOctets)) throw overQuota();
          room = limit(quota.maxOctets) - usage.octets;
        }
        await consumeSource(source, signal, (chunk) => add(encoder.push(chunk)));
      } finally {
        unguard();
      }
      await add(encoder.end());
      await spool.finish();
      const size = encoder.size;
      const uid = timeOrderedId();
      const key = this.objectKey(mailbox.id, uid);
      await this.s3.put(key, size, () => spool.body(), signal);
      const stored = Date.now();
      await spool.discard();
      if (Date.now() - stored > this.#maxIndexDelayMs) {
        throw new StoreError('backend', 'delivery stalled between the PUT and the index; the object is left to the sweeper', {
          temporary: true,
        });
      }
      // A failure here (Redis down, timeout) leaves an orphan for the sweeper, never a half-indexed message.
      if (!(await this.index.index(mailbox.id, uid, size, limited ? quota : undefined))) {
        await this.s3.deleteMany([key]).catch(() => undefined);
        throw overQuota();
      }
      return { uid, size };
    } finally {
      await spool.discard();
    }
  }

  async stat(mailbox: MailboxRef): Promise<{ count: number; octets: number }> {
    return this.index.totals(mailbox.id);
  }

  /** Deletes committed objects after the commit answered; failures stay pending for the sweeper. */
  deleteCommitted(mailboxId: string, uids: readonly string[]): void {
    const task = (async () => {
      const keys = uids.map((uid) => this.objectKey(mailboxId, uid));
      const failed = new Set(await this.s3.deleteMany(keys));
      await this.index.removePending(
        mailboxId,
        uids.filter((_, i) => !failed.has(keys[i] as string)),
      );
      if (failed.size > 0) throw new Error(`${failed.size} of ${keys.length} objects not deleted`);
    })()
      .catch((error: unknown) => this.#onDeleteError?.(mailboxId, error))
      .finally(() => this.#background.delete(task));
    this.#background.add(task);
  }

  /** Resolves when the deletions started so far have finished (or failed). */
  async settled(): Promise<void> {
    while (this.#background.size > 0) await Promise.all([...this.#background]);
  }

  /** Waits for background deletions. The Redis and S3 clients belong to whoever made them. */
  async close(): Promise<void> {
    await this.settled();
  }
}

type Got = { body: Readable; length: number };

export class S3Maildrop extends LeasedDrop {
  readonly messages: readonly MessageMeta[];
  readonly #store: S3MailStore;
  readonly #mailboxId: string;
  /** The last message read whole (RETR), to spot a client downloading in order. */
  #lastWhole = -2;
  /** The next message's GET, started while the current one streams (sequential RETRs). */
  #ahead: { readonly index: number; readonly got: Promise<Got> } | null = null;

  constructor(store: S3MailStore, mailboxId: string, messages: readonly MessageMeta[], lease: Lease) {
    super(lease);
    this.#store = store;
    this.#mailboxId = mailboxId;
    this.messages = Object.freeze(messages.map((m) => Object.freeze(withReceived(m))));
  }

  protected async readMessage(index: number, options: ReadOptions): Promise<Readable> {
    const meta = this.messages[index] as MessageMeta;
    const key = this.#store.objectKey(this.#mailboxId, meta.uid);
    const s3 = this.#store.s3;
    if (options.bodyLines === null || meta.size <= TOP_FIRST_RANGE) {
      const ahead = this.#takeAhead(index);
      const { body, length } = await (ahead ?? s3.get(key, options.signal ? { signal: options.signal } : {}));
      if (length !== meta.size) {
        body.destroy();
        throw new StoreError('backend', `object ${key} has ${length} octets, the index says ${meta.size}`, { temporary: true });
      }
      if (options.bodyLines === null) {
        // A client fetching in order (the common "download everything"): the next GET's round
        // trip overlaps this transfer. Only from the second in-order RETR on, so a client that
        // reads one message never costs an extra request.
        if (index === this.#lastWhole + 1 && index + 1 < this.messages.length) this.#startAhead(index + 1);
        this.#lastWhole = index;
      }
      return messageStream(body, { bodyLines: options.bodyLines, canonicalize: false, stallTimeoutMs: this.#store.readStallTimeoutMs });
    }
    // TOP of a large message: byte ranges, growing, until the limiter has its lines.
    const first = await s3.get(key, { range: [0, TOP_FIRST_RANGE - 1], ...(options.signal ? { signal: options.signal } : {}) });
    const source = Readable.from(ranges(s3, key, meta.size, first, options.signal), { objectMode: false });
    return messageStream(source, { bodyLines: options.bodyLines, canonicalize: false, stallTimeoutMs: this.#store.readStallTimeoutMs });
  }

  #startAhead(index: number): void {
    this.#dropAhead();
    const key = this.#store.objectKey(this.#mailboxId, (this.messages[index] as MessageMeta).uid);
    const got = this.#store.s3.get(key);
    got.catch(() => undefined); // used (and its error reported) only if that message is read
    this.#ahead = { index, got };
  }

  /** The prefetched GET of `index`, if that is what was prefetched; any other is dropped. */
  #takeAhead(index: number): Promise<Got> | null {
    const ahead = this.#ahead;
    if (ahead === null) return null;
    this.#ahead = null;
    if (ahead.index === index) return ahead.got;
    ahead.got.then((g) => g.body.destroy(), () => undefined);
    return null;
  }

  #dropAhead(): void {
    this.#takeAhead(-1);
  }

  override commit(deleted: readonly number[]): Promise<void> {
    this.#dropAhead();
    return super.commit(deleted);
  }

  override close(): Promise<void> {
    this.#dropAhead();
    return super.close();
  }

  protected async removeMessages(indexes: readonly number[]): Promise<void> {
    const uids = indexes.map((i) => (this.messages[i] as MessageMeta).uid);
    const lease = this.lease;
    const fenced = lease instanceof RedisLease && lease.mailboxId === this.#mailboxId ? lease : null;
    const outcome = await commitWithRetry(this.#store.index, this.#mailboxId, fenced, uids);
    if (outcome === 'lock-lost') {
      fenced?.lost('refused at commit');
      throw lockLost();
    }
    fenced?.releasedByCommit();
    this.#store.deleteCommitted(this.#mailboxId, uids);
  }
}

/** Delivery time from the id (`timeOrderedId()`: 12 hex digits of ms first), when it is one. */
function withReceived(m: MessageMeta): MessageMeta {
  if (!/^[0-9a-f]{28}$/.test(m.uid)) return { uid: m.uid, size: m.size };
  return { uid: m.uid, size: m.size, received: parseInt(m.uid.slice(0, 12), 16) };
}

/**
 * The commit script, retried on a Redis error: it is idempotent (a retry of an applied commit
 * answers `already-applied`), so an error whose outcome is unknown is settled by asking again.
 */
async function commitWithRetry(index: RedisIndex, mailboxId: string, lease: RedisLease | null, uids: readonly string[]): Promise<CommitOutcome> {
  const delays = [50, 250, 1_000];
  for (let attempt = 0; ; attempt++) {
    try {
      return await index.commit(mailboxId, lease?.token ?? '', lease?.fence ?? 0, uids);
    } catch (error) {
      const delay = delays[attempt];
      if (delay === undefined) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random())));
    }
  }
}

async function* ranges(
  s3: S3Objects,
  key: string,
  size: number,
  first: { body: Readable; length: number },
  signal: AbortSignal | undefined,
): AsyncGenerator<Buffer> {
  let part = first;
  let offset = 0;
  let span = TOP_FIRST_RANGE;
  for (;;) {
    let got = 0;
    try {
      for await (const chunk of part.body) {
        got += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
    } finally {
      part.body.destroy();
    }
    const expected = Math.min(span, size - offset);
    if (got !== expected) throw new StoreError('backend', `object ${key}: range at ${offset} gave ${got} of ${expected} octets`, { temporary: true });
    offset += got;
    if (offset >= size) return;
    span = Math.min(span * 4, TOP_MAX_RANGE);
    part = await s3.get(key, { range: [offset, Math.min(size, offset + span) - 1], ...(signal ? { signal } : {}) });
  }
}
