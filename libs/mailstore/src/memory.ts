import { Readable } from 'node:stream';
import type { Lease } from '@postern/locks';
import { StoreError } from './errors.js';
import { timeOrderedId } from './ids.js';
import { LeasedDrop, consumeSource, guardSource, lockLost, tooLarge } from './internal.js';
import { checkQuota, hasQuota, overQuota, quotaRoom } from './quota.js';
import { CanonicalEncoder, MESSAGE_CHUNK_SIZE, messageStream } from './streams.js';
import type { DeliverOptions, DeliveryResult, MailboxRef, MailStore, MessageMeta, ReadOptions } from './types.js';

interface StoredMessage {
  readonly uid: string;
  /** Canonical bytes. */
  readonly bytes: Buffer;
  /** Delivery time, ms since the epoch. */
  readonly received: number;
}

type Mailboxes = Map<string, StoredMessage[]>;

/**
 * Every mailbox in process memory, keyed by `MailboxRef.id`. For unit tests of other packages
 * and for trying things out; nothing survives the process.
 */
export class MemoryStore implements MailStore {
  readonly kind = 'memory';
  #mailboxes: Mailboxes = new Map();

  /** Another store over the same data, as a restarted process on durable storage would see it. */
  restarted(): MemoryStore {
    const other = new MemoryStore();
    other.#mailboxes = this.#mailboxes;
    return other;
  }

  async open(mailbox: MailboxRef, lease: Lease, signal?: AbortSignal): Promise<MemoryMaildrop> {
    if (signal?.aborted) throw new StoreError('backend', 'open aborted', { cause: signal.reason, temporary: true });
    if (!lease.held()) throw lockLost();
    const list = this.#mailboxes.get(mailbox.id) ?? [];
    return new MemoryMaildrop(this.#mailboxes, mailbox.id, list.slice(), lease);
  }

  async deliver(mailbox: MailboxRef, source: Readable, options: DeliverOptions = {}): Promise<DeliveryResult> {
    const { maxSize, signal, quota } = options;
    const limited = hasQuota(quota);
    // Rejects before reading when the mailbox has no room at all; bounds the read otherwise.
    const room = limited ? quotaRoom(this.#usage(mailbox.id), quota) : Number.POSITIVE_INFINITY;
    const encoder = new CanonicalEncoder();
    const parts: Buffer[] = [];
    const add = (bytes: Buffer): void => {
      if (bytes.length === 0) return;
      if (maxSize !== undefined && encoder.size > maxSize) throw tooLarge(maxSize);
      if (encoder.size > room) throw overQuota(`message passes the ${room} octets left`);
      // Copy: a source may reuse its buffers.
      parts.push(Buffer.from(bytes));
    };
    const unguard = guardSource(source);
    try {
      await consumeSource(source, signal, (chunk) => add(encoder.push(chunk)));
    } finally {
      unguard();
    }
    add(encoder.end());
    const bytes = Buffer.concat(parts, encoder.size);
    // No await from here to the push: the check and the append are one step.
    if (limited) checkQuota(this.#usage(mailbox.id), bytes.length, quota);
    const uid = timeOrderedId();
    const data = this.#mailboxes;
    let list = data.get(mailbox.id);
    if (list === undefined) data.set(mailbox.id, (list = []));
    list.push({ uid, bytes, received: Date.now() });
    return { uid, size: bytes.length };
  }

  async stat(mailbox: MailboxRef): Promise<{ count: number; octets: number }> {
    return this.#usage(mailbox.id);
  }

  #usage(id: string): { count: number; octets: number } {
    const list = this.#mailboxes.get(id) ?? [];
    let octets = 0;
    for (const message of list) octets += message.bytes.length;
    return { count: list.length, octets };
  }
}

export class MemoryMaildrop extends LeasedDrop {
  readonly messages: readonly MessageMeta[];
  readonly #mailboxes: Mailboxes;
  readonly #id: string;
  readonly #snapshot: readonly StoredMessage[];

  constructor(mailboxes: Mailboxes, id: string, snapshot: StoredMessage[], lease: Lease) {
    super(lease);
    this.#mailboxes = mailboxes;
    this.#id = id;
    this.#snapshot = snapshot;
    this.messages = Object.freeze(snapshot.map((m) => Object.freeze({ uid: m.uid, size: m.bytes.length, received: m.received })));
  }

  protected async readMessage(index: number, options: ReadOptions): Promise<Readable> {
    const bytes = (this.#snapshot[index] as StoredMessage).bytes;
    const source = Readable.from(chunks(bytes), { objectMode: false });
    return messageStream(source, { bodyLines: options.bodyLines, canonicalize: false });
  }

  protected async removeMessages(indexes: readonly number[]): Promise<void> {
    const gone = new Set(indexes.map((i) => (this.#snapshot[i] as StoredMessage).uid));
    const list = this.#mailboxes.get(this.#id);
    if (list === undefined) return;
    const kept = list.filter((m) => !gone.has(m.uid));
    if (kept.length === 0) this.#mailboxes.delete(this.#id);
    else this.#mailboxes.set(this.#id, kept);
  }
}

function* chunks(bytes: Buffer): Generator<Buffer> {
  for (let offset = 0; offset < bytes.length; offset += MESSAGE_CHUNK_SIZE) {
    yield bytes.subarray(offset, offset + MESSAGE_CHUNK_SIZE);
  }
}
