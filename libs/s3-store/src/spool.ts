/**
 * Holds one delivery's canonical bytes until the PUT: in memory up to a small threshold, then in
 * a private temp file, so a 50 MB message costs the threshold in memory, not 50 MB. The PUT needs
 * the length up front (Content-Length) and a body it can reopen for a retry.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

const SPOOL_FILE = 'postern-spool-';

/**
 * Removes spool files older than `olderThanMs` left in `dir` by a process that died mid-delivery
 * (a live delivery never lasts that long). Returns how many were removed; errors are ignored.
 */
export async function removeStaleSpoolFiles(dir: string, olderThanMs: number, now = Date.now()): Promise<number> {
  let removed = 0;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    if (!name.startsWith(SPOOL_FILE)) continue;
    const path = join(dir, name);
    try {
      if (now - (await stat(path)).mtimeMs < olderThanMs) continue;
      await unlink(path);
      removed++;
    } catch {
      // gone already, or not ours to remove
    }
  }
  return removed;
}

export class Spool {
  readonly #limit: number;
  readonly #dir: string;
  #parts: Buffer[] = [];
  #memory = 0;
  #size = 0;
  #file: FileHandle | null = null;
  #path: string | null = null;

  constructor(memoryLimit: number, dir: string = tmpdir()) {
    this.#limit = memoryLimit;
    this.#dir = dir;
  }

  get size(): number {
    return this.#size;
  }

  async write(bytes: Buffer): Promise<void> {
    if (bytes.length === 0) return;
    this.#size += bytes.length;
    if (this.#file === null && this.#memory + bytes.length <= this.#limit) {
      // Copy: a source may reuse its buffer.
      this.#parts.push(Buffer.from(bytes));
      this.#memory += bytes.length;
      return;
    }
    if (this.#file === null) {
      this.#path = join(this.#dir, `${SPOOL_FILE}${randomUUID()}`);
      this.#file = await open(this.#path, 'wx', 0o600);
      const held = Buffer.concat(this.#parts, this.#memory);
      this.#parts = [];
      this.#memory = 0;
      await this.#file.write(held);
    }
    await this.#file.write(bytes);
  }

  /** Stops writing; the body can be opened any number of times afterwards. */
  async finish(): Promise<void> {
    if (this.#file !== null) {
      await this.#file.close();
      this.#file = null;
    }
  }

  /** A fresh body for one PUT attempt. */
  body(): Buffer | Readable {
    if (this.#path === null) return this.#parts.length === 1 ? (this.#parts[0] as Buffer) : Buffer.concat(this.#parts, this.#memory);
    return createReadStream(this.#path, { highWaterMark: 64 * 1024 });
  }

  /** Frees the memory and removes the file. Safe to call more than once. */
  async discard(): Promise<void> {
    this.#parts = [];
    this.#memory = 0;
    const file = this.#file;
    this.#file = null;
    await file?.close().catch(() => undefined);
    const path = this.#path;
    this.#path = null;
    if (path !== null) await unlink(path).catch(() => undefined);
  }
}
