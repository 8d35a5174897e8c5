import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { describe, it } from 'node:test';
import { CredentialCache } from '../src/index.js';
import { FakeBackend } from './fake-backend.js';

function setup(options: ConstructorParameters<typeof CredentialCache>[1] = {}) {
  let t = 1_000_000;
  const backend = new FakeBackend('inner', { alice: 'right', bob: 'bobpw' });
  const cache = new CredentialCache(backend, { now: () => t, ...options });
  return { backend, cache, advance: (ms: number) => (t += ms) };
}

describe('CredentialCache', () => {
  it('serves a repeated successful login from the cache until the TTL passes', async () => {
    const { backend, cache, advance } = setup({ ttlMs: 60_000 });
    const first = await cache.verifyPassword({ username: 'alice', password: 'right' });
    assert.ok(first.ok);
    assert.deepEqual(await cache.verifyPassword({ username: 'alice', password: 'right' }), first);
    assert.equal(backend.calls.length, 1);
    advance(59_999);
    await cache.verifyPassword({ username: 'alice', password: 'right' });
    assert.equal(backend.calls.length, 1);
    advance(1);
    await cache.verifyPassword({ username: 'alice', password: 'right' });
    assert.equal(backend.calls.length, 2);
    assert.deepEqual(cache.stats, { entries: 1, negativeEntries: 0, hits: 2, negativeHits: 0, misses: 2, sharedHits: 0 });
  });

  it('never answers a different password from a cached success', async () => {
    const { backend, cache } = setup();
    assert.ok((await cache.verifyPassword({ username: 'alice', password: 'right' })).ok);
    const other = await cache.verifyPassword({ username: 'alice', password: 'Right' });
    assert.equal(other.ok, false);
    assert.equal(backend.calls.length, 2);
    // Nor another user with the same password.
    assert.equal((await cache.verifyPassword({ username: 'bob', password: 'right' })).ok, false);
    assert.equal(backend.calls.length, 3);
  });

  it('caches failures for the shorter negative TTL', async () => {
    const { backend, cache, advance } = setup({ negativeTtlMs: 5_000 });
    for (let i = 0; i < 50; i++) {
      const r = await cache.verifyPassword({ username: 'alice', password: 'guess' });
      assert.equal(!r.ok && r.failure, 'invalid');
    }
    assert.equal(backend.calls.length, 1);
    advance(5_000);
    await cache.verifyPassword({ username: 'alice', password: 'guess' });
    assert.equal(backend.calls.length, 2);
  });

  it('does not cache temporary failures or errors', async () => {
    const { backend, cache } = setup();
    backend.answer = { ok: false, failure: 'temporary', reason: 'ldap down' };
    await cache.verifyPassword({ username: 'alice', password: 'right' });
    await cache.verifyPassword({ username: 'alice', password: 'right' });
    assert.equal(backend.calls.length, 2);
    backend.answer = new Error('boom');
    await assert.rejects(cache.verifyPassword({ username: 'alice', password: 'right' }), /boom/);
    backend.answer = null;
    assert.ok((await cache.verifyPassword({ username: 'alice', password: 'right' })).ok);
    assert.equal(backend.calls.length, 4);
  });

  it('bounds both caches, evicting the least recently used', async () => {
    const { backend, cache } = setup({ maxEntries: 2, maxNegativeEntries: 3 });
    backend.users.set('carol', 'c');
    await cache.verifyPassword({ username: 'alice', password: 'right' });
    await cache.verifyPassword({ username: 'bob', password: 'bobpw' });
    await cache.verifyPassword({ username: 'alice', password: 'right' }); // alice is now the most recent
    await cache.verifyPassword({ username: 'carol', password: 'c' }); // evicts bob
    assert.equal(cache.stats.entries, 2);
    const before = backend.calls.length;
    await cache.verifyPassword({ username: 'alice', password: 'right' });
    assert.equal(backend.calls.length, before);
    await cache.verifyPassword({ username: 'bob', password: 'bobpw' });
    assert.equal(backend.calls.length, before + 1);
    for (let i = 0; i < 10; i++) await cache.verifyPassword({ username: 'x', password: String(i) });
    assert.equal(cache.stats.negativeEntries, 3);
  });

  it('shares one backend call between concurrent identical verifications', async () => {
    const { backend, cache } = setup();
    let release!: () => void;
    backend.gate = new Promise((r) => (release = r));
    const all = Array.from({ length: 20 }, () => cache.verifyPassword({ username: 'alice', password: 'bad' }));
    release();
    const results = await Promise.all(all);
    assert.equal(backend.calls.length, 1);
    assert.ok(results.every((r) => !r.ok));
  });

  it('an aborted caller leaves the others waiting; the last one out cancels the backend call', async () => {
    const { backend, cache } = setup();
    let release!: () => void;
    backend.gate = new Promise((r) => (release = r));
    const a = new AbortController();
    const b = new AbortController();
    const pa = cache.verifyPassword({ username: 'alice', password: 'right' }, a.signal);
    const pb = cache.verifyPassword({ username: 'alice', password: 'right' }, b.signal);
    a.abort();
    await assert.rejects(pa, { name: 'AbortError' });
    assert.equal(backend.lastSignal?.aborted, false);
    b.abort();
    await assert.rejects(pb, { name: 'AbortError' });
    assert.equal(backend.lastSignal?.aborted, true);
    release();
    // A new caller starts afresh.
    backend.gate = null;
    assert.ok((await cache.verifyPassword({ username: 'alice', password: 'right' })).ok);
    assert.equal(backend.calls.length, 2);
  });

  it('never holds the password', async () => {
    const { cache } = setup();
    await cache.verifyPassword({ username: 'alice', password: 'right' });
    await cache.verifyPassword({ username: 'bob', password: 'Sup3r-S3cret-guess' });
    // Everything the cache holds, except the (fake) backend, which records what it was sent.
    const own = { ...cache, backend: null };
    const dump = inspect(own, { depth: 20, showHidden: true, maxArrayLength: null, maxStringLength: null });
    assert.ok(dump.includes('alice'), 'the dump shows the cache contents');
    assert.ok(!dump.includes('Sup3r-S3cret-guess'));
    assert.ok(!dump.includes("'right'"));
  });

  it('clear() forgets everything; empty passwords bypass the cache', async () => {
    const { backend, cache } = setup();
    await cache.verifyPassword({ username: 'alice', password: 'right' });
    cache.clear();
    await cache.verifyPassword({ username: 'alice', password: 'right' });
    assert.equal(backend.calls.length, 2);
    await cache.verifyPassword({ username: 'alice', password: '' });
    await cache.verifyPassword({ username: 'alice', password: '' });
    assert.equal(backend.calls.length, 4);
  });

  it('passes lookup, APOP and hasLogin through', async () => {
    const { cache } = setup();
    assert.equal((await cache.lookup('alice'))?.mailboxId, 'inner/alice');
    assert.equal(cache.supportsApop(), false);
    assert.equal(await cache.hasLogin?.('alice'), true);
    const withoutHasLogin = new CredentialCache(new FakeBackend('x', {}, { hasLogin: false }));
    assert.equal(withoutHasLogin.hasLogin, undefined);
  });
});
