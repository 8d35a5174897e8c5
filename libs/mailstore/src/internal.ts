import type { Readable } from 'node:stream';
import type { Lease } from '@postern/locks';
import { StoreError } from './errors.js';
import type { Maildrop, MessageMeta, ReadOptions, StoredReader } from './types.js';

/** Wraps anything that is not already a StoreError as a temporary backend error. */
export function asStoreError(error: unknown, message: string): StoreError {
  if (error instanceof StoreError) return error;
  return new StoreError('backend', message, { cause: error, temporary: true });
}

export function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, 'latin1');
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new StoreError('invalid', 'message source produced a non-byte chunk', { temporary: false });
}

/**
 * Call first thing in `deliver`: an error the source emits before reading starts (while the
 * store creates files) must not crash the process; the read that follows reports it.
 */
export function guardSource(source: Readable): () => void {
  const ignore = (): void => {};
  source.on('error', ignore);
  return () => source.off('error', ignore);
}

/**
 * Reads a delivery source chunk by chunk. The caller keeps ownership of `source`: it is not
 * destroyed when reading stops early (too large, aborted), so an intake can still drain it.
 * Source errors and aborts become temporary StoreErrors; errors thrown by `onChunk` pass through.
 */
export async function consumeSource(
  source: Readable,
  signal: AbortSignal | undefined,
  onChunk: (chunk: Buffer) => void | Promise<void>,
): Promise<void> {
  if (signal?.aborted) throw aborted(signal);
  const iterator = source.iterator({ destroyOnReturn: false });
  let removeAbort: (() => void) | undefined;
  let abortPromise: Promise<never> | undefined;
  if (signal !== undefined) {
    abortPromise = new Promise<never>((_, reject) => {
      const onAbort = (): void => reject(aborted(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      removeAbort = () => signal.removeEventListener('abort', onAbort);
    });
    abortPromise.catch(() => {});
  }
  let finished = false;
  try {
    for (;;) {
      let step: IteratorResult<unknown>;
      try {
        step = await (abortPromise === undefined ? iterator.next() : Promise.race([iterator.next(), abortPromise]));
      } catch (error) {
        if (error instanceof StoreError) throw error;
        throw new StoreError('backend', 'reading the message source failed', { cause: error, temporary: true });
      }
      if (step.done) {
        finished = true;
        break;
      }
      await onChunk(toBuffer(step.value));
      if (signal?.aborted) throw aborted(signal);
    }
  } finally {
    removeAbort?.();
    // Not awaited: a pending next() (aborted mid-read) would hold return() until the next chunk.
    if (!finished) iterator.return?.().catch(() => {});
  }
}

function aborted(signal: AbortSignal): StoreError {
  return new StoreError('backend', 'delivery aborted', { cause: signal.reason, temporary: true });
}

export function tooLarge(maxSize: number): StoreError {
  return new StoreError('too-large', `message exceeds the size limit of ${maxSize} octets`, { temporary: false });
}

export function checkIndex(index: number, count: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= count) {
    throw new StoreError('invalid', `no message at index ${index}`, { temporary: false });
  }
}

/** Validates and de-duplicates the indexes given to `commit`. */
export function checkDeleted(deleted: readonly number[], count: number): number[] {
  const unique = new Set<number>();
  for (const index of deleted) {
    checkIndex(index, count);
    unique.add(index);
  }
  return [...unique].sort((a, b) => a - b);
}

export function lockLost(): StoreError {
  return new StoreError('lock-lost', 'the maildrop lock is no longer held', { temporary: true });
}

export function closedDrop(): StoreError {
  return new StoreError('invalid', 'the maildrop is closed', { temporary: false });
}

/** Releases a lease; a failure to release changes nothing already done (the lease lapses). */
export async function releaseQuietly(lease: Lease): Promise<void> {
  try {
    await lease.release();
  } catch {
    // The lock backend lets the lease lapse; nothing depends on this call succeeding.
  }
}

/** Runs `fn` over `items` with at most `limit` in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * The lifecycle every maildrop shares: reads while open; one commit (checked against the lease,
 * then the lease released whatever happens); close releases and changes nothing. A second
 * commit returns the first one's outcome; commit after close rejects; close after either is a
 * no-op.
 */
export abstract class LeasedDrop implements Maildrop {
  abstract readonly messages: readonly MessageMeta[];
  protected readonly lease: Lease;
  #state: 'open' | 'committing' | 'closed' = 'open';
  #commit: Promise<void> | undefined;

  protected constructor(lease: Lease) {
    this.lease = lease;
  }

  /** Opens message `index` (already checked). */
  protected abstract readMessage(index: number, options: ReadOptions): Promise<Readable>;
  /** The stored bytes of message `index` (already checked), read synchronously; undefined: use read(). */
  protected openStored(_index: number): StoredReader | undefined {
    return undefined;
  }
  /** Removes the messages at these indexes (checked, unique, ascending) durably. */
  protected abstract removeMessages(indexes: readonly number[]): Promise<void>;

  async read(index: number, options: ReadOptions): Promise<Readable> {
    if (this.#state !== 'open') throw closedDrop();
    checkIndex(index, this.messages.length);
    const { bodyLines } = options;
    if (bodyLines !== null && (!Number.isInteger(bodyLines) || bodyLines < 0)) {
      throw new StoreError('invalid', `bodyLines must be null or a non-negative integer, got ${bodyLines}`, { temporary: false });
    }
    if (options.signal?.aborted) {
      throw new StoreError('backend', 'read aborted', { cause: options.signal.reason, temporary: true });
    }
    try {
      return await this.readMessage(index, options);
    } catch (error) {
      throw asStoreError(error, 'reading the message failed');
    }
  }

  openStoredSync(index: number): StoredReader | undefined {
    if (this.#state !== 'open') throw closedDrop();
    checkIndex(index, this.messages.length);
    try {
      return this.openStored(index);
    } catch (error) {
      throw asStoreError(error, 'reading the message failed');
    }
  }

  commit(deleted: readonly number[]): Promise<void> {
    if (this.#commit !== undefined) return this.#commit;
    if (this.#state === 'closed') return Promise.reject(closedDrop());
    this.#state = 'committing';
    this.#commit = this.#runCommit(deleted);
    return this.#commit;
  }

  async close(): Promise<void> {
    if (this.#state === 'open') {
      this.#state = 'closed';
      await releaseQuietly(this.lease);
    } else if (this.#commit !== undefined) {
      await this.#commit.catch(() => {});
    }
  }

  async #runCommit(deleted: readonly number[]): Promise<void> {
    try {
      const indexes = checkDeleted(deleted, this.messages.length);
      if (!this.lease.held()) throw lockLost();
      if (indexes.length > 0) await this.removeMessages(indexes);
    } catch (error) {
      throw asStoreError(error, 'committing the maildrop failed');
    } finally {
      await releaseQuietly(this.lease);
    }
  }
}
