/**
 * Deliveries in flight in this process. A transaction takes a slot before it reads the message
 * and gives it back after its last store call; when none is free it waits in arrival order, up to
 * a deadline, without reading (TCP backpressure holds the MTA meanwhile).
 */
export type Release = () => void;

interface Waiter {
  grant(release: Release | null): void;
}

export class DeliverySlots {
  readonly limit: number;
  #inFlight = 0;
  readonly #waiters = new Set<Waiter>();

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`delivery concurrency must be a whole number >= 1, got ${limit}`);
    this.limit = limit;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get waiting(): number {
    return this.#waiters.size;
  }

  /**
   * A release function once a slot is ours; null when none came free within `waitMs` (0: do not
   * wait) or `signal` aborted first.
   */
  acquire(waitMs: number, signal?: AbortSignal): Promise<Release | null> {
    if (signal?.aborted) return Promise.resolve(null);
    if (this.#inFlight < this.limit && this.#waiters.size === 0) return Promise.resolve(this.#take());
    if (waitMs <= 0) return Promise.resolve(null);
    return new Promise<Release | null>((resolve) => {
      const onAbort = (): void => waiter.grant(null);
      const timer = setTimeout(onAbort, waitMs);
      const waiter: Waiter = {
        grant: (release) => {
          this.#waiters.delete(waiter);
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      this.#waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  #take(): Release {
    this.#inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight--;
      // Hand the slot to the longest waiter (a Set iterates in insertion order).
      const next = this.#waiters.values().next();
      if (!next.done) next.value.grant(this.#take());
    };
  }
}
