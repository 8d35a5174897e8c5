/**
 * RFC 2449 LOGIN-DELAY: the least time between two logins to one mailbox. `admit` answers
 * whether a login may proceed now and, if so, records it. Single node: in this process, or in the
 * primary for all workers (over the same IPC channel as the locks).
 */
export interface LoginDelayGate {
  /** True (and the login is recorded) when the last login of `key` was `delayMs` or more ago. */
  admit(key: string, delayMs: number): Promise<boolean>;
}

/** Last-login times, pruned as they age out so memory follows the active mailboxes only. */
export class LoginHistory {
  readonly #last = new Map<string, number>();
  readonly #now: () => number;
  #sweepAt = 0;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  admit(key: string, delayMs: number): boolean {
    const now = this.#now();
    if (now >= this.#sweepAt) this.#sweep(now, delayMs);
    const last = this.#last.get(key);
    if (last !== undefined && now - last < delayMs) return false;
    this.#last.set(key, now);
    return true;
  }

  #sweep(now: number, delayMs: number): void {
    for (const [key, at] of this.#last) if (now - at >= delayMs) this.#last.delete(key);
    this.#sweepAt = now + Math.max(delayMs, 1_000);
  }

  get size(): number {
    return this.#last.size;
  }
}

/** In-process gate for one process. */
export class MemoryLoginDelayGate implements LoginDelayGate {
  readonly #history: LoginHistory;
  constructor(history = new LoginHistory()) {
    this.#history = history;
  }
  async admit(key: string, delayMs: number): Promise<boolean> {
    return this.#history.admit(key, delayMs);
  }
}
