/**
 * Reading message files. Two ways, chosen per store:
 *
 * - sync: open, fstat and read on the event loop thread, one chunk per `_read()` (so socket
 *   backpressure still paces it). For files in the page cache this is a memcpy; the libuv thread
 *   pool's hand-offs cost far more than the work (measured on our 2-core VMs: 35 MB/s through
 *   fs.createReadStream, 945 MB/s with readFileSync). A cold read blocks the loop for one disk
 *   access, which on SSD/NVMe is ~0.1 ms; on slow or network disks choose async.
 * - async: fs.read with callbacks into fresh chunk buffers (no fs.promises, no createReadStream:
 *   both add hand-offs per chunk).
 *
 * Either way the file must still have the size the listing recorded; a file that grew or shrank
 * ends the stream with an error rather than sending bytes LIST did not announce.
 */
import { close, closeSync, fstat, fstatSync, open, openSync, read, readSync } from 'node:fs';
import { Readable } from 'node:stream';
import { StoreError } from './errors.js';
import type { StoredReader } from './types.js';

export type ReadMode = 'sync' | 'async';

const CHANGED = (path: string): StoreError =>
  new StoreError('not-found', `message file changed on disk since the listing: ${path}`, { temporary: false });

abstract class MessageFileReader extends Readable {
  protected fd: number;
  protected position = 0;
  protected readonly size: number;
  protected readonly chunkSize: number;
  protected readonly path: string;

  constructor(fd: number, path: string, size: number, chunkSize: number) {
    super({ highWaterMark: chunkSize });
    this.fd = fd;
    this.path = path;
    this.size = size;
    this.chunkSize = chunkSize;
  }

  /** Bytes to ask for next: at the end, one more than remain, to notice a file that grew. */
  protected nextLength(): number {
    const remaining = this.size - this.position;
    return remaining < this.chunkSize ? remaining + 1 : this.chunkSize;
  }

  /** Push what one read returned; false when the stream is over (ended or failed). */
  protected deliver(buffer: Buffer, n: number, asked: number): boolean {
    this.position += n;
    if (this.position > this.size || (n === 0 && this.position < this.size)) {
      this.destroy(CHANGED(this.path));
      return false;
    }
    if (n > 0) this.push(n === asked ? buffer : buffer.subarray(0, n));
    if (this.position === this.size && (n < asked || this.size === 0)) {
      this.push(null);
      return false;
    }
    return true;
  }
}

class SyncReader extends MessageFileReader {
  override _read(): void {
    try {
      for (;;) {
        const asked = this.nextLength();
        const buffer = Buffer.allocUnsafe(asked);
        const n = readSync(this.fd, buffer, 0, asked, this.position);
        if (!this.deliver(buffer, n, asked) || this.readableLength >= this.readableHighWaterMark) return;
        if (n === asked) return; // let the consumer take this chunk first
      }
    } catch (e) {
      this.destroy(e as Error);
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        // nothing useful to do
      }
      this.fd = -1;
    }
    callback(error);
  }
}

class AsyncReader extends MessageFileReader {
  override _read(): void {
    const asked = this.nextLength();
    const buffer = Buffer.allocUnsafe(asked);
    read(this.fd, buffer, 0, asked, this.position, (err, n) => {
      if (err) this.destroy(err);
      else this.deliver(buffer, n, asked);
    });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.fd < 0) return callback(error);
    const fd = this.fd;
    this.fd = -1;
    close(fd, () => callback(error));
  }
}

function isMissing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === 'ENOENT';
}

/** Sync open for reading; undefined when the file is gone. */
function openIfPresentSync(path: string): number | undefined {
  try {
    return openSync(path, 'r');
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
}

/** Sync open of a file that must have `size` octets: undefined when it is gone; `not-found` when its size differs. */
function openCheckedSync(path: string, size: number): number | undefined {
  const fd = openIfPresentSync(path);
  if (fd === undefined) return undefined;
  try {
    if (fstatSync(fd).size !== size) throw CHANGED(path);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

/**
 * Open a message file whose size on disk should be `size`. Resolves undefined when the file is
 * gone; rejects `not-found` when its size differs (checked before anything is sent).
 */
export async function openMessageFile(path: string, size: number, mode: ReadMode, chunkSize: number): Promise<Readable | undefined> {
  if (mode === 'sync') {
    const fd = openCheckedSync(path, size);
    return fd === undefined ? undefined : new SyncReader(fd, path, size, chunkSize);
  }
  const fd = await new Promise<number | undefined>((resolve, reject) =>
    open(path, 'r', (err, fd) => (err ? (isMissing(err) ? resolve(undefined) : reject(err)) : resolve(fd))),
  );
  if (fd === undefined) return undefined;
  const actual = await new Promise<number>((resolve, reject) => fstat(fd, (err, st) => (err ? reject(err) : resolve(st.size)))).catch(
    (e: Error) => {
      close(fd, () => undefined);
      throw e;
    },
  );
  if (actual !== size) {
    close(fd, () => undefined);
    throw CHANGED(path);
  }
  return new AsyncReader(fd, path, size, chunkSize);
}

/**
 * Sync mode, for a caller that encodes the stored bytes itself (the gateway's one-pass RETR):
 * a message file read in the caller's chunks, with no stream. The size check happens on the
 * reads themselves (a file shorter or longer than `size` throws `not-found`), so opening costs
 * one open and no fstat. Undefined when the file is gone.
 */
export function openStoredFile(path: string, size: number): StoredReader | undefined {
  const fd = openIfPresentSync(path);
  return fd === undefined ? undefined : new StoredFileReader(fd, path, size);
}

class StoredFileReader implements StoredReader {
  #fd: number;
  #position = 0;

  constructor(
    fd: number,
    private readonly path: string,
    private readonly size: number,
  ) {
    this.#fd = fd;
  }

  get done(): boolean {
    return this.#position === this.size;
  }

  read(target: Uint8Array): number {
    if (this.#fd < 0) throw new StoreError('invalid', 'the message file is closed', { temporary: false });
    const remaining = this.size - this.#position;
    const room = target.length - 1;
    // With the rest in reach, ask for one octet more: a file that grew shows in the same read.
    const want = remaining <= room ? remaining + 1 : room;
    const n = readSync(this.#fd, target, 0, want, this.#position);
    if (n > remaining || (n < want && n < remaining)) throw CHANGED(this.path);
    this.#position += n;
    return n;
  }

  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    closeSync(fd);
  }
}
