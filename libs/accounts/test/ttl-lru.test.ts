import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { TtlLru } from '../src/ttl-lru.js';

describe('TtlLru', () => {
  it('never holds more than its capacity, whatever is set and read', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 50 }), fc.array(fc.tuple(fc.boolean(), fc.nat(200)), { maxLength: 500 }), (max, ops) => {
        const c = new TtlLru<number>(max);
        for (const [write, k] of ops) {
          if (write) c.set(`k${k}`, k, 1e15);
          else {
            const v = c.get(`k${k}`, 0);
            if (v !== undefined && v !== k) return false;
          }
          if (c.size > max) return false;
        }
        return true;
      }),
    );
  });

  it('keeps what is used while new keys push out what is not', () => {
    const c = new TtlLru<string>(100);
    c.set('hot', 'h', 1e15);
    c.set('cold', 'c', 1e15);
    for (let i = 0; i < 1_000; i++) {
      c.set(`new${i}`, 'n', 1e15);
      if (i % 10 === 0) assert.equal(c.get('hot', 0), 'h', `read ${i}`);
    }
    assert.equal(c.get('hot', 0), 'h');
    assert.equal(c.get('cold', 0), undefined);
    assert.ok(c.size <= 100);
  });

  it('forgets expired entries, deletes, clears, and holds nothing with capacity 0', () => {
    const c = new TtlLru<number>(10);
    c.set('a', 1, 100);
    c.set('b', 2, 300);
    assert.equal(c.get('a', 99), 1);
    assert.equal(c.get('a', 100), undefined);
    assert.equal(c.get('a', 0), undefined, 'an expired entry is gone, not hidden');
    c.delete('b');
    assert.equal(c.get('b', 0), undefined);
    c.set('c', 3, 1e15);
    c.clear();
    assert.equal(c.size, 0);
    const none = new TtlLru<number>(0);
    none.set('x', 1, 1e15);
    assert.equal(none.get('x', 0), undefined);
  });
});
