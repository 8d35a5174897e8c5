import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { CredentialCache, type SharedCredentialStore } from '../src/index.js';
import { FakeBackend } from './fake-backend.js';

/** The shared level as a map (Redis in production; this is a pure unit test of the cache). */
class MapStore implements SharedCredentialStore {
  readonly entries = new Map<string, { value: string; ttlMs: number }>();
  failing = false;
  async get(key: string): Promise<string | null> {
    if (this.failing) throw new Error('store down');
    return this.entries.get(key)?.value ?? null;
  }
  async set(key: string, value: string, ttlMs: number): Promise<void> {
    if (this.failing) throw new Error('store down');
    this.entries.set(key, { value, ttlMs });
  }
}

/** Two "processes" with their own backends and local caches over one shared store. */
function pair(secretA = randomBytes(32), secretB = secretA) {
  const store = new MapStore();
  const a = new FakeBackend('inner', { alice: 'right' });
  const b = new FakeBackend('inner', { alice: 'right' });
  return {
    store,
    a,
    b,
    cacheA: new CredentialCache(a, { shared: { store, secret: secretA }, ttlMs: 60_000, negativeTtlMs: 5_000 }),
    cacheB: new CredentialCache(b, { shared: { store, secret: secretB } }),
  };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('CredentialCache shared level', () => {
  it('a login verified by one process is answered for another without a backend call', async () => {
    const { store, a, b, cacheA, cacheB } = pair();
    assert.ok((await cacheA.verifyPassword({ username: 'alice', password: 'right' })).ok);
    await settle();
    const shared = await cacheB.verifyPassword({ username: 'alice', password: 'right' });
    assert.ok(shared.ok);
    assert.equal(shared.account.mailboxId, 'inner/alice');
    assert.equal(a.calls.length, 1);
    assert.equal(b.calls.length, 0);
    assert.equal(cacheB.stats.sharedHits, 1);
    const [entry] = [...store.entries.values()];
    assert.equal(entry?.ttlMs, 60_000);
    // Neither the password nor the user name is in the store.
    for (const [key, { value }] of store.entries) assert.ok(!`${key}${value}`.includes('right'));
  });

  it('shares definite failures for the negative TTL, never temporary ones', async () => {
    const { store, b, cacheA, cacheB } = pair();
    assert.equal((await cacheA.verifyPassword({ username: 'alice', password: 'wrong' })).ok, false);
    await settle();
    assert.deepEqual([...store.entries.values()].map((e) => e.ttlMs), [5_000]);
    const result = await cacheB.verifyPassword({ username: 'alice', password: 'wrong' });
    assert.equal(result.ok, false);
    assert.equal(b.calls.length, 0);
    store.entries.clear();
    b.answer = { ok: false, failure: 'temporary', reason: 'directory down' };
    await cacheB.verifyPassword({ username: 'alice', password: 'other' });
    await settle();
    assert.equal(store.entries.size, 0);
  });

  it('processes with different secrets do not see each other\u2019s entries', async () => {
    const { b, cacheA, cacheB } = pair(randomBytes(32), randomBytes(32));
    await cacheA.verifyPassword({ username: 'alice', password: 'right' });
    await settle();
    await cacheB.verifyPassword({ username: 'alice', password: 'right' });
    assert.equal(b.calls.length, 1);
  });

  it('a damaged or forged entry is a miss, never a login', async () => {
    const { store, b, cacheA, cacheB } = pair();
    await cacheA.verifyPassword({ username: 'alice', password: 'wrong' });
    await settle();
    const [key] = [...store.entries.keys()];
    store.entries.set(key as string, { value: '{"ok":true,"account":{"username":"alice"}}', ttlMs: 1 });
    const result = await cacheB.verifyPassword({ username: 'alice', password: 'wrong' });
    assert.equal(result.ok, false);
    assert.equal(b.calls.length, 1);
  });

  it('a new generation (an edited password file) never reuses older entries', async () => {
    const store = new MapStore();
    const secret = randomBytes(32);
    let generation = 'v1';
    const a = new FakeBackend('inner', { alice: 'right' });
    const b = new FakeBackend('inner', { alice: 'right' });
    const cacheA = new CredentialCache(a, { shared: { store, secret }, generation: () => generation });
    const cacheB = new CredentialCache(b, { shared: { store, secret }, generation: () => generation });
    await cacheA.verifyPassword({ username: 'alice', password: 'right' });
    await settle();
    generation = 'v2';
    b.users.delete('alice');
    assert.equal((await cacheB.verifyPassword({ username: 'alice', password: 'right' })).ok, false);
    assert.equal(b.calls.length, 1);
  });

  it('a failing shared store falls back to the backend', async () => {
    const { store, b, cacheB } = pair();
    store.failing = true;
    assert.ok((await cacheB.verifyPassword({ username: 'alice', password: 'right' })).ok);
    assert.equal(b.calls.length, 1);
  });
});
