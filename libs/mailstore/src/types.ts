import type { Readable } from 'node:stream';
import type { Lease } from '@postern/locks';

/** One message as a POP3 session sees it. Fixed for the life of a maildrop snapshot. */
export interface MessageMeta {
  /** Unique id, 1..70 printable ASCII (0x21..0x7E); assigned once at delivery, never reused. */
  readonly uid: string;
  /** Exact octet count of the canonical form (CRLF line ends), before dot-stuffing. */
  readonly size: number;
  /**
   * Delivery time, ms since the epoch, when the store knows it (EXPIRE n: a message without one
   * never expires by age). Maildir: the `<secs>.` of the file name, else the file's mtime.
   */
  readonly received?: number;
}

/** Identifies a mailbox to a store. `id` is stable (survives renames where the backend can). */
export interface MailboxRef {
  /** Stable mailbox identity used for keys and locks. */
  readonly id: string;
  /** Login name, used by stores that resolve paths from templates (Maildir `%u`, `%n`, `%d`). */
  readonly username: string;
}

export interface ReadOptions {
  /** `null`: the whole message (RETR). A number: headers, blank line, then that many body lines (TOP). */
  readonly bodyLines: number | null;
  readonly signal?: AbortSignal;
}

/**
 * An opened maildrop: a snapshot of the mailbox taken under the maildrop lock.
 * Message numbers (1-based index into `messages`) do not change while it is open.
 */
export interface Maildrop {
  readonly messages: readonly MessageMeta[];
  /**
   * Canonical bytes (CRLF line ends, not dot-stuffed) of message `index` (0-based).
   * With `bodyLines` set, the stream ends after the headers, the blank line and that many body lines.
   */
  read(index: number, options: ReadOptions): Promise<Readable>;
  /**
   * Optional fast path: message `index` as stored (any line ends; the caller makes them canonical
   * as it encodes), read synchronously in chunks. Undefined when this message cannot be read that
   * way now (an asynchronous backend, a file that moved); the caller then uses `read()`.
   */
  openStoredSync?(index: number): StoredReader | undefined;
  /**
   * Remove exactly the messages at these 0-based indexes, durably, then release.
   * Rejects (and removes nothing it could not remove atomically) when the lock was lost or the
   * backend failed; the caller answers `-ERR [SYS/TEMP]`.
   */
  commit(deleted: readonly number[]): Promise<void>;
  /** Release without changing anything (dropped connection, RSET+QUIT with nothing deleted, drain). */
  close(): Promise<void>;
}

/** The stored octets of one message, read synchronously (see `Maildrop.openStoredSync`). */
export interface StoredReader {
  /**
   * Copies the next stored octets into `target` (keeping its last octet free, to notice a file
   * that grew) and returns how many. Throws a `StoreError` when the message changed under it.
   */
  read(target: Uint8Array): number;
  /** True once every stored octet was read. */
  readonly done: boolean;
  /** Releases the file; safe to call more than once. */
  close(): void;
}

export interface DeliveryResult {
  readonly uid: string;
  readonly size: number;
}

export interface DeliverOptions {
  readonly signal?: AbortSignal;
  /** Reject with `StoreError` code `too-large` once the canonical size passes this. */
  readonly maxSize?: number;
  /**
   * Mailbox quota. Reject with `StoreError` code `over-quota` (permanent) when storing this
   * message would take the mailbox past either limit. Backends with an index check it atomically.
   */
  readonly quota?: Quota;
}

export interface Quota {
  /** Largest total of canonical octets; 0 or absent: no limit. */
  readonly maxOctets?: number;
  /** Largest number of messages; 0 or absent: no limit. */
  readonly maxMessages?: number;
}

export interface MailStore {
  /** Short backend name for logs and metrics: `maildir`, `memory`, `s3`. */
  readonly kind: string;
  /**
   * Snapshot the mailbox. The caller holds the maildrop lock (`lease`); stores that can check
   * a lease at commit time (fencing) do so.
   */
  open(mailbox: MailboxRef, lease: Lease, signal?: AbortSignal): Promise<Maildrop>;
  /**
   * Store one message durably. `source` is the message as received; the store keeps it in its
   * canonical form (CRLF line ends). Resolves only once the message would survive a crash.
   */
  deliver(mailbox: MailboxRef, source: Readable, options?: DeliverOptions): Promise<DeliveryResult>;
  /** Count and canonical octets, for operators (`postern mailbox list`). */
  stat(mailbox: MailboxRef): Promise<{ count: number; octets: number }>;
  /**
   * Optional: the usage a quota check counts, as cheaply as the backend can (an index total, a
   * cached count); the intake's RCPT check uses it, else `stat`.
   */
  quotaUsage?(mailbox: MailboxRef): Promise<{ count: number; octets: number }>;
  close?(): Promise<void>;
}
