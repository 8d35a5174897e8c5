/** A bounded map whose entries expire: least recently used entries go first when full. */
export class TtlLru<V> {
  private readonly map = new Map<string, { readonly value: V; readonly expires: number }>();
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
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      this.map.delete(oldest.value);
    }
  }

  delete(key: string): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }
}
