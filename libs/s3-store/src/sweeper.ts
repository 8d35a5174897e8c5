/**
 * Background repair of the S3 side:
 * - pending deletions: objects committed deleted whose DeleteObjects failed or never ran (the
 *   gateway crashed after the commit) are deleted, then dropped from the pending set;
 * - orphans: objects older than the grace period that are neither indexed nor pending (a delivery
 *   that crashed between its PUT and its index script) are deleted.
 * It never deletes an indexed object: the orphan check runs in Redis against the index, and a
 * delivery does not index an object whose PUT finished more than half the grace period ago.
 */
import type { RedisIndex } from './redis.js';
import type { S3Objects } from './s3.js';
import { parseObjectKey, type S3MailStore } from './store.js';

export interface SweepReport {
  /** Mailboxes with a pending-deletion set. */
  readonly pendingMailboxes: number;
  /** Pending objects deleted (and dropped from their set). */
  readonly pendingDeleted: number;
  /** Pending objects S3 did not delete this time. */
  readonly pendingFailed: number;
  /** Objects listed under the prefix. */
  readonly scanned: number;
  /** Orphans deleted. */
  readonly orphansDeleted: number;
}

export interface SweeperOptions {
  readonly store: S3MailStore;
  /** SWEEP_GRACE_S in ms: objects younger than this are never considered orphans. */
  readonly graceMs: number;
  /**
   * The loop (`start`) lists the bucket for orphans at most this often cluster-wide, ms (default:
   * the grace period; an object becomes an orphan only once it is that old). Listing costs one
   * request per 1000 objects.
   */
  readonly orphanIntervalMs?: number;
  /** Clock, for tests. */
  readonly now?: () => number;
}

export interface SweepLoopHandlers {
  readonly onReport?: (report: SweepReport) => void;
  /** Another process had this interval's turn. */
  readonly onSkip?: () => void;
  readonly onError?: (error: unknown) => void;
}

export class Sweeper {
  readonly #store: S3MailStore;
  readonly #index: RedisIndex;
  readonly #s3: S3Objects;
  readonly #graceMs: number;
  readonly #orphanIntervalMs: number;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  #stopped = false;

  constructor(options: SweeperOptions) {
    this.#store = options.store;
    this.#index = options.store.index;
    this.#s3 = options.store.s3;
    this.#graceMs = options.graceMs;
    this.#orphanIntervalMs = options.orphanIntervalMs ?? options.graceMs;
    this.#now = options.now ?? Date.now;
  }

  /** Finish pending deletions of every mailbox. */
  async sweepPending(): Promise<Pick<SweepReport, 'pendingMailboxes' | 'pendingDeleted' | 'pendingFailed'>> {
    let pendingMailboxes = 0;
    let pendingDeleted = 0;
    let pendingFailed = 0;
    const mailboxes = new Set<string>();
    for await (const mailboxId of this.#index.mailboxesWithPending()) mailboxes.add(mailboxId);
    for (const mailboxId of mailboxes) {
      pendingMailboxes++;
      const uids = await this.#index.pending(mailboxId);
      const keys = uids.map((uid) => this.#store.objectKey(mailboxId, uid));
      const failed = new Set(await this.#s3.deleteMany(keys));
      const done = uids.filter((_, i) => !failed.has(keys[i] as string));
      await this.#index.removePending(mailboxId, done);
      pendingDeleted += done.length;
      pendingFailed += failed.size;
    }
    return { pendingMailboxes, pendingDeleted, pendingFailed };
  }

  /** Delete objects older than the grace period that are neither indexed nor pending. */
  async sweepOrphans(): Promise<Pick<SweepReport, 'scanned' | 'orphansDeleted'>> {
    let scanned = 0;
    let orphansDeleted = 0;
    const prefix = this.#store.prefix;
    for await (const page of this.#s3.list(prefix)) {
      const cutoff = this.#now() - this.#graceMs;
      const byMailbox = new Map<string, string[]>();
      for (const object of page) {
        scanned++;
        if (object.lastModified.getTime() > cutoff) continue;
        const parsed = parseObjectKey(prefix, object.key);
        if (parsed === null) continue;
        let uids = byMailbox.get(parsed.mailboxId);
        if (uids === undefined) byMailbox.set(parsed.mailboxId, (uids = []));
        uids.push(parsed.uid);
      }
      for (const [mailboxId, uids] of byMailbox) {
        const orphans = await this.#index.orphans(mailboxId, uids);
        if (orphans.length === 0) continue;
        const keys = orphans.map((uid) => this.#store.objectKey(mailboxId, uid));
        const failed = await this.#s3.deleteMany(keys);
        orphansDeleted += keys.length - failed.length;
      }
    }
    return { scanned, orphansDeleted };
  }

  /** One pass: pending deletions, then orphans. */
  async runOnce(): Promise<SweepReport> {
    const pending = await this.sweepPending();
    const orphans = await this.sweepOrphans();
    return { ...pending, ...orphans };
  }

  /**
   * Runs a pass every `intervalMs` (the first at once) until `stop()`. Every delivery worker may
   * run the loop: one process per interval takes the turn (a Redis `SET NX PX`), and the orphan
   * listing runs at most once per `orphanIntervalMs` cluster-wide. A failed pass is reported to
   * `onError` and the loop goes on.
   */
  start(intervalMs: number, handlers: SweepLoopHandlers = {}): void {
    if (this.#timer !== undefined || this.#running !== undefined) throw new Error('the sweeper is already running');
    this.#stopped = false;
    const tick = (): void => {
      this.#timer = undefined;
      this.#running = this.#turn(intervalMs, handlers)
        .catch((e: unknown) => handlers.onError?.(e))
        .finally(() => {
          this.#running = undefined;
          if (!this.#stopped) this.#timer = setTimeout(tick, intervalMs);
        });
    };
    tick();
  }

  async #turn(intervalMs: number, handlers: SweepLoopHandlers): Promise<void> {
    // A little under the interval, so the next tick of whoever had it can take it again.
    if (!(await this.#index.claim('turn', intervalMs * 0.9))) {
      handlers.onSkip?.();
      return;
    }
    const pending = await this.sweepPending();
    const orphans = (await this.#index.claim('orphans', this.#orphanIntervalMs)) ? await this.sweepOrphans() : { scanned: 0, orphansDeleted: 0 };
    handlers.onReport?.({ ...pending, ...orphans });
  }

  /** Stops the loop; resolves once a pass in progress has finished. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }
}
