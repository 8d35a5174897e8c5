import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChainBackend } from '../src/index.js';
import { FakeBackend } from './fake-backend.js';

describe('ChainBackend', () => {
  it('asks the next backend about users the first does not know', async () => {
    const a = new FakeBackend('a', { alice: 'pa' });
    const b = new FakeBackend('b', { bob: 'pb' });
    const chain = new ChainBackend([a, b]);
    const r = await chain.verifyPassword({ username: 'bob', password: 'pb' });
    assert.ok(r.ok);
    assert.equal(r.account.backend, 'b');
    assert.equal(a.calls.length, 1);
  });

  it('a wrong password for a user the first backend holds is definite', async () => {
    const a = new FakeBackend('a', { alice: 'pa' });
    const b = new FakeBackend('b', { alice: 'other' });
    const chain = new ChainBackend([a, b]);
    const r = await chain.verifyPassword({ username: 'alice', password: 'other' });
    assert.equal(!r.ok && r.failure, 'invalid');
    assert.equal(b.calls.length, 0);
  });

  it('without hasLogin, an invalid answer falls through', async () => {
    const a = new FakeBackend('a', { alice: 'pa' }, { hasLogin: false });
    const b = new FakeBackend('b', { alice: 'other' });
    const chain = new ChainBackend([a, b]);
    assert.ok((await chain.verifyPassword({ username: 'alice', password: 'other' })).ok);
    assert.equal(chain.hasLogin, undefined);
  });

  it('refused ends the chain', async () => {
    const a = new FakeBackend('a', { alice: 'pa' });
    a.answer = { ok: false, failure: 'refused', reason: 'disabled' };
    const b = new FakeBackend('b', { alice: 'pa' });
    const r = await new ChainBackend([a, b]).verifyPassword({ username: 'alice', password: 'pa' });
    assert.equal(!r.ok && r.failure, 'refused');
    assert.equal(b.calls.length, 0);
  });

  it('temporary from one backend while no other accepts is temporary', async () => {
    const a = new FakeBackend('a');
    a.answer = { ok: false, failure: 'temporary', reason: 'ldap down' };
    const b = new FakeBackend('b', { bob: 'pb' });
    const chain = new ChainBackend([a, b]);
    const r = await chain.verifyPassword({ username: 'carol', password: 'x' });
    assert.equal(!r.ok && r.failure, 'temporary');
    assert.match(!r.ok ? r.reason : '', /^a: ldap down/);
    // Even when a later backend definitely knows the user: the first might have said yes.
    const r2 = await chain.verifyPassword({ username: 'bob', password: 'wrong' });
    assert.equal(!r2.ok && r2.failure, 'temporary');
    // Another backend accepting wins.
    assert.ok((await chain.verifyPassword({ username: 'bob', password: 'pb' })).ok);
  });

  it('a thrown error counts as temporary; aborts propagate', async () => {
    const a = new FakeBackend('a');
    a.answer = new Error('socket closed');
    const chain = new ChainBackend([a, new FakeBackend('b')]);
    const r = await chain.verifyPassword({ username: 'x', password: 'y' });
    assert.equal(!r.ok && r.failure, 'temporary');
    await assert.rejects(chain.verifyPassword({ username: 'x', password: 'y' }, AbortSignal.abort()), { name: 'AbortError' });
  });

  it('lookup takes the first backend that knows the address; an error stops the walk', async () => {
    const a = new FakeBackend('a', { alice: 'pa' });
    const b = new FakeBackend('b', { alice: 'x', bob: 'pb' });
    const chain = new ChainBackend([a, b]);
    assert.equal((await chain.lookup('alice'))?.backend, 'a');
    assert.equal((await chain.lookup('bob'))?.backend, 'b');
    assert.equal(await chain.lookup('carol'), null);
    a.answer = new Error('down');
    await assert.rejects(chain.lookup('bob'), { code: 'unavailable', temporary: true });
  });

  it('hasLogin and supportsApop aggregate; close closes every backend', async () => {
    const a = new FakeBackend('a', { alice: 'pa' });
    const b = new FakeBackend('b', { bob: 'pb' });
    let closed = 0;
    a.close = async () => void closed++;
    b.close = async () => void closed++;
    const chain = new ChainBackend([a, b]);
    assert.equal(await chain.hasLogin?.('bob'), true);
    assert.equal(await chain.hasLogin?.('carol'), false);
    assert.equal(chain.supportsApop(), false);
    await chain.close();
    assert.equal(closed, 2);
    assert.throws(() => new ChainBackend([]), RangeError);
  });
});
