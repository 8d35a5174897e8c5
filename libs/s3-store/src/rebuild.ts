/**
 * Disaster recovery: rebuild a mailbox index from the S3 listing of its prefix. It takes the
 * maildrop lock for the whole run (so no session commits meanwhile, and it refuses while a session
 * holds it), adds every listed object that is neither indexed nor pending, recomputes the totals
 * and keeps the fencing counter (it only ever grows). Deliveries may go on: they add to the index
 * themselves. After a total loss of Redis the pending set is gone too, so messages whose
 * deletion had not reached S3 come back; none is ever lost.
 */
import type { RedisLockManager } from './locks.js';
import type { S3MailStore } from './store.js';
import { parseObjectKey } from './store.js';

export interface RebuildReport {
  readonly mailboxId: string;
  /** Objects found under the mailbox prefix. */
  readonly listed: number;
  /** Of those, added to the index. */
  readonly added: number;
  readonly count: number;
  readonly octets: number;
}

/** Rebuilds one mailbox's index; rejects when the maildrop is in use or the lease is lost. */
export async function rebuildIndex(store: S3MailStore, locks: RedisLockManager, mailboxId: string): Promise<RebuildReport> {
  const lease = await locks.acquire(`maildrop:${mailboxId}`);
  if (lease === null) throw new Error(`mailbox ${mailboxId} is in use (its maildrop lock is held); try again later`);
  const index = store.index;
  const lost = (): Error => new Error(`lost the maildrop lock of ${mailboxId} during the rebuild; nothing further was changed`);
  try {
    let listed = 0;
    let added = 0;
    for await (const page of store.s3.list(store.mailboxPrefix(mailboxId))) {
      if (!lease.held()) throw lost();
      const entries = [];
      for (const object of page) {
        const parsed = parseObjectKey(store.prefix, object.key);
        if (parsed === null || parsed.mailboxId !== mailboxId) continue;
        entries.push({ uid: parsed.uid, size: object.size });
      }
      listed += entries.length;
      if (entries.length === 0) continue;
      const n = await index.rebuildAdd(mailboxId, lease.token, entries);
      if (n < 0) throw lost();
      added += n;
    }
    const totals = await index.rebuildTotals(mailboxId, lease.token);
    if (totals === null) throw lost();
    return { mailboxId, listed, added, ...totals };
  } finally {
    await lease.release().catch(() => undefined);
  }
}
