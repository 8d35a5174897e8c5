/**
 * A small pool of worker threads for the password schemes that are slow on purpose
 * (SHA-crypt, bcrypt, argon2), so that a server handling thousands of sessions never runs
 * them on its event loop. Cheap schemes (PLAIN, SSHA512) are verified inline.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { AccountsError, abortReason } from './errors.js';
import { isExpensive, parsePasswordHash, verifyPasswordHash } from './schemes.js';
import type { PasswordVerifier } from './verifier.js';
import type { VerifyRequest, VerifyResponse } from './verify-worker.js';

export interface VerifierPoolOptions {
  /** Worker threads; default `min(4, os.availableParallelism())`. */
  readonly size?: number;
  /**
   * Verifications allowed to wait for a free worker; beyond that `verify()` rejects at once
   * with AccountsError `busy` (temporary). Default 512.
   */
  readonly maxQueue?: number;
}

export interface VerifierPoolStats {
  readonly workers: number;
  readonly busy: number;
  readonly queued: number;
}

interface Task {
  readonly id: number;
  readonly password: string;
  readonly hash: string;
  readonly resolve: (ok: boolean) => void;
  readonly reject: (e: unknown) => void;
  readonly signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  settled: boolean;
}

interface Slot {
  readonly worker: Worker;
  task: Task | null;
}

export interface WorkerLocation {
  /** The worker module: verify-worker.ts next to this file when running from source, else verify-worker.js. */
  readonly url: URL;
  /** True when running from TypeScript sources (under tsx): the worker must load tsx first. */
  readonly fromSource: boolean;
}

/**
 * Where the worker module is: next to this file, with this file's own extension. From
 * `dist/*.js` it is plain JavaScript; from `src/*.ts` it needs tsx inside the worker.
 */
export function verifyWorkerLocation(): WorkerLocation {
  const self = import.meta.url;
  const fromSource = /\.[cm]?ts$/.test(new URL(self).pathname);
  return { url: new URL(fromSource ? './verify-worker.ts' : './verify-worker.js', self), fromSource };
}

/**
 * A worker running TypeScript sources registers tsx in the worker itself, then imports the
 * entry. (On Node 20, `execArgv: ['--import', 'tsx']` races with the hooks the parent already
 * has and fails intermittently with ERR_UNKNOWN_FILE_EXTENSION.)
 */
function sourceBootstrap(entry: URL): string {
  let api: string;
  try {
    api = import.meta.resolve('tsx/esm/api');
  } catch {
    api = 'tsx/esm/api';
  }
  return `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`;
}

export class VerifierPool implements PasswordVerifier {
  readonly size: number;
  readonly maxQueue: number;
  private readonly location: WorkerLocation;
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private nextId = 1;
  private closed = false;

  constructor(options: VerifierPoolOptions = {}) {
    this.size = Math.max(1, Math.floor(options.size ?? Math.min(4, availableParallelism())));
    this.maxQueue = Math.max(0, Math.floor(options.maxQueue ?? 512));
    this.location = verifyWorkerLocation();
    if (!existsSync(fileURLToPath(this.location.url))) {
      throw new AccountsError('unavailable', `verification worker not found at ${this.location.url.href}`, { temporary: false });
    }
  }

  /** Start every worker now instead of on first use (saves the first logins the start-up time). */
  start(): void {
    while (!this.closed && this.slots.length < this.size) this.spawn();
  }

  get stats(): VerifierPoolStats {
    return {
      workers: this.slots.length,
      busy: this.slots.filter((s) => s.task !== null).length,
      queued: this.queue.length,
    };
  }

  async verify(password: string, storedHash: string, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) throw abortReason(signal);
    if (this.closed) throw new AccountsError('closed', 'verifier pool closed');
    const parsed = parsePasswordHash(storedHash);
    if (!isExpensive(parsed)) return verifyPasswordHash(password, parsed);
    if (password.length === 0 || password.includes('\0')) return verifyPasswordHash(password, parsed);
    return new Promise<boolean>((resolve, reject) => {
      const task: Task = { id: this.nextId++, password, hash: storedHash, resolve, reject, signal, onAbort: undefined, settled: false };
      const idle = this.idleSlot();
      if (idle === null && this.queue.length >= this.maxQueue) {
        reject(new AccountsError('busy', `password verification queue full (${this.maxQueue} waiting)`));
        return;
      }
      if (signal) {
        task.onAbort = () => {
          const i = this.queue.indexOf(task);
          if (i >= 0) this.queue.splice(i, 1);
          // A running verification cannot be interrupted; its answer is dropped.
          this.settle(task, () => reject(abortReason(signal)));
        };
        signal.addEventListener('abort', task.onAbort, { once: true });
      }
      if (idle !== null) this.run(idle, task);
      else this.queue.push(task);
    });
  }

  /** Stop the workers; pending and future verifications reject with `closed`. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new AccountsError('closed', 'verifier pool closed');
    for (const task of this.queue.splice(0)) this.settle(task, () => task.reject(err));
    const slots = this.slots.splice(0);
    for (const slot of slots) if (slot.task) this.settle(slot.task, () => slot.task!.reject(err));
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private idleSlot(): Slot | null {
    for (const slot of this.slots) if (slot.task === null) return slot;
    if (this.slots.length < this.size) return this.spawn();
    return null;
  }

  private spawn(): Slot {
    const worker = this.location.fromSource
      ? new Worker(sourceBootstrap(this.location.url), { eval: true, execArgv: [], name: 'postern-verify' })
      : // Not the parent's execArgv: flags such as --input-type are refused in workers.
        new Worker(this.location.url, { execArgv: [], name: 'postern-verify' });
    const slot: Slot = { worker, task: null };
    worker.unref();
    worker.on('message', (msg: VerifyResponse) => this.onMessage(slot, msg));
    worker.on('error', (e) => this.onGone(slot, e));
    worker.on('exit', (code) => this.onGone(slot, new Error(`verification worker exited with code ${code}`)));
    this.slots.push(slot);
    return slot;
  }

  private run(slot: Slot, task: Task): void {
    slot.task = task;
    slot.worker.ref();
    slot.worker.postMessage({ id: task.id, password: task.password, hash: task.hash } satisfies VerifyRequest);
  }

  private onMessage(slot: Slot, msg: VerifyResponse): void {
    const task = slot.task;
    if (task === null || task.id !== msg.id) return;
    slot.task = null;
    slot.worker.unref();
    if ('ok' in msg) {
      this.settle(task, () => task.resolve(msg.ok));
    } else {
      const code = msg.code === 'malformed-hash' || msg.code === 'unsupported-scheme' ? msg.code : 'unavailable';
      this.settle(task, () => task.reject(new AccountsError(code, msg.error)));
    }
    this.pump();
  }

  private onGone(slot: Slot, cause: unknown): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    const task = slot.task;
    slot.task = null;
    if (task) this.settle(task, () => task.reject(new AccountsError('unavailable', 'verification worker failed', { cause })));
    void slot.worker.terminate();
    this.pump();
  }

  private pump(): void {
    while (!this.closed && this.queue.length > 0) {
      const slot = this.idleSlot();
      if (slot === null) return;
      this.run(slot, this.queue.shift()!);
    }
  }

  private settle(task: Task, fn: () => void): void {
    if (task.settled) return;
    task.settled = true;
    if (task.onAbort && task.signal) task.signal.removeEventListener('abort', task.onAbort);
    fn();
  }
}
