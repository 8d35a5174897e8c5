import { randomBytes } from 'node:crypto';
import type { Lease, LockManager } from './types.js';

/** In-process locks for the single node: exactly one holder per key, no expiry. */
export class MemoryLockManager implements LockManager {
  readonly kind = 'memory';
  readonly #holders = new Map<string, string>();
  #fence = 0;

  async acquire(key: string): Promise<Lease | null> {
    if (this.#holders.has(key)) return null;
    const token = randomBytes(12).toString('base64url');
    this.#holders.set(key, token);
    const controller = new AbortController();
    const holders = this.#holders;
    return {
      key,
      token,
      fence: ++this.#fence,
      signal: controller.signal,
      held: () => holders.get(key) === token,
      release: async () => {
        if (holders.get(key) === token) holders.delete(key);
        controller.abort();
      },
    };
  }

  /** Number of keys held, for tests and metrics. */
  get size(): number {
    return this.#holders.size;
  }
}
