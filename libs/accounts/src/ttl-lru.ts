/**
 * A bounded map whose entries expire: least recently used entries go first when full.
 *
 * A hit moves its entry to the end of the map's insertion order, so the oldest live entry is the
 * first one. Eviction takes it from one iterator kept across calls, which resumes where it
 * stopped: every hole that deletions leave is passed once. A fresh `keys().next()` per eviction
 * (as before) walked all the holes at the front each time: a burst of distinct logins (password
 * spraying) into a full 100 000-entry credential cache cost 120 µs per login, against 22 µs now
 * (`npm run bench:cache -w loadtest`, which includes the cache's HMAC).
 */
export class TtlLru<V> {
  private readonly map = new Map<string, { readonly value: V; readonly expires: number }>();
  #oldest: Iterator<string> | null = null;
  constructor(private readonly max: number) {}

  get size(): number {
    return this.map.size;
  }

  get(key: string, now: number): V | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    this.map.delete(key);
    if (e.expires <= now) return undefined;
    this.map.set(key, e);
    return e.value;
  }

  set(key: string, value: V, expires: number): void {
    if (this.max <= 0) return;
    this.map.delete(key);
    this.map.set(key, { value, expires });
    while (this.map.size > this.max) {
      // Map iterators are live: this one skips what was deleted behind it and reaches entries
      // added since, in order. At its end, start a new one.
      let next = this.#oldest?.next();
      if (next === undefined || next.done === true) {
        this.#oldest = this.map.keys();
        next = this.#oldest.next();
      }
      if (next.done === true) break;
      this.map.delete(next.value);
    }
  }

  delete(key: string): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
    this.#oldest = null;
  }
}
