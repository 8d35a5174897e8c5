import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cacheBench } from '../src/cache-bench.js';

describe('cacheBench', () => {
  it('fills the cache, logs new names in past its size without growing it, and reports the cost', async () => {
    const r = await cacheBench(100, 500);
    assert.equal(r.size, 100);
    assert.equal(r.logins, 500);
    assert.ok(r.microsPerLogin > 0);
  });
});
