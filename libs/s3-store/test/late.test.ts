// A state-changing script that reaches Redis after its caller stopped waiting changes nothing:
// a delivery the MTA was told to retry is not indexed anyway, a QUIT the client saw fail does
// not delete. Redis is paused with SIGSTOP past the deadline, then resumed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisIndex, RedisLockManager } from '../src/index.js';
import { makeRig, standaloneRedis, startBackends, stopBackends, type Backends, type Rig } from './support.js';

/** Runs `action` while Redis is paused for `ms`, so whatever it sends arrives late. */
async function whilePaused<T>(b: Backends, ms: number, action: () => Promise<T>): Promise<PromiseSettledResult<T>> {
  await b.redisServer.proc.pause();
  const pending = action();
  const settled = Promise.allSettled([pending]).then(([r]) => r as PromiseSettledResult<T>);
  // Time passing is what is under test: the deadline is in the script's arguments.
  await new Promise((r) => setTimeout(r, ms));
  b.redisServer.proc.signal('SIGCONT');
  return settled;
}

describe('late script arrivals change nothing', () => {
  let b: Backends;
  let rig: Rig;
  let index: RedisIndex;

  before(async () => {
    b = await startBackends();
    rig = makeRig(b.s3Server, standaloneRedis(b.redisServer));
    // The same data through an index whose scripts expire 50 ms after they are sent.
    index = new RedisIndex(rig.redis, { keyPrefix: `${rig.namespace}:`, lateAfterMs: 50 });
  });
  after(async () => {
    await rig?.close();
    await stopBackends(b);
  });

  it('an index script past its deadline leaves the message unindexed', async () => {
    const result = await whilePaused(b, 300, () => index.index('late-a', 'm1', 10, undefined));
    assert.equal(result.status, 'rejected');
    assert.match(String((result as PromiseRejectedResult).reason), /after its deadline/);
    assert.deepEqual(await rig.index.listing('late-a'), []);
    assert.deepEqual(await rig.index.totals('late-a'), { count: 0, octets: 0 });
    // In time, the same call indexes.
    assert.equal(await index.index('late-a', 'm1', 10, undefined), true);
    assert.deepEqual(await rig.index.listing('late-a'), [{ uid: 'm1', size: 10 }]);
  });

  it('a commit past its deadline deletes nothing and the lease stays held', async () => {
    await index.index('late-b', 'm1', 10, undefined);
    await index.index('late-b', 'm2', 20, undefined);
    const locks = new RedisLockManager(index, { ttlMs: 30_000 });
    const lease = await locks.acquire('maildrop:late-b');
    assert.ok(lease);
    const result = await whilePaused(b, 300, () => index.commit('late-b', lease.token, lease.fence, ['m1']));
    assert.equal(result.status, 'rejected');
    assert.deepEqual((await rig.index.listing('late-b')).map((m) => m.uid), ['m1', 'm2']);
    assert.equal(await index.commit('late-b', lease.token, lease.fence, ['m1']), 'applied');
    assert.deepEqual((await rig.index.listing('late-b')).map((m) => m.uid), ['m2']);
  });

  it('a lock taken past its deadline is not taken', async () => {
    const result = await whilePaused(b, 300, () => index.acquire('late-c', 'token-1', 30_000));
    assert.equal(result.status, 'rejected');
    assert.ok(await rig.locks.acquire('maildrop:late-c'), 'the maildrop was left locked by a late acquire');
  });
});
